"""Progress reporting: the engine calls a Progress object; the CLI decides how to show it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """Receives progress of a long job. Implementations must be cheap to call."""

    def start(self, description: str, total: int | None) -> None:
        """A phase begins; ``total`` bytes of work (None when unknown)."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes of work are done."""

    def finish(self) -> None:
        """The phase ended (successfully or not)."""


class NoProgress:
    """Progress that shows nothing."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


class Rate:
    """The arithmetic of a progress display: bytes done of a total, speed, time left.

    Printers (in the CLI) keep one and show what it computes; it prints nothing itself.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.description = ""
        self.total: int | None = None
        self.done = 0
        self.started = False
        self._t0 = 0.0

    def start(self, description: str, total: int | None) -> None:
        self.description, self.total, self.done, self.started = description, total, 0, True
        self._t0 = self._clock()

    def advance(self, nbytes: int) -> None:
        self.done += nbytes

    def elapsed(self) -> float:
        return max(0.0, self._clock() - self._t0)

    def speed(self) -> float:
        """Bytes per second since start (0 before any time has passed)."""
        t = self.elapsed()
        return self.done / t if t > 0 else 0.0

    def percent(self) -> float | None:
        """Percent of the total done (None without a total)."""
        if self.total is None:
            return None
        if self.total <= 0:
            return 100.0
        return round(min(100.0, 100.0 * self.done / self.total), 1)

    def eta(self) -> float | None:
        """Seconds left at the speed so far (None without a total, or before any speed)."""
        if self.total is None:
            return None
        left = max(0, self.total - self.done)
        if left == 0:
            return 0.0
        speed = self.speed()
        return round(left / speed, 1) if speed > 0 else None
