"""Buffers reused from volume to volume (tapearc.buffers.POOL) and a part's first chunk written
at once: what keeps a drive's wait short when a job's next volume starts on it.

Reused buffers hold the previous volume's bytes: the media written with a warm pool must be
byte-identical to those written with buffers that are all new; a buffer a thread may still
touch (a worker inside a chunk, a reader inside a hung read) never goes back to the pool."""

from __future__ import annotations

import functools
import random
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import cast

import pytest

from tapearc import buffers
from tapearc import format as fmt
from tapearc.buffers import PAGE, BufferPool, buffer_address
from tapearc.catalog.db import Catalog
from tapearc.engine import backup as backup_mod
from tapearc.engine import packers, pipeline
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.genwriter import GenerationWriter
from tapearc.engine.pipeline import ReadAhead
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.media import open_medium

pytest.importorskip("tapesim.library")

KiB = 1024
CLOCK = 1_700_000_000


def test_pool_gives_back_the_same_buffer_by_size_and_keeps_at_most_its_limit() -> None:
    pool = BufferPool(limit=3 * 4096)
    a = pool.take(4096)
    a[:5] = b"hello"
    pool.give(a)
    assert pool.kept == 4096
    assert pool.take(8192) is not a  # another size: a new, zero-filled one
    b = pool.take(4096)
    assert b is a and b[:5] == b"hello"  # contents are not cleared: callers use what they fill
    assert pool.kept == 0
    for _ in range(5):
        pool.give(bytearray(4096))
    assert pool.kept == 3 * 4096  # the rest left to the garbage collector


def test_pool_aligned_buffers_stay_aligned_when_reused() -> None:
    pool = BufferPool()
    for _ in range(3):
        ba, base = pool.take_aligned(64 * KiB)
        assert (buffer_address(ba) + base) % PAGE == 0 and len(ba) - base >= 64 * KiB
        pool.give(ba)


def test_readahead_gives_its_windows_back_only_once_its_reader_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = BufferPool()
    monkeypatch.setattr(pipeline, "POOL", pool)
    data = bytes(range(256)) * 64
    ra = ReadAhead(lambda buf, off: _copy(data, buf, off), len(data), 4096, threaded=True)
    assert [off for off, *_ in ra] == [0, 4096, 8192, 12288]
    assert pool.kept >= 3 * 4096  # the windows (each with room for alignment) are back

    monkeypatch.setattr(pipeline, "JOIN_TIMEOUT", 0.1)
    release = threading.Event()

    def hung(buf: memoryview, off: int) -> int:
        if off:
            release.wait(10)
        return len(buf)

    before = pool.kept
    ra = ReadAhead(hung, 4096 * 10, 4096, threaded=True)
    assert pool.kept < before  # it took its windows from the pool
    it = iter(ra)
    next(it)
    ra.close()  # the reader is inside a read: its windows must not be reused
    assert pool.kept < before
    release.set()


def _copy(data: bytes, buf: memoryview, off: int) -> int:
    n = max(0, min(len(buf), len(data) - off))
    buf[:n] = data[off : off + n]
    return n


def test_readahead_begun_early_reads_before_items_are_asked_for() -> None:
    calls: list[int] = []
    first = threading.Event()

    def read(buf: memoryview, off: int) -> int:
        calls.append(off)
        first.set()
        return len(buf)

    ra = ReadAhead(read, 4096 * 4, 4096, threaded=True)
    ra.begin()
    assert first.wait(10), "begin() did not start the reader"
    assert [off for off, *_ in ra] == [0, 4096, 8192, 12288]
    assert calls == [0, 4096, 8192, 12288]  # begun once: items() did not read again


def _packer_inside_a_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[BufferPool, packers.Packers, bytearray, threading.Event]:
    """Packers with a pool of their own and one worker inside its chunk (sealing it) until the
    event returned is set; also the pool and that chunk's buffer."""
    pool = BufferPool()
    monkeypatch.setattr(packers, "POOL", pool)
    inside, release = threading.Event(), threading.Event()

    def seal(gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: packers.Buf) -> tuple[packers.Buf, int]:
        inside.set()
        release.wait(10)
        return inner, 0

    pk = packers.Packers(compress=False, seal=seal, buffer_size=packers.HEADER_RESERVE + 4096, workers=1)
    buf = pk.buffer()
    job = packers.ChunkJob(
        buf=buf, plen=4096, runs=(fmt.Run(0, 1, fmt.RunKind.DATA),), digests=b"", seq=0, first_block=0
    )
    pk.submit(job, _genhdr())
    assert inside.wait(10)
    return pool, pk, buf, release


def test_packers_never_give_back_a_buffer_a_worker_is_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    pool, pk, buf, release = _packer_inside_a_chunk(monkeypatch)
    spare = pk.buffer()
    pk.release(packers.ChunkJob(buf=spare, plen=0, runs=(), digests=b"", seq=1, first_block=0))
    pk.close()
    assert pool.take(len(buf)) is spare  # the free one went back
    assert pool.kept == 0  # the one the worker is inside did not
    release.set()


