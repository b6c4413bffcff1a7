"""Restore onto NBD exports that misbehave or are misnamed, served by the real tools (qemu-nbd,
nbdkit): a server without block status, one that never answers or stalls, a failing flush, a
larger export holding old data, qemu's legacy ``nbd:HOST:PORT`` syntax; and the generations
that need more than one medium or a key. Every restored export is compared byte for byte."""

from __future__ import annotations

import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.progress import NoProgress
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import KeyRequiredError, TargetError
from tests.engine.test_nbd_target import (
    BS,
    TAIL,
    VOL_SIZE,
    KiB,
    MiB,
    _listening,
    do_backup,
    do_restore,
    make_vol,
    new_qcow2,
    one_line_error,
    raw_of,
    tapearc,
)
from tests.nbdsupport import nbdkit_server, needs_libnbd, needs_nbdkit, needs_qemu_nbd, qemu_io, qemu_nbd

ZERO_RUNS = 1 * MiB + 1536 * KiB  # bytes of the two zero runs of make_vol's volume


def _in_thread(fn: Callable[[], Any], seconds: float = 60.0) -> Any:
    """``fn()`` in a thread; fails the test (instead of hanging it) when it has not returned
    after ``seconds`` (a hang guard, not a timing assertion)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "it hangs"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[Path]:
    """A Unix socket that takes connections and never says a word (a hung server)."""
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen(16)  # connections complete in the kernel's backlog; nobody answers them
        yield path


@needs_nbdkit
def test_export_without_block_status_gets_its_zero_runs_written(tmp_path: Path) -> None:
    """nbdkit --no-sr: no structured replies, so no base:allocation. Its first MiB reads as zeros
    (the block-device probe) but the rest holds old data: every zero run of the volume must read
    back as zeros, not as the old data (it did: 'complete' with 0xff in both zero runs)."""
    vol = tmp_path / "vol.img"
    data = make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(MiB) + b"\xff" * (7 * MiB))
    with nbdkit_server("--no-sr", "file", str(disk)) as (port, _):
        res = do_restore(spec, f"nbd://127.0.0.1:{port}/")
    assert res.status == "complete"
    got = disk.read_bytes()
    assert got[:VOL_SIZE] == data
    assert got[VOL_SIZE:] == b"\xff" * (8 * MiB - VOL_SIZE)  # past the volume: untouched
    assert res.bytes_zeroed == ZERO_RUNS


@needs_libnbd
def test_server_that_never_answers_is_an_error_not_a_hang(tmp_path: Path, silent_socket: Path) -> None:
    vol = tmp_path / "vol.img"
    make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    uri = f"nbd+unix:///disk?socket={silent_socket}"
    env = {"TAPEARC_NBD_TIMEOUT": "1"}
    err = one_line_error(_cli(env, "restore", "--media", spec, "--to", uri), 4)
    assert f"NBD export {uri} did not answer within 1 s" in err
    err = one_line_error(_cli(env, "backup", "--media", spec, uri), 3)  # the same as a source
    assert f"NBD export {uri} did not answer within 1 s" in err


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return tapearc(*args)  # (its own timeout of 120 s: a hang fails the test)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@needs_qemu_nbd
def test_server_that_stalls_mid_restore_is_an_error_not_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """qemu-nbd stopped (SIGSTOP) after the first chunk: its socket stays open and nothing
    answers. The restore stops with an error naming the URI instead of waiting forever."""
    vol = tmp_path / "vol.img"
    vol.write_bytes(random.Random(8).randbytes(8 * MiB))
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol, chunk_size=256 * KiB)
    img = new_qcow2(tmp_path / "vm.qcow2", 8 * MiB)
    monkeypatch.setenv("TAPEARC_NBD_TIMEOUT", "1")
    sock = tmp_path / "vm.sock"
    proc = subprocess.Popen(["qemu-nbd", "--persistent", "-f", "qcow2", "-x", "disk", "-k", str(sock), str(img)])
    try:
        while not _listening(sock):
            assert proc.poll() is None
        uri = f"nbd+unix:///disk?socket={sock}"

        class StopServer(NoProgress):
            def advance(self, n: int) -> None:  # after the first chunk went to the export
                os.kill(proc.pid, signal.SIGSTOP)

        with pytest.raises(TargetError) as e:
            _in_thread(lambda: do_restore(spec, uri, StopServer()))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()
    assert f"NBD export {uri} did not answer within 1 s" in e.value.message and "\n" not in e.value.message


@pytest.mark.parametrize("target", ["nbd:localhost:10809", "nbd:unix:/run/vm.sock:exportname=disk", "nbd+tcp://h/d"])
def test_nbd_names_libnbd_does_not_take_are_refused_and_no_file_is_made(tmp_path: Path, target: str) -> None:
    """qemu's legacy syntax (``nbd:HOST:PORT``, ``nbd:unix:PATH``) and unknown ``nbd+...``
    schemes are no file names: the restore made a file called ``nbd:localhost:10809``."""
    vol = tmp_path / "vol.img"
    make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    work = tmp_path / "cwd"
    (work / "nbd:unix:").mkdir(parents=True)  # even where such a folder exists
    before = sorted(str(p) for p in work.rglob("*"))
    here = os.getcwd()
    os.chdir(work)
    try:
        err = one_line_error(tapearc("restore", "--media", spec, "--to", target), 2)
    finally:
        os.chdir(here)
    assert f"{target} is not an NBD URI" in err and "nbd://HOST[:PORT]/EXPORT" in err
    assert sorted(str(p) for p in work.rglob("*")) == before


def _eval_disk(disk: Path, flush: str) -> tuple[str, ...]:
    """nbdkit's eval plugin over the file ``disk``, its flush the shell code ``flush``."""
    d = shlex.quote(str(disk))
    return (
        "eval",
        f"get_size=stat -c %s {d}",
        f"pread=dd if={d} iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none",
        f"pwrite=dd of={d} oflag=seek_bytes conv=notrunc seek=$4 status=none",
        "can_write=exit 0",
        "can_flush=exit 0",
        f"flush={flush}",
    )


