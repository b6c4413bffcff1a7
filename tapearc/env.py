"""The ``TAPEARC_*`` environment variables tapearc reads, each parsed strictly.

A variable that is unset or empty means its default. Any other value must parse: a value that
does not (``TAPEARC_LOCK_TIMEOUT=soon``, ``TAPEARC_PIPELINE=maybe``, a negative number of
seconds) is a UsageError (exit 2) naming the variable and the value, never silently replaced by
the default. The command line checks them all before a command starts (:func:`check_all`), so a
typo shows whatever the command; the readers below raise the same error when used directly.

The list is documented in docs/user-guide.md ("Environment variables"); keep the two in step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from tapearc.errors import UsageError

_TRUE = ("1", "yes", "on", "true")
_FALSE = ("0", "no", "off", "false")


def _raw(name: str) -> str | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    return text.strip()


def _bad(name: str, text: str, what: str) -> UsageError:
    return UsageError(f"{name}={text!r}: {what}", hint=f"fix or unset {name}")


def flag(name: str, default: bool) -> bool:
    """A switch: 1/yes/on/true or 0/no/off/false (any case)."""
    text = _raw(name)
    if text is None:
        return default
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _bad(name, text, "not a switch (use 1 or 0; yes/no, on/off, true/false also work)")


def seconds(name: str, default: float) -> float:
    """A duration in seconds: a finite number, 0 or more."""
    text = _raw(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise _bad(name, text, "not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise _bad(name, text, "seconds must be a finite number, 0 or more")
    return value


def size(name: str) -> int | None:
    """A size (``1M``, ``65536``), more than 0; None when unset."""
    from tapearc.units import parse_size

    text = _raw(name)
    if text is None:
        return None
    try:
        value = parse_size(text)
    except ValueError as e:
        raise _bad(name, text, str(e)) from None
    if value <= 0:
        raise _bad(name, text, "the size must be more than 0")
    return value


def path(name: str) -> str | None:
    """A path; None when unset."""
    return _raw(name)


# Every variable tapearc itself reads (not the test suite's own), with the
# reader that checks it. The simulator (hw-sim/tapesim) checks TAPEARC_EARLY_WRITEBACK itself.
VARIABLES: dict[str, Callable[[str], object]] = {
    "TAPEARC_CATALOG": path,
    "TAPEARC_CATALOG_TIMEOUT": lambda n: seconds(n, 30.0),
    "TAPEARC_LOCK_TIMEOUT": lambda n: seconds(n, 0.0),
    "TAPEARC_PIPELINE": lambda n: flag(n, True),
    "TAPEARC_DIRECT_IO": lambda n: flag(n, True),
    "TAPEARC_EARLY_WRITEBACK": lambda n: flag(n, True),
    "TAPEARC_ST_MAX_RECORD": size,
    "TAPEARC_ST_LOAD_TIMEOUT": lambda n: seconds(n, 300.0),
}


def check_all() -> None:
    """Parse every variable of :data:`VARIABLES` that is set; the first bad one raises."""
    for name, reader in VARIABLES.items():
        reader(name)
