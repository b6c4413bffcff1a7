"""Faults around the tapearc command, with real processes: two tapearc processes on one medium
or one catalog, Ctrl-C at chosen moments of a backup, a restore target that fills up.

Timing is deterministic: the process under test runs the real ``tapearc`` entry point through a
small wrapper (written to the test's folder) that stops at *hook points* (after each read of the
source, before each record written, before a tape file is closed), reports ``POINT N INFO`` on a
pipe and waits for the test to answer. The test lets it run to the moment it wants, then sends
SIGINT there, or starts a second process while the first one holds the medium.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import assert_one_line_error, tapearc
from tests.conftest import MiB

WRAPPER = r"""
import os, sys

report_fd = int(os.environ["HOOK_REPORT_FD"])
control_fd = int(os.environ["HOOK_CONTROL_FD"])
points = set(os.environ.get("HOOK_POINTS", "read").split(","))
counts = {}
free = False


def pause(point, info):
    global free
    if free or point not in points:
        return
    counts[point] = counts.get(point, 0) + 1
    os.write(report_fd, f"{point} {counts[point]} {info}\n".encode())
    if not os.read(control_fd, 1):  # SIGINT lands here; end of file: run freely from now on
        free = True


from tapearc.engine import backup as backup_mod, volume
from tapearc.sources import file as source_file
from tapearc.media import stlike

_read = source_file.SourceVolume.readinto_at


def readinto_at(self, buf, offset):
    n = _read(self, buf, offset)
    pause("read", offset + n)
    return n


source_file.SourceVolume.readinto_at = readinto_at
_write = stlike.StLikeDrive.write_record


def write_record(self, data):
    pause("write", len(data))
    return _write(self, data)


stlike.StLikeDrive.write_record = write_record
from tapearc.engine.genwriter import GenerationWriter

_close = GenerationWriter.close_part


def close_part(self, **kw):
    pause("close", kw.get("complete"))
    return _close(self, **kw)


GenerationWriter.close_part = close_part
_target_write = volume.RestoreTarget.write_at


def target_write(self, data, offset):
    pause("target", offset)
    return _target_write(self, data, offset)


volume.RestoreTarget.write_at = target_write
from tapearc.cli.app import main

sys.argv[0] = "tapearc"
main()
"""


class Hooked:
    """``tapearc ARGS`` in a subprocess that stops at the hook points ``points``."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        points: str = "read",
        env: dict[str, str] | None = None,
        pipeline: bool = False,
    ) -> None:
        # the plain path by default: with the read-ahead thread (or the restore's writer thread) a
        # hook in the source reads (or the target writes) pauses another thread than the one
        # SIGINT lands in, so "which chunk was written" would depend on timing
        env = {"TAPEARC_PIPELINE": "1" if pipeline else "0", **(env or {})}
        wrapper = tmp_path / "hooked_tapearc.py"
        wrapper.write_text(WRAPPER)
        r_rep, w_rep = os.pipe()
        r_ctl, w_ctl = os.pipe()
        self.p = subprocess.Popen(
            [sys.executable, str(wrapper), *args],
            pass_fds=(w_rep, r_ctl),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                **env,
                "HOOK_REPORT_FD": str(w_rep),
                "HOOK_CONTROL_FD": str(r_ctl),
                "HOOK_POINTS": points,
            },
        )
        os.close(w_rep)
        os.close(r_ctl)
        self.rep = r_rep
        self.ctl: int | None = w_ctl
        self.buf = b""

    def next_hook(self, timeout: float = 60) -> tuple[str, int, str]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rep], [], [], left)[0]:
                self.kill()
                raise AssertionError("no hook reported in time")
            chunk = os.read(self.rep, 4096)
            if not chunk:
                out, err = self.p.communicate(timeout=60)
                raise AssertionError(f"process ended before the hook: rc {self.p.returncode}\n{out}\n{err}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        point, n, info = line.decode().split(" ", 2)
        return point, int(n), info

    def go(self) -> None:
        assert self.ctl is not None
        os.write(self.ctl, b"c")

    def run_to(self, point: str, n: int) -> str:
        """Let the process run until it stops at the ``n``-th ``point``; returns its info."""
        while True:
            p, k, info = self.next_hook()
            if p == point and k == n:
                return info
            self.go()

    def release(self) -> None:
        """Let it run to the end without stopping."""
        if self.ctl is not None:
            os.close(self.ctl)
            self.ctl = None

    def interrupt(self) -> None:
        self.p.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            out, err = self.p.communicate(timeout=timeout)
        finally:
            self.release()
            os.close(self.rep)
        return subprocess.CompletedProcess(self.p.args, self.p.returncode, out, err)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, bytes]:
    p = tmp_path / "vol.img"
    data = os.urandom(3 * MiB)
    p.write_bytes(data)
    return p, data


