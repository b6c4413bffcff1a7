"""The source contract (tapearc.sources.base.Source), run against every implementation: a
regular file, a sparse file, a loop block device, qemu-nbd raw and qcow2 exports and an nbdkit
export over TCP, with and without block status (nbdkit's noextents filter: everything is data).
Size, reads equal the bytes, extents cover exactly and in order, what is not
data reads as zeros, a short read at the end, a read past the end."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapearc.buffers import aligned_bytearray
from tapearc.sources.base import Extent, Source
from tapearc.sources.file import SourceVolume
from tapearc.sources.opener import open_source
from tests.conftest import KiB, MiB
from tests.nbdsupport import nbdkit_file, needs_nbdkit, needs_qemu_nbd, qemu_img, qemu_nbd

# data at [0, 64K), [1M, 1M + 8K + 100), [2M + 4K, 2M + 12K); holes elsewhere; a size that is a
# multiple of 512 (qemu's sector) but not of 4096
SPARSE_SIZE = 3 * MiB + 3 * 512
SPARSE_DATA = [(0, 64 * KiB), (MiB, 8 * KiB + 100), (2 * MiB + 4 * KiB, 8 * KiB)]


def _sparse(path: Path) -> bytes:
    rng = random.Random(7)
    out = bytearray(SPARSE_SIZE)
    with open(path, "wb") as f:
        f.truncate(SPARSE_SIZE)
        for off, n in SPARSE_DATA:
            chunk = rng.randbytes(n)
            f.seek(off)
            f.write(chunk)
            out[off : off + n] = chunk
    return bytes(out)


def _dense(path: Path) -> bytes:
    data = random.Random(3).randbytes(MiB + 1234)
    path.write_bytes(data)
    return data


@contextlib.contextmanager
def _loop(path: Path) -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("losetup") or not os.path.exists("/dev/loop-control"):
        pytest.skip("a loop device needs root and losetup")
    r = subprocess.run(["losetup", "--find", "--show", "--read-only", str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"losetup: {r.stderr.strip()}")
    dev = r.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


KINDS = [
    "file",
    "sparse-file",
    "loop-device",
    pytest.param("qemu-nbd-raw", marks=needs_qemu_nbd),
    pytest.param("qemu-nbd-qcow2", marks=needs_qemu_nbd),
    pytest.param("nbdkit-tcp", marks=needs_nbdkit),
    pytest.param("nbdkit-noextents", marks=needs_nbdkit),  # a server without base:allocation
]


@pytest.fixture(params=KINDS)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Source, bytes, str]]:
    """(the source, the bytes it must read as, its kind)."""
    kind: str = request.param
    img = tmp_path / "disk.img"
    data = _dense(img) if kind == "file" else _sparse(img)
    with contextlib.ExitStack() as stack:
        if kind in ("file", "sparse-file"):
            spec = str(img)
        elif kind == "loop-device":
            spec = stack.enter_context(_loop(img))
        elif kind == "qemu-nbd-raw":
            spec = stack.enter_context(qemu_nbd(img, "raw"))
        elif kind == "qemu-nbd-qcow2":
            q = tmp_path / "disk.qcow2"
            qemu_img("convert", "-f", "raw", "-O", "qcow2", str(img), str(q))
            spec = stack.enter_context(qemu_nbd(q, "qcow2"))
        elif kind == "nbdkit-noextents":
            spec = stack.enter_context(nbdkit_file(img, filters=("noextents",)))
        else:
            spec = stack.enter_context(nbdkit_file(img))
        src = stack.enter_context(contextlib.closing(open_source(spec)))
        yield src, data, kind


def _read(src: Source, offset: int, n: int) -> tuple[bytes, int]:
    ba, base = aligned_bytearray(n)
    got = src.readinto_at(memoryview(ba)[base : base + n], offset)
    return bytes(ba[base : base + got]), got


def _check_cover(ext: list[Extent], offset: int, length: int) -> None:
    pos = offset
    for e in ext:
        assert e.offset == pos and e.length > 0, ext
        pos += e.length
    assert pos == offset + length, ext


def test_size(source: tuple[Source, bytes, str]) -> None:
    src, data, _ = source
    assert src.size == len(data)
    assert src.current_size() in (len(data), None)


def test_reads_equal_the_bytes(source: tuple[Source, bytes, str]) -> None:
    src, data, _ = source
    window = 256 * KiB
    out = bytearray()
    for off in range(0, src.size, window):
        got, n = _read(src, off, min(window, src.size - off))
        assert n == len(got)
        out += got
    assert bytes(out) == data
    assert src.bytes_read >= len(data)
    # unaligned reads too (the page cache path of a file, a request split for NBD)
    got, n = _read(src, 12345, 3 * MiB // 2)
    assert got == data[12345 : 12345 + 3 * MiB // 2]


def test_extents_cover_exactly_in_order(source: tuple[Source, bytes, str]) -> None:
    src, _data, kind = source
    ext = list(src.extents(0, src.size))
    _check_cover(ext, 0, src.size)
    for a, b in itertools.pairwise(ext):
        assert a.offset + a.length == b.offset
    for off, n in [(1, 100), (MiB - 5, 10 * KiB), (2 * MiB, MiB), (src.size - 700, 700)]:
        _check_cover(list(src.extents(off, n)), off, n)
    assert list(src.extents(100, 0)) == []
    if kind == "nbdkit-noextents":  # no base:allocation: one data extent, never a guessed hole
        assert ext == [Extent(0, src.size, True)]
    for off, n in SPARSE_DATA if kind != "file" else []:  # every byte of data lies in a data extent
        assert any(e.data and e.offset <= off and off + n <= e.offset + e.length for e in ext), (off, n, ext)
    if kind in ("sparse-file", "qemu-nbd-raw", "qemu-nbd-qcow2", "nbdkit-tcp"):
        assert any(not e.data for e in ext), "the holes of a sparse image are reported"


def test_not_data_reads_as_zeros(source: tuple[Source, bytes, str]) -> None:
    src, data, _ = source
    for e in src.extents(0, src.size):
        if not e.data:
            assert data[e.offset : e.offset + e.length].count(0) == e.length, e
            got, n = _read(src, e.offset, min(e.length, MiB))
            assert n == min(e.length, MiB) and got.count(0) == n


def test_short_read_at_the_end(source: tuple[Source, bytes, str]) -> None:
    src, data, _ = source
    got, n = _read(src, src.size - 1000, 64 * KiB)
    assert n == 1000 and got == data[-1000:]
    got, n = _read(src, src.size - 4096, 64 * KiB)  # aligned offset, short read
    assert n == 4096 and got == data[-4096:]


def test_read_past_the_end(source: tuple[Source, bytes, str]) -> None:
    src, _, _ = source
    assert _read(src, src.size, 4096)[1] == 0
    assert _read(src, src.size + 10 * MiB, 4096)[1] == 0


def test_file_system_without_seek_data_is_all_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lseek answering EINVAL to SEEK_DATA (a file system without it): everything is data."""
    img = tmp_path / "s.img"
    _sparse(img)
    import tapearc.sources.file as file_mod

    real = os.lseek

    def lseek(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(22, "Invalid argument")
        return real(fd, pos, how)

    with SourceVolume(str(img)) as src:
        monkeypatch.setattr(file_mod.os, "lseek", lseek)
        assert list(src.extents(0, src.size)) == [Extent(0, src.size, True)]


def test_shrunk_file_reports_data_past_its_end(tmp_path: Path) -> None:
    """A file that shrank after it was opened: the bytes past its end are data, so the read of
    them comes up short (and the backup says the source shrank), never a silent hole."""
    img = tmp_path / "s.img"
    _sparse(img)
    with SourceVolume(str(img)) as src:
        os.truncate(img, MiB + 4096)
        ext = list(src.extents(0, src.size))
        _check_cover(ext, 0, src.size)
        assert ext[-1].data and ext[-1].offset <= MiB + 8 * KiB + 100


def test_advised_reads_equal_the_bytes(source: tuple[Source, bytes, str]) -> None:
    """Reads scattered over the volume, advised first (as a backup's plan is): the same bytes,
    and a source reads no more than it was advised to."""
    src, data, _ = source
    rng = random.Random(7)
    units = src.size // (16 * KiB) - 1
    starts = sorted(rng.sample(range(units), min(20, units)))
    reads = [(b * 16 * KiB, 16 * KiB) for b in starts] + [(src.size - 5000, 5000)]
    before = src.bytes_read
    src.advise(iter(reads))
    for off, n in reads:
        got, _k = _read(src, off, n)
        assert got == data[off : off + n], (off, n)
    assert src.bytes_read - before == sum(n for _, n in reads)


def test_reads_that_leave_the_advice_still_equal_the_bytes(source: tuple[Source, bytes, str]) -> None:
    src, data, _ = source
    src.advise(iter([(16 * KiB * i, 16 * KiB) for i in range(0, 10, 2)]))
    for off, n in [(0, 16 * KiB), (5 * 16 * KiB, 1000), (32 * KiB, 16 * KiB), (src.size - 100, 100)]:
        got, _ = _read(src, off, n)
        assert got == data[off : off + n], (off, n)


@needs_qemu_nbd
def test_nbd_reads_ahead_and_elsewhere(tmp_path: Path) -> None:
    """Small requests, a few in flight: sequential windows (served from the requests sent ahead),
    windows of another length, jumps back and forth, the end: every read equals the bytes."""
    from tapearc.sources.nbd import NbdSource

    img = tmp_path / "disk.img"
    data = _sparse(img)
    rng = random.Random(4)
    with qemu_nbd(img, "raw") as uri, contextlib.closing(NbdSource(uri, request_size=4096, in_flight=3)) as src:
        reads = [(o, 12 * KiB) for o in range(0, 200 * KiB, 12 * KiB)]  # sequential
        reads += [(MiB + o, 5000) for o in range(0, 50_000, 5000)]  # pieces not of the request size
        reads += [(rng.randrange(0, SPARSE_SIZE), rng.randrange(1, 40_000)) for _ in range(40)]
        reads += [(SPARSE_SIZE - 10_000, 8192), (SPARSE_SIZE - 10_000 + 8192, 8192)]  # into the end
        for off, n in reads:
            got, k = _read(src, off, n)
            assert got == data[off : off + n], (off, n)
            assert k == min(n, SPARSE_SIZE - off)
