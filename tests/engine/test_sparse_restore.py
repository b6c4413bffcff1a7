"""A sparse volume's generation restores with the space and memory of its data, not of its size:
to a new file it allocates about its data (st_blocks), to a stream (``--to -``) it runs with
bounded memory."""

from __future__ import annotations

import mmap
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.media import open_medium

MiB = 1024 * 1024
GiB = 1024 * MiB


def sparse_volume(path: Path, size: int, pieces: int) -> int:
    """A sparse file of ``size`` bytes holding ``pieces`` MiB of random data spread over it;
    returns the bytes of data."""
    rng = random.Random(size)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        stride = size // pieces
        for i in range(pieces):
            off = i * stride + rng.randrange(0, stride // MiB) * MiB
            os.pwrite(fd, rng.randbytes(MiB), off)
    finally:
        os.close(fd)
    return pieces * MiB


def data_ranges(path: Path) -> list[tuple[int, int]]:
    """(start, end) of the data of a file (SEEK_DATA / SEEK_HOLE); the rest are holes."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: only a hole from here on
            pos = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, pos))
    finally:
        os.close(fd)
    return out


def same_bytes(a: Path, b: Path) -> bool:
    """Do two (sparse) files hold the same bytes? Only where either holds data is read."""
    if os.stat(a).st_size != os.stat(b).st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for start, end in data_ranges(a) + data_ranges(b):
            fa.seek(start)
            fb.seek(start)
            if fa.read(end - start) != fb.read(end - start):
                return False
    return True


class CompareStream:
    """A binary output stream that checks what it is given against a file, as it comes."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 (closed in close())
        self.map = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
        self.view = memoryview(self.map)
        self.pos = 0
        self.mismatch: int | None = None

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        if self.mismatch is None and self.view[self.pos : self.pos + n] != memoryview(data).cast("B"):
            self.mismatch = self.pos
        self.pos += n
        return n

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.view.release()
        self.map.close()
        self.f.close()


def test_sparse_volume_restores_sparse_to_a_file_and_in_order_to_a_stream(tmp_path: Path) -> None:
    vol = tmp_path / "sparse.img"
    data = sparse_volume(vol, 256 * MiB, 4)
    spec = f"dir:{tmp_path / 'medium'}"
    with Catalog() as cat, open_medium(spec, write=True) as d:
        b = backup(str(vol), d, cat, BackupOptions())
    assert b.stored_bytes == data
    out = tmp_path / "out.img"
    with Catalog() as cat, open_medium(spec, write=False) as d:
        r = restore(d, cat, str(out), RestoreOptions())
    assert r.bytes_written == data and r.bytes_zeroed == 0
    assert os.stat(out).st_size == 256 * MiB
    assert os.stat(out).st_blocks * 512 <= data + MiB  # the data, not the volume size
    assert same_bytes(vol, out)
    stream = CompareStream(vol)
    try:
        with Catalog() as cat, open_medium(spec, write=False) as d:
            restore(d, cat, "-", RestoreOptions(), stdout=stream)  # type: ignore[arg-type]
        assert stream.pos == 256 * MiB and stream.mismatch is None
    finally:
        stream.close()


# Runs tapearc and writes its peak RSS (VmHWM, kB) to a file as it exits. Measured inside the
# process: a child's ru_maxrss also counts the (large) test process it was forked from.
_RSS_PROBE = """
import runpy, sys
out = sys.argv.pop(1)
sys.argv[0] = "tapearc"
try:
    runpy.run_module("tapearc", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as g:
        g.write(hwm.split()[1])
"""


def _peak_rss(tmp_path: Path, args: list[str], **kw: object) -> tuple[int, int]:
    """(exit code, peak RSS in bytes) of ``tapearc ARGS``."""
    out = tmp_path / "rss.txt"
    p = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(out), *args], **kw)  # type: ignore[call-overload]
    return p.returncode, int(out.read_text()) * 1024


@pytest.mark.slow
def test_64_gib_sparse_volume_holding_64_mib(tmp_path: Path) -> None:
    vol = tmp_path / "sparse.img"
    data = sparse_volume(vol, 64 * GiB, 64)
    spec = f"dir:{tmp_path / 'medium'}"
    code, _ = _peak_rss(tmp_path, ["backup", str(vol), "--media", spec], stdout=subprocess.DEVNULL)
    assert code == 0
    out = tmp_path / "out.img"
    code, rss = _peak_rss(tmp_path, ["restore", "--media", spec, "--to", str(out)], stdout=subprocess.DEVNULL)
    assert code == 0 and rss < 256 * MiB
    assert os.stat(out).st_size == 64 * GiB and os.stat(out).st_blocks * 512 <= data + MiB
    code, rss = _peak_rss(
        tmp_path, ["restore", "--media", spec, "--to", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert code == 0 and rss < 256 * MiB
