"""Operational faults seen by the engine: a source that changes, fails or goes away during a
backup; a target file system that fills up during a restore."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tapearc.sources.file as volume_mod
from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.listing import list_medium
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.scan import scan_medium
from tapearc.engine.verify import run_verify
from tapearc.errors import SourceError, TapearcError, TargetTooSmallError
from tapearc.media import open_medium
from tapearc.sources.file import SourceVolume
from tests.conftest import KiB, MiB

BS = 64 * KiB
OPTS = {"record_size": 64 * KiB, "chunk_size": 256 * KiB}  # 3 data blocks a chunk: 16 chunks for 3 MiB


class OnAdvance:
    """A Progress that runs ``action(n)`` when the backup has read its ``n``-th window."""

    def __init__(self, action: Callable[[int], None]) -> None:
        self.action = action
        self.n = 0

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        self.n += 1
        self.action(self.n)

    def finish(self) -> None:
        pass


def run_backup(spec: str, src: Path, progress: Any = None, **kw: Any):
    with Catalog() as cat, open_medium(spec, write=True) as drive:
        return backup(str(src), drive, cat, BackupOptions(**{**OPTS, **kw}), progress)


def run_restore(spec: str, dst: Path, **kw: Any):
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        return restore(drive, cat, str(dst), RestoreOptions(**kw))


def gen_states(volume: str = "vol.img") -> dict[int, str]:
    with Catalog() as cat:
        out = {}
        for row in cat.db.execute("SELECT uuid FROM media_sets"):
            import uuid

            for g in cat.generations(uuid.UUID(row[0]), volume):
                out[g.number] = g.state
        return out


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, bytes]:
    p = tmp_path / "vol.img"
    data = os.urandom(3 * MiB)
    p.write_bytes(data)
    return p, data


# ---------------------------------------------------------------- the source changes


def test_source_grows_during_backup(media_spec: str, tmp_path: Path, source: tuple[Path, bytes]) -> None:
    src, data = source

    def grow(n: int) -> None:
        if n == 2:
            with open(src, "ab") as f:
                f.write(b"\x55" * 100_000)

    res = run_backup(media_spec, src, OnAdvance(grow))
    assert res.complete and res.volume_size == len(data)
    assert len(res.warnings) == 1
    w = res.warnings[0]
    assert "grew during the backup" in w and f"bytes after {len(data)} were not backed up" in w
    assert gen_states() == {1: "complete"}
    run_restore(media_spec, tmp_path / "out.img")
    assert (tmp_path / "out.img").read_bytes() == data  # exactly the original size


def test_source_shrinks_after_last_read_warns(tmp_path: Path, source: tuple[Path, bytes]) -> None:
    src, data = source
    spec = f"sim:{tmp_path / 't.tap'}"
    nwin = -(-len(data) // (3 * BS))

    def shrink(n: int) -> None:
        if n == nwin:
            os.truncate(src, 1000)

    res = run_backup(spec, src, OnAdvance(shrink))
    assert res.complete and any("shrank to 1000 bytes" in w for w in res.warnings)
    run_restore(spec, tmp_path / "out.img")
    assert (tmp_path / "out.img").read_bytes() == data


def test_source_shrinks_during_backup(
    media_spec: str, tmp_path: Path, source: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The short read fails the backup; the generation is closed on the medium as incomplete
    (trailer, end record, filemark), the catalog says incomplete; the medium stays usable.
    (Plain path: the read-ahead would have read the windows after the third already.)"""
    monkeypatch.setenv("TAPEARC_PIPELINE", "0")
    src, data = source
    run_backup(media_spec, src)  # generation 1, complete

    def shrink(n: int) -> None:
        if n == 3:
            os.truncate(src, 5 * BS)

    with pytest.raises(SourceError) as info:
        run_backup(media_spec, src, OnAdvance(shrink), full=True)
    err = info.value
    assert "shrank during the backup" in str(err) and str(5 * BS) in str(err)
    assert err.hint and "generation 2" in err.hint and "incomplete" in err.hint
    assert "quiet (unmounted or snapshotted)" in err.hint  # the volume changed: advice to quiet it
    assert gen_states() == {1: "complete", 2: "incomplete"}
    with open_medium(media_spec, write=False) as drive:
        listing = list_medium(drive)
    g2 = next(f for f in listing.files if f.kind == "generation" and f.generation == 2)
    assert g2.trailer and not g2.complete and g2.closed and g2.problem is None
    assert len(g2.chunks) == 3  # the three windows read before the fourth came up short
    with Catalog() as cat, open_medium(media_spec, write=False) as drive:
        rep = run_verify(drive, cat)
        assert rep.ok, rep.to_json()
        scan = scan_medium(drive, cat, deep=True)
    assert [(f.generation, f.state, f.chunks) for f in scan.files] == [(1, "complete", 16), (2, "incomplete", 3)]
    with pytest.raises(TapearcError):
        run_restore(media_spec, tmp_path / "o2.img", generation=2)
    assert not (tmp_path / "o2.img").exists()
    # generation 1 restores; the next backup works (an incremental on generation 1)
    run_restore(media_spec, tmp_path / "o1.img", generation=1)
    assert (tmp_path / "o1.img").read_bytes() == data
    res = run_backup(media_spec, src)
    assert res.complete and res.generation == 3 and res.kind == "incremental" and res.base_generation == 1
    run_restore(media_spec, tmp_path / "o3.img")
    assert (tmp_path / "o3.img").read_bytes() == data[: 5 * BS]
    assert gen_states() == {1: "complete", 2: "incomplete", 3: "complete"}


