"""Page-aligned buffers (for O_DIRECT reads and st's direct I/O) and the O_DIRECT switch."""

from __future__ import annotations

import ctypes
import mmap
import threading

from tapearc import settings

PAGE = mmap.PAGESIZE


def direct_io_enabled() -> bool:
    """O_DIRECT reads (backup sources, dir: record files) unless ``TAPEARC_DIRECT_IO=0``."""
    return settings.direct_io()


def buffer_address(buf: bytearray | memoryview) -> int:
    """The address of a writable buffer's first byte (for alignment checks)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def aligned_bytearray(size: int, align: int = PAGE) -> tuple[bytearray, int]:
    """A zero-filled bytearray with room for ``size`` bytes starting at an ``align``-aligned
    address: returns ``(buffer, base)``; use ``buffer[base:base + size]``. O_DIRECT reads (and
    st's direct I/O) need aligned buffers; a bytearray keeps ``startswith`` (fast zero checks)."""
    ba = bytearray(size + align)
    base = (-buffer_address(ba)) % align
    return ba, base


class BufferPool:
    """Buffers reused by the bulk paths that make the same sizes again and again: a job's
    volumes one after the other on one drive each make read-ahead windows and chunk buffers of
    the chunk size. ``bytearray(n)`` zero-fills (a 4 MiB buffer: ~1.5 ms of memset and page
    faults); a volume's first ~7 ms went to that while its drive, its buffer drained by the
    previous volume's filemark, waited for the first record.

    A buffer is given back only when no thread can touch it any more (the reader joined, the
    chunk written); contents are **not** cleared: callers use only the bytes they filled. At
    most ``limit`` bytes are kept (more are left to the garbage collector)."""

    def __init__(self, limit: int = 256 * 1024 * 1024) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._free: dict[int, list[bytearray]] = {}
        self._bytes = 0

    def take(self, size: int) -> bytearray:
        """A buffer of exactly ``size`` bytes: a free one (old contents) or a new zero-filled one."""
        with self._lock:
            free = self._free.get(size)
            if free:
                self._bytes -= size
                return free.pop()
        return bytearray(size)

    def take_aligned(self, size: int, align: int = PAGE) -> tuple[bytearray, int]:
        """As :func:`aligned_bytearray` (``(buffer, base)``), from the pool: old contents."""
        ba = self.take(size + align)
        return ba, (-buffer_address(ba)) % align

    def give(self, buf: bytearray) -> None:
        """``buf`` is free: nothing holds a view of it and no thread will write it."""
        n = len(buf)
        with self._lock:
            if self._bytes + n > self.limit:
                return
            self._free.setdefault(n, []).append(buf)
            self._bytes += n

    @property
    def kept(self) -> int:
        """Bytes held for reuse."""
        with self._lock:
            return self._bytes


#: The process's pool (engine.pipeline.ReadAhead windows, engine.packers chunk buffers).
POOL = BufferPool()
