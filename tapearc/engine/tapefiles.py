"""The one reader of a medium's tape files: where each begins and ends, and what it is.

``list``, ``verify``, ``scan`` (and through ``scan_generation_files`` the backup's append and
the restore's catalog sync) all walk a medium with :func:`walk_tape_files`, so they agree on
which tape files exist and what each one is:

* ``label``: tape file 0, the volume label;
* ``generation``: a tape file starting with a readable generation header (a generation file, or
  one part of a generation spanning media). ``closed`` is False when the medium ends inside it
  (a backup interrupted while writing its chunks, trailer or end record);
* ``interrupted``: the first item is cut short by the end of the tape file (a backup killed while
  writing the generation header: a record of 50 of its 138 bytes);
* ``damaged``: the first item is unreadable or not a valid generation header (CRC error, bad
  magic of another tapearc item, a read error);
* ``foreign``: the first record is not a tapearc item at all;
* ``empty``: a filemark right at the start of the tape file.

A medium whose end is a record cut short by an interrupted write (the device reports
``image_truncated``: a SIMH image's torn last record, a ``dir:`` medium's empty record file) ends
with one more tape file, ``interrupted`` and ``torn``, when the cut record would have started a
new tape file: it has no readable record, and the next backup writes over it.

The records of one tape file are read through :class:`FileRecords`, which never reads past the
tape file's filemark: once it returned a mark it returns that mark again without touching the
medium. An item cut short by the filemark therefore cannot make a reader swallow the next tape
file (issue 12, finding 5: ``list`` used to count the next tape file's records into the cut
one).

A walk is forward-only unless the consumer leaves a tape file without reading it to its end:
then the walker spaces over the rest (one filemark), as the catalog sync and scan do (a medium
that cannot space, the stream ``-``, raises its error there).

Public API (the one tape-file reader; :mod:`tapearc.engine.layout` re-exports its label and item
readers under their old names):

* :func:`read_label` -- rewind and read the volume label (raises
  NotTapearcMediumError for a blank or foreign medium, the format's errors for a damaged one);
  :func:`probe_label` -- the same read, answered as a
  :class:`LabelProbe` (blank, labeled, damaged, foreign) that never raises
  for what the medium holds. Every reader of the label goes through these two.
* :func:`walk_tape_files` -- the tape files of a medium, each a :class:`TapeFile` (``kind`` one of
  :data:`KINDS`, ``header`` for a generation, ``records`` to read it from record 0).
* :class:`FileRecords` -- the records of one tape file, never past its filemark.
* :func:`read_file_item` -- the next :class:`Item` of a tape file from its
  :class:`FileRecords` (raises on damage; the error's ``details["sizes"]``/``["magic"]`` say what
  was read).
* :class:`FileItems` -- the items of a tape file with resynchronisation after damage, the one
  item reader of ``verify``, ``scan --deep`` and ``list``: yields each Item read whole and a
  :class:`Damage` (record, error, records stepped over, what was read of it) for each record
  span that makes none (every stray record on its own), reads again the records of an item
  whose framing cannot be trusted (its own, or the consumer's verdict through ``damaged()``),
  counts the records and bytes read, says how the tape file ``ended``, and with ``ahead`` reads
  the records in a thread (verify).
* :func:`read_item` -- one item at the drive's position, for a reader that
  LOCATEs to an item it knows (the trailer from its end record, a chunk from the catalog).

Memory: an item is assembled in memory (one chunk: a few MiB), except a trailer larger than
:data:`SPOOL_ITEM_OVER`, whose records are written to a temporary file as they are read
(``Item.spool``); :meth:`Item.trailer` reads it with :class:`tapearc.format.TrailerFile`, so
reading a trailer back costs a small amount per chunk, not 16 bytes per data block.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import IO, BinaryIO, cast

from tapearc import format as fmt
from tapearc.engine.identity import damaged_label
from tapearc.engine.pipeline import RecordAhead
from tapearc.errors import (
    CRCError,
    FormatError,
    MalformedError,
    NotTapearcMediumError,
    TapearcError,
    TempFileError,
    TruncatedError,
)
from tapearc.media.base import Mark, TapeDrive, blank_check

MAGICS7 = tuple(
    m[:7] for m in (fmt.LABEL_MAGIC, fmt.GENERATION_MAGIC, fmt.CHUNK_MAGIC, fmt.TRAILER_MAGIC, fmt.TRAILER_END_MAGIC)
)

MAX_READ_ERRORS = 16  # read errors in a row after which a reader gives up on a tape file

KINDS = ("label", "generation", "interrupted", "damaged", "foreign", "empty")


#: A trailer item larger than this is spooled to a temporary file as its records are read,
#: not assembled in memory (16 bytes of digest per data block: 16 MB per GiB of 4 KiB blocks).
SPOOL_ITEM_OVER = 1 << 20


@dataclass(slots=True)
class Item:
    """One item read from the medium. A large trailer is ``spool``-ed: its bytes are in a
    temporary file and ``data`` holds only its first record (its header); read it with
    :meth:`trailer`, its records with :meth:`records`."""

    magic: bytes
    data: bytes
    tape_file: int
    record: int  # index within the tape file of the item's first record
    logical: int  # logical position of the item's first record
    record_sizes: list[int]
    spool: IO[bytes] | None = None  # the whole item, when spooled (then data is its first record)

    @property
    def record_count(self) -> int:
        return len(self.record_sizes)

    @property
    def length(self) -> int:
        return sum(self.record_sizes)

    def records(self) -> list[bytes]:
        """The bytes of each of its records (read back from the spool when spooled)."""
        if self.spool is None:
            ends = list(accumulate(self.record_sizes))
            return [self.data[a:b] for a, b in pairwise([0, *ends])]
        return read_records(self.spool, self.record_sizes)

    def trailer(self) -> fmt.TrailerFile:
        """The trailer this item is, checked (raises its damage); its digest table is read from
        the spool (or the item's bytes) when asked, never copied whole. A read of the spool that
        fails or comes short is a :class:`TempFileError`, never taken for a damaged trailer."""
        if self.spool is None:
            return fmt.TrailerFile(io.BytesIO(self.data), self.length)
        f = SpoolReader(self.spool, self.length, "the trailer read back")
        return fmt.TrailerFile(cast("BinaryIO", f), self.length)

    def close(self) -> None:
        """Remove the spool (if any); the item's bytes beyond ``data`` are gone."""
        if self.spool is not None:
            self.spool.close()


def spool_error(what: str, e: OSError) -> TempFileError:
    """The one-line error of a temporary file that cannot be written (``$TMPDIR`` full)."""
    import tempfile  # (temporary files are for large items and indexes: not imported by every command)

    return TempFileError(
        f"cannot keep {what} in a temporary file in {tempfile.gettempdir()}: {e.strerror or e}",
        hint="set TMPDIR to a folder with room (about 16 bytes per data block of the generation, 33 for verify)",
    )


def spool_read_error(what: str, e: OSError) -> TempFileError:
    """The one-line error of a temporary file that cannot be read back (an I/O error, the file
    removed or cut underneath by something else)."""
    import tempfile

    return TempFileError(
        f"cannot read back {what} from its temporary file in {tempfile.gettempdir()}: {e.strerror or e}",
        hint="check the file system of that folder (or set TMPDIR to another one) and run the command again",
    )


SHORT = "the temporary file is shorter than what was written to it"


def read_records(f: IO[bytes], sizes: list[int], what: str = "the trailer read back") -> list[bytes]:
    """The records of ``sizes`` bytes each from the start of the temporary file ``f``."""
    try:
        f.seek(0)
        out = [f.read(n) for n in sizes]
    except OSError as e:
        raise spool_read_error(what, e) from None
    if any(len(r) != n for r, n in zip(out, sizes, strict=True)):
        raise spool_read_error(what, OSError(errno.EIO, SHORT))
    return out


class SpoolReader:
    """The reads :class:`tapearc.format.TrailerFile` makes of a temporary file of ``length``
    bytes: an OSError, or fewer bytes than were written there, is a :class:`TempFileError`
    naming ``what`` and the folder (never a traceback, never taken for damage on the medium)."""

    def __init__(self, f: IO[bytes], length: int, what: str) -> None:
        self.f, self.length, self.what = f, length, what

    def seek(self, pos: int, whence: int = 0) -> int:
        try:
            return self.f.seek(pos, whence)
        except OSError as e:
            raise spool_read_error(self.what, e) from None

    def tell(self) -> int:
        return self.f.tell()

    def read(self, size: int = -1) -> bytes:
        try:
            pos = self.f.tell()
            got = self.f.read(size)
        except OSError as e:
            raise spool_read_error(self.what, e) from None
        want = self.length - pos if size < 0 else min(size, self.length - pos)
        if len(got) < want:
            raise spool_read_error(self.what, OSError(errno.EIO, SHORT))
        return got


class _Parts:
    """The records of one item as they are read: in a list, or for a trailer larger than
    SPOOL_ITEM_OVER written to a temporary file as they come (memory: one record)."""

    def __init__(self, first: bytes, magic: bytes, total: int) -> None:
        self.first, self.magic = first, magic
        self.sizes = [len(first)]
        self.have = len(first)
        self.kept: list[bytes] = [first]
        self.file: IO[bytes] | None = None
        if magic == fmt.TRAILER_MAGIC and total > SPOOL_ITEM_OVER:
            import tempfile

            try:  # the file is handed to the Item, closed by it or with it
                self.file = tempfile.TemporaryFile(prefix="tapearc-trailer-")  # noqa: SIM115
                self.file.write(first)
            except OSError as e:
                raise spool_error("the trailer read back", e) from None

    def add(self, rec: bytes) -> None:
        self.sizes.append(len(rec))
        self.have += len(rec)
        if self.file is not None:
            try:
                self.file.write(rec)
            except OSError as e:
                raise spool_error("the trailer read back", e) from None
        else:
            self.kept.append(rec)

    def records(self) -> list[bytes]:
        """Every record read (the damage paths: read back from the spool, which is removed)."""
        if self.file is None:
            return self.kept
        try:
            return read_records(self.file, self.sizes)
        finally:
            self.file.close()

    def close(self) -> None:
        """Remove the spool (if any) without reading it back."""
        if self.file is not None:
            self.file.close()

    def item(self, tape_file: int, record: int, logical: int) -> Item:
        if self.file is not None:
            try:
                self.file.flush()
            except OSError as e:
                raise spool_error("the trailer read back", e) from None
            return Item(self.magic, self.first, tape_file, record, logical, self.sizes, self.file)
        data = self.first if len(self.kept) == 1 else b"".join(self.kept)
        return Item(self.magic, data, tape_file, record, logical, self.sizes)


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
    parts = _Parts(first, bytes(prefix.magic), total)
    while parts.have < total:
        rec = drive.read_record()
        if isinstance(rec, Mark):
            parts.close()  # the spool (if any) goes: the error is what matters
            raise TruncatedError(
                f"item {prefix.magic.decode('ascii', 'replace')} declares {total} bytes but the tape file "
                f"ends ({rec.value}) after {parts.have}"
            ).at(medium=drive.name, tape_file=pos.file, record=pos.record)
        parts.add(rec)
    if parts.have != total:
        parts.close()
        raise MalformedError(
            f"item {prefix.magic.decode('ascii', 'replace')} declares {total} bytes but its records hold {parts.have}"
        ).at(medium=drive.name, tape_file=pos.file, record=pos.record)
    return parts.item(pos.file, pos.record, pos.logical)


def read_label(drive: TapeDrive, key_records: list[bytes] | None = None) -> fmt.Label:
    """Rewind and read the volume label. Raises NotTapearcMediumError for a blank or foreign medium.
    The key records that follow the label on a medium of an encrypted set are passed over (read
    them with :func:`tapearc.engine.keymedia.read_key_records`), or added as read, undecoded,
    to ``key_records`` (one pass: a stream cannot be rewound to read them again).

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
    if rec[:7] != fmt.LABEL_MAGIC[:7]:
        raise NotTapearcMediumError(
            "not a tapearc medium: the first record is not a tapearc volume label",
            hint="use another medium, or a blank one",
        ).at(medium=drive.name, tape_file=0, record=0)
    try:
        label = fmt.decode_label(rec)
    except TapearcError as e:
        raise e.at(medium=drive.name, tape_file=0, record=0) from None
    nxt = drive.read_record()
    while not isinstance(nxt, Mark) and bytes(nxt[:7]) == fmt.KEY_RECORD_MAGIC[:7]:
        if key_records is not None:
            key_records.append(bytes(nxt))
        nxt = drive.read_record()  # an encrypted set's key record(s) (tapearc.engine.keymedia)
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


class FileRecords:
    """The records of one tape file, read forward, never past its filemark.

    ``read()`` returns what ``drive.read_record()`` would (a record, a Mark, or raises its
    error) until the first mark; after that it returns the same mark again. With ``keep``,
    ``replay()`` makes the next reads return the records read so far again first (the walker
    reads the first item to classify the tape file; the consumer then reads the tape file from
    its record 0); records are kept only until then.
    """

    def __init__(self, drive: TapeDrive, *, keep: bool = False) -> None:
        self.drive = drive
        self.mark: Mark | None = None
        # with ``keep``: the records read until replay(), and the read errors among them (a
        # consumer sees the same records and errors, at the same indices, as a plain read)
        self._kept: list[bytes | TapearcError] = []
        self._replay: list[bytes | TapearcError] = []
        self._keep = keep

    def read(self) -> bytes | Mark:
        if self._replay:
            got = self._replay.pop()
            if isinstance(got, TapearcError):
                raise got
            return got
        if self.mark is not None:
            return self.mark
        try:
            rec = self.drive.read_record()
        except TapearcError as e:
            if self._keep:
                self._kept.append(e)
            raise
        if isinstance(rec, Mark):
            self.mark = rec
        elif self._keep:
            self._kept.append(rec)
        return rec

    def first(self) -> bytes | None:
        """The first record kept, when it was read."""
        return self._kept[0] if self._kept and isinstance(self._kept[0], bytes) else None

    def replay(self) -> None:
        self._replay = list(reversed(self._kept))
        self._kept = []
        self._keep = False


def read_file_item(
    recs: FileRecords, *, tape_file: int, record: int, logical: int, medium: str
) -> tuple[Item | Mark, int]:
    """Read the next item of a tape file from ``recs`` (``record``: its first record's index in
    the tape file). Returns the item (or the mark that ends the tape file) and the number of
    records consumed. Raises TruncatedError when the tape file ends inside the item (the mark is
    then ``recs.mark``), MalformedError for records that do not add up to the item's length, the
    prefix's errors for a first record that starts no item; the error's ``details["sizes"]``
    are the sizes of the records read for it. A read error of the medium propagates as is."""
    first = recs.read()
    if isinstance(first, Mark):
        return first, 0
    try:
        prefix = fmt.peek_item(first)
    except TapearcError as e:
        e.details["sizes"] = [len(first)]
        e.details["magic"] = bytes(first[:8])
        raise e.at(medium=medium, tape_file=tape_file, record=record) from None
    total = prefix.total_len
    parts = [first]
    sizes = [len(first)]
    have = len(first)
    while have < total:
        try:
            rec = recs.read()
        except TapearcError as e:  # a read error inside the item: the records before it were read
            e.details.setdefault("sizes", list(sizes))
            e.details.setdefault("magic", bytes(prefix.magic))
            raise
        if isinstance(rec, Mark):
            raise _truncated(bytes(prefix.magic), total, have, rec, sizes).at(
                medium=medium, tape_file=tape_file, record=record
            )
        parts.append(rec)
        sizes.append(len(rec))
        have += len(rec)
    if have != total:
        raise _overshoot(bytes(prefix.magic), total, have, sizes).at(medium=medium, tape_file=tape_file, record=record)
    data = first if len(parts) == 1 else b"".join(parts)
    return Item(bytes(prefix.magic), data, tape_file, record, logical + record, sizes), len(sizes)


@dataclass(slots=True)
class Damage:
    """Records of a tape file that make no readable item: a record that starts no item (a stray:
    data of a damaged item, or foreign), an item whose framing or records could not be read, or
    an unreadable record. ``records``: how many records the reader stepped over (at least one);
    ``error`` says why (a FormatError for damage, another TapearcError for a read error);
    ``parts``: the records of it that were read (the first one's, for a stray)."""

    record: int  # index within the tape file of its first record
    error: TapearcError
    records: int
    parts: list[bytes] = field(default_factory=list)
    total: int | None = None  # the length the item's prefix declares (None: it starts no item)

    @property
    def magic(self) -> bytes:
        """The magic of the item that was being read (b"" when its first record starts none)."""
        m = self.error.details.get("magic")
        return m if isinstance(m, bytes) else b""

    @property
    def unreadable(self) -> int | None:
        """The index of the record that could not be read (a read error), else None."""
        return None if isinstance(self.error, FormatError) else self.record + len(self.parts)

    @property
    def data(self) -> bytes:
        """The bytes of the records read of it."""
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


class FileItems:
    """The items of one tape file, read forward from ``start`` (a record index), with
    resynchronisation after damage -- the one item reader of ``verify`` and ``scan --deep``.

    Iterating yields each :class:`Item` read whole and a :class:`Damage` for each record span
    that makes none, then goes on (items start on record boundaries):

    * a record that starts no item is a Damage of its own (each stray record is named);
    * an item whose records overshoot the length its prefix declares cannot be trusted to be
      framed right (a dropped or foreign record inside it): its records after the first are
      read again as possible starts of the next items; so are those of an item the consumer
      finds damaged when :meth:`damaged` says its framing cannot be trusted;
    * an unreadable record ends the item being read (a Damage naming it), reading goes on after it;
    * an item cut short by the tape file's mark is a Damage, and the end.

    The iteration ends at the tape file's mark (``ended``), or after more than ``max_errors``
    read errors in a row (``ended`` is END_OF_DATA: a device that keeps failing).
    ``records_read``/``bytes_read`` count the records read from the medium (each once;
    ``on_record`` is called with the size of each, in tape order).
    With ``ahead``, a thread reads the records ahead (pipeline.RecordAhead, up to the tape
    file's mark, never past it) while the consumer checks them: call :meth:`close` after.
    """

    def __init__(
        self,
        recs: FileRecords,
        *,
        tape_file: int,
        logical: int,
        medium: str,
        start: int = 0,
        max_errors: int = MAX_READ_ERRORS,
        ahead: bool = False,
        on_record: Callable[[int], None] | None = None,
    ) -> None:
        self.recs = recs
        self.on_record = on_record
        self.tape_file = tape_file
        self.logical = logical
        self.medium = medium
        self.record = start  # the index of the next record to read
        self.max_errors = max_errors
        self.ended: Mark | None = None
        self.records_read = 0
        self.bytes_read = 0
        self._back: list[bytes] = []  # records to read again (the last one first)
        self._mark: Mark | None = None  # the mark that ends the tape file, once read
        self._ahead = RecordAhead(recs.read, max_errors=max_errors) if ahead else None

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()

    def _read(self) -> bytes | Mark:
        if self._back:
            return self._back.pop()
        rec = cast("bytes | Mark", self._ahead.next() if self._ahead is not None else self.recs.read())
        if isinstance(rec, Mark):
            self._mark = rec
        else:
            self.records_read += 1
            self.bytes_read += len(rec)
            if self.on_record is not None:
                self.on_record(len(rec))
        return rec

    def _again(self, records: list[bytes]) -> None:
        self._back.extend(reversed(records))

    def damaged(self, item: Item, error: TapearcError) -> bool:
        """The consumer found ``item`` (just read whole) damaged with ``error``. When its framing
        cannot be trusted, its records after the first are read again as possible starts of the
        next items; returns whether they are. The framing is kept for a chunk whose header
        decodes and for another item whose error is a CRC error of its body, unless one of its
        later records starts an item (the frame swallowed it: a record of the damaged item was
        dropped)."""
        if item.record_count < 2:
            return False
        later = item.records()[1:]
        if _framing_kept(item, error) and not any(_starts_item(r) for r in later):
            return False
        assert self.record == item.record + item.record_count, "damaged() is for the item just read"
        self._again(later)
        self.record = item.record + 1
        return True

    def __iter__(self) -> Iterator[Item | Damage]:
        errors = 0  # read errors in a row
        while True:
            got = self._next()
            if isinstance(got, Mark):
                self.ended = got
                return
            if isinstance(got, Damage):
                errors = (0 if got.parts else errors) + (got.unreadable is not None)
            else:
                errors = 0
            yield got
            del got  # memory: the consumer's item only, not it and the next one being read
            if self._mark is not None and not self._back:  # the tape file ends inside the item
                self.ended = self._mark
                return
            if errors > self.max_errors:
                self.ended = Mark.END_OF_DATA
                return

    def _next(self) -> Item | Damage | Mark:
        """Frame the next item (the records it declares) from the next record."""
        i = self.record
        try:
            first = self._read()
        except TapearcError as e:
            self.record += 1
            return Damage(i, e, 1)
        if isinstance(first, Mark):
            return first
        try:
            prefix = fmt.peek_item(first)
        except TapearcError as e:
            e.details["sizes"] = [len(first)]
            e.details["magic"] = bytes(first[:8])
            self.record += 1
            return Damage(i, e.at(medium=self.medium, tape_file=self.tape_file, record=i), 1, [first])
        return self._frame(i, first, prefix)

    def _frame(self, i: int, first: bytes, prefix: fmt.ItemPrefix) -> Item | Damage:
        total, magic = prefix.total_len, bytes(prefix.magic)
        got = _Parts(first, magic, total)
        while got.have < total:
            try:
                rec = self._read()
            except TapearcError as e:  # a read error inside the item: the records before it were read
                e.details.setdefault("sizes", list(got.sizes))
                e.details.setdefault("magic", magic)
                self.record = i + len(got.sizes) + 1
                return Damage(i, e, len(got.sizes) + 1, got.records(), total)
            if isinstance(rec, Mark):
                self.record = i + len(got.sizes)
                err = _truncated(magic, total, got.have, rec, list(got.sizes))
                return Damage(
                    i,
                    err.at(medium=self.medium, tape_file=self.tape_file, record=i),
                    len(got.sizes),
                    got.records(),
                    total,
                )
            got.add(rec)
        if got.have != total:  # more bytes than declared: a record dropped or foreign inside it
            parts = got.records()
            self.record = i + 1
            self._again(parts[1:])
            err = _overshoot(magic, total, got.have, [len(p) for p in parts])
            return Damage(i, err.at(medium=self.medium, tape_file=self.tape_file, record=i), 1, parts, total)
        self.record = i + len(got.sizes)
        return got.item(self.tape_file, i, self.logical + i)


def _framing_kept(item: Item, error: TapearcError) -> bool:
    if item.magic == fmt.CHUNK_MAGIC:
        try:
            fmt.decode_chunk_header(item.data)
            return True
        except TapearcError:
            return False
    return isinstance(error, CRCError)


def _starts_item(rec: bytes) -> bool:
    """Does the record start a tapearc item (a magic and a prefix that reads)?"""
    if bytes(rec[:7]) not in MAGICS7:
        return False
    try:
        fmt.peek_item(rec)
    except TapearcError:
        return False
    return True


def _truncated(magic: bytes, total: int, have: int, mark: Mark, sizes: list[int]) -> TapearcError:
    return TruncatedError(
        f"item {magic.decode('ascii', 'replace')} declares {total} bytes but the tape file ends ({mark.value}) "
        f"after {have}",
        sizes=sizes,
        magic=magic,
    )


def _overshoot(magic: bytes, total: int, have: int, sizes: list[int]) -> TapearcError:
    return MalformedError(
        f"item {magic.decode('ascii', 'replace')} declares {total} bytes but its records hold {have}",
        sizes=sizes,
        magic=magic,
    )


@dataclass(slots=True)
class TapeFile:
    """One tape file of a medium, as the walker found it."""

    tape_file: int
    logical: int  # logical position of its first record
    kind: str  # one of KINDS
    records: FileRecords | None = None  # its records, from record 0 (for a consumer reading it)
    header: fmt.GenerationHeader | None = None  # kind "generation"
    label: fmt.Label | None = None  # kind "label"
    problem: str | None = None  # why it is interrupted, damaged or foreign
    closed: bool = True  # ends with a filemark (False: the medium ends inside it)
    header_records: int = 0  # records of its first item (when whole)
    torn: bool = False  # no record of it is readable: the medium's cut tail (nothing to close)
    key_records: list[bytes] = field(default_factory=list)  # kind "label": the key records after it, undecoded

    @property
    def interrupted(self) -> bool:
        """A backup stopped inside this tape file (killed, power cut) before closing it."""
        return self.kind == "interrupted" or (self.kind == "generation" and not self.closed)

    def finish(self, mark: Mark) -> None:
        """The consumer read the tape file to its end: this mark."""
        if self.records is not None and self.records.mark is None:
            self.records.mark = mark
        self.closed = mark is Mark.FILEMARK

    def to_json(self) -> dict[str, object]:
        return {
            "tape_file": self.tape_file,
            "kind": self.kind,
            "closed": self.closed,
            "interrupted": self.interrupted,
            "torn": self.torn,
            "volume": self.header.volume_name if self.header is not None else None,
            "generation": self.header.generation if self.header is not None else None,
            "problem": self.problem,
        }


def _classify(drive: TapeDrive, recs: FileRecords, tape_file: int, logical: int) -> TapeFile | None:
    """Read the first item of the tape file the medium is at and say what the tape file is.
    None: the medium's end of data is here (no tape file)."""
    tf = TapeFile(tape_file=tape_file, logical=logical, kind="damaged", records=recs)
    try:
        got, n = read_file_item(recs, tape_file=tape_file, record=0, logical=logical, medium=drive.name)
    except TruncatedError as e:
        first = bytes((recs.first() or b"")[:7])
        tf.problem = str(e)
        if recs.mark is None:  # a record shorter than an item's prefix: is it the last one?
            try:
                recs.read()
            except TapearcError:
                pass
        if first and fmt.GENERATION_MAGIC.startswith(first[:7]) and recs.mark is not None:
            tf.kind = "interrupted"  # the tape file ends inside its generation header: a write cut short
        return tf
    except TapearcError as e:
        tf.problem = str(e)
        head = recs.first()
        if head is not None and bytes(head[:7]) not in MAGICS7:
            tf.kind = "foreign"
            tf.problem = f"medium {drive.name}, tape file {tape_file}: the tape file does not start with a tapearc item"
        return tf
    if isinstance(got, Mark):
        if got is Mark.END_OF_DATA:
            return None
        tf.kind = "empty"
        return tf
    tf.header_records = n
    if got.magic != fmt.GENERATION_MAGIC:
        tf.problem = f"medium {drive.name}, tape file {tape_file}: starts with {got.magic!r}, not a generation header"
        return tf
    try:
        tf.header = fmt.decode_generation_header(got.data)
    except TapearcError as e:
        tf.problem = str(e.at(medium=drive.name, tape_file=tape_file, record=0))
        return tf
    tf.kind = "generation"
    return tf


def walk_tape_files(drive: TapeDrive, *, label: bool = True) -> Iterator[TapeFile]:
    """Walk the tape files of the medium in ``drive``.

    ``label=True``: rewind, read the label (its errors propagate: not a tapearc medium) and yield
    it first as kind ``label``; else the medium must be at the start of tape file 1.

    Each tape file is yielded with its ``records`` set to read it from record 0 (the first item
    is replayed). A consumer may read them up to the mark (then it calls ``finish(mark)``), or
    leave it: the walker then spaces over the rest of the tape file. A consumer that moves the
    medium elsewhere must put it back at the end of the tape file, or collect the walk first
    (``list(walk_tape_files(drive))``) and move afterwards. The walk ends at the end of data.
    """
    if label:
        keys: list[bytes] = []
        lab = read_label(drive, keys)
        yield TapeFile(tape_file=0, logical=0, kind="label", label=lab, key_records=keys)
    while True:
        pos = drive.position()
        recs = FileRecords(drive, keep=True)  # the first item's records, replayed to the consumer
        tf = _classify(drive, recs, pos.file, pos.logical)
        if tf is None:
            if _cut_tail(drive):  # a write cut short here: a tape file killed at birth
                yield TapeFile(
                    tape_file=pos.file,
                    logical=pos.logical,
                    kind="interrupted",
                    records=recs,
                    closed=False,
                    torn=True,
                    problem=f"medium {drive.name}, tape file {pos.file}: its first record was cut short by an "
                    "interrupted write (nothing of it is readable; the next backup writes over it)",
                )
            return
        recs.replay()
        if recs.mark is not None:
            tf.closed = recs.mark is Mark.FILEMARK
        yield tf
        if recs.mark is None:
            crossed = drive.space_files(1)  # a medium that cannot space (a stream) says so
            recs.mark = Mark.FILEMARK if crossed else Mark.END_OF_DATA
        tf.closed = recs.mark is Mark.FILEMARK
        if not tf.closed:
            return


def _cut_tail(drive: TapeDrive) -> bool:
    """Does the medium end with a record cut short (a SIMH image's torn last record, a dir:
    medium's empty record file)? Such a record is after the end of data: reads end before it."""
    try:
        return bool(drive.status().details.get("image_truncated"))
    except TapearcError:
        return False
