"""The tape-drive interface every medium backend implements. Its docstrings are the contract.

One contract test suite (tests/media/test_contract.py) runs against every backend: the
simulated tape (``sim:``), the removable-disk folder (``dir:``) and, when a device is given,
the Linux st driver. A backend that passes it can carry tapearc's format.

Model
-----
A medium is a sequence of *objects*: data records (1 .. ``max_record_size`` bytes each) and
filemarks, followed by *end of data*. A *tape file* is what lies between two filemarks (tape
file 0 starts at the beginning of the medium). Positions are logical object numbers counted from
0 at the beginning of the medium: records *and* filemarks count (as SCSI READ POSITION and st's
MTIOCPOS do). :class:`Position` also gives (tape file, record index within the file).

Normal tape outcomes are values, not exceptions: reading a filemark or end of data returns a
:class:`Mark`; a write inside the early-warning zone returns ``WriteStatus.EARLY_WARNING``.
Failures raise subclasses of :class:`tapearc.errors.MediumError`.

Writing at a position makes that position the new end of data: everything after it is gone
(as on tape). Backends never write anything on their own at close (no implicit filemark):
tapearc writes every filemark explicitly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import TapearcError


class Mark(enum.Enum):
    """What a read found instead of a record."""

    FILEMARK = "filemark"  # the medium is now positioned after the filemark
    END_OF_DATA = "end-of-data"  # the medium did not move


class WriteStatus(enum.Enum):
    """Outcome of a successful write (the data or filemark is on the medium)."""

    OK = "ok"
    EARLY_WARNING = "early-warning"  # written, but the medium is in its early-warning zone:
    # finish the tape file (trailer, filemark) soon; a few more writes will still fit.


@dataclass(frozen=True, slots=True)
class Position:
    """Where the medium is: logical object number, and the same as (tape file, record in file)."""

    logical: int
    file: int
    record: int


@dataclass(frozen=True, slots=True)
class DriveStatus:
    """What a drive can tell about itself and its medium."""

    name: str
    position: Position
    at_bot: bool
    at_eod: bool | None  # None when the backend cannot tell without moving
    early_warning: bool
    write_protected: bool
    max_record_size: int
    capacity: int | None  # bytes, when known
    used: int | None  # bytes written, when known
    details: dict[str, object]


@runtime_checkable
class TapeDrive(Protocol):
    """A drive with a medium loaded, opened for reading or for reading and writing."""

    name: str
    """How the medium is named in messages, e.g. ``sim:/srv/tape1.tap``."""

    max_record_size: int
    """The largest record this drive can write and read, in bytes."""

    writable: bool
    """False when opened read-only or the medium is write-protected."""

    def read_record(self) -> bytes | Mark:
        """Read the next object.

        Returns the record's bytes (the whole record, however long, up to ``max_record_size``),
        ``Mark.FILEMARK`` (the medium is then past the filemark) or ``Mark.END_OF_DATA`` (the
        medium stays where it is; reading again returns END_OF_DATA again).
        Raises RecordTooLargeError for a record larger than ``max_record_size`` (the medium is
        then past it), MediumIOError for an unreadable record (past it, when the device allows).
        """
        ...

    def write_record(self, data: bytes | bytearray | memoryview) -> WriteStatus:
        """Write one record of ``len(data)`` bytes (1 .. max_record_size) at the current position.

        The position becomes the new end of data. Returns OK, or EARLY_WARNING when the medium is
        in its early-warning zone (the record was written). Raises MediumFullError when the
        record could not be written because the medium is physically full (nothing was written,
        the position is unchanged), WriteProtectedError when not writable, ValueError for an
        empty or oversized record, MediumIOError on a device error.
        """
        ...

    def write_filemark(self, *, immediate: bool = False) -> WriteStatus:
        """Write one filemark at the current position.

        ``immediate=False``: the filemark and everything written before it are on the medium
        when this returns (the drive flushes its buffer: on tape, the tape may stop).
        ``immediate=True``: the filemark is written at the current position exactly like the
        synchronous one as far as positions, end of data, tape-file numbers and reading back go,
        but it and the data before it may still sit in the drive's buffer (the tape keeps
        streaming): they are known to be on the medium only after a later :meth:`sync` or
        synchronous filemark. Closing right after an immediate filemark adds no filemark.

        Same outcomes as :meth:`write_record`. A filemark still fits in the early-warning zone.
        After an immediate filemark a write error of the buffered data may be reported only by
        the later :meth:`sync` (or synchronous filemark, move or close).
        """
        ...

    def sync(self) -> None:
        """Make everything written so far reach the medium; return when it has.

        The drive writes its buffer out (on tape: WRITE FILEMARKS with count 0). Never moves the
        position, never writes a filemark. Does nothing (and succeeds) on a drive opened
        read-only or when nothing was written since the last flush. Raises MediumIOError (or
        another MediumError the backend uses for device errors) when the drive reports an error:
        data written before may then not be on the medium.
        """
        ...

    def rewind(self) -> None:
        """Go to the beginning of the medium (logical position 0)."""
        ...

    def position(self) -> Position:
        """The current position. Backends that track it themselves cross-check it with the device."""
        ...

    def locate(self, logical: int) -> None:
        """Go to logical object ``logical`` (0 = beginning). Past end of data: MediumIOError,
        positioned at end of data."""
        ...

    def space_files(self, count: int) -> int:
        """Space over filemarks. ``count > 0``: forward, leaving the medium just after the
        count-th filemark; ``count < 0``: backward over ``-count`` filemarks, leaving the medium
        just before (on the beginning side of) the last one crossed. Stops early at end of data
        (forward) or the beginning (backward). Returns the number of filemarks actually crossed
        (always >= 0)."""
        ...

    def seek_end_of_data(self) -> Position:
        """Go to end of data (where the next write appends) and return that position."""
        ...

    def status(self) -> DriveStatus:
        """Report position and state without moving the medium."""
        ...

    def close(self) -> None:
        """Flush what the drive still holds and release it. Writes nothing (no implicit
        filemark, also not after an immediate one). Idempotent."""
        ...

    def __enter__(self) -> TapeDrive: ...

    def __exit__(self, *exc: object) -> None: ...


def blank_check(drive: TapeDrive) -> TapearcError | None:
    """Is a medium whose first read at the beginning found end of data provably blank?

    None when it is (the backend's ``blank_check()`` says so, or the backend has none: a tape
    drive's BLANK CHECK, an empty folder), else the error describing what is there (not raised):
    a ``sim:`` image holding bytes that are not a tape (NotTapearcMediumError) or a damaged
    volume label (DamagedDataError). Call it only after such a first read.
    """
    fn = getattr(drive, "blank_check", None)
    if fn is None:
        return None
    err = fn()
    return err if isinstance(err, TapearcError) else None
