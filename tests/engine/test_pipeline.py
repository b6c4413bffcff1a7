"""The streaming pipeline (tapearc/engine/pipeline.py): the threaded paths give exactly what the
plain, single-threaded paths give: the same windows and records, the same errors at the same
places, and byte-identical media, restored images and verify reports. Not timed."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine import pipeline
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.pipeline import ReadAhead, RecordAhead, Worker
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.verify import run_verify
from tapearc.errors import MediumIOError, SourceError
from tapearc.media import open_medium
from tapearc.media.base import Mark
from tests.conftest import make_volume

KiB = 1024
MiB = 1024 * KiB


# ---------------------------------------------------------------- ReadAhead


def _reader(data: bytes, fail_at: int | None = None, delay: float = 0.0):
    calls: list[int] = []

    def read(buf: memoryview, offset: int) -> int:
        calls.append(offset)
        if delay:
            time.sleep(delay)
        if fail_at is not None and offset >= fail_at:
            raise SourceError(f"reading source at byte {offset} failed: Input/output error")
        chunk = data[offset : offset + len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)

    return read, calls


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("size,window", [(0, 4096), (1, 4096), (4096 * 10, 4096), (4096 * 10 + 17, 4096 * 3)])
def test_readahead_yields_every_window_in_order(threaded: bool, size: int, window: int) -> None:
    data = random.Random(size).randbytes(size)
    read, _ = _reader(data)
    got = b""
    offsets = []
    for off, buf, base, n in ReadAhead(read, size, window, threaded=threaded):
        offsets.append(off)
        assert n == min(window, size - off)
        assert pipeline.buffer_address(buf) % pipeline.PAGE == (-base) % pipeline.PAGE  # page-aligned
        got += bytes(buf[base : base + n])
    assert got == data
    assert offsets == list(range(0, size, window))


@pytest.mark.parametrize("threaded", [False, True])
def test_readahead_error_arrives_after_the_windows_before_it(threaded: bool) -> None:
    data = bytes(range(256)) * 256
    read, _ = _reader(data, fail_at=4096 * 5)
    seen = []
    with pytest.raises(SourceError, match="at byte 20480"):
        for off, _buf, _base, _n in ReadAhead(read, len(data), 4096, threaded=threaded):
            seen.append(off)
    assert seen == [0, 4096, 8192, 12288, 16384]


def test_readahead_short_read_ends_the_windows() -> None:
    """A source that ends early: the short window is the last one handed out (the caller says
    what that means), and the reader asks for nothing after it."""
    data = bytes(10000)
    read, calls = _reader(data)
    out = [(off, n) for off, _b, _base, n in ReadAhead(read, 4096 * 8, 4096, threaded=True)]
    assert out == [(0, 4096), (4096, 4096), (8192, 10000 - 8192)]
    assert calls == [0, 4096, 8192]


def test_readahead_reads_at_most_its_depth_ahead() -> None:
    data = bytes(4096 * 50)
    read, calls = _reader(data)
    it = iter(ReadAhead(read, len(data), 4096, depth=3, threaded=True))
    next(it)
    time.sleep(0.2)
    assert len(calls) <= 3  # the one handed out plus two free buffers
    it.close()  # type: ignore[attr-defined]


def test_readahead_closed_early_stops_the_thread() -> None:
    data = bytes(4096 * 100)
    read, calls = _reader(data)
    ra = ReadAhead(read, len(data), 4096, threaded=True)
    for off, _b, _base, _n in ra:
        if off == 4096 * 3:
            break
    ra.close()
    n = len(calls)
    time.sleep(0.1)
    assert len(calls) == n and n <= 3 + 4
    assert not any(t.name == "tapearc-readahead" and t.is_alive() for t in threading.enumerate())


def test_readahead_close_does_not_wait_for_a_hung_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device that stopped answering must not hold up the exit (Ctrl-C, an error)."""
    monkeypatch.setattr(pipeline, "JOIN_TIMEOUT", 0.2)
    release = threading.Event()

    def read(buf: memoryview, offset: int) -> int:
        if offset > 0:
            release.wait(10)
        return len(buf)

    ra = ReadAhead(read, 4096 * 10, 4096, threaded=True)
    it = iter(ra)
    next(it)
    t0 = time.monotonic()
    ra.close()
    assert time.monotonic() - t0 < 2
    release.set()


# ---------------------------------------------------------------- RecordAhead


