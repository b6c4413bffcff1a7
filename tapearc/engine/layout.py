"""How tapearc's items sit on a medium: reading and writing items, the label, the tape files.

An *item* (label, generation header, chunk, trailer) is one byte string framed into records of
``record_size`` bytes (formats/SPEC.md, "Record framing"). This module turns TapeDrive records
into items and back, and walks the tape files of a medium.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from tapearc import format as fmt
from tapearc.engine.identity import damaged_label
from tapearc.errors import (
    FormatError,
    MalformedError,
    NotTapearcMediumError,
    TapearcError,
    TruncatedError,
)
from tapearc.media.base import Mark, TapeDrive, WriteStatus, blank_check

MAGIC_LABEL = fmt.LABEL_MAGIC
MAGIC_GENHDR = fmt.GENERATION_MAGIC
MAGIC_CHUNK = fmt.CHUNK_MAGIC
MAGIC_TRAILER = fmt.TRAILER_MAGIC


@dataclass(slots=True)
class Item:
    """One item read from the medium."""

    magic: bytes
    data: bytes
    tape_file: int
    record: int  # index within the tape file of the item's first record
    logical: int  # logical position of the item's first record
    record_sizes: list[int]

    @property
    def record_count(self) -> int:
        return len(self.record_sizes)


def read_item(drive: TapeDrive) -> Item | Mark:
    """Read the next item: its first record, then as many records as its prefix says."""
    pos = drive.position()
    first = drive.read_record()
    if isinstance(first, Mark):
        return first
    try:
        prefix = fmt.peek_item(first)
    except TapearcError as e:
        raise e.at(medium=drive.name, tape_file=pos.file, record=pos.record) from None
    total = prefix.total_len
    if len(first) >= total:
        if len(first) > total:
            raise MalformedError(f"record holds {len(first)} bytes but its item declares {total}").at(
                medium=drive.name, tape_file=pos.file, record=pos.record
            )
        return Item(bytes(prefix.magic), first, pos.file, pos.record, pos.logical, [len(first)])
    parts = [first]
    have = len(first)
    sizes = [len(first)]
    while have < total:
        rec = drive.read_record()
        if isinstance(rec, Mark):
            raise TruncatedError(
                f"item {prefix.magic.decode('ascii', 'replace')} declares {total} bytes but the tape file "
                f"ends ({rec.value}) after {have}"
            ).at(medium=drive.name, tape_file=pos.file, record=pos.record)
        parts.append(rec)
        have += len(rec)
        sizes.append(len(rec))
    if have != total:
        raise MalformedError(
            f"item {prefix.magic.decode('ascii', 'replace')} declares {total} bytes but its records hold {have}"
        ).at(medium=drive.name, tape_file=pos.file, record=pos.record)
    return Item(bytes(prefix.magic), b"".join(parts), pos.file, pos.record, pos.logical, sizes)


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


def read_label(drive: TapeDrive) -> fmt.Label:
    """Rewind and read the volume label. Raises NotTapearcMediumError for a blank or foreign medium.

    Returns with the drive at the start of tape file 1, or, when labeling was interrupted before
    the label's filemark, at the end of data in tape file 0 (``drive.position().file == 0``)."""
    drive.rewind()
    try:
        rec = drive.read_record()
    except TapearcError as e:
        raise NotTapearcMediumError(
            f"cannot read a volume label ({e.message})",
            hint="is this a tapearc medium? label a new one by backing up to it",
        ).at(medium=drive.name, tape_file=0, record=0) from None
    if rec is Mark.END_OF_DATA and (content := blank_check(drive)) is not None:
        raise content.at(medium=drive.name)  # not blank: foreign bytes or a damaged label
    if isinstance(rec, Mark):
        raise NotTapearcMediumError(
            "medium is blank (no volume label)"
            if rec is Mark.END_OF_DATA
            else "medium starts with a filemark, not a tapearc volume label",
        ).at(medium=drive.name, tape_file=0, record=0)
    if rec[:7] != MAGIC_LABEL[:7]:
        raise NotTapearcMediumError(
            "not a tapearc medium: the first record is not a tapearc volume label",
            hint="use another medium, or a blank one",
        ).at(medium=drive.name, tape_file=0, record=0)
    try:
        label = fmt.decode_label(rec)
    except TapearcError as e:
        raise e.at(medium=drive.name, tape_file=0, record=0) from None
    nxt = drive.read_record()
    if nxt is Mark.END_OF_DATA:
        # labeling was interrupted after the label record, before its filemark: the medium is
        # labeled and holds nothing else; the drive stays in tape file 0 (an append closes it)
        return label
    if nxt is not Mark.FILEMARK:
        raise MalformedError("the volume label is not followed by a filemark").at(
            medium=drive.name, tape_file=0, record=1
        )
    return label


