"""The tapearc command end to end, as a user runs it: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_volume


def tapearc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def assert_one_line_error(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("tapearc: error: "), p.stderr
    assert all(ln.startswith("tapearc: ") for ln in lines), p.stderr  # no traceback
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_backup_list_restore_json(tmp_path: Path) -> None:
    src = tmp_path / "vol.img"
    data = make_volume(src, "zero-runs")
    spec = f"sim:{tmp_path / 't.tap'}"
    p = tapearc("backup", str(src), "--media", spec, "--compress", "zstd", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["generation"] == 1 and res["volume_size"] == len(data) and res["complete"] is True
    p = tapearc("list", "--media", spec, "--json")
    assert p.returncode == 0, p.stderr
    lst = json.loads(p.stdout)
    assert lst["label"]["sequence"] == 1
    gens = lst["generations"]
    assert len(gens) == 1 and gens[0]["volume"] == "vol.img" and gens[0]["complete"]
    gen_file = next(f for f in lst["tape_files"] if f["kind"] == "generation")
    assert gen_file["data_blocks"] == res["data_blocks"] and gen_file["zero_blocks"] == res["zero_blocks"]
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", spec, "--to", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    assert json.loads(p.stdout)["generation"] == 1


def test_human_output(tmp_path: Path) -> None:
    src = tmp_path / "vol.img"
    make_volume(src, "tiny")
    spec = f"dir:{tmp_path / 'm'}"
    p = tapearc("backup", str(src), "--media", spec)
    assert p.returncode == 0 and "generation 1" in p.stdout
    p = tapearc("list", "--media", spec, "--chunks")
    assert p.returncode == 0 and "vol.img" in p.stdout and "chunk 0" in p.stdout


def test_missing_source_exit_3(tmp_path: Path) -> None:
    p = tapearc("backup", str(tmp_path / "nope"), "--media", f"sim:{tmp_path / 't.tap'}")
    assert_one_line_error(p, 3, "nope", "does not exist")


def test_not_tapearc_medium_exit_11(tmp_path: Path) -> None:
    img = tmp_path / "blank.tap"
    p = subprocess.run(
        [sys.executable, "-m", "tapesim", "new", str(img), "--capacity", "1M"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    p = tapearc("list", "--media", f"sim:{img}")
    assert_one_line_error(p, 11, f"sim:{img}", "blank")
    p = tapearc("restore", "--media", f"sim:{img}", "--to", str(tmp_path / "o"), "--json")
    assert p.returncode == 11
    assert json.loads(p.stdout)["error"] == "not-tapearc"


def test_missing_medium_exit_10(tmp_path: Path) -> None:
    p = tapearc("list", "--media", f"sim:{tmp_path / 'none.tap'}")
    assert_one_line_error(p, 10, "none.tap")


def test_damaged_chunk_partial_restore_exit_23(tmp_path: Path) -> None:
    src = tmp_path / "vol.img"
    make_volume(src, "random")
    img = tmp_path / "t.tap"
    assert tapearc("backup", str(src), "--media", f"sim:{img}").returncode == 0
    raw = bytearray(img.read_bytes())
    pos = raw.find(b"TACHUNK1")
    raw[pos + 9000] ^= 0x01
    img.write_bytes(bytes(raw))
    p = tapearc("restore", "--media", f"sim:{img}", "--to", str(tmp_path / "o"))
    assert p.returncode == 23, p.stderr
    last = [ln for ln in p.stderr.splitlines() if ln.startswith("tapearc: error: ")]
    assert len(last) == 1 and "partial" in last[0] and "bytes 0-" in last[0] and "blocks 0-" in last[0]
    assert "CRC" in p.stderr and "tape file 1" in p.stderr and "Traceback" not in p.stderr
    p = tapearc("verify", "--media", f"sim:{img}")
    assert p.returncode == 20


def test_target_exists_exit_4(tmp_path: Path) -> None:
    src = tmp_path / "vol.img"
    make_volume(src, "tiny")
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(src), "--media", spec).returncode == 0
    (tmp_path / "o").write_bytes(b"x")
    p = tapearc("restore", "--media", spec, "--to", str(tmp_path / "o"))
    assert_one_line_error(p, 4, "not empty", "holds no generation")
    assert "--force" in p.stderr


def test_medium_full_exit_12(tmp_path: Path) -> None:
    img = tmp_path / "small.tap"
    assert (
        subprocess.run(
            [sys.executable, "-m", "tapesim", "new", str(img), "--capacity", "2M", "--early-warning", "256K"]
        ).returncode
        == 0
    )
    src = tmp_path / "vol.img"
    make_volume(src, "random")
    p = tapearc("backup", str(src), "--media", f"sim:{img}")
    assert_one_line_error(p, 12, f"sim:{img}", "tape file 1")
    p = tapearc("list", "--media", f"sim:{img}", "--json")
    assert p.returncode == 0
    assert json.loads(p.stdout)["generations"][0]["complete"] is False


@pytest.mark.parametrize(
    "args,code",
    [
        (["backup", "X", "--media", "sim:Y", "--block-size", "12Q"], 2),
        (["backup", "X", "--media", "sim:Y", "--compress", "lz9"], 2),
        (["restore", "--media", "bogus:thing", "--to", "o"], 10),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], code: int) -> None:
    (tmp_path / "X").write_bytes(b"1")
    p = tapearc(*args, cwd=tmp_path)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr


def on_a_terminal(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run tapearc with standard error on a pseudo-terminal: (exit status, what it showed there)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapearc", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 4096)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    proc.communicate(timeout=120)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    import pty  # noqa: F401  (POSIX only, like tapearc)

    src = tmp_path / "vol.img"
    block = os.urandom(8 << 20)
    src.write_bytes(block * 12)  # 96 MiB: long enough for a measured rate
    # not a terminal: no progress output at all
    p = tapearc("backup", str(src), "--media", f"sim:{tmp_path / 'a.tap'}")
    assert p.returncode == 0 and p.stderr == ""
    # a terminal on stderr: a rich progress bar with bytes and MB/s
    code, shown = on_a_terminal(["backup", str(src), "--media", f"sim:{tmp_path / 'b.tap'}"], {"COLUMNS": "120"})
    assert code == 0
    import re

    # a transfer rate (rich picks the unit: kB/s, MB/s or GB/s), bytes done and the job's name
    assert re.search(r"\d [kMG]B/s", shown) and "MiB" in shown and "backup vol.img" in shown


@pytest.mark.parametrize("name", ["nbdx://host/disk", "http://example.com/disk.img", "nbd:localhost:10809"])
@pytest.mark.parametrize("role", ["source", "target", "against"])
def test_a_uri_tapearc_does_not_take_is_refused_not_taken_for_a_file(tmp_path: Path, name: str, role: str) -> None:
    """A typo of a scheme, another scheme or qemu's legacy NBD syntax: exit 2 naming it, nothing
    created (before: a source 'does not exist', exit 3; a restore target made a folder path)."""
    src = tmp_path / "vol.img"
    make_volume(src, "zero-runs")
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(src), "--media", spec, cwd=tmp_path).returncode == 0
    before = sorted(p.name for p in tmp_path.rglob("*"))
    if role == "source":
        p = tapearc("backup", name, "--media", spec, cwd=tmp_path)
    elif role == "target":
        p = tapearc("restore", "--media", spec, "--to", name, cwd=tmp_path)
    else:
        p = tapearc("verify", "--media", spec, "--against", name, cwd=tmp_path)
    assert_one_line_error(p, 2, name, "nbd://HOST[:PORT]/EXPORT")
    assert "./NAME" in p.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_an_nbd_uri_scheme_in_capitals_is_an_nbd_uri(tmp_path: Path) -> None:
    """NBD://: schemes are case-insensitive; libnbd takes only lower case, so the URI is given to
    it so (here no server answers: the connection error names the export, exit 3)."""
    p = tapearc("backup", f"NBD+UNIX:///disk?socket={tmp_path / 'none.sock'}", "--media", f"sim:{tmp_path / 't.tap'}")
    assert_one_line_error(p, 3, "NBD+UNIX:///disk")
    assert "unknown NBD URI scheme" not in p.stderr


def test_names_are_printed_as_they_are(tmp_path: Path) -> None:
    """A file or volume name holding what rich would take for an emoji code (``:smile:``) or
    markup (``[bold]``) is printed as it is -- in a one-line message and in a table -- never as
    an emoji or with the brackets gone (both were)."""
    name = "x:smile:[bold]y.img"
    src = tmp_path / name
    make_volume(src, "zero-runs")
    spec = f"sim:{tmp_path / 't.tap'}"
    p = tapearc("backup", name, "--media", spec, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"backed up {name} (" in p.stdout and f"as volume {name!r}" in p.stdout, p.stdout
    p = tapearc("list", "--media", spec, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    row = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("1 ")]
    assert row and f" {name} " in row[0], p.stdout
    out = "o:smile:[red].img"
    p = tapearc("restore", "--media", spec, "--to", out, cwd=tmp_path)
    assert p.returncode == 0 and f"to {out}: " in p.stdout, p.stdout
    p = tapearc("restore", "--media", spec, "--to", out, "--generation", "2", cwd=tmp_path)
    assert_one_line_error(p, 6, f"volume {name!r} has no generation 2")


def test_a_progress_bar_names_the_volume_as_it_is(tmp_path: Path) -> None:
    """On a terminal the bar's description is the volume's name as it is: brackets kept (rich
    took ``[bold]`` for markup and dropped it)."""
    src = tmp_path / "[bold]vm.img"
    make_volume(src, "zero-runs")
    code, shown = on_a_terminal(["backup", str(src), "--media", f"sim:{tmp_path / 't.tap'}"], {"COLUMNS": "160"})
    assert code == 0
    assert "backup [bold]vm.img" in shown, shown


@pytest.mark.parametrize("name", ["http://example.com/disk.img", "nbd:localhost:10809"])
def test_verify_against_a_uri_it_does_not_take_is_refused_before_the_medium_is_read(tmp_path: Path, name: str) -> None:
    """verify --against NAME is refused (exit 2) before the medium is opened or read: it read the
    whole medium first (hours on a tape) and refused NAME only then, its report unprinted."""
    p = tapearc("verify", "--media", f"sim:{tmp_path / 'none.tap'}", "--against", name, cwd=tmp_path)
    assert_one_line_error(p, 2, f"source {name}", "nbd://HOST[:PORT]/EXPORT")


def _run_with_stdout(stdout: object, *args: str, close: bool = False) -> subprocess.CompletedProcess[str]:
    def closed() -> None:
        os.close(1)

    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args],
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        preexec_fn=closed if close else None,
    )


@pytest.mark.parametrize("json_out", [False, True])
def test_a_full_disk_on_standard_output_is_one_line_exit_45(tmp_path: Path, json_out: bool) -> None:
    """Standard output on a full disk: the command's work is done and it says its report is lost
    (was: 'internal error ... a bug in tapearc', exit 1; with --json a traceback)."""
    src = tmp_path / "vol.img"
    make_volume(src, "zero-runs")
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(src), "--media", spec).returncode == 0
    with open("/dev/full", "w") as full:
        p = _run_with_stdout(full, "list", "--media", spec, *(["--json"] if json_out else []))
    assert_one_line_error(p, 45, "cannot write to standard output (No space left on device)", "work is done")
    with open("/dev/full", "w") as full:
        p = _run_with_stdout(full, "--version")
    assert_one_line_error(p, 45, "cannot write to standard output")


def test_a_closed_standard_output_is_one_line_exit_45_and_nothing_is_done(tmp_path: Path) -> None:
    """Started with standard output closed (>&-): one line, exit 45, nothing written (was: an
    AttributeError traceback)."""
    src = tmp_path / "vol.img"
    make_volume(src, "zero-runs")
    p = _run_with_stdout(None, "backup", str(src), "--media", f"sim:{tmp_path / 't.tap'}", close=True)
    assert_one_line_error(p, 45, "standard output is closed", "nothing was done")
    assert not (tmp_path / "t.tap").exists()
