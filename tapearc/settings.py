"""Every ``TAPEARC_*`` environment variable tapearc reads: its name, default and parser, in one place.

A variable that is unset or empty means its default. Any other value must parse: a value that
does not (``TAPEARC_LOCK_TIMEOUT=soon``, ``TAPEARC_PIPELINE=maybe``, a negative number of
seconds) is a UsageError (exit 2) naming the variable and the value, never silently replaced by
the default. The command line checks them all before a command starts (:func:`check_all`), so a
typo shows whatever the command; the accessors below raise the same error when used directly.

The accessors read the environment when called (a test or a caller that sets a variable sees it
at once); nothing else in tapearc reads ``TAPEARC_*`` variables. The simulator (hw-sim/tapesim),
which never imports tapearc, reads ``TAPEARC_EARLY_WRITEBACK`` itself with the same rules.

The table :data:`SETTINGS` is documented in docs/user-guide.md ("Environment"); a test compares
the two (names and defaults), so keep them in step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tapearc import env
from tapearc.errors import UsageError
from tapearc.units import parse_size

T = TypeVar("T", covariant=True)

_TRUE = ("1", "yes", "on", "true")
_FALSE = ("0", "no", "off", "false")


def _raw(name: str) -> str | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    return text.strip()


def _bad(name: str, text: str, what: str) -> UsageError:
    return UsageError(f"{name}={text!r}: {what}", hint=f"fix or unset {name}")


# ---------------------------------------------------------------- parsers (name, default)


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


def lease_seconds(name: str, default: float) -> float:
    """A lease's time to live: a number of seconds, at least :data:`MIN_LEASE_TTL`."""
    value = seconds(name, default)
    if value < MIN_LEASE_TTL:
        raise _bad(
            name,
            os.environ.get(name, "").strip(),
            f"a lease lives at least {MIN_LEASE_TTL:g} second (a number of seconds)",
        )
    return value


def size(name: str) -> int | None:
    """A size (``1M``, ``65536``), more than 0; None when unset."""
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


# ---------------------------------------------------------------- the variables


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One variable: ``read()`` parses its current value (the default when unset or empty)."""

    name: str
    shown_default: str  #: the default as docs/user-guide.md shows it
    reader: Callable[[str], T]
    doc: str

    def read(self) -> T:
        return self.reader(self.name)


DEFAULT_CATALOG_TIMEOUT = 30.0
DEFAULT_LOCK_TIMEOUT = 0.0
DEFAULT_ST_LOAD_TIMEOUT = 300.0
DEFAULT_NBD_TIMEOUT = 120.0
DEFAULT_LEASE_TTL = 60.0
MIN_LEASE_TTL = 1.0

CATALOG: Setting[str | None] = Setting(
    "TAPEARC_CATALOG",
    "`$XDG_DATA_HOME/tapearc/catalog.sqlite` (`~/.local/share/...`)",
    path,
    "the catalog: an SQLite file (its folder must exist) or a `postgresql://` URL (docs/catalog.md)",
)
CATALOG_TIMEOUT: Setting[float] = Setting(
    "TAPEARC_CATALOG_TIMEOUT",
    "30",
    lambda n: seconds(n, DEFAULT_CATALOG_TIMEOUT),
    "seconds to wait for a catalog another process holds",
)
LOCK_TIMEOUT: Setting[float] = Setting(
    "TAPEARC_LOCK_TIMEOUT",
    "0",
    lambda n: seconds(n, DEFAULT_LOCK_TIMEOUT),
    "seconds to wait for a medium another tapearc process holds",
)
LEASE_TTL: Setting[float] = Setting(
    "TAPEARC_LEASE_TTL",
    "60",
    lambda n: lease_seconds(n, DEFAULT_LEASE_TTL),
    "seconds a lease on a drive, medium or changer lives unless renewed (renewed every third of it; "
    "at least 1; docs/leases.md)",
)
ST_MAX_RECORD: Setting[int | None] = Setting(
    "TAPEARC_ST_MAX_RECORD",
    "`1M`",
    size,
    "largest record read or written on a real st drive (None: the drive backend's default, 1 MiB)",
)
ST_LOAD_TIMEOUT: Setting[float] = Setting(
    "TAPEARC_ST_LOAD_TIMEOUT",
    "300",
    lambda n: seconds(n, DEFAULT_ST_LOAD_TIMEOUT),
    "seconds to wait for a tape to load",
)
NBD_TIMEOUT: Setting[float] = Setting(
    "TAPEARC_NBD_TIMEOUT",
    "120",
    lambda n: seconds(n, DEFAULT_NBD_TIMEOUT),
    "seconds an NBD server may take to answer (the connection, each request); 0: no limit",
)
PIPELINE: Setting[bool] = Setting(
    "TAPEARC_PIPELINE",
    "1",
    lambda n: flag(n, True),
    "0: no read-ahead/writer threads (the plain path)",
)
DIRECT_IO: Setting[bool] = Setting(
    "TAPEARC_DIRECT_IO",
    "1",
    lambda n: flag(n, True),
    "0: read backup sources and dir: record files through the page cache instead of O_DIRECT",
)
EARLY_WRITEBACK: Setting[bool] = Setting(
    "TAPEARC_EARLY_WRITEBACK",
    "1",
    lambda n: flag(n, True),
    "0: do not start writeback of file media and restore targets before their fsync",
)

SERVER: Setting[str | None] = Setting(
    "TAPEARC_SERVER",
    "`$XDG_RUNTIME_DIR/tapearc/server.sock` if a server listens there",
    lambda n: env.server_socket(),
    "the socket of the command server commands are handed to (`tapearc server`); `off`: none ([server.md](server.md))",
)

#: Every variable, in the order of the table in docs/user-guide.md.
SETTINGS: tuple[Setting[object], ...] = (
    CATALOG,
    CATALOG_TIMEOUT,
    LOCK_TIMEOUT,
    LEASE_TTL,
    ST_MAX_RECORD,
    ST_LOAD_TIMEOUT,
    NBD_TIMEOUT,
    PIPELINE,
    DIRECT_IO,
    EARLY_WRITEBACK,
    SERVER,
)

#: name -> reader of every variable (the reader takes the name and returns the parsed value).
VARIABLES: dict[str, Callable[[str], object]] = {s.name: s.reader for s in SETTINGS}


def catalog_path() -> str | None:
    """``$TAPEARC_CATALOG`` as given: a path or a URL (tapearc/catalog/spec.py tells which)."""
    return CATALOG.read()


def catalog_spec() -> str | None:
    """The same: the catalog spec (a path, ``sqlite:///...`` or ``postgresql://...``); None when unset."""
    return CATALOG.read()


def catalog_timeout() -> float:
    return CATALOG_TIMEOUT.read()


def lock_timeout() -> float:
    return LOCK_TIMEOUT.read()


def lease_ttl() -> float:
    return LEASE_TTL.read()


def st_max_record() -> int | None:
    return ST_MAX_RECORD.read()


def st_load_timeout() -> float:
    return ST_LOAD_TIMEOUT.read()


def nbd_timeout() -> float:
    return NBD_TIMEOUT.read()


def pipeline() -> bool:
    return PIPELINE.read()


def direct_io() -> bool:
    return DIRECT_IO.read()


def early_writeback() -> bool:
    return EARLY_WRITEBACK.read()


def check_all() -> None:
    """Parse every variable that is set; the first bad one raises UsageError."""
    for setting in SETTINGS:
        setting.read()