@needs_nbdkit
def test_flush_is_sent_and_its_failure_is_reported(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    data = make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(VOL_SIZE))
    flushed = tmp_path / "flushed"
    with nbdkit_server(*_eval_disk(disk, f"touch {shlex.quote(str(flushed))}")) as (port, _):
        assert do_restore(spec, f"nbd://127.0.0.1:{port}/", force=True).status == "complete"  # (no holes said)
    assert flushed.exists() and disk.read_bytes() == data  # NBD_CMD_FLUSH was sent
    disk.write_bytes(bytes(VOL_SIZE))
    with nbdkit_server(*_eval_disk(disk, "echo EIO disk on fire >&2; exit 1")) as (port, _):
        uri = f"nbd://127.0.0.1:{port}/"
        err = one_line_error(tapearc("restore", "--media", spec, "--to", uri, "--force"), 4)
    assert f"flushing NBD export {uri} at byte 0 failed" in err


@needs_nbdkit
def test_a_slow_flush_is_waited_for_longer_than_other_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server writing out its cache answers a flush late (here 2 s, with TAPEARC_NBD_TIMEOUT=1):
    the flush may take ten times the timeout, the restore completes."""
    vol = tmp_path / "vol.img"
    data = make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(VOL_SIZE))
    monkeypatch.setenv("TAPEARC_NBD_TIMEOUT", "1")
    with nbdkit_server(*_eval_disk(disk, "sleep 2")) as (port, _):
        assert do_restore(spec, f"nbd://127.0.0.1:{port}/", force=True).status == "complete"
    assert disk.read_bytes() == data


@needs_qemu_nbd
def test_larger_export_holding_old_data_past_the_volume_is_warned_about(tmp_path: Path) -> None:
    """A VM disk larger than the volume, full of old data: the volume's bytes are restored at its
    start and the rest keeps the old data (a block device's rule): the result says so."""
    vol = tmp_path / "vol.img"
    data = make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    img = new_qcow2(tmp_path / "vm.qcow2", 8 * MiB)
    qemu_io(img, "qcow2", "write -P 0x5a 0 8M")
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        res = do_restore(spec, uri, force=True)
    raw = raw_of(img)
    assert res.status == "complete" and raw[:VOL_SIZE] == data and raw[VOL_SIZE:] == b"\x5a" * (8 * MiB - VOL_SIZE)
    assert any(
        f"NBD export {uri} holds {8 * MiB} bytes" in w
        and f"bytes {VOL_SIZE}-{8 * MiB - 1} were left as they were: they may hold data from before" in w
        for w in res.warnings
    ), res.warnings
    fresh = new_qcow2(tmp_path / "new.qcow2", 8 * MiB)
    with qemu_nbd(fresh, "qcow2", read_only=False) as uri:
        assert do_restore(spec, uri).warnings == []  # past the volume it reads as zeros: nothing to say
        res = do_restore(spec, uri)  # again: the 64 KiB cluster holding the volume's end is allocated
    assert res.mode == "roll-forward" and res.warnings == []  # but past the volume it is zeros


@needs_qemu_nbd
def test_encrypted_generations_restore_into_an_export_and_roll_forward(tmp_path: Path) -> None:
    from tests.engine.test_encrypted_backup import make_key

    k = make_key()
    vol = tmp_path / "vol.img"
    v1 = make_vol(vol, seed=12)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol, encrypt=k)
    v2 = bytearray(v1)
    v2[BS : 2 * BS] = random.Random(13).randbytes(BS)
    vol.write_bytes(bytes(v2))
    do_backup(spec, vol, encrypt=k)
    img = new_qcow2(tmp_path / "vm.qcow2", 8 * MiB)
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        with pytest.raises(KeyRequiredError):
            do_restore(spec, uri, generation=1)  # no key: nothing written
        assert raw_of(img) == bytes(8 * MiB)
        assert do_restore(spec, uri, generation=1, key=k.key).status == "complete"
        assert raw_of(img)[:VOL_SIZE] == v1
        res = do_restore(spec, uri, key=k.key)  # generation 1 found by its keyed digests
    assert res.mode == "roll-forward" and res.from_generation == 1 and res.bytes_written == BS
    assert raw_of(img)[:VOL_SIZE] == bytes(v2)