def test_source_shrinks_during_pipelined_backup(tmp_path: Path, source: tuple[Path, bytes]) -> None:
    """With the read-ahead thread the short read is found a few windows later (the reader is at
    most its depth ahead); the outcome is the same: SourceError, generation closed incomplete."""
    src, _data = source
    spec = f"sim:{tmp_path / 't.tap'}"

    def shrink(n: int) -> None:
        if n == 1:
            os.truncate(src, 8 * 3 * BS)

    with pytest.raises(SourceError) as info:
        run_backup(spec, src, OnAdvance(shrink))
    assert "shrank during the backup" in str(info.value) and str(8 * 3 * BS) in str(info.value)
    assert gen_states() == {1: "incomplete"}
    with open_medium(spec, write=False) as drive:
        listing = list_medium(drive)
    g1 = next(f for f in listing.files if f.kind == "generation" and f.generation == 1)
    assert g1.trailer and not g1.complete and g1.closed and g1.problem is None
    assert len(g1.chunks) == 8  # every window before the shrink point, none after


def test_source_shrinks_before_first_chunk(tmp_path: Path, source: tuple[Path, bytes]) -> None:
    """Nothing written yet but the header: still a clean, incomplete tape file."""
    src, _ = source
    spec = f"sim:{tmp_path / 't.tap'}"
    real = SourceVolume.readinto_at

    def short_first(self: SourceVolume, buf: memoryview, offset: int) -> int:
        os.truncate(self.path, 0)
        return real(self, buf, offset)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SourceVolume, "readinto_at", short_first)
        with pytest.raises(SourceError, match=r"read at byte 0 found its end .it now holds 0 bytes"):
            run_backup(spec, src)
    with open_medium(spec, write=False) as drive:
        f = next(f for f in list_medium(drive).files if f.kind == "generation")
    assert f.trailer and not f.complete and f.closed and len(f.chunks) == 0
    assert gen_states() == {1: "incomplete"}


def test_source_unlinked_during_backup(tmp_path: Path, source: tuple[Path, bytes]) -> None:
    """Linux keeps an unlinked file readable through the open descriptor: the backup completes."""
    src, data = source
    spec = f"sim:{tmp_path / 't.tap'}"

    def unlink(n: int) -> None:
        if n == 1:
            src.unlink()

    res = run_backup(spec, src, OnAdvance(unlink))
    assert res.complete and res.warnings == []
    run_restore(spec, tmp_path / "out.img")
    assert (tmp_path / "out.img").read_bytes() == data


class _FailingOs:
    """``os`` for tapearc.sources.file whose preadv fails with ``code`` from byte ``at`` on."""

    def __init__(self, code: int, at: int) -> None:
        self.code, self.at = code, at

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def preadv(self, fd: int, bufs: list[memoryview], offset: int) -> int:
        if offset + sum(len(b) for b in bufs) > self.at:
            if offset < self.at:  # the good part first, as a device does
                return os.preadv(fd, [bufs[0][: self.at - offset]], offset)
            raise OSError(self.code, os.strerror(self.code))
        return os.preadv(fd, bufs, offset)


@pytest.mark.parametrize("code", [errno.EIO, errno.ENODEV, errno.ENXIO])
def test_source_device_goes_away(tmp_path: Path, source: tuple[Path, bytes], code: int) -> None:
    """A device that goes away answers EIO (or ENODEV, ENXIO): a SourceError naming the offset;
    the generation is closed as incomplete."""
    src, _ = source
    spec = f"sim:{tmp_path / 't.tap'}"
    at = 7 * BS + 4096
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(volume_mod, "os", _FailingOs(code, at))
        with pytest.raises(SourceError) as info:
            run_backup(spec, src)
    assert f"at byte {at} failed" in str(info.value) and os.strerror(code) in str(info.value)
    assert gen_states() == {1: "incomplete"}
    with open_medium(spec, write=False) as drive:
        f = next(f for f in list_medium(drive).files if f.kind == "generation")
    assert f.trailer and not f.complete and f.closed and len(f.chunks) == 2


def test_fifo_source_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="is a FIFO"):
        SourceVolume(str(fifo))
    assert time.monotonic() - t0 < 5


def test_current_size(tmp_path: Path) -> None:
    p = tmp_path / "v"
    p.write_bytes(b"x" * 100)
    with SourceVolume(str(p)) as v:
        assert v.size == 100 and v.current_size() == 100
        p.write_bytes(b"x" * 300)
        assert v.current_size() == 300


# ---------------------------------------------------------------- the target fills up


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A 2 MiB tmpfs (root only)."""
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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_restore_to_full_filesystem_engine(tmp_path: Path, tiny_fs: Path, source: tuple[Path, bytes]) -> None:
    src, _ = source
    spec = f"sim:{tmp_path / 't.tap'}"
    run_backup(spec, src)
    before = _sha(tmp_path / "t.tap")
    target = tiny_fs / "out.img"
    with pytest.raises(TargetTooSmallError) as info:
        run_restore(spec, target)
    msg = str(info.value)
    assert str(target) in msg and "ran out of space at byte" in msg
    at = int(msg.split("at byte ")[1].split()[0])
    assert 0 < at <= 2 * MiB
    assert os.listdir(tiny_fs) == []  # neither the target nor the temporary file is left
    assert _sha(tmp_path / "t.tap") == before
