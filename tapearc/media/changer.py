"""The changer interface: something that puts media into a drive. Its docstrings are the contract.

Backends (tapearc/media/changers/): the simulated autoloader of hw-sim (``sim:DIR``), SCSI
medium changers through ``mtx`` (``mtx:/dev/sgN``), a serial-controlled autoloader through
pyserial (``serial:PORT`` or ``serial:socket://HOST:PORT``), and an operator at a terminal
(``operator``). One contract test suite runs against every backend that can run unattended.

Slots and drives are numbered as the device numbers them (mtx: slots from 1, drives from 0).
Long operations (load, unload) may take minutes on real libraries: backends use generous
timeouts (default 15 minutes, the vendor-recommended bound for LTO load/unload) and raise
:class:`ChangerError` with the device's own words when they fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tapearc.errors import ChangerError

__all__ = [
    "AttendedChanger",
    "Changer",
    "ChangerError",
    "ChangerStatus",
    "DriveBayStatus",
    "MediumCheck",
    "SlotStatus",
]

#: The moves of every changer (``tapearc -v``): each load and unload, as asked of the changer.
log = logging.getLogger("tapearc.changer")


@dataclass(frozen=True, slots=True)
class SlotStatus:
    number: int
    full: bool
    barcode: str | None = None
    import_export: bool = False


@dataclass(frozen=True, slots=True)
class DriveBayStatus:
    number: int
    full: bool
    barcode: str | None = None
    source_slot: int | None = None  # the slot the loaded medium came from, when known


@dataclass(frozen=True, slots=True)
class ChangerStatus:
    slots: tuple[SlotStatus, ...]
    drives: tuple[DriveBayStatus, ...]
    details: dict[str, object] = field(default_factory=dict)

    def slot_of(self, barcode: str) -> int | None:
        for s in self.slots:
            if s.full and s.barcode == barcode:
                return s.number
        return None


@runtime_checkable
class Changer(Protocol):
    """What the engine asks of a changer. Every backend in tapearc/media/changers subclasses it
    (so that the type checker holds it to these signatures)."""

    name: str
    """How the changer is named in messages, e.g. ``mtx:/dev/sg3``."""

    def status(self) -> ChangerStatus:
        """Inventory: what each slot and drive holds (barcodes when the device reads them)."""
        ...

    def load(self, slot: int, drive: int = 0) -> None:
        """Move the medium in ``slot`` into ``drive``. Returns when the move is done (the drive
        may still be loading the tape: the drive backend waits for it to become ready).
        Raises ChangerError if the slot is empty or the drive is full."""
        ...

    def unload(self, drive: int = 0, slot: int | None = None) -> None:
        """Move the medium in ``drive`` back to ``slot`` (default: where it came from, or the
        first empty slot). Raises ChangerError if the drive is empty."""
        ...

    def close(self) -> None:
        """Release the device. Idempotent."""
        ...


MediumCheck = Callable[[], "bool | str"]
"""Looks at the medium in the drive: True = the wanted one; a string = another medium (why it is
not the one wanted); False = no medium yet."""


@runtime_checkable
class AttendedChanger(Changer, Protocol):
    """A changer worked by a person (``operator``): no slots; media are asked for by name."""

    def wait_for_medium(self, describe: str, check: MediumCheck, *, timeout: float | None = ...) -> None:
        """Ask for the medium ``describe`` and return once ``check()`` is True. Raises
        ChangerError when ``timeout`` seconds pass (None: wait as long as it takes)."""
        ...
