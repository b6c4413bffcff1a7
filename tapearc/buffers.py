"""Page-aligned buffers (for O_DIRECT reads and st's direct I/O) and the O_DIRECT switch."""

from __future__ import annotations

import ctypes
import mmap

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