class FakeTape:
    """Records, errors and marks in order; counts the reads."""

    def __init__(self, items: list[object]) -> None:
        self.items = list(items)
        self.reads = 0

    def read_record(self) -> object:
        self.reads += 1
        if not self.items:
            return Mark.END_OF_DATA
        it = self.items.pop(0)
        if isinstance(it, Exception):
            raise it
        return it


def _drain(ra: RecordAhead) -> list[object]:
    out: list[object] = []
    while True:
        try:
            r = ra.next()
        except MediumIOError as e:
            out.append(("error", e.message))
            continue
        out.append(r)
        if isinstance(r, Mark):
            return out


ITEMS: list[object] = [
    b"a" * 10,
    MediumIOError("bad record"),
    b"b" * 20,
    b"c",
    Mark.FILEMARK,
    b"next file",
    Mark.FILEMARK,
]


@pytest.mark.parametrize("threaded", [False, True])
def test_recordahead_stops_at_the_first_mark(threaded: bool) -> None:
    tape = FakeTape(ITEMS)
    ra = RecordAhead(tape.read_record, max_errors=5, threaded=threaded)
    got = _drain(ra)
    assert got == [b"a" * 10, ("error", "bad record"), b"b" * 20, b"c", Mark.FILEMARK]
    time.sleep(0.05)
    assert tape.reads == 5  # nothing of the next tape file was read
    assert ra.next() == b"next file"  # the next call reads on, from where the mark left it
    ra.close()


def test_recordahead_gives_up_after_max_errors_like_the_plain_loop() -> None:
    tape = FakeTape([MediumIOError("x")] * 10 + [b"later"])
    ra = RecordAhead(tape.read_record, max_errors=3, threaded=True)
    for _ in range(4):
        with pytest.raises(MediumIOError):
            ra.next()
    time.sleep(0.05)
    assert tape.reads == 4  # the thread stopped where the caller stops
    ra.close()


def test_recordahead_bounded_by_bytes() -> None:
    tape = FakeTape([b"x" * 1000] * 100 + [Mark.FILEMARK])
    ra = RecordAhead(tape.read_record, max_errors=1, limit=5000, threaded=True)
    time.sleep(0.1)
    assert tape.reads <= 7  # about limit / record size read ahead, not the whole file
    assert len(_drain(ra)) == 101
    ra.close()


# ---------------------------------------------------------------- Worker


@pytest.mark.parametrize("threaded", [False, True])
def test_worker_runs_calls_in_order(threaded: bool) -> None:
    out: list[int] = []
    w = Worker(threaded=threaded, limit=100)
    for i in range(200):
        w.submit(out.append, i, nbytes=30)
    w.drain()
    assert out == list(range(200))
    w.close()


def test_worker_error_reaches_the_caller_and_later_calls_are_dropped() -> None:
    out: list[int] = []

    def step(i: int) -> None:
        if i == 3:
            raise SourceError("target ran out of space at byte 3")
        out.append(i)

    w = Worker(threaded=True)
    with pytest.raises(SourceError, match="byte 3"):
        for i in range(50):
            w.submit(step, i)
        w.drain()
    assert out == [0, 1, 2]
    w.close()


# ---------------------------------------------------------------- whole operations


@pytest.fixture
def deterministic(monkeypatch: pytest.MonkeyPatch):
    """uuid4 and the clock fixed, so two backups of the same volume write the same bytes."""

    def reset() -> None:
        rng = random.Random(42)
        monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128), version=4))

    return reset


def _tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.endswith("lock")
    }


def _steady(obj: object) -> object:
    """A report without its timings (and the medium's path, which differs by name)."""
    if isinstance(obj, dict):
        return {k: _steady(v) for k, v in obj.items() if k not in ("seconds", "mb_per_s", "medium")}
    if isinstance(obj, list):
        return [_steady(v) for v in obj]
    return obj


