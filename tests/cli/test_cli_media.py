"""Labels, media sets and refusals through the command line, on simulated media."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


def run(*args: str, tool: str = "tapearc", **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("tapearc: error: ") and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_label_refuses_labeled_and_foreign_media(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    assert run("new", str(img), "--capacity", "8M", tool="tapesim").returncode == 0
    p = run("label", "--media", f"sim:{img}", "--text", "TAPE01", "--json")
    assert p.returncode == 0, p.stderr
    lab = json.loads(p.stdout)
    assert lab["sequence"] == 1 and lab["text"] == "TAPE01"
    before = digest(img)
    one_line(run("label", "--media", f"sim:{img}"), 18, "already labeled", "sequence 1")
    assert digest(img) == before
    p = run("label", "--media", f"sim:{img}", "--force", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["media_set"] != lab["media_set"]
    # a foreign medium
    from tapesim.drive import SimDrive

    foreign = tmp_path / "f.tap"
    with SimDrive(str(foreign), create=True) as d:
        d.write(b"VOL1 not ours".ljust(80))
    before = digest(foreign)
    one_line(run("label", "--media", f"sim:{foreign}"), 11, "not tapearc")
    one_line(run("backup", str(img), "--media", f"sim:{foreign}"), 11)
    assert digest(foreign) == before


def test_another_media_set_is_refused_untouched(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    src = tmp_path / "v.img"
    src.write_bytes(os.urandom(50000))
    p = run("backup", str(src), "--media", f"sim:{img}", "--json")
    assert p.returncode == 0, p.stderr
    before = digest(img)
    other = "12345678-1234-5678-1234-567812345678"
    one_line(
        run("backup", str(src), "--media", f"sim:{img}", "--media-set", other),
        19,
        "belongs to media set",
        "nothing was written",
    )
    assert digest(img) == before
    # a blank medium is not a medium of the set either
    blank = tmp_path / "b.tap"
    assert run("new", str(blank), "--capacity", "8M", tool="tapesim").returncode == 0
    before = digest(blank)
    one_line(run("backup", str(src), "--media", f"sim:{blank}", "--media-set", other), 19, "blank")
    assert digest(blank) == before


def test_write_protected_tape_is_refused_untouched(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    src = tmp_path / "v.img"
    src.write_bytes(os.urandom(50000))
    assert run("backup", str(src), "--media", f"sim:{img}").returncode == 0
    assert run("protect", str(img), "--on", tool="tapesim").returncode == 0
    before = digest(img)
    one_line(run("backup", str(src), "--media", f"sim:{img}"), 13, "write-protected", f"sim:{img}")
    one_line(run("label", "--media", f"sim:{img}", "--force"), 13, "write-protected")
    assert digest(img) == before
    # reading still works
    p = run("restore", "--media", f"sim:{img}", "--to", str(tmp_path / "o"))
    assert p.returncode == 0 and (tmp_path / "o").read_bytes() == src.read_bytes()


def test_empty_drive_is_reported(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    assert run("library", str(lib), "--slots", "2", "--capacity", "8M", tool="tapesim").returncode == 0
    src = tmp_path / "v.img"
    src.write_bytes(os.urandom(50000))
    tapes = {p.name: digest(p) for p in (lib / "tapes").glob("*.tap")}
    one_line(run("backup", str(src), "--media", f"sim:{lib / 'drive-0.tap'}"), 10, "no tape in drive")
    one_line(run("list", "--media", f"sim:{lib / 'drive-0.tap'}"), 10, "no tape")
    assert {p.name: digest(p) for p in (lib / "tapes").glob("*.tap")} == tapes
    assert not (lib / "drive-0.tap").exists()


def test_spanning_backup_through_the_cli(tmp_path: Path, _private_catalog: Path) -> None:
    lib = tmp_path / "lib"
    p = run("library", str(lib), "--slots", "4", "--capacity", "6M", "--early-warning", "1M", tool="tapesim")
    assert p.returncode == 0, p.stderr
    src = tmp_path / "v.img"
    data = os.urandom(9 * 1024 * 1024)
    src.write_bytes(data)
    p = run("backup", str(src), "--media", f"sim:{lib}", "--record-size", "64K", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert len(res["parts"]) >= 2 and res["complete"]
    p = run("plan", "--media", f"sim:{lib}", "--json")
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert [m["sequence"] for m in plan["media"]] == list(range(1, len(res["parts"]) + 1))
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    p = run("scan", "--media", f"sim:{lib}", "--json")
    assert p.returncode == 0, p.stderr
    p = run("restore", "--media", f"sim:{lib}", "--to", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o").read_bytes() == data
