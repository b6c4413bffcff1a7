"""A changer whose moves are made under the library's changer lease (docs/leases.md): the
changer of a :class:`tapearc.engine.mediasource.MediaSource` with leases. Apart from
mediasource so that a command without a changer does not import the changer interface."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tapearc.media.changer import Changer, ChangerStatus

if TYPE_CHECKING:
    from tapearc.catalog.leases import Leases


class LeasedChanger(Changer):
    """A changer whose every inventory, load and unload is done under the lease
    ``changer:<library>`` (other tapearc processes sharing the catalog wait for it)."""

    def __init__(self, changer: Changer, leases: Leases, library: str, purpose: str, wait: float | None) -> None:
        self.inner = changer
        self.name = changer.name
        self.leases = leases
        self.resource = f"changer:{library}"
        self.purpose = purpose
        self.wait = wait
        self.holding = False

    @contextmanager
    def held(self, what: str) -> Iterator[None]:
        """Hold the changer's lease for a sequence of operations (an inventory and the load it
        decides); nested operations run under it."""
        if self.holding:
            yield
            return
        with self.leases.acquire(self.resource, purpose=f"{what} for {self.purpose}", wait=self.wait):
            self.holding = True
            try:
                yield
            finally:
                self.holding = False

    def status(self) -> ChangerStatus:
        with self.held("inventory"):
            return self.inner.status()

    def load(self, slot: int, drive: int = 0) -> None:
        with self.held(f"load of slot {slot} into drive {drive}"):
            self.inner.load(slot, drive)

    def unload(self, drive: int = 0, slot: int | None = None) -> None:
        with self.held(f"unload of drive {drive}"):
            self.inner.unload(drive, slot)

    def close(self) -> None:
        self.inner.close()
