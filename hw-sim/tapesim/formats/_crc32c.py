"""CRC-32C (Castagnoli, reflected, as iSCSI/ext4/tgt use it): the ``crc32c`` package when
installed (a project dependency), else a small table-driven fallback (tgt headers are 44 bytes)."""

from __future__ import annotations

from collections.abc import Callable

_fast: Callable[[bytes], int] | None
try:
    from crc32c import crc32c as _fast
except ImportError:  # pragma: no cover - depends on the environment
    _fast = None


def _table() -> list[int]:
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_TABLE = _table()


def crc32c_py(data: bytes, crc: int = 0) -> int:
    """Pure-Python CRC-32C."""
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (the fast package when installed)."""
    if _fast is not None:
        return _fast(data)
    return crc32c_py(data)
