"""Dates and times on the command line (``restore --at``, ``catalog --since/--until``): one parser.

ISO 8601, as ``datetime.fromisoformat`` reads it: ``2026-12-01 03:00``, ``2026-12-01T03:00:30``,
``2026-12-01`` (00:00), ``2026-12-01T03:00Z``, ``2026-12-01 03:00+01:00``. Without a zone it is
local time (``$TZ``, else the system's). A value that is not such a date is a usage error (exit
2) naming the option and the value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer

from tapearc.errors import UsageError

EXAMPLES = "e.g. 2026-12-01 03:00, 2026-12-01T03:00:30Z, 2026-12-01 03:00+01:00 or 2026-12-01"


def parse_time(option: str, text: str) -> int:
    """``text`` as unix seconds (a fraction is dropped: catalog times are whole seconds)."""
    value = text.strip()
    try:
        dt = datetime.fromisoformat(value) if value else None
    except ValueError:
        dt = None
    if dt is None:
        raise UsageError(f"{option} {text!r}: not an ISO 8601 date and time ({EXAMPLES})")
    try:
        return math.floor(dt.timestamp())  # a naive datetime is local time
    except (OverflowError, OSError, ValueError) as e:
        raise UsageError(f"{option} {text!r}: cannot be used as a time ({e})") from None


def time_parser(option: str) -> Callable[[str], int]:
    """A typer ``parser=`` for an option holding a date and time."""

    def parse(text: str) -> int:
        return parse_time(option, text)

    return parse


AtOpt = Annotated[
    int | None,
    typer.Option(
        "--at",
        help="The newest complete generation made at or before TIME: ISO 8601, local time unless a zone "
        "is given (2026-12-01 03:00, 2026-12-01T03:00:30Z, 2026-12-01 = 00:00).",
        metavar="TIME",
        parser=time_parser("--at"),
    ),
]


def check_at(at: int | None, generation: int | None) -> None:
    """--at and --generation both choose the generation: one or the other (usage error, exit 2)."""
    if at is not None and generation is not None:
        raise UsageError("--at and --generation both choose the generation: give one of them")


NowOpt = Annotated[
    int | None,
    typer.Option(
        "--now",
        help="Decide retention (what is expired, what may be recycled) as if it were TIME, and date what is "
        "written then (ISO 8601; for tests and rehearsals; default: the clock).",
        metavar="TIME",
        parser=time_parser("--now"),
    ),
]