@pytest.mark.parametrize("kind", ["sim", "dir"])
@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_pipelined_and_plain_paths_write_identical_media(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deterministic, kind: str, compress: str
) -> None:
    """Full backup, then an incremental (blocks changed, added, zeroed), then restore and verify:
    media, restored images and verify reports are byte-identical with and without threads."""
    src = tmp_path / "vol.img"
    data = make_volume(src, "mixed")
    changed = bytearray(data) + os.urandom(3 * 64 * KiB + 5)
    changed[64 * KiB : 65 * KiB] = os.urandom(KiB)  # a data block changed
    changed[7 * 64 * KiB : 8 * 64 * KiB] = bytes(64 * KiB)  # a data block zeroed
    changed[4 * 64 * KiB + 9] ^= 0xFF  # a zero block gets data
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("TAPEARC_PIPELINE", mode)
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat{mode}.sqlite"))
        deterministic()
        medium = tmp_path / f"m{mode}.{kind}"
        spec = f"{kind}:{medium}"
        src.write_bytes(data)
        opts = {"compress": compress, "record_size": 64 * KiB, "chunk_size": 256 * KiB}
        with Catalog() as cat, open_medium(spec, write=True) as drive:
            r1 = backup(str(src), drive, cat, BackupOptions(**opts), clock=lambda: 1_700_000_000)  # type: ignore[arg-type]
        src.write_bytes(changed)
        with Catalog() as cat, open_medium(spec, write=True) as drive:
            r2 = backup(str(src), drive, cat, BackupOptions(**opts), clock=lambda: 1_700_000_100)  # type: ignore[arg-type]
        assert r1.complete and r2.complete and r2.kind == "incremental"
        out = tmp_path / f"out{mode}.img"
        with Catalog() as cat, open_medium(spec, write=False) as drive:
            restore(drive, cat, str(out), RestoreOptions())
        with Catalog() as cat, open_medium(spec, write=False) as drive:
            rep = run_verify(drive, cat).to_json()
        rep = _steady(rep)
        results[mode] = (_tree(medium), out.read_bytes(), rep, (r1.chunks, r2.chunks, r2.unchanged_blocks))
    plain, piped = results["0"], results["1"]
    assert plain[1] == bytes(changed) and piped[1] == bytes(changed)
    assert plain[0].keys() == piped[0].keys()
    for name in plain[0]:
        assert plain[0][name] == piped[0][name], f"{kind} medium differs in {name or 'the image'}"
    assert plain[2] == piped[2]
    assert plain[3] == piped[3]


# ---------------------------------------------------------------- O_DIRECT source reads


@pytest.mark.parametrize("size", [0, 1, 4096, 64 * KiB * 5, 64 * KiB * 5 + 777, 3 * MiB + 4095])
def test_source_reads_same_bytes_direct_and_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    from tapearc.sources.file import SourceVolume

    data = random.Random(size).randbytes(size)
    p = tmp_path / "v.img"
    p.write_bytes(data)
    out = {}
    for direct in ("1", "0"):
        monkeypatch.setenv("TAPEARC_DIRECT_IO", direct)
        with SourceVolume(str(p)) as src:
            if direct == "0":
                assert src.dfd == -1  # off: every read through the page cache
            got = b"".join(bytes(b[base : base + n]) for _o, b, base, n in ReadAhead(src.readinto_at, size, 256 * KiB))
        out[direct] = got
    assert out["1"] == data and out["0"] == data


