"""Fixtures for the tape simulator tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hwsim_helpers import KiB, MiB

from tapesim.drive import SimDrive, create_image


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
