"""How tapearc's items sit on a medium: writing items, the label, the generation files.

An *item* (label, generation header, chunk, trailer) is one byte string framed into records of
``record_size`` bytes (formats/SPEC.md, "Record framing"). This module writes items as records
and lists a medium's generation files for an append or a catalog sync. Reading is
:mod:`tapearc.engine.tapefiles`' (the one reader of tape files); its ``Item``, ``read_item``,
``read_label``, ``probe_label`` and ``LabelProbe`` are importable from here too.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from tapearc import format as fmt
from tapearc.engine.tapefiles import Item as Item
from tapearc.engine.tapefiles import LabelProbe as LabelProbe
from tapearc.engine.tapefiles import probe_label as probe_label
from tapearc.engine.tapefiles import read_item as read_item
from tapearc.engine.tapefiles import read_label as read_label
from tapearc.engine.tapefiles import walk_tape_files
from tapearc.errors import FormatError
from tapearc.media.base import TapeDrive, WriteStatus

MAGIC_LABEL = fmt.LABEL_MAGIC
MAGIC_GENHDR = fmt.GENERATION_MAGIC
MAGIC_CHUNK = fmt.CHUNK_MAGIC
MAGIC_TRAILER = fmt.TRAILER_MAGIC


def write_item(drive: TapeDrive, data: bytes | memoryview, record_size: int) -> tuple[WriteStatus, int]:
    """Write one item as records of ``record_size``; returns the last status and the record count.

    Early warning does not stop an item half-way: the item is finished (a few more records fit in
    the early-warning zone), and the caller decides what to do next.
    """
    status = WriteStatus.OK
    records = fmt.split_records(data, record_size)
    for rec in records:
        st = drive.write_record(rec)
        if st is WriteStatus.EARLY_WARNING:
            status = st
    return status, len(records)


def write_stream(
    drive: TapeDrive, first: bytes, pieces: Iterable[bytes | bytearray | memoryview], record_size: int
) -> tuple[WriteStatus, int]:
    """Write one item given as ``first`` then ``pieces`` (a trailer streamed from its stores) as
        records of ``record_size``, like :func:`write_item` (the same records), holding one record in
    memory."""
    status = WriteStatus.OK
    rec = bytearray(record_size)
    fill = 0
    nrec = 0
    for piece in itertools.chain((first,), pieces):
        mv = memoryview(piece).cast("B")
        i = 0
        while i < len(mv):
            n = min(record_size - fill, len(mv) - i)
            rec[fill : fill + n] = mv[i : i + n]
            fill += n
            i += n
            if fill == record_size:  # a copy: a medium may keep the buffer it is given
                if drive.write_record(bytes(rec)) is WriteStatus.EARLY_WARNING:
                    status = WriteStatus.EARLY_WARNING
                nrec += 1
                fill = 0
    if fill:
        if drive.write_record(bytes(rec[:fill])) is WriteStatus.EARLY_WARNING:
            status = WriteStatus.EARLY_WARNING
        nrec += 1
    return status, nrec


@dataclass(slots=True)
class GenerationFile:
    """A generation tape file as found on a medium."""

    tape_file: int
    logical: int  # logical position of its first record (the generation header)
    header: fmt.GenerationHeader
    trailer: fmt.Trailer | None = None  # filled when the file was read to its end
    closed: bool = True  # ends with a filemark (False: the medium ends inside it)
    chunks: list[fmt.ChunkIndexEntry] = field(default_factory=list)


def new_label(record_size: int, now: int, text: str = "") -> fmt.Label:
    return fmt.Label(
        medium_uuid=uuid.uuid4(),
        media_set_uuid=uuid.uuid4(),
        sequence=1,
        record_size=record_size,
        created=now,
        text=text,
    )


def scan_generation_files(drive: TapeDrive) -> list[GenerationFile]:
    """Walk the tape files after the label (engine.tapefiles, the one reader of tape files) and
    return the generation files, each from its generation header.

    Leaves the medium at end of data. A last tape file that the medium ends inside (an
    interrupted backup: no filemark) is returned with ``closed=False``. Tape files that are not
    generation files (interrupted before their header was whole, damaged, foreign, empty) are
    left out: :func:`scan_tape_files` says whether the medium ends inside one.
    """
    return scan_tape_files(drive)[0]


def scan_tape_files(drive: TapeDrive) -> tuple[list[GenerationFile], bool, int]:
    """As :func:`scan_generation_files`, whether the medium ends inside a tape file (of any
    kind: a backup was interrupted there, and an append must close it with a filemark first),
    and the number of its last tape file (0: the label alone)."""
    files = [tf for tf in walk_tape_files(drive) if tf.kind != "label"]  # closed is known once walked
    found = [
        GenerationFile(tape_file=tf.tape_file, logical=tf.logical, header=tf.header, closed=tf.closed)
        for tf in files
        if tf.kind == "generation" and tf.header is not None
    ]
    last = files[-1].tape_file if files else 0
    return found, bool(files) and not files[-1].closed and not files[-1].torn, last


def expect_format_error(exc: BaseException) -> FormatError | None:
    return exc if isinstance(exc, FormatError) else None


def misplaced(
    label: fmt.Label, hdr: fmt.GenerationHeader, tape_file: int, seen: dict[tuple[uuid.UUID, int], int]
) -> tuple[str, str] | None:
    """(``foreign`` or ``duplicate``, why) generation tape file ``tape_file`` (header ``hdr``) does not belong on the medium of
    ``label``, or None: its header names another medium or media set (a tape file, or the label,
    copied from another medium: every CRC valid, wrong place), or its run's part is already in
    tape file ``seen[(run, part)]`` (a duplicated tape file); None when it belongs there.
    ``seen`` is updated."""
    if hdr.media_set_uuid != label.media_set_uuid or hdr.medium_uuid != label.medium_uuid:
        return "foreign", (
            f"its generation header is of medium {hdr.medium_uuid} of media set {hdr.media_set_uuid}, but the "
            f"label is of medium {label.medium_uuid} of media set {label.media_set_uuid}: a tape file (or the "
            "label) copied from another medium"
        )
    first = seen.setdefault((hdr.run_uuid, hdr.part), tape_file)
    if first != tape_file:
        return "duplicate", (
            f"a second copy of tape file {first} (the same backup run of volume {hdr.volume_name!r} "
            f"generation {hdr.generation}): a duplicated tape file"
        )
    return None
