"""Progress reporting: the engine calls a Progress object; the CLI decides how to show it."""

from __future__ import annotations

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