@needs_qemu_nbd
def test_generation_spanning_two_media_restores_into_an_export(tmp_path: Path) -> None:
    from tests.engine.test_spanning import make_library

    spec = make_library(tmp_path)
    vol = tmp_path / "vol.img"
    data = random.Random(14).randbytes(3 * MiB + TAIL)
    vol.write_bytes(data)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        opts = BackupOptions(block_size=16 * KiB, record_size=64 * KiB, chunk_size=256 * KiB)
        assert len(backup(str(vol), media, cat, opts).parts) >= 2
    img = new_qcow2(tmp_path / "vm.qcow2", 4 * MiB)
    qemu_io(img, "qcow2", "write -P 0x5a 0 4M")  # an old disk: --force writes it all
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
            res = restore(media, cat, uri, RestoreOptions(force=True))
    assert res.status == "complete" and len(res.media_used) >= 2
    assert raw_of(img)[: len(data)] == data


@needs_nbdkit
def test_export_out_of_space_is_exit_5(tmp_path: Path) -> None:
    """nbdkit's full plugin: every write fails with ENOSPC (libnbd's error carries it as
    ``errnum``; its ``errno`` is the name 'ENOSPC'): TargetTooSmallError, as documented."""
    vol = tmp_path / "vol.img"
    make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    with nbdkit_server("full", "8M") as (port, _):
        uri = f"nbd://127.0.0.1:{port}/"
        err = one_line_error(tapearc("restore", "--media", spec, "--to", uri), 5)
    assert f"NBD export {uri} ran out of space at byte " in err


@needs_nbdkit
def test_zero_requests_refused_as_invalid_fall_back_to_written_zeros(tmp_path: Path) -> None:
    """An export that offers WRITE_ZEROES but fails each with EINVAL (nbdkit's error filter):
    the zero runs are written as zeros instead, and read back as zeros."""
    vol = tmp_path / "vol.img"
    data = make_vol(vol, seed=15)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\xff" * VOL_SIZE)
    args = ("--filter=error", "file", str(disk), "error-zero=EINVAL", "error-zero-rate=100%")
    with nbdkit_server(*args) as (port, _):
        res = do_restore(spec, f"nbd://127.0.0.1:{port}/", force=True)
    assert res.status == "complete" and res.bytes_zeroed == ZERO_RUNS
    assert disk.read_bytes() == data


@needs_nbdkit
def test_reading_an_export_does_not_keep_its_buffers(tmp_path: Path) -> None:
    """Generation detection reads an export window by window (NbdTarget.read_into, 4 MiB each):
    600 MiB read through 4 MiB of memory must not grow the process by the bytes read (libnbd
    1.14 keeps every nbd.Buffer given to aio_pread alive; a bytearray is not kept). The peak is
    VmHWM, this process's own: ru_maxrss carries the parent's peak over the exec."""
    with nbdkit_server("memory", "8M") as (port, _):
        script = f"""
from tapearc.targets.nbd import NbdTarget
t = NbdTarget("nbd://127.0.0.1:{port}/", 8 << 20, force=True)
buf = bytearray(4 << 20)
for i in range(150):
    t.read_into(memoryview(buf), (i % 2) << 22)
    t._pread("reading", 4 << 20, 0)
t.commit()
print(next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")) // 1024)
"""
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) < 300, f"peak RSS {p.stdout.strip()} MB after reading 1200 MiB"


