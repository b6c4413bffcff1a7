"""docs/errors.md lists every error class of tapearc/errors.py under its exit code and kind."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tapearc import errors

ROOT = Path(__file__).resolve().parents[1]


def _error_classes() -> list[type[errors.TapearcError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.TapearcError) and cls.__module__ == errors.__name__
    ]


def _table() -> dict[int, set[str]]:
    """exit code -> the kinds its row in docs/errors.md names."""
    text = (ROOT / "docs" / "errors.md").read_text()
    rows: dict[int, set[str]] = {}
    for code, kinds in re.findall(r"^\| (\d+) \| ([^|]*) \|", text, re.M):
        rows[int(code)] = set(re.findall(r"`([a-z-]+)`", kinds))
    return rows


def test_every_error_class_is_in_the_table() -> None:
    table = _table()
    for cls in _error_classes():
        if cls is errors.MediumError or cls.__name__.startswith("_") or cls is errors.TapearcError:
            continue  # abstract bases: never raised themselves
        assert cls.exit_code in table, cls
        assert cls.kind in table[cls.exit_code], (cls, cls.exit_code, cls.kind)


def test_exit_codes_live_in_errors_py() -> None:
    """No class outside errors.py gives itself an exit code."""
    for f in (ROOT / "tapearc").rglob("*.py"):
        if f.name == "errors.py" and f.parent.name == "tapearc":
            continue
        assert not re.search(r"^\s+exit_code = \d+", f.read_text(), re.M), f


def test_medium_error_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        errors.MediumError("x")
    err = errors.MediumStateError("the stream medium is closed", medium="-")
    assert isinstance(err, errors.MediumError)
    assert (err.exit_code, err.kind) == (14, "medium")
    assert errors.MediumError.exit_code != errors.MediumIOError.exit_code
