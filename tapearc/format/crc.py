"""CRC-32C (Castagnoli), the only checksum of the tapearc format.

Parameters (Rocksoft model): width 32, poly 0x1EDC6F41 (reflected 0x82F63B78), init 0xFFFFFFFF,
refin/refout true, xorout 0xFFFFFFFF; check value ``crc32c(b"123456789") == 0xE3069283``.

The hot path uses the ``crc32c`` package (SSE4.2 / ARMv8 instructions when available). The
tests compare it against crcmod's ``crc-32c`` as the reference implementation.
"""

from __future__ import annotations

import crc32c as _crc32c

__all__ = ["CRC32C_CHECK", "crc32c"]

#: CRC-32C of the ASCII bytes ``123456789``.
CRC32C_CHECK = 0xE3069283


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Return the CRC-32C of ``data``.

    ``value`` is the CRC of the bytes before ``data`` (0 for none), so that
    ``crc32c(b, crc32c(a)) == crc32c(a + b)``. ``data`` may be any contiguous buffer.
    """
    return _crc32c.crc32c(data, value)
