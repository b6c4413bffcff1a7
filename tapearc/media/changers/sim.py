"""The simulated autoloader of hw-sim (``sim:DIR``): a :class:`tapesim.library.Library` folder.

Slots are numbered from 1, drives from 0. A loaded drive i is the tape image
``DIR/drive-<i>.tap`` (:meth:`SimChanger.drive_path`), which the ``sim:`` medium backend opens.
The library's errors (:class:`tapesim.library.LibraryError`, with a TALP/1 code) become
ChangerError with the library's message and ``code`` in the error's details.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..changer import Changer, ChangerError, ChangerStatus, DriveBayStatus, SlotStatus, log

if TYPE_CHECKING:
    from tapesim.library import Library

T = TypeVar("T")


class SimChanger(Changer):
    """The hw-sim library in folder ``path`` (made with ``tapesim library DIR --slots N ...``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.name = f"sim:{self.path}"
        self._closed = False
        try:
            from tapesim.library import Library, LibraryError  # the simulator is optional
        except ImportError:
            raise ChangerError(
                f"{self.name}: the simulator (tapesim) is not installed",
                hint="install tapearc with its hw-sim package (pip install -e .)",
            ) from None
        self._error_type: type[Exception] = LibraryError
        self.library: Library = self._call(lambda: Library(self.path))

    def __repr__(self) -> str:
        return f"SimChanger({self.path!r})"

    def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise ChangerError(f"{self.name}: the changer is closed")
        try:
            return fn()
        except self._error_type as err:
            code = getattr(err, "code", None)
            message = getattr(err, "message", None) or str(err)
            raise ChangerError(f"{self.name}: {message}", code=code) from None
        except OSError as err:
            raise ChangerError(
                f"{self.name}: {err.strerror or err}" + (f": {err.filename}" if err.filename else "")
            ) from None

    def drive_path(self, drive: int = 0) -> str:
        """The tape image of drive ``drive`` (``DIR/drive-<i>.tap``; missing while it is empty)."""
        return self._call(lambda: self.library.drive_path(drive))

    def status(self) -> ChangerStatus:
        st = self._call(self.library.status)
        return ChangerStatus(
            slots=tuple(SlotStatus(s.number, s.barcode is not None, s.barcode) for s in st.slots),
            drives=tuple(
                DriveBayStatus(
                    d.number, d.barcode is not None, d.barcode, d.source_slot if d.barcode is not None else None
                )
                for d in st.drives
            ),
            details={"library": self.path},
        )

    def load(self, slot: int, drive: int = 0) -> None:
        log.info("%s: load slot %d into drive %d", self.name, slot, drive)
        self._call(lambda: self.library.load(slot, drive))

    def unload(self, drive: int = 0, slot: int | None = None) -> None:
        log.info("%s: unload drive %d%s", self.name, drive, "" if slot is None else f" into slot {slot}")
        self._call(lambda: self.library.unload(drive, slot))

    def close(self) -> None:
        self._closed = True