def test_source_falls_back_when_o_direct_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EINVAL from an O_DIRECT read (a file system or device that does not take it): the read is
    done through the page cache, and so are all later ones."""
    import errno as _errno

    from tapearc.sources import file as volume

    data = os.urandom(MiB)
    p = tmp_path / "v.img"
    p.write_bytes(data)
    real = os.preadv
    refused = []

    def preadv(fd: int, bufs: list, off: int) -> int:
        if fd == src.dfd:
            refused.append(off)
            raise OSError(_errno.EINVAL, "Invalid argument")
        return real(fd, bufs, off)

    src = volume.SourceVolume(str(p))
    if src.dfd < 0:
        pytest.skip("this file system does not take O_DIRECT")
    monkeypatch.setattr(volume.os, "preadv", preadv)
    try:
        got = b"".join(
            bytes(b[base : base + n]) for _o, b, base, n in ReadAhead(src.readinto_at, MiB, 256 * KiB, threaded=False)
        )
    finally:
        src.close()
    assert got == data and refused == [0] and src.dfd == -1


@pytest.mark.parametrize("syncfs", [True, False])
def test_dir_medium_same_with_and_without_syncfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool) -> None:
    """A filemark makes the records durable with one syncfs, or an fsync each where the C library
    has none; the medium reads back the same either way."""
    from tapearc.media import dirmedium, writeback

    if not syncfs:
        monkeypatch.setitem(writeback._libc_fns, "syncfs", False)
    calls = []
    real = os.fsync
    monkeypatch.setattr(dirmedium.os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    spec = f"dir:{tmp_path / 'm'}"
    with open_medium(spec, write=True) as drive:
        for i in range(20):
            drive.write_record(bytes([i]) * 1000)
        drive.write_filemark()
    with open_medium(spec, write=False) as drive:
        drive.rewind()
        assert [drive.read_record() for _ in range(21)] == [bytes([i]) * 1000 for i in range(20)] + [Mark.FILEMARK]
    # with syncfs: the FILEMARK file and the folders only; without: one fsync per record too
    assert (len(calls) < 20) if syncfs else (len(calls) >= 20)


# ---------------------------------------------------------------- whole windows of zeros


def test_zero_windows_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows that are all zero are recorded as one zero run without a call per block; in an
    incremental, a zero window that was zero before is unchanged, one that held data becomes a
    zero run, and a zero tail added by growth is recorded as zero. The restore is exact."""
    from tapearc.engine.listing import list_medium

    monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / "cat.sqlite"))
    bs = 64 * KiB
    rng = random.Random(5)
    spec = f"sim:{tmp_path / 't.tap'}"
    opts = BackupOptions(compress="none", record_size=256 * KiB, chunk_size=1 * MiB)  # 15 blocks a window
    win = 15 * bs
    # windows: data | zero | zero | data(+zero inside) | zero
    v1 = rng.randbytes(win) + bytes(2 * win) + rng.randbytes(win // 2) + bytes(win // 2) + bytes(win)
    src = tmp_path / "v.img"
    src.write_bytes(v1)
    with Catalog() as cat, open_medium(spec, write=True) as drive:
        r1 = backup(str(src), drive, cat, opts)
    nzero = sum(1 for i in range(0, len(v1), bs) if v1[i : i + bs] == bytes(bs))
    assert r1.zero_blocks == nzero
    # generation 2: window 0 zeroed (data -> zero), window 1 gets data, window 2 stays zero,
    # and the volume grows by two zero windows
    v2 = bytearray(v1)
    v2[0:win] = bytes(win)
    v2[win : 2 * win] = rng.randbytes(win)
    v2 += bytes(2 * win)
    src.write_bytes(bytes(v2))
    with Catalog() as cat, open_medium(spec, write=True) as drive:
        r2 = backup(str(src), drive, cat, opts)
    assert r2.kind == "incremental"
    assert r2.unchanged_blocks == 15 + 15 + 15  # window 2 (zero), window 3 (data), window 4 (zero)
    assert r2.zero_blocks == 15 + 30  # window 0 now zero, the grown tail
    with open_medium(spec, write=False) as drive:
        files = [f for f in list_medium(drive).files if f.kind == "generation"]
    g1 = files[0]
    zero_runs = [(a, n) for c in g1.chunks for a, n, kind in c.runs if kind == "zero"]
    assert sum(n for _a, n in zero_runs) == nzero
    assert (15, 30) in zero_runs  # the two zero windows: one run, not a run per block
    out = tmp_path / "out.img"
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        restore(drive, cat, str(out), RestoreOptions())
    assert out.read_bytes() == bytes(v2)
    out.unlink()
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        restore(drive, cat, str(out), RestoreOptions(generation=1))
    assert out.read_bytes() == v1


@pytest.mark.parametrize("direct", ["1", "0", "einval"])
def test_dir_medium_reads_same_records_direct_and_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: str
) -> None:
    """dir: record files are read with O_DIRECT into an aligned buffer where the file system
    takes it, else (TAPEARC_DIRECT_IO=0, or EINVAL) through the page cache: the same records."""
    import errno as _errno

    from tapearc.media import dirmedium

    spec = f"dir:{tmp_path / 'm'}"
    rng = random.Random(4)
    recs = [rng.randbytes(n) for n in (1, 4095, 4096, 4097, 65536, 100_000, 1 << 20)]
    with open_medium(spec, write=True) as drive:
        for r in recs:
            drive.write_record(r)
        drive.write_filemark()
    monkeypatch.setenv("TAPEARC_DIRECT_IO", "0" if direct == "0" else "1")
    if direct == "einval":
        real_open = dirmedium.os.open

        def no_direct(path, flags, *a):  # type: ignore[no-untyped-def]
            if flags & os.O_DIRECT:
                raise OSError(_errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *a)

        monkeypatch.setattr(dirmedium.os, "open", no_direct)
    with open_medium(spec, write=False) as drive:
        drive.rewind()
        got = [drive.read_record() for _ in range(len(recs) + 1)]
        if direct != "1":  # ("1": O_DIRECT stays on where the file system takes it)
            assert drive._direct is False  # type: ignore[attr-defined]
    assert got == [*recs, Mark.FILEMARK]
