"""Labeling a medium: the volume label that starts every tapearc medium."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import NoReturn

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine.identity import known_medium_uuid, refuse_unless_blank
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.tapefiles import LabelProbe, probe_label
from tapearc.errors import (
    MediumInUseError,
    MediumUnavailableError,
    NotTapearcMediumError,
    UsageError,
    WriteProtectedError,
)
from tapearc.media.base import TapeDrive

DEFAULT_RECORD_SIZE = 1024 * 1024


def label_medium(
    drive: TapeDrive,
    catalog: Catalog,
    *,
    force: bool = False,
    text: str = "",
    media_set: uuid.UUID | None = None,
    sequence: int | None = None,
    record_size: int | None = None,
    clock: Callable[[], float] = time.time,
    barcode: str | None = None,
    erasing: Callable[[str], None] | None = None,
    by_place: bool = True,
) -> fmt.Label:
    """Write a new volume label at the start of the medium: a new media set (sequence 1), or
    ``sequence`` of ``media_set``. A medium that is not provably blank is refused unless
    ``force``: a labeled one (MediumInUseError), foreign content (NotTapearcMediumError), a
    damaged label (DamagedDataError / FormatError, with a hint to scan), a medium the catalog
    holds generations for (at its ``sim:``/``dir:`` path unless not ``by_place`` -- the path of
    a drive whose tapes are swapped -- or under ``barcode``). With ``force``,
    ``erasing(what)`` is told what is about to be destroyed before anything is written."""
    if not drive.writable:
        raise WriteProtectedError("medium is write-protected; nothing was written").at(medium=drive.name)
    if (media_set is None) != (sequence is None):
        raise UsageError("--media-set and --sequence go together")
    if sequence is not None and sequence < 1:
        raise UsageError("--sequence starts at 1")
    p = probe_label(drive)
    found = known_medium_uuid(catalog, drive.name, barcode, by_place=by_place) if p.blank else None
    held = None if found is None else found[1]
    if (not p.blank or held is not None) and not force:
        _refuse(drive, p, held, catalog, barcode, by_place)
    if force and erasing is not None and (not p.blank or held is not None):
        erasing(_what_is_erased(p, held))
    rs = record_size or min(DEFAULT_RECORD_SIZE, drive.max_record_size)
    if rs > drive.max_record_size:
        raise UsageError(
            f"record size {rs} exceeds the largest record drive {drive.name} takes ({drive.max_record_size})"
        )
    label = fmt.Label(
        medium_uuid=uuid.uuid4(),
        media_set_uuid=media_set or uuid.uuid4(),
        sequence=sequence or 1,
        record_size=rs,
        created=int(clock()),
        text=text,
    )
    write_label(drive, label)
    erased = p.label.medium_uuid if p.label is not None else None if found is None else found[0]
    if erased is not None:  # what the catalog knew on it is gone: it counts for no retention rule
        from tapearc.catalog.pools import retire  # (pools and retention: not imported by every backup)

        retire(catalog, erased, label.created)
        catalog.forget_medium_files(erased, from_file=0)
    catalog.record_medium(label, drive.name)
    return label


def write_label(drive: TapeDrive, label: fmt.Label, key_record: fmt.WrappedKey | None = None) -> None:
    """Write ``label`` at the start of the medium, then (a medium of an encrypted media set) the
    set's ``key_record``, then the filemark: the one place a label is written (``label_medium``,
    a backup's first medium, the next medium of a spanning backup)."""
    drive.rewind()
    drive.write_record(fmt.encode_label(label))
    if key_record is not None:
        drive.write_record(fmt.encode_key_record(key_record))
    drive.write_filemark()


def label_next_medium(
    media: MediaSource,
    catalog: Catalog,
    current: fmt.Label,
    clock: Callable[[], float] = time.time,
    key_record: fmt.WrappedKey | None = None,
) -> tuple[TapeDrive, fmt.Label]:
    """Load a blank medium for the sequence after ``current`` in its media set, label it (with
    the set's ``key_record`` after the label: an encrypted set) and record it in the catalog (a
    backup spanning media)."""
    media.release()
    try:
        drive = media.blank_for(current.media_set_uuid, current.sequence + 1)
    except MediumUnavailableError:
        if media.spare is None:
            raise
        drive = media.spare()  # a media pool's recyclable medium (engine.pools.load_spare)
    if not drive.writable:
        raise WriteProtectedError("the next medium is write-protected").at(medium=drive.name)
    label = fmt.Label(
        medium_uuid=uuid.uuid4(),
        media_set_uuid=current.media_set_uuid,
        sequence=current.sequence + 1,
        record_size=current.record_size,
        created=int(clock()),
        text=media.loaded_barcode() or "",
    )
    write_label(drive, label, key_record)
    catalog.record_medium(label, drive.name)
    return drive, label


def _refuse(
    drive: TapeDrive, p: LabelProbe, held: str | None, catalog: Catalog, barcode: str | None, by_place: bool
) -> NoReturn:
    """Labeling without ``force`` a medium that is not provably blank: say why not."""
    if p.damaged and p.error is not None:  # a damaged tapearc label: damage, exit 20/21
        raise p.error.at(medium=drive.name)
    if held is not None:
        refuse_unless_blank(drive, catalog, barcode, by_place=by_place)
    tape = f"the tape with barcode {barcode}" if barcode else "medium"
    if p.label is not None:
        lab = p.label
        raise MediumInUseError(
            f"{tape} is already labeled: medium {lab.medium_uuid}, sequence {lab.sequence} of media set "
            f"{lab.media_set_uuid}"
            + (f" ({lab.text})" if lab.text else "")
            + "; labeling would erase it; nothing was written",
            hint="add --force to erase it and label it anew",
        ).at(medium=drive.name)
    raise NotTapearcMediumError(
        f"{tape} holds something that is not tapearc's ({p.foreign}); labeling would erase it; nothing was written",
        hint="add --force to erase it and label it anew",
    ).at(medium=drive.name)


def _what_is_erased(p: LabelProbe, held: str | None) -> str:
    """What labeling with ``force`` destroys, in words."""
    if p.label is not None:
        lab = p.label
        return f"a tapearc medium (medium {lab.medium_uuid}, sequence {lab.sequence} of media set {lab.media_set_uuid})"
    if held is not None:
        return f"a medium that reads as blank but for which the catalog holds {held}"
    return p.foreign or "what the medium holds"