@dataclass(frozen=True, slots=True)
class LabelProbe:
    """What a loaded medium is (:func:`probe_label`)."""

    blank: bool
    label: fmt.Label | None
    foreign: str | None = None  # why it is neither blank nor ours
    # the error that refuses a write on it: NotTapearcMediumError for foreign content,
    # DamagedDataError / FormatError for a damaged tapearc label (never blank), else None
    error: TapearcError | None = None

    @property
    def damaged(self) -> bool:
        """A tapearc medium whose label is damaged (damage, not foreign content)."""
        return isinstance(self.error, FormatError)

    @property
    def state(self) -> str:
        """``blank``, ``tapearc`` (labeled), ``damaged`` (a tapearc label that does not decode),
        or ``foreign`` (anything else, an unreadable first record included)."""
        if self.blank:
            return "blank"
        if self.label is not None:
            return "tapearc"
        return "damaged" if self.damaged else "foreign"


def probe_label(drive: TapeDrive) -> LabelProbe:
    """Rewind and read the medium's first record: provably blank, a tapearc label, or something
    else. Never raises for what the medium holds (the answer says it); the label is read by
    :func:`read_label` (the drive is then where read_label leaves it).

    A first read that finds end of data is blank only when the backend says the medium is (a
    ``sim:`` image must be missing or empty: :func:`tapearc.media.base.blank_check`). A label
    that starts like tapearc's but does not decode is a damaged medium, not a foreign one.
    """
    drive.rewind()
    try:
        first = drive.read_record()
    except TapearcError as e:
        return LabelProbe(False, None, f"its first record cannot be read ({e.message})", e)
    if first is Mark.END_OF_DATA:
        err = blank_check(drive)
        if err is None:
            return LabelProbe(True, None)
        return LabelProbe(False, None, str(err.details.get("found") or err.message), err)
    try:
        return LabelProbe(False, read_label(drive))
    except FormatError as e:
        err = damaged_label(e, drive.name)
        return LabelProbe(False, None, err.message, err)
    except TapearcError as e:
        return LabelProbe(False, None, e.message, e.at(medium=drive.name))


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


def scan_tape_files(drive: TapeDrive) -> tuple[list[GenerationFile], bool]:
    """As :func:`scan_generation_files`, and whether the medium ends inside a tape file (of any
    kind: a backup was interrupted there, and an append must close it with a filemark first)."""
    from tapearc.engine.tapefiles import walk_tape_files

    files = [tf for tf in walk_tape_files(drive) if tf.kind != "label"]  # closed is known once walked
    found = [
        GenerationFile(tape_file=tf.tape_file, logical=tf.logical, header=tf.header, closed=tf.closed)
        for tf in files
        if tf.kind == "generation" and tf.header is not None
    ]
    return found, bool(files) and not files[-1].closed and not files[-1].torn


def expect_format_error(exc: BaseException) -> FormatError | None:
    return exc if isinstance(exc, FormatError) else None
