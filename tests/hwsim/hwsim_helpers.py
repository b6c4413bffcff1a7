"""Helpers of the tape simulator tests: raw SIMH bytes and checkable record contents.

A module of its own (imported as ``hwsim_helpers``), not conftest.py: other test folders have a
conftest.py too, and a bare ``from conftest import`` takes whichever was imported first, which
depends on the order the folders are collected in.
"""

from __future__ import annotations

import struct

KiB = 1024
MiB = 1024 * KiB


def rec(n: int, *, fill: int | None = None, flag: int = 0) -> bytes:
    """Raw SIMH bytes of a record of ``n`` bytes."""
    w = struct.pack("<I", n | flag)
    data = bytes([fill if fill is not None else (n & 0xFF)]) * n
    return w + data + (b"\0" if n & 1 else b"") + w


def word(v: int) -> bytes:
    return struct.pack("<I", v)


TM = word(0)


def payload(i: int, n: int) -> bytes:
    """Distinct, checkable record content."""
    b = i.to_bytes(4, "little") * (n // 4 + 1)
    return b[:n]