@needs_qemu_nbd
def test_source_server_that_stalls_mid_backup_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup from a qemu-nbd stopped (SIGSTOP) after the first window: SourceError naming the
    URI (exit 3), the generation closed as incomplete, instead of waiting for ever."""
    from tapearc.errors import SourceError
    from tapearc.media import open_medium

    img = tmp_path / "disk.img"
    img.write_bytes(random.Random(16).randbytes(16 * MiB))
    sock = tmp_path / "s.sock"
    proc = subprocess.Popen(["qemu-nbd", "--persistent", "-f", "raw", "-x", "disk", "-k", str(sock), "-r", str(img)])
    monkeypatch.setenv("TAPEARC_NBD_TIMEOUT", "1")

    class StopServer(NoProgress):
        def advance(self, n: int) -> None:
            os.kill(proc.pid, signal.SIGSTOP)

    def run() -> None:
        opts = BackupOptions(record_size=64 * KiB, chunk_size=256 * KiB)
        with Catalog() as cat, open_medium(f"sim:{tmp_path / 't.tap'}", write=True) as drive:
            backup(uri, drive, cat, opts, StopServer())

    try:
        while not _listening(sock):
            assert proc.poll() is None
        uri = f"nbd+unix:///disk?socket={sock}"
        with pytest.raises(SourceError) as e:
            _in_thread(run)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()
    assert f"NBD export {uri} did not answer within 1 s" in e.value.message
    assert "marked incomplete" in (e.value.hint or "")


@needs_qemu_nbd
def test_dirty_bitmap_server_that_stalls_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a qemu dirty bitmap (--dirty-bitmap) from a qemu-nbd that stops answering once
    connected: SourceError naming the URI and the bitmap, instead of waiting for ever."""
    from tapearc import nbdclient
    from tapearc.errors import SourceError
    from tapearc.sources.changes_nbd import read_dirty_bitmap
    from tests.nbdsupport import qemu_img

    img = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(img), "8M")
    qemu_img("bitmap", "--add", str(img), "b0")
    sock = tmp_path / "s.sock"
    cmd = ["qemu-nbd", "--persistent", "-f", "qcow2", "-x", "disk", "-k", str(sock), "-r", "-B", "b0", str(img)]
    proc = subprocess.Popen(cmd)
    monkeypatch.setenv("TAPEARC_NBD_TIMEOUT", "1")
    real = nbdclient.connect

    def connect_then_stop(*args: Any, **kw: Any) -> Any:
        h = real(*args, **kw)
        os.kill(proc.pid, signal.SIGSTOP)
        return h

    monkeypatch.setattr(nbdclient, "connect", connect_then_stop)
    try:
        while not _listening(sock):
            assert proc.poll() is None
        uri = f"nbd+unix:///disk?socket={sock}"
        with pytest.raises(SourceError) as e:
            _in_thread(lambda: read_dirty_bitmap(uri, "b0"))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()
    assert f"NBD export {uri} did not answer within 1 s" in e.value.message and "dirty bitmap b0" in e.value.message


@needs_qemu_nbd
def test_bad_nbd_uris_are_one_line_naming_the_uri(tmp_path: Path) -> None:
    """Malformed, no socket, a socket path that is a regular file, TLS asked of a server without
    it, an export name the server does not have: exit 4, one line naming the URI, nothing made."""
    vol = tmp_path / "vol.img"
    make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    img = new_qcow2(tmp_path / "vm.qcow2", 8 * MiB)
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        sock = uri.split("socket=")[1]
        cases = {
            "nbd://[::1/disk": "unable to parse URI",
            "nbd+unix:///disk": "cannot parse socket parameter",
            f"nbd+unix:///disk?socket={vol}": "Connection refused",
            f"nbds+unix:///disk?socket={sock}": "server refused TLS",
            f"nbd+unix:///other?socket={sock}": "server has no export named 'other'",
        }
        before = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".sock"))
        for bad, why in cases.items():
            err = one_line_error(tapearc("restore", "--media", spec, "--to", bad), 4)
            assert f"cannot connect to NBD export {bad}: nbd_connect_uri: " in err and why in err, err
            assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert raw_of(img) == bytes(8 * MiB)
