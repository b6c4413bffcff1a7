"""CRC-32C without the crc32c package's __init__ (tapearc.format.crc.load_crc32c), and its
fallback to the package."""

from __future__ import annotations

import subprocess
import sys

import crc32c as package
import pytest

from tapearc.format import CRC32C_CHECK, crc
from tapearc.format.crc import load_crc32c


def test_the_extension_function() -> None:
    f = load_crc32c()
    assert f is package.crc32c  # the same function the package exports
    assert f(b"123456789", 0) == CRC32C_CHECK
    assert crc.crc32c(b"456789", crc.crc32c(b"123")) == CRC32C_CHECK


def test_falls_back_to_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.machinery

    monkeypatch.delitem(sys.modules, "crc32c._crc32c")
    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec", classmethod(lambda cls, *a, **k: None))
    f = load_crc32c()
    assert f is package.crc32c and f(b"123456789", 0) == CRC32C_CHECK


def test_format_does_not_import_importlib_metadata() -> None:
    code = "import sys, tapearc.format; assert 'importlib.metadata' not in sys.modules, 'importlib.metadata'"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
