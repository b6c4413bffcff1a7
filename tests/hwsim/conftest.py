"""Fixtures for the tape simulator tests."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tapesim.drive import SimDrive, create_image

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


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A blank 1 MiB tape with a 64 KiB early-warning zone."""
    p = tmp_path / "tape.tap"
    create_image(p, capacity=1 * MiB, early_warning=64 * KiB)
    return p


@pytest.fixture
def drive(image: Path):
    """An open SimDrive on the blank ``image``; closed after the test."""
    d = SimDrive(image)
    yield d
    if not d.closed:
        d.close()


@pytest.fixture
def raw_image(tmp_path: Path) -> Callable[[bytes], Path]:
    """Write raw SIMH bytes to an image file (no sidecar) and return its path."""

    def make(content: bytes, name: str = "raw.tap") -> Path:
        p = tmp_path / name
        p.write_bytes(content)
        return p

    return make


def payload(i: int, n: int) -> bytes:
    """Distinct, checkable record content."""
    b = i.to_bytes(4, "little") * (n // 4 + 1)
    return b[:n]