class _CtrlCWhileWaiting:
    """A packing future whose wait is cut short by Ctrl-C (KeyboardInterrupt in the writer's
    thread, in Future.result) while its worker goes on packing."""

    def __init__(self, inner: Future[packers.ChunkJob]) -> None:
        self.inner = inner

    def result(self, timeout: float | None = None) -> packers.ChunkJob:
        raise KeyboardInterrupt

    def cancel(self) -> bool:
        return self.inner.cancel()

    def done(self) -> bool:
        return self.inner.done()


def test_packers_keep_the_buffer_of_a_chunk_whose_wait_was_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the writer waits for a chunk (Packers.take): its worker is still inside the
    buffer (it writes the chunk's header into it), so the buffer must not go back to the pool
    (before, take() freed it and close() gave it to the pool: a buffer of the process's pool that
    a packing thread still writes into, for the next volume's windows and chunks)."""
    pool, pk, _buf, release = _packer_inside_a_chunk(monkeypatch)
    queued, fut = pk._queue[0]
    assert fut is not None
    pk._queue[0] = (queued, cast("Future[packers.ChunkJob]", _CtrlCWhileWaiting(fut)))
    try:
        with pytest.raises(KeyboardInterrupt):
            pk.take()
        pk.close()
        assert pool.kept == 0  # the worker is still inside it
    finally:
        release.set()


def _genhdr() -> fmt.GenerationHeader:
    return fmt.GenerationHeader(
        run_uuid=uuid.UUID(int=1),
        media_set_uuid=uuid.UUID(int=2),
        medium_uuid=uuid.UUID(int=3),
        volume_uuid=uuid.UUID(int=4),
        volume_name="v",
        generation=1,
        base_generation=0,
        kind=fmt.GenerationKind.FULL,
        compression=fmt.Compression.NONE,
        block_size=4096,
        record_size=65536,
        chunk_blocks=1,
        volume_size=4096,
        created=CLOCK,
        part=0,
        source=None,
        cipher=fmt.Cipher.NONE,
        key_fingerprint=None,
    )


def _volume(path: Path, size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.choice([rng.randbytes(20 * KiB), bytes(20 * KiB), b"tape %d " % len(out) * 2000])
    data = bytes(out[:size])
    path.write_bytes(data)
    return data


def _fixed_uuids(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128), version=4))


def _backup_to(medium: Path, src: Path) -> None:
    opts = BackupOptions(record_size=64 * KiB, chunk_size=128 * KiB, block_size=16 * KiB, compress="none")  # type: ignore[call-arg]
    with Catalog() as cat, open_medium(f"sim:{medium}", write=True) as drive:
        assert backup(str(src), drive, cat, opts, clock=lambda: CLOCK).complete


def test_media_written_with_reused_buffers_equal_those_with_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A volume backed up after another (the pool full of that one's bytes, a last window and
    block shorter than the others) writes the same image as with buffers all new."""
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    _volume(first, 2 * 1024 * KiB, 1)
    data = _volume(second, 1024 * KiB + 5 * KiB + 321, 2)
    images = {}
    for warm in (False, True):
        pool = BufferPool(limit=1 << 30 if warm else 0)  # limit 0: nothing is ever reused
        monkeypatch.setattr(buffers, "POOL", pool)
        monkeypatch.setattr(pipeline, "POOL", pool)
        monkeypatch.setattr(packers, "POOL", pool)
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat-{warm}.sqlite"))
        _backup_to(tmp_path / f"scratch-{warm}.sim", first)
        assert (pool.kept > 0) == warm
        _fixed_uuids(monkeypatch)
        medium = tmp_path / f"m-{warm}.sim"
        _backup_to(medium, second)
        images[warm] = medium.read_bytes()
        out = tmp_path / f"out-{warm}.img"
        with Catalog() as cat, open_medium(f"sim:{medium}", write=False) as drive:
            restore(drive, cat, str(out), RestoreOptions())
        assert out.read_bytes() == data
    assert images[True] == images[False]


def test_a_parts_first_chunk_is_written_before_the_next_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drive's buffer is empty when a part starts: its first chunk goes to the drive as
    soon as it is packed, not when the second chunk is handed over."""
    src = tmp_path / "v.img"
    _volume(src, 1024 * KiB, 3)
    seen: list[int] = []
    orig = GenerationWriter._submit

    def submit(self: GenerationWriter) -> None:
        seen.append(self.seq)  # chunks written when the next one is handed to the packers
        orig(self)

    def slow_seal(gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: packers.Buf) -> tuple[packers.Buf, int]:
        time.sleep(0.05)  # packing takes longer than reading the next window (as zstd or AES can)
        return inner, 0

    monkeypatch.setattr(GenerationWriter, "_submit", submit)
    monkeypatch.setattr(backup_mod, "GenerationWriter", functools.partial(GenerationWriter, workers=2, seal=slow_seal))
    monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / "cat.sqlite"))
    _backup_to(tmp_path / "m.sim", src)
    assert len(seen) > 3
    assert seen[1] >= 1, f"the first chunk was still unwritten when the second was submitted: {seen[:4]}"
