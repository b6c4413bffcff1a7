"""Issue 12, finding 12 (the smaller items), through the command line as a user meets them:
hostile JSON, a full $TMPDIR, a foreign or misplaced catalog, nonsense option and environment
values, Ctrl-C at start-up and after a generation is complete, a closed standard output, a
terminal as restore output, verify --generation / --against."""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli import test_cli_faults as faults
from tests.cli.test_cli import assert_one_line_error, tapearc
from tests.conftest import MiB

DEEP = "[" * 100_000 + "]" * 100_000  # beyond any recursion limit


def tapesim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapesim", *args], capture_output=True, check=False, text=True, timeout=120
    )


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    p = tmp_path / "vol.img"
    p.write_bytes(os.urandom(MiB))
    return p


def assert_tapesim_one_line(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tapesim: error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


# ---------------------------------------------------------------- deeply nested JSON


@pytest.mark.parametrize("doc", [DEEP, '{"format": ' + "[" * 500 + "]" * 500 + "}"])
def test_deeply_nested_dir_marker(tmp_path: Path, vol: Path, doc: str) -> None:
    med = tmp_path / "m"
    assert tapearc("backup", str(vol), "--media", f"dir:{med}").returncode == 0
    marker = med / "TAPEARC-DIR-MEDIUM"
    marker.write_text(doc)
    for args in (["list", "--media", f"dir:{med}"], ["backup", str(vol), "--media", f"dir:{med}"]):
        p = tapearc(*args)
        assert_one_line_error(p, 11, str(marker), "nested")
    assert marker.read_text() == doc  # untouched


@pytest.mark.parametrize("doc", [DEEP, '{"barcode": ' + "[" * 900 + "]" * 900 + "}"])
def test_deeply_nested_tapesim_sidecar(tmp_path: Path, vol: Path, doc: str) -> None:
    img = tmp_path / "t.tap"
    assert tapearc("backup", str(vol), "--media", f"sim:{img}").returncode == 0
    side = Path(str(img) + ".tapesim")
    side.write_text(doc)
    before = sha(img)
    assert_one_line_error(tapearc("list", "--media", f"sim:{img}"), 10, str(side), "nested")
    assert_one_line_error(tapearc("backup", str(vol), "--media", f"sim:{img}"), 10, str(side), "nested")
    assert_tapesim_one_line(tapesim("info", str(img)), 1, str(side), "nested")
    assert sha(img) == before and side.read_text() == doc


def test_deeply_nested_library_json(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    assert tapesim("library", str(lib), "--slots", "2", "--capacity", "8M").returncode == 0
    lj = lib / "library.json"
    lj.write_text(DEEP)
    assert_tapesim_one_line(tapesim("library-status", str(lib)), 1, str(lj), "nested")
    p = tapearc("list", "--media", f"sim:{lib / 'drive-0.tap'}", "--changer", f"sim:{lib}")
    assert p.returncode not in (0, 1) and "Traceback" not in p.stderr, p.stderr
    assert_one_line_error(p, p.returncode, "library.json", "nested")


# ---------------------------------------------------------------- restore --to - and $TMPDIR


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> object:
    d = tmp_path / "tiny-tmp"
    d.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, check=False, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 64 KiB tmpfs to fill $TMPDIR (needs root): {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True, check=False)


def test_restore_to_stdout_with_a_full_tmpdir(tmp_path: Path, tiny_tmpfs: Path) -> None:
    """An incremental that changed block 0: every block of the full generation arrives before
    block 0 and waits in the spool file in $TMPDIR, which has 64 KiB: ENOSPC."""
    src = tmp_path / "v.img"
    data = bytearray(os.urandom(2 * MiB))
    src.write_bytes(data)
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(src), "--media", spec).returncode == 0
    data[:4] = b"XXXX"
    src.write_bytes(data)
    assert tapearc("backup", str(src), "--media", spec).returncode == 0
    p = subprocess.run(
        [sys.executable, "-m", "tapearc", "restore", "--media", spec, "--to", "-"],
        capture_output=True, check=False, timeout=120, env={**os.environ, "TMPDIR": str(tiny_tmpfs)},
    )  # fmt: skip
    err = p.stderr.decode()
    assert p.returncode == 4, err
    lines = err.splitlines()
    assert lines[0].startswith("tapearc: error: ") and all(ln.startswith("tapearc: ") for ln in lines), err
    assert str(tiny_tmpfs) in lines[0] and "No space left" in lines[0] and "TMPDIR" in err
    # with room it restores exactly
    p = subprocess.run(
        [sys.executable, "-m", "tapearc", "restore", "--media", spec, "--to", "-"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert p.returncode == 0 and p.stdout == bytes(data)


def test_restore_to_a_terminal_is_refused(tmp_path: Path, vol: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    master, slave = os.openpty()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "tapearc", "restore", "--media", spec, "--to", "-"],
            stdout=slave, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        got = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            got += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert_one_line_error(p, 2, "--to -", "terminal")
    assert got == b""  # not one byte of the volume on the terminal


# ---------------------------------------------------------------- --catalog


def test_foreign_sqlite_catalog_is_refused_untouched(tmp_path: Path, vol: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    other = tmp_path / "app.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users VALUES (1, 'ann')")
    db.commit()
    db.close()
    before = other.read_bytes()
    for args in (
        ["restore", "--media", spec, "--to", str(tmp_path / "o.img"), "--catalog", str(other)],
        ["backup", str(vol), "--media", spec, "--catalog", str(other)],
        ["verify", "--media", spec, "--catalog", str(other)],
    ):
        assert_one_line_error(tapearc(*args), 16, str(other), "not a tapearc catalog")
    assert other.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith("app.db")) == ["app.db"]
    assert not (tmp_path / "o.img").exists()


def test_catalog_in_a_missing_folder_is_refused(tmp_path: Path, vol: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    missing = tmp_path / "no" / "such"
    p = tapearc("restore", "--media", spec, "--to", str(tmp_path / "o.img"), "--catalog", str(missing / "cat.sqlite"))
    assert_one_line_error(p, 16, str(missing), "does not exist")
    p = subprocess.run(
        [sys.executable, "-m", "tapearc", "verify", "--media", spec], capture_output=True, check=False, text=True, timeout=120,
        env={**os.environ, "TAPEARC_CATALOG": str(missing / "cat.sqlite")},
    )  # fmt: skip
    assert_one_line_error(p, 16, str(missing), "TAPEARC_CATALOG")
    assert not (tmp_path / "no").exists()
    # the default location (no --catalog, no TAPEARC_CATALOG) makes its own folder
    env = {k: v for k, v in os.environ.items() if k != "TAPEARC_CATALOG"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    p = subprocess.run(
        [sys.executable, "-m", "tapearc", "verify", "--media", spec],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "xdg" / "tapearc" / "catalog.sqlite").is_file()


# ---------------------------------------------------------------- verify


def test_verify_a_generation_the_medium_does_not_hold(tmp_path: Path, vol: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    restore = tapearc("restore", "--media", spec, "--to", str(tmp_path / "o.img"), "--generation", "9")
    assert restore.returncode == 6
    p = tapearc("verify", "--media", spec, "--generation", "9")
    assert_one_line_error(p, 6, "no generation 9", "generations 1, 2")
    assert "OK" not in p.stdout
    assert_one_line_error(tapearc("verify", "--media", spec, "--volume", "nope"), 6, "no volume 'nope'")
    assert tapearc("verify", "--media", spec, "--generation", "2").returncode == 0


def test_verify_against_a_differing_source_says_the_medium_is_intact(tmp_path: Path, vol: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    data = bytearray(vol.read_bytes())
    data[70_000] ^= 1  # block 1 of 64 KiB blocks
    changed = tmp_path / "changed.img"
    changed.write_bytes(data)
    p = tapearc("verify", "--media", spec, "--against", str(changed))
    assert_one_line_error(
        p, 20, f"{changed} differs from volume 'vol.img' generation 1", "blocks 1", "medium itself is intact"
    )
    assert "DAMAGE" not in p.stdout + p.stderr
    assert "verify: medium OK; the source differs" in p.stdout
    p = tapearc("verify", "--media", spec, "--against", str(changed), "--json")
    assert p.returncode == 20
    rep = json.loads(p.stdout)  # one JSON document: the report
    assert (
        rep["status"] == "source-differs"
        and rep["media"][0]["status"] == "ok"
        and rep["against"]["differing_blocks"] == 1
    )
    # a damaged medium is still damage
    img = tmp_path / "t.tap"
    raw = bytearray(img.read_bytes())
    pos = raw.find(b"TACHUNK1")
    raw[pos + 5000] ^= 0xFF
    img.write_bytes(bytes(raw))
    p = tapearc("verify", "--media", spec, "--against", str(changed))
    assert p.returncode == 20 and "verify: DAMAGE FOUND" in p.stdout


# ---------------------------------------------------------------- nonsense values


@pytest.mark.parametrize(
    "args, words",
    [
        (["--wait", "-5"], ["--wait -5"]),
        (["--wait", "nan"], ["--wait nan"]),
        (["--wait", "soon"], ["--wait 'soon'"]),
        (["--generation", "0"], ["--generation 0"]),
        (["--generation", "-1"], ["--generation -1"]),
        (["--generation", "two"], ["--generation 'two'"]),
        (["--assume-generation", "-2"], ["--assume-generation -2"]),
    ],
)
def test_nonsense_restore_options(tmp_path: Path, vol: Path, args: list[str], words: list[str]) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    p = tapearc("restore", "--media", spec, "--to", str(tmp_path / "o.img"), *args)
    assert_one_line_error(p, 2, *words)
    assert len([ln for ln in p.stderr.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "o.img").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (
            [
                "label",
                "--media",
                "sim:{d}/n.tap",
                "--sequence",
                "0",
                "--media-set",
                "00000000-0000-0000-0000-000000000001",
            ],
            ["--sequence 0"],
        ),
        (["backup", "{d}/vol.img", "--media", "sim:{d}/n.tap", "--chunk-size", "0"], ["--chunk-size 0"]),
        (["backup", "{d}/vol.img", "--media", "sim:{d}/n.tap", "--wait", "-1"], ["--wait -1"]),
        (["scan", "--media", "sim:{d}/n.tap", "--wait", "inf"], ["--wait inf"]),
        (["plan", "--media", "sim:{d}/n.tap", "--generation", "-3"], ["--generation -3"]),
        (["verify", "--media", "sim:{d}/n.tap", "--generation", "0"], ["--generation 0"]),
    ],
)
def test_nonsense_options_elsewhere(tmp_path: Path, vol: Path, args: list[str], words: list[str]) -> None:
    p = tapearc(*(a.format(d=tmp_path) for a in args))
    assert_one_line_error(p, 2, *words)
    assert not (tmp_path / "n.tap").exists()


def _tapearc_variables() -> list[str]:
    """Every TAPEARC_ variable the code of tapearc/ and hw-sim/ reads."""
    root = Path(__file__).resolve().parents[2]
    names: set[str] = set()
    for d in ("tapearc", "hw-sim"):
        for f in (root / d).rglob("*.py"):
            names |= set(re.findall(r"\bTAPEARC_[A-Z_]+\b", f.read_text()))
    return sorted(names)


def _documented_variables() -> list[tuple[str, str]]:
    """(variable, default) of each row of the table under "## Environment" in docs/user-guide.md."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text()
    section = guide.split("\n## Environment\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(TAPEARC_[A-Z_]+)` \| (.*?) \|", section, re.M)
    return [(name, default.strip()) for name, default in rows]


def test_every_variable_is_checked_and_documented() -> None:
    from tapearc import settings

    found = _tapearc_variables()
    assert set(found) == set(settings.VARIABLES), found
    assert _documented_variables() == [(s.name, s.shown_default) for s in settings.SETTINGS]


@pytest.mark.parametrize(
    "name, value",
    [
        ("TAPEARC_CATALOG_TIMEOUT", "abc"),
        ("TAPEARC_CATALOG_TIMEOUT", "-1"),
        ("TAPEARC_LOCK_TIMEOUT", "soon"),
        ("TAPEARC_LOCK_TIMEOUT", "nan"),
        ("TAPEARC_PIPELINE", "maybe"),
        ("TAPEARC_DIRECT_IO", "2"),
        ("TAPEARC_EARLY_WRITEBACK", "fast"),
        ("TAPEARC_ST_MAX_RECORD", "lots"),
        ("TAPEARC_ST_MAX_RECORD", "0"),
        ("TAPEARC_ST_LOAD_TIMEOUT", "-5"),
        ("TAPEARC_LEASE_TTL", "soon"),
        ("TAPEARC_LEASE_TTL", "0.5"),
        ("TAPEARC_LEASE_TTL", "inf"),
    ],
)
def test_nonsense_environment_values(tmp_path: Path, vol: Path, name: str, value: str) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    before = sha(tmp_path / "t.tap")
    for args in (["list", "--media", spec], ["backup", str(vol), "--media", spec]):
        p = subprocess.run(
            [sys.executable, "-m", "tapearc", *args],
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            env={**os.environ, name: value},
        )
        assert_one_line_error(p, 2, f"{name}={value!r}")
    assert sha(tmp_path / "t.tap") == before


def test_nonsense_early_writeback_in_tapesim(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "tapesim", "new", str(tmp_path / "t.tap")],
        capture_output=True, check=False, text=True, timeout=60, env={**os.environ, "TAPEARC_EARLY_WRITEBACK": "fast"},
    )  # fmt: skip
    assert_tapesim_one_line(p, 2, "TAPEARC_EARLY_WRITEBACK='fast'")


# ---------------------------------------------------------------- Ctrl-C at start-up


def _launcher(kind: str) -> list[str]:
    if kind == "module":
        return [sys.executable, "-m", "tapearc"]
    script = Path(sys.executable).parent / "tapearc"  # the console script pip made
    if not script.exists():
        pytest.skip(f"no console script {script} (tapearc not installed in this environment)")
    return [str(script)]


# Import-time lines (PYTHONPROFILEIMPORTTIME) are written as each import completes: the test
# waits for the line of a module, then sends SIGINT, so it lands in that phase or a later one.
PHASES = [
    "tapearc.cli.entry",  # the first moment tapearc's own code runs
    "typer",  # the heavy imports
    "tapearc.errors",
    "tapearc.cli.app",  # option parsing
    "tapearc.engine.listing",  # the command's work (imported by `list` itself)
    "rich.console",  # imported when the listing is printed (the last phases may see it finish)
]


@pytest.mark.parametrize("launcher", ["script", "module"])
@pytest.mark.parametrize("phase", PHASES)
def test_ctrl_c_at_start_up(tmp_path: Path, vol: Path, phase: str, launcher: str) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    p = subprocess.Popen(
        [*_launcher(launcher), "list", "--media", spec],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    assert p.stderr is not None
    buf = b""
    deadline = time.monotonic() + 60
    sent = False
    while time.monotonic() < deadline:
        if not select.select([p.stderr], [], [], 1)[0]:
            continue
        chunk = os.read(p.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        if any(
            re.search(rf"\|\s+{re.escape(phase)}$", ln.rstrip()) for ln in buf.decode(errors="replace").splitlines()
        ):
            p.send_signal(signal.SIGINT)
            sent = True
            break
    out, rest = p.communicate(timeout=60)
    buf += rest
    assert sent, buf.decode(errors="replace")[-2000:]
    lines = [ln for ln in buf.decode().splitlines() if ln.strip() and not ln.startswith("import time:")]
    assert "Traceback" not in buf.decode()
    if p.returncode == 0:  # `list` finished before the signal arrived: then it printed its listing
        assert phase in PHASES[-2:] and lines == [] and b"vol.img" in out
        return
    assert p.returncode == 130, (p.returncode, lines)
    assert lines == ["tapearc: error: interrupted"], lines


# ---------------------------------------------------------------- Ctrl-C after the generation is complete

ENTRY_HOOKS = r"""
import tapearc.cli.entry  # Ctrl-C handling first, as the console script does
from tapearc.media import stlike
from tapearc.catalog import db as catalog_db

_fm = stlike.StLikeDrive.write_filemark


def write_filemark(self, *a, **k):
    pause("filemark", self.position().file)
    return _fm(self, *a, **k)


stlike.StLikeDrive.write_filemark = write_filemark
_locate = stlike.StLikeDrive.locate


def locate(self, logical):
    pause("locate", logical)
    return _locate(self, logical)


stlike.StLikeDrive.locate = locate
_cclose = catalog_db.Catalog.close
from tapearc import interrupts as _interrupts

_raising_exit = _interrupts.raising.__exit__


def raising_exit(self, *exc):
    _raising_exit(self, *exc)
    if exc[0] is None:
        pause("after-work", 0)


_interrupts.raising.__exit__ = raising_exit


def catalog_close(self):
    pause("catalog-close", 0)
    return _cclose(self)


catalog_db.Catalog.close = catalog_close
"""


@pytest.fixture
def entry_hooked(monkeypatch: pytest.MonkeyPatch) -> None:
    """test_cli_faults' hooked tapearc, run through the real entry point, with two more hook
    points: each filemark written, and the catalog's close at the end of the command."""
    wrapper = faults.WRAPPER.replace(
        "from tapearc.engine import backup as backup_mod",
        ENTRY_HOOKS + "\nfrom tapearc.engine import backup as backup_mod",
    )
    wrapper = wrapper.replace(
        'from tapearc.cli.app import main\n\nsys.argv[0] = "tapearc"\nmain()',
        'from tapearc.cli.entry import main\n\nsys.argv[0] = "tapearc"\nmain()',
    )
    assert "tapearc.cli.entry import main" in wrapper and "def write_filemark" in wrapper
    monkeypatch.setattr(faults, "WRAPPER", wrapper)


def _states(spec_volume: str = "vol.img") -> dict[int, str]:
    return {n: s for (v, n), s in faults.catalog_states().items() if v == spec_volume}


@pytest.mark.parametrize("where", ["filemark", "catalog-close"])
def test_ctrl_c_once_the_generation_is_complete(tmp_path: Path, vol: Path, entry_hooked: None, where: str) -> None:
    """The end record is on the medium: the generation is complete there. A Ctrl-C while its
    filemark is written, or at the very end of the command, must not leave the catalog saying
    otherwise, and the message must say the generation is complete."""
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0  # labeled; generation 1
    h = faults.Hooked(tmp_path, "backup", str(vol), "--media", spec, "--full", points=where)
    try:
        h.run_to(where, 1)
        h.interrupt()
        time.sleep(0.2)  # let the signal land in the paused process
        h.release()
        p = h.finish()
    finally:
        h.kill()
    assert_one_line_error(
        p, 130, "interrupted", "generation 2 of volume 'vol.img' is complete on medium", "tape file 2"
    )
    assert _states() == {1: "complete", 2: "complete"}
    files = json.loads(tapearc("list", "--media", spec, "--json").stdout)["tape_files"]
    assert [f.get("complete") for f in files if f.get("generation") == 2] == [True]
    out = tmp_path / "o.img"
    assert tapearc("restore", "--media", spec, "--to", str(out), "--generation", "2").returncode == 0
    assert out.read_bytes() == vol.read_bytes()


def test_ctrl_c_after_the_work_is_ignored(tmp_path: Path, vol: Path, entry_hooked: None) -> None:
    """The backup is done and reported: a Ctrl-C before the process ends changes nothing (no
    death by signal, no message, status 0)."""
    spec = f"sim:{tmp_path / 't.tap'}"
    h = faults.Hooked(tmp_path, "backup", str(vol), "--media", spec, points="after-work")
    try:
        h.run_to("after-work", 1)
        h.interrupt()
        time.sleep(0.2)
        h.release()
        p = h.finish()
    finally:
        h.kill()
    assert p.returncode == 0 and p.stderr == "", (p.returncode, p.stderr)
    assert "backed up" in p.stdout and _states() == {1: "complete"}


def test_copy_to_a_terminal_is_refused(tmp_path: Path, vol: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    master, slave = os.openpty()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "tapearc", "copy", "--from", spec, "--to", "-"],
            stdout=slave, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    assert_one_line_error(p, 2, "--to -", "terminal")


def test_ctrl_c_during_verify_after_the_generation_is_complete(tmp_path: Path, vol: Path, entry_hooked: None) -> None:
    """backup --verify reads the tape file back after its end record and filemark: a Ctrl-C
    then says the generation is complete and that the check did not finish; the catalog agrees."""
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    h = faults.Hooked(tmp_path, "backup", str(vol), "--media", spec, "--full", "--verify", points="filemark,locate")
    try:
        h.run_to("filemark", 1)
        h.go()
        point, _, _ = h.next_hook()  # the read-back goes to the tape file's start first
        assert point == "locate"
        h.interrupt()
        h.release()
        p = h.finish()
    finally:
        h.kill()
    assert_one_line_error(
        p, 130, "generation 2 of volume 'vol.img' is complete on medium", "read-back check (--verify) did not finish"
    )
    assert _states() == {1: "complete", 2: "complete"}


# ---------------------------------------------------------------- a closed standard output


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--media", "{spec}"],
        ["list", "--media", "{spec}", "--json"],
        ["verify", "--media", "{spec}"],
        ["--help"],
    ],
)
def test_closed_stdout_ends_quietly(tmp_path: Path, vol: Path, args: list[str]) -> None:
    """`tapearc list | head -1`: the reader is gone; like yes | head -1, no message, status 141
    (128 + SIGPIPE, what a shell shows for a tool ended by SIGPIPE)."""
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    r, w = os.pipe()
    os.close(r)  # the reader has gone before the first write: deterministic EPIPE
    try:
        p = subprocess.run(
            [sys.executable, "-m", "tapearc", *(a.format(spec=spec) for a in args)],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(w)
    assert p.returncode == 141, p.stderr
    assert p.stderr == ""


def test_list_into_head(tmp_path: Path, vol: Path) -> None:
    """The same through a real shell pipeline with head -1, on a listing (1536 chunk lines, some
    150 KB) longer than a pipe holds: tapearc is still writing when head leaves."""
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "big.img"
    src.write_bytes(os.urandom(24 * MiB))
    assert (
        tapearc(
            "backup", str(src), "--media", spec, "--block-size", "4K", "--record-size", "16K", "--chunk-size", "16K"
        ).returncode
        == 0
    )
    p = subprocess.run(
        ["bash", "-c", f'"$0" -m tapearc list --media {spec} --chunks | head -1; echo "status ${{PIPESTATUS[0]}}" >&2', sys.executable],
        capture_output=True, check=False, text=True, timeout=120,
    )  # fmt: skip
    assert p.stdout.startswith("medium ") and p.stdout.count("\n") == 1
    assert p.stderr.strip() == "status 141", p.stderr
