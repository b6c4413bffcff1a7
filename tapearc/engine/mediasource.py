"""Getting the medium a job needs into the drive: from a changer, an operator, or as it is.

A job names a drive (``--media``) and optionally a changer (``--changer``). ``sim:DIR`` where
DIR is a simulated library (tapesim library) names both: its drive 0 and its slots. When the
job needs another medium (the next one of a media set while spanning, or a given medium while
restoring) the source asks the changer for it, checking each candidate's label: it never
writes on a medium of another set or on a labeled medium when it wants a blank one.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable

from tapearc.catalog.db import Catalog
from tapearc.engine.identity import known_medium
from tapearc.engine.tapefiles import LabelProbe, probe_label
from tapearc.errors import MediumUnavailableError, TapearcError
from tapearc.media.base import TapeDrive
from tapearc.media.changer import AttendedChanger, Changer, ChangerStatus, DriveBayStatus

log = logging.getLogger(__name__)


def library_dir(spec: str) -> str | None:
    """The folder of a simulated library named by ``sim:DIR``, else None."""
    if spec.startswith("sim:"):
        path = spec[4:]
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "library.json")):
            return path
    return None


class MediaSource:
    """The drive of a job and the means to change its medium."""

    def __init__(
        self,
        spec: str,
        *,
        write: bool,
        changer: Changer | None = None,
        catalog: Catalog | None = None,
        drive: TapeDrive | None = None,
        operator_timeout: float | None = None,
        drive_index: int = 0,
    ) -> None:
        from tapearc.media import open_medium

        self._open_medium = open_medium
        self.write = write
        self.catalog = catalog
        self.operator_timeout = operator_timeout
        #: the changer's number of the drive this source uses (a library with several drives)
        self.drive_index = drive_index
        lib = library_dir(spec)
        if lib is not None and changer is None:
            from tapearc.media.changers import open_changer

            changer = open_changer(f"sim:{lib}")
            spec = f"sim:{os.path.join(lib, 'drive-0.tap')}"
        self.spec = spec
        self.changer: Changer | None = changer
        self.drive: TapeDrive | None = drive
        #: when no blank medium is left for a spanning backup: loads a recyclable medium of the
        #: backup's media pool (engine.pools.load_spare), which is then labelled as the next one
        self.spare: Callable[[], TapeDrive] | None = None

    @classmethod
    def fixed(cls, drive: TapeDrive, catalog: Catalog | None = None) -> MediaSource:
        """A source that only has the medium already in ``drive``."""
        src = cls(drive.name, write=drive.writable, drive=drive, catalog=catalog)
        src._fixed = True
        return src

    _fixed = False

    @property
    def can_change(self) -> bool:
        return self.changer is not None and not self._fixed

    @property
    def is_operator(self) -> bool:
        return self.changer is not None and getattr(self.changer, "name", "") == "operator"

    def _open(self, write: bool | None = None) -> TapeDrive:
        w = self.write if write is None else write
        if self.spec.startswith("sim:") and not os.path.exists(self.spec[4:]):
            in_library = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(self.spec[4:])), "library.json"))
            if in_library or (self.can_change and not self._fixed):
                # a missing image in a library's or operator's drive means "no tape", not "make one"
                raise MediumUnavailableError(f"no tape in drive {self.spec}")
        return self._open_medium(self.spec, write=w)

    def current(self) -> TapeDrive:
        """The drive with whatever medium it holds (loading the first slot into an empty
        library drive)."""
        if self.drive is not None:
            return self.drive
        try:
            self.drive = self._open()
        except MediumUnavailableError:
            ch = self.changer
            if ch is None or not self.can_change or self.is_operator:
                raise
            st = ch.status()
            if self._bay(st) is not None:
                raise
            full = [s for s in st.slots if s.full]
            if not full:
                raise MediumUnavailableError(f"the drive is empty and changer {ch.name} holds no tape") from None
            ch.load(full[0].number, self.drive_index)
            self.drive = self._open()
        return self.drive

    def release(self) -> None:
        if self.drive is not None:
            self.drive.close()
            self.drive = None

    def close(self) -> None:
        self.release()
        if self.changer is not None and hasattr(self.changer, "close"):
            self.changer.close()

    def __enter__(self) -> MediaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ finding media

    def loaded_barcode(self) -> str | None:
        if self.changer is None or self.is_operator:
            return None
        try:
            st = self.changer.status()
        except TapearcError:
            return None
        bay = self._bay(st)
        return bay.barcode if bay is not None else None

    def _bay(self, st: ChangerStatus) -> DriveBayStatus | None:
        """This source's drive in a changer status, when it holds a medium."""
        bay = next((d for d in st.drives if d.number == self.drive_index), None)
        return bay if bay is not None and bay.full else None

    def obtain(
        self, describe: str, accept: Callable[[LabelProbe], bool | str], prefer: list[str] | None = None
    ) -> TapeDrive:
        """Get a medium for which ``accept(probe)`` is True into the drive and return the drive.

        ``accept`` returns True, or a reason why the loaded medium is not the one wanted.
        ``prefer``: barcodes to try first.
        """
        reasons: list[str] = []
        # 1. what is in the drive now
        try:
            d = self.current()
            verdict = accept(probe_label(d))
            if verdict is True:
                return d
            reasons.append(f"the drive holds {verdict}")
        except MediumUnavailableError as e:
            reasons.append(e.message)
        if not self.can_change:
            raise MediumUnavailableError(
                f"{describe} is needed but {reasons[-1]}, and no changer is configured",
                hint="give --changer (mtx:/dev/sgN, serial:PORT, sim:DIR or operator)",
            ).at(medium=self.spec)
        self.release()
        if self.is_operator:
            return self._from_operator(describe, accept)
        return self._from_slots(describe, accept, prefer, reasons)

    def _from_operator(self, describe: str, accept: Callable[[LabelProbe], bool | str]) -> TapeDrive:
        """Ask the operator for the medium until one is accepted (or the wait times out)."""

        def check() -> bool | str:
            try:
                d = self._open()
            except MediumUnavailableError as e:
                return e.message
            v = accept(probe_label(d))
            if v is True:
                self.drive = d
                return True
            d.close()
            return f"the drive holds {v}"

        assert isinstance(self.changer, AttendedChanger)  # is_operator
        self.changer.wait_for_medium(describe, check, timeout=self.operator_timeout)
        assert self.drive is not None
        return self.drive

    def _from_slots(
        self, describe: str, accept: Callable[[LabelProbe], bool | str], prefer: list[str] | None, reasons: list[str]
    ) -> TapeDrive:
        """Load the changer's slots (``prefer``'s barcodes first) until a medium is accepted."""
        ch = self.changer
        assert ch is not None
        st = ch.status()
        if self._bay(st) is not None:
            ch.unload(self.drive_index)
            st = ch.status()
        order = [s for s in st.slots if s.full]
        if prefer:
            order.sort(key=lambda s: (s.barcode not in prefer, s.number))
        for s in order:
            ch.load(s.number, self.drive_index)
            try:
                d = self._open()
            except MediumUnavailableError as e:
                reasons.append(f"slot {s.number}: {e.message}")
                ch.unload(self.drive_index, s.number)
                continue
            verdict = accept(probe_label(d))
            if verdict is True:
                self.drive = d
                return d
            reasons.append(f"slot {s.number} ({s.barcode or 'no barcode'}) holds {verdict}")
            d.close()
            ch.unload(self.drive_index, s.number)
        raise MediumUnavailableError(
            f"{describe} is needed and changer {ch.name} has none: " + "; ".join(reasons[-4:]),
            hint="load the medium into the changer, or a blank one",
        )

    def blank_for(self, set_uuid: uuid.UUID, sequence: int) -> TapeDrive:
        """A blank medium to become ``sequence`` of the set."""
        known: set[str] = set()
        if self.catalog is not None:
            known = set(self.catalog.known_labels())

        def accept(p: LabelProbe) -> bool | str:
            if p.blank:
                held = (
                    None
                    if self.catalog is None
                    else known_medium(self.catalog, self.spec, self.loaded_barcode(), by_place=False)
                )
                if held is None:
                    return True
                return f"a medium that reads as blank but for which the catalog holds {held}"
            if p.label is not None:
                return f"sequence {p.label.sequence} of media set {p.label.media_set_uuid}, not a blank medium"
            return f"a medium that is not tapearc's ({p.foreign})"

        prefer = None
        if self.changer is not None and not self.is_operator:
            try:
                prefer = [
                    s.barcode for s in self.changer.status().slots if s.full and s.barcode and s.barcode not in known
                ]
            except TapearcError:
                prefer = None
        return self.obtain(f"a blank medium for sequence {sequence} of media set {set_uuid}", accept, prefer)

    def medium(
        self, medium_uuid: uuid.UUID, set_uuid: uuid.UUID, sequence: int, barcode: str | None = None
    ) -> TapeDrive:
        """The given medium of a set."""

        def accept(p: LabelProbe) -> bool | str:
            if p.label is not None and p.label.medium_uuid == medium_uuid:
                return True
            if p.label is not None:
                return f"sequence {p.label.sequence} of media set {p.label.media_set_uuid}"
            return "a blank medium" if p.blank else f"a foreign medium ({p.foreign})"

        name = f"medium {barcode + ' ' if barcode else ''}(sequence {sequence} of media set {set_uuid})"
        return self.obtain(name, accept, [barcode] if barcode else None)

    def medium_by_sequence(self, set_uuid: uuid.UUID, sequence: int) -> TapeDrive:
        def accept(p: LabelProbe) -> bool | str:
            if p.label is not None and p.label.media_set_uuid == set_uuid and p.label.sequence == sequence:
                return True
            if p.label is not None:
                return f"sequence {p.label.sequence} of media set {p.label.media_set_uuid}"
            return "a blank medium" if p.blank else f"a foreign medium ({p.foreign})"

        return self.obtain(f"sequence {sequence} of media set {set_uuid}", accept)