SMALL = ["--record-size", "64K", "--chunk-size", "256K"]  # 3 data blocks a chunk, 4 records each


def backup_args(src: Path, spec: str, *extra: str) -> list[str]:
    return ["backup", str(src), "--media", spec, *SMALL, *extra]


def catalog_states() -> dict[tuple[str, int], str]:
    db = sqlite3.connect(os.environ["TAPEARC_CATALOG"])
    try:
        return {
            (v, n): s
            for v, n, s in db.execute(
                "SELECT v.name, g.number, g.state FROM generations g JOIN volumes v ON v.id = g.volume_id"
            )
        }
    finally:
        db.close()


# ---------------------------------------------------------------- two processes, one medium


@pytest.mark.parametrize("kind", ["sim", "dir"])
def test_second_process_on_a_busy_medium_fails_fast(tmp_path: Path, volume: tuple[Path, bytes], kind: str) -> None:
    src, data = volume
    spec = f"sim:{tmp_path / 't.tap'}" if kind == "sim" else f"dir:{tmp_path / 'm'}"
    holder = Hooked(tmp_path, *backup_args(src, spec))
    try:
        holder.run_to("read", 1)  # it holds the medium, mid-backup
        lock_file = Path(str(tmp_path / ("t.tap" if kind == "sim" else "m")) + ".tapearc-lock")
        assert lock_file.read_text().split() == [str(holder.p.pid)]
        for args in (
            backup_args(src, spec),
            ["list", "--media", spec],
            ["restore", "--media", spec, "--to", str(tmp_path / "o.img")],
            ["scan", "--media", spec],
            ["label", "--media", spec, "--force"],
        ):
            t0 = time.monotonic()
            p = tapearc(*args)
            assert time.monotonic() - t0 < 20
            assert_one_line_error(p, 10, f"medium {spec} is in use by another process (pid {holder.p.pid})")
        assert not (tmp_path / "o.img").exists()
        holder.release()
        done = holder.finish()
        assert done.returncode == 0, done.stderr
    finally:
        holder.kill()
    assert not lock_file.exists()  # the last holder removes it
    p = tapearc("restore", "--media", spec, "--to", str(tmp_path / "o.img"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o.img").read_bytes() == data


def test_dir_medium_readers_share(tmp_path: Path, volume: tuple[Path, bytes]) -> None:
    """Readers of a dir: medium do not exclude one another (only writers do)."""
    src, _ = volume
    spec = f"dir:{tmp_path / 'm'}"
    assert tapearc(*backup_args(src, spec)).returncode == 0
    reader = Hooked(tmp_path, "restore", "--media", spec, "--to", str(tmp_path / "o.img"), points="target")
    try:
        reader.run_to("target", 1)  # a restore holds the medium (shared: it only reads)
        p = tapearc("list", "--media", spec)
        assert p.returncode == 0, p.stderr
        p = tapearc(*backup_args(src, spec))
        assert_one_line_error(p, 10, f"medium {spec} is in use by another process (pid {reader.p.pid})")
        reader.release()
        assert reader.finish().returncode == 0
    finally:
        reader.kill()


def test_lock_timeout_waits_for_the_holder(tmp_path: Path, volume: tuple[Path, bytes]) -> None:
    src, _ = volume
    spec = f"sim:{tmp_path / 't.tap'}"
    holder = Hooked(tmp_path, *backup_args(src, spec))
    try:
        holder.run_to("read", 1)
        waiter = subprocess.Popen(
            [sys.executable, "-m", "tapearc", "list", "--media", spec],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TAPEARC_LOCK_TIMEOUT": "60"},
        )  # fmt: skip
        time.sleep(1.0)
        assert waiter.poll() is None  # still waiting
        holder.release()
        assert holder.finish().returncode == 0
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        assert "vol.img" in out
    finally:
        holder.kill()


def test_tapesim_holding_the_image(tmp_path: Path) -> None:
    """Another program holding the image (not tapearc): the backend's EBUSY, one line, exit 10."""
    img = tmp_path / "t.tap"
    assert (
        subprocess.run(
            [sys.executable, "-m", "tapesim", "new", str(img), "--capacity", "10M"], capture_output=True
        ).returncode
        == 0
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tapesim.drive import SimDrive; d = SimDrive(sys.argv[1]); "
         "print('held', flush=True); time.sleep(60)", str(img)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        p = tapearc("list", "--media", f"sim:{img}")
        assert_one_line_error(p, 10, f"sim:{img}", "busy")
    finally:
        holder.kill()
        holder.wait()


def test_st_busy_message_says_in_use() -> None:
    import errno

    from tapearc.media.linux_st import _open_error

    err = _open_error(OSError(errno.EBUSY, "busy"), "/dev/nst0", "st:/dev/nst0")
    assert err.exit_code == 10 and "in use" in str(err) and "\n" not in str(err)


def test_lock_paths_and_several_media(tmp_path: Path) -> None:
    from tapearc.errors import MediumUnavailableError
    from tapearc.locks import media_locks, medium_lock, medium_lock_path

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "library.json").write_text("{}")
    assert medium_lock_path(f"sim:{lib}") == (str(lib / "drive-0.tap") + ".tapearc-lock", False)
    assert medium_lock_path(f"dir:{tmp_path / 'm'}/") == (str(tmp_path / "m") + ".tapearc-lock", True)
    assert medium_lock_path(str(tmp_path / "t.tap")) == (str(tmp_path / "t.tap") + ".tapearc-lock", False)
    assert medium_lock_path("-") is None and medium_lock_path("/dev/nst0") is None
    assert medium_lock_path("st:/dev/nst0") is None
    a, b = f"sim:{tmp_path / 'a.tap'}", f"dir:{tmp_path / 'b'}"
    with media_locks([(a, False), (b, True), (a, True)]):  # the same medium twice: one lock
        assert Path(str(tmp_path / "a.tap") + ".tapearc-lock").exists()
        with pytest.raises(MediumUnavailableError, match="is in use by another process"):
            with medium_lock(b, write=False):
                pass
    assert not Path(str(tmp_path / "a.tap") + ".tapearc-lock").exists()
    assert not Path(str(tmp_path / "b") + ".tapearc-lock").exists()


# ---------------------------------------------------------------- two processes, one catalog


def test_two_backups_into_one_catalog(tmp_path: Path) -> None:
    """Two backups on two media share a catalog: interleaved, both complete, nothing lost."""
    vols = []
    for name in ("a.img", "b.img"):
        p = tmp_path / name
        d = os.urandom(2 * MiB)
        p.write_bytes(d)
        vols.append((p, d))
    specs = [f"sim:{tmp_path / 'ta.tap'}", f"sim:{tmp_path / 'tb.tap'}"]
    procs = [Hooked(tmp_path, *backup_args(v[0], s), points="read,write") for v, s in zip(vols, specs, strict=True)]
    try:
        alive = list(procs)
        while alive:  # one step each, in turn
            for h in list(alive):
                try:
                    h.next_hook(timeout=60)
                    h.go()
                except AssertionError:
                    alive.remove(h)
        results = [h.finish() for h in procs]
    finally:
        for h in procs:
            h.kill()
    for r in results:
        assert r.returncode == 0, r.stderr
    assert catalog_states() == {("a.img", 1): "complete", ("b.img", 1): "complete"}
    for (p, d), s in zip(vols, specs, strict=True):
        out = tmp_path / f"out-{p.name}"
        r = tapearc("restore", "--media", s, "--to", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == d
    db = sqlite3.connect(os.environ["TAPEARC_CATALOG"])
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_catalog_write_lock_held_too_long(tmp_path: Path, volume: tuple[Path, bytes]) -> None:
    src, _ = volume
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc(*backup_args(src, spec)).returncode == 0  # the catalog exists
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "db.execute('BEGIN IMMEDIATE'); db.execute(\"INSERT OR REPLACE INTO meta VALUES ('x', 'y')\"); "
         "print('held', flush=True); time.sleep(60)", os.environ["TAPEARC_CATALOG"]],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        p = subprocess.run(
            [sys.executable, "-m", "tapearc", *backup_args(src, spec)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "TAPEARC_CATALOG_TIMEOUT": "1"},
        )  # fmt: skip
        assert time.monotonic() - t0 < 20
        assert_one_line_error(p, 16, "catalog", f"is locked by another process (pid {holder.pid})", "waited 1 s")
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: the medium and the catalog work again
    p = tapearc(*backup_args(src, spec))
    assert p.returncode == 0, p.stderr
    p = tapearc("list", "--media", spec, "--json")
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------- Ctrl-C


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# (hook point, occurrence, chunks of generation 2 complete on the medium when SIGINT lands)
MOMENTS = [
    ("read", 1, 0),  # after the first window was read, before any chunk
    ("read", 3, 2),  # between chunks
    ("read", 16, 15),  # after the last read, before the last chunk
    ("write", 7, 1),  # inside chunk 1: its 2nd of 4 records is about to be written
    ("close", 1, 16),  # every chunk written, before the trailer
]


# with the read-ahead thread on: the hooks in the main thread (medium writes, closing) stop it at
# the same chunk; the reader thread is then waiting for a free buffer and must not hold up the exit
PIPELINED = [("write", 7, 1), ("close", 1, 16)]


@pytest.mark.parametrize(
    "point,n,chunks,pipeline",
    [(*m, False) for m in MOMENTS] + [(*m, True) for m in PIPELINED],
    ids=[f"{p}{n}" for p, n, _ in MOMENTS] + [f"{p}{n}-pipelined" for p, n, _ in PIPELINED],
)
def test_ctrl_c_during_backup(
    tmp_path: Path, volume: tuple[Path, bytes], point: str, n: int, chunks: int, pipeline: bool
) -> None:
    src, data = volume
    spec = f"sim:{tmp_path / 't.tap'}"
    p = tapearc(*backup_args(src, spec))  # generation 1, complete
    assert p.returncode == 0, p.stderr
    h = Hooked(tmp_path, *backup_args(src, spec, "--full"), points=point, pipeline=pipeline)
    try:
        h.run_to(point, n)  # (write: the generation header is record 1, chunk k is records 4k+2..4k+5)
        h.interrupt()
        res = h.finish()
    finally:
        h.kill()
    assert_one_line_error(res, 130, "interrupted")
    assert not Path(str(tmp_path / "t.tap") + ".tapearc-lock").exists()
    states = catalog_states()
    assert states[("vol.img", 1)] == "complete" and states[("vol.img", 2)] != "complete"

    # the medium reads up to its last complete chunk
    p = tapearc("list", "--media", spec, "--json")
    assert p.returncode == 0, p.stderr
    gens = {g["generation"]: g for g in json.loads(p.stdout)["generations"]}
    assert gens[1]["complete"] and not gens[2]["complete"]
    p = tapearc("scan", "--media", spec, "--deep", "--json")
    assert p.returncode == 0, p.stderr
    scanned = {g["generation"]: g for g in json.loads(p.stdout)["generations"]}
    assert scanned[1]["state"] == "complete"
    assert scanned[2]["state"] == "incomplete" and scanned[2]["chunks"] == chunks
    assert catalog_states()[("vol.img", 2)] == "incomplete"
    p = tapearc("restore", "--media", spec, "--generation", "1", "--to", str(tmp_path / "g1.img"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "g1.img").read_bytes() == data
    p = tapearc("restore", "--media", spec, "--generation", "2", "--to", str(tmp_path / "g2.img"))
    assert p.returncode != 0 and not (tmp_path / "g2.img").exists()

    # the next backup works
    new = os.urandom(len(data))
    src.write_bytes(new)
    p = tapearc(*backup_args(src, spec, "--json"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["generation"] == 3
    p = tapearc("restore", "--media", spec, "--to", str(tmp_path / "g3.img"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "g3.img").read_bytes() == new
    # verify reads everything back: generations 1 and 3 OK; generation 2 has no trailer (Ctrl-C
    # does not close the tape file), which verify reports as damage ("missing", exit 20)
    p = tapearc("verify", "--media", spec)
    assert p.returncode == 20, p.stdout + p.stderr
    assert "tape file 1 (volume 'vol.img' generation 1): OK" in p.stdout
    assert "tape file 3 (volume 'vol.img' generation 3): OK" in p.stdout
    assert "no readable trailer: the generation's backup was interrupted" in p.stdout
    assert "damage affects volume 'vol.img' generations 2\n" in p.stdout
    assert catalog_states() == {("vol.img", 1): "complete", ("vol.img", 2): "incomplete", ("vol.img", 3): "complete"}


def test_ctrl_c_during_restore_leaves_no_file(tmp_path: Path, volume: tuple[Path, bytes]) -> None:
    src, _ = volume
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc(*backup_args(src, spec)).returncode == 0
    before = _sha(tmp_path / "t.tap")
    out = tmp_path / "out.img"
    h = Hooked(tmp_path, "restore", "--media", spec, "--to", str(out), points="target")
    try:
        h.run_to("target", 5)
        assert (tmp_path / ".out.img.tapearc-partial").exists()
        h.interrupt()
        res = h.finish()
    finally:
        h.kill()
    assert_one_line_error(res, 130, "interrupted")
    assert not out.exists()
    assert not (tmp_path / ".out.img.tapearc-partial").exists()
    assert _sha(tmp_path / "t.tap") == before
    assert catalog_states() == {("vol.img", 1): "complete"}


# ---------------------------------------------------------------- the target fills up


@pytest.fixture
def tiny_fs(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_restore_to_full_filesystem_exit_5(tmp_path: Path, tiny_fs: Path, volume: tuple[Path, bytes]) -> None:
    src, data = volume
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc(*backup_args(src, spec)).returncode == 0
    before = _sha(tmp_path / "t.tap")
    target = tiny_fs / "out.img"
    p = tapearc("restore", "--media", spec, "--to", str(target), "--json")
    assert_one_line_error(p, 5, f"target {target} ran out of space at byte ")
    err = json.loads(p.stdout)
    assert err["error"] == "target-too-small" and err["exit_code"] == 5
    assert os.listdir(tiny_fs) == []  # no partial file left, nothing that looks complete
    assert _sha(tmp_path / "t.tap") == before  # the medium untouched
    # to a roomier place it works
    p = tapearc("restore", "--media", spec, "--to", str(tmp_path / "ok.img"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "ok.img").read_bytes() == data


def test_source_grows_warning_on_stderr(tmp_path: Path, volume: tuple[Path, bytes]) -> None:
    src, data = volume
    spec = f"sim:{tmp_path / 't.tap'}"
    h = Hooked(tmp_path, *backup_args(src, spec, "--json"))
    try:
        h.run_to("read", 2)
        with open(src, "ab") as f:
            f.write(b"more" * 1000)
        h.release()
        res = h.finish()
    finally:
        h.kill()
    assert res.returncode == 0, res.stderr
    warn = [ln for ln in res.stderr.splitlines() if ln.startswith("tapearc: warning: ")]
    assert len(warn) == 1 and f"grew during the backup: bytes after {len(data)} were not backed up" in warn[0]
    out = json.loads(res.stdout)
    assert out["complete"] and out["volume_size"] == len(data) and len(out["warnings"]) == 1
