"""Comparing two media record by record (a tape and its copy, a tape and a dump image).

:func:`compare_media` reads both media from their beginning in lockstep, one object (record or
filemark) at a time, and keeps at most two objects of each side in memory (the current one and
one of lookahead). It knows nothing of tapearc's format: records are opaque bytes.

The objects are lined up as follows. Equal objects pair up. At the first object that differs
the comparator looks one object ahead on both sides and takes the first explanation that fits,
in this order:

1. both are records and the *next* objects agree: the records differ (``data`` when they have the
   same length, with the first differing byte; ``length`` otherwise) -- 1 differing record;
2. both are records and each one's next object is the other one: ``swapped`` -- 2 differing
   records;
3. A's next object is B's current one: B lacks A's object (``record missing`` or
   ``filemark missing``) -- 1 differing record (or filemark);
4. B's next object is A's current one: B has an ``extra record`` (or ``extra filemark``) -- 1;
5. otherwise, for two records: they differ (as in 1);
6. a record facing a filemark: that tape file is longer on the record's side
   (``filemark vs record``): the record counts as differing and only the longer side moves on,
   so the two sides meet again at the filemark -- a tape file that lost its last records
   costs those records, and the tape files after it still pair up;
7. an object facing end of data: one medium ends early (``end of data``): every later object of
   the other counts (records in ``differing_records``, filemarks in ``differing_filemarks``).

So a record dropped, inserted or overwritten anywhere counts 1, two swapped records count 2, a
missing or extra filemark counts as 1 differing filemark and no record, and a tape file cut short
counts its missing records; none of these make later tape files differ. Runs of several
consecutive dropped or inserted records inside a tape file are not realigned before the
filemark (each record of the run that then faces a different one counts once).

Positions are given for both sides: ``tape_file`` / ``record`` (index within the tape file) and
the logical object number.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.tapefiles import FileRecords
from tapearc.errors import MediaDifferError, TapearcError
from tapearc.media.base import Mark, Position, TapeDrive

__all__ = ["CompareResult", "Divergence", "MediaDifferError", "SideStats", "compare_media"]

DEFAULT_KEEP = 20  # divergences kept in a result (all are counted)

# divergence kinds
DATA = "data"
LENGTH = "length"
SWAPPED = "swapped"
RECORD_MISSING = "record missing"
EXTRA_RECORD = "extra record"
FILEMARK_MISSING = "filemark missing"
EXTRA_FILEMARK = "extra filemark"
FILEMARK_VS_RECORD = "filemark vs record"
END_OF_DATA = "end of data"


@dataclass(slots=True)
class Divergence:
    """One place where the media differ.

    ``a`` and ``b`` are where each side was (its next object) when the difference was found.
    ``side`` is the side holding the extra or longer part (``"a"`` or ``"b"``), None for records
    that differ in place. ``offset`` is the first differing byte of two records that differ
    (``data``, ``length``). ``count`` is the number of consecutive objects of the same kind
    merged into this divergence (a tape file cut short by 100 records is one divergence of
    count 100).
    """

    kind: str
    a: Position
    b: Position
    side: str | None = None
    offset: int | None = None
    detail: str = ""
    count: int = 1

    @property
    def tape_file(self) -> int:
        return (self.b if self.side == "b" else self.a).file

    @property
    def record(self) -> int:
        return (self.b if self.side == "b" else self.a).record

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "side": self.side,
            "tape_file": self.tape_file,
            "record": self.record,
            "offset": self.offset,
            "count": self.count,
            "a": {"logical": self.a.logical, "tape_file": self.a.file, "record": self.a.record},
            "b": {"logical": self.b.logical, "tape_file": self.b.file, "record": self.b.record},
            "detail": self.detail,
        }


@dataclass(slots=True)
class SideStats:
    """What was read of one side."""

    name: str
    records: int = 0
    bytes: int = 0
    filemarks: int = 0
    tape_files: int = 0  # tape files holding at least one object

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class CompareResult:
    """The outcome of :func:`compare_media`."""

    a: SideStats
    b: SideStats
    differing_records: int = 0
    differing_filemarks: int = 0
    divergences: list[Divergence] = field(default_factory=list)  # the first ``keep`` of them
    divergence_count: int = 0  # all of them (merged runs count once)
    complete: bool = True  # False: stopped at the first divergence (``stop_at_first``)
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return self.divergence_count == 0

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "differing_records": self.differing_records,
            "differing_filemarks": self.differing_filemarks,
            "divergence_count": self.divergence_count,
            "first": self.first.to_json() if self.first else None,
            "divergences": [d.to_json() for d in self.divergences],
            "complete": self.complete,
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        if self.identical:
            return (
                f"{self.a.name} and {self.b.name} are identical: {self.a.tape_files} tape files, "
                f"{self.a.records} records, {self.a.bytes} bytes, {self.a.filemarks} filemarks"
            )
        first = self.first
        assert first is not None
        more = "" if self.complete else " (stopped at the first difference)"
        return (
            f"{self.a.name} and {self.b.name} differ: {first.detail}; "
            f"{self.differing_records} differing record{'s' if self.differing_records != 1 else ''}, "
            f"{self.differing_filemarks} differing filemark{'s' if self.differing_filemarks != 1 else ''}{more}"
        )

    def check(self) -> CompareResult:
        """Raise :class:`MediaDifferError` unless the media are identical; returns self."""
        if not self.identical:
            raise self.error()
        return self

    def error(self) -> MediaDifferError:
        """The error that says how the media differ (they must differ)."""
        first = self.first
        assert first is not None
        details: dict[str, Any] = {
            "a": self.a.name,
            "b": self.b.name,
            "differing_records": self.differing_records,
            "differing_filemarks": self.differing_filemarks,
            "divergences": self.divergence_count,
            "first_kind": first.kind,
            "first_tape_file": first.tape_file,
            "first_record": first.record,
        }
        if first.side is not None:
            details["first_side"] = first.side
        if first.offset is not None:
            details["first_offset"] = first.offset
        return MediaDifferError(self.summary(), **details)


# ---------------------------------------------------------------------- reading in lockstep

Obj = bytes | Mark


class _Side:
    """One medium read in order, with one object of lookahead. Records are read tape file by
    tape file through :class:`FileRecords` (the lookahead crosses a filemark into the next)."""

    def __init__(self, drive: TapeDrive, stats: SideStats) -> None:
        self.drive = drive
        self.recs = FileRecords(drive)
        self.stats = stats
        self.buf: deque[Obj] = deque()
        self.logical = 0
        self.file = 0
        self.record = 0
        self._file_has_objects = False

    @property
    def pos(self) -> Position:
        return Position(self.logical, self.file, self.record)

    def peek(self, k: int) -> Obj:
        buf = self.buf
        while len(buf) <= k:
            if buf and buf[-1] is Mark.END_OF_DATA:
                return Mark.END_OF_DATA
            try:
                obj = self.recs.read()
            except TapearcError as e:
                e.at(medium=self.drive.name)
                raise
            if obj is Mark.FILEMARK:
                self.recs = FileRecords(self.drive)  # the next tape file
            buf.append(bytes(obj) if isinstance(obj, (bytearray, memoryview)) else obj)
        return buf[k]

    def consume(self) -> Obj:
        obj = self.buf.popleft()
        st = self.stats
        if obj is Mark.END_OF_DATA:
            self.buf.appendleft(obj)
            return obj
        if obj is Mark.FILEMARK:
            st.filemarks += 1
            if not self._file_has_objects:
                st.tape_files += 1
            self._file_has_objects = False
            self.file += 1
            self.record = 0
        else:
            assert isinstance(obj, bytes)
            st.records += 1
            st.bytes += len(obj)
            if not self._file_has_objects:
                self._file_has_objects = True
                st.tape_files += 1
            self.record += 1
        self.logical += 1
        return obj


def _eq(x: Obj, y: Obj) -> bool:
    if isinstance(x, Mark) or isinstance(y, Mark):
        return x is y
    return x == y


def _first_diff(x: bytes, y: bytes) -> int:
    """Index of the first differing byte (the shorter length when one is a prefix of the other)."""
    n = min(len(x), len(y))
    step = 4096
    for i in range(0, n, step):
        j = min(i + step, n)
        if x[i:j] != y[i:j]:
            for k in range(i, j):
                if x[k] != y[k]:
                    return k
    return n


def _what(obj: Obj) -> str:
    if obj is Mark.FILEMARK:
        return "a filemark"
    if obj is Mark.END_OF_DATA:
        return "end of data"
    return f"a record ({len(obj)} bytes)"


def _n(records: int) -> str:
    return f"{records} record{'s' if records != 1 else ''}"


def _at(p: Position) -> str:
    return f"tape file {p.file} record {p.record}"


def compare_media(
    a: TapeDrive,
    b: TapeDrive,
    *,
    stop_at_first: bool = False,
    keep: int = DEFAULT_KEEP,
    progress: Progress | None = None,
) -> CompareResult:
    """Compare media ``a`` and ``b`` object by object from their beginnings to their ends of
    data (see the module docstring for how objects are lined up and differences counted).

    Both are rewound first (a stream medium ``-`` must be at its beginning). ``stop_at_first``:
    return at the first divergence (``complete`` is then False). ``keep``: how many divergences
    the result lists (all are counted). Read errors propagate (a medium that cannot be read
    cannot be compared). Never raises for differences: see :meth:`CompareResult.check`.
    """
    progress = progress or NoProgress()
    started = time.monotonic()
    res = CompareResult(a=SideStats(a.name), b=SideStats(b.name))
    a.rewind()
    b.rewind()
    progress.start(f"compare {a.name} with {b.name}", None)
    try:
        _Lockstep(_Side(a, res.a), _Side(b, res.b), res, keep, progress).run(stop_at_first)
    finally:
        progress.finish()
    res.seconds = time.monotonic() - started
    return res


class _Lockstep:
    """Both media read object by object; each step lines up the objects at hand (the rules of
    the module docstring, one method per case) and notes the divergences into the result."""

    def __init__(self, A: _Side, B: _Side, res: CompareResult, keep: int, progress: Progress) -> None:
        self.A, self.B = A, B
        self.an, self.bn = A.drive.name, B.drive.name
        self.res = res
        self.keep = keep
        self.progress = progress
        self.last: Divergence | None = None
        self.last_step = -2
        self.step = 0

    def run(self, stop_at_first: bool) -> None:
        A, B = self.A, self.B
        while True:
            self.step += 1
            if stop_at_first and self.res.divergence_count:
                self.res.complete = False
                return
            x, y = A.peek(0), B.peek(0)
            if x is Mark.END_OF_DATA and y is Mark.END_OF_DATA:
                return
            if _eq(x, y):
                if isinstance(x, bytes):
                    self.progress.advance(len(x))
                A.consume()
                B.consume()
            elif isinstance(x, bytes) and isinstance(y, bytes):
                self._records(x, y)
            elif x is Mark.END_OF_DATA or y is Mark.END_OF_DATA:  # one medium ends early
                self._end_of_data(x)
            elif x is Mark.FILEMARK:  # y is a record (filemark vs filemark is equal)
                assert isinstance(y, bytes)
                self._filemark_on_a(y)
            else:  # y is a filemark, x a record
                assert isinstance(x, bytes)
                self._filemark_on_b(x)

    def note(
        self, kind: str, side: str | None, detail: str, offset: int | None = None, records: int = 0, marks: int = 0
    ) -> None:
        res = self.res
        res.differing_records += records
        res.differing_filemarks += marks
        last = self.last
        mergeable = kind in (FILEMARK_VS_RECORD, END_OF_DATA, RECORD_MISSING, EXTRA_RECORD)
        if (
            mergeable
            and last is not None
            and self.last_step == self.step - 1
            and last.kind == kind
            and last.side == side
        ):
            last.count += 1
            self.last_step = self.step
            return
        d = Divergence(kind, self.A.pos, self.B.pos, side, offset, detail)
        res.divergence_count += 1
        if len(res.divergences) < self.keep:
            res.divergences.append(d)
        self.last, self.last_step = d, self.step

    def _records(self, x: bytes, y: bytes) -> None:
        """Two records that differ: swapped, one missing, one extra, or different in place."""
        A, B, an, bn = self.A, self.B, self.an, self.bn
        x1, y1 = A.peek(1), B.peek(1)
        if not _eq(x1, y1) and _eq(x1, y) and _eq(y1, x):
            self.note(SWAPPED, None, f"{_at(A.pos)} and the next one are swapped on {bn}", records=2)
            for _ in range(2):
                A.consume()
                B.consume()
            return
        if not _eq(x1, y1) and _eq(x1, y):
            self.note(RECORD_MISSING, "a", f"{an}'s {_at(A.pos)} ({len(x)} bytes) is missing from {bn}", records=1)
            A.consume()
            return
        if not _eq(x1, y1) and _eq(y1, x):
            self.note(EXTRA_RECORD, "b", f"{bn} has an extra record ({len(y)} bytes) at its {_at(B.pos)}", records=1)
            B.consume()
            return
        off = _first_diff(x, y)
        if len(x) == len(y):
            detail = f"{_at(A.pos)} differs at byte {off} ({an}: 0x{x[off]:02x}, {bn}: 0x{y[off]:02x})"
            self.note(DATA, None, detail, offset=off, records=1)
        else:
            detail = f"{_at(A.pos)} holds {len(x)} bytes on {an} but {len(y)} on {bn} (first difference at byte {off})"
            self.note(LENGTH, None, detail, offset=off, records=1)
        self.progress.advance(len(x))
        A.consume()
        B.consume()

    def _end_of_data(self, x: Obj) -> None:
        """One side ends: the other side's object counts and only that side moves on."""
        long_side, S, other = ("b", self.B, self.an) if x is Mark.END_OF_DATA else ("a", self.A, self.bn)
        obj = S.peek(0)
        self.note(
            END_OF_DATA,
            long_side,
            f"{other} ends (end of data) where {S.drive.name} has {_what(obj)} at its {_at(S.pos)}",
            records=1 if isinstance(obj, bytes) else 0,
            marks=1 if obj is Mark.FILEMARK else 0,
        )
        S.consume()

    def _filemark_on_a(self, y: bytes) -> None:
        """A filemark on ``a`` facing a record on ``b``: ``b`` lacks the filemark, or ``b``'s tape
        file is longer."""
        A, B, an, bn = self.A, self.B, self.an, self.bn
        if _eq(A.peek(1), y):
            self.note(
                FILEMARK_MISSING,
                "a",
                f"{bn} lacks the filemark that ends {an}'s tape file {A.file} (after record {A.record})",
                marks=1,
            )
            A.consume()
            return
        self.note(
            FILEMARK_VS_RECORD,
            "b",
            f"tape file {A.file} ends after {_n(A.record)} on {an} (filemark) but {bn} has a record at its {_at(B.pos)}",
            records=1,
        )
        B.consume()

    def _filemark_on_b(self, x: bytes) -> None:
        """A record on ``a`` facing a filemark on ``b``: ``b`` has an extra filemark, or ``a``'s
        tape file is longer."""
        A, B, an, bn = self.A, self.B, self.an, self.bn
        if _eq(B.peek(1), x):
            self.note(
                EXTRA_FILEMARK,
                "b",
                f"{bn} has an extra filemark at its {_at(B.pos)} ({an} goes on with record {A.record})",
                marks=1,
            )
            B.consume()
            return
        self.note(
            FILEMARK_VS_RECORD,
            "a",
            f"tape file {B.file} ends after {_n(B.record)} on {bn} (filemark) but {an} has a record at its {_at(A.pos)}",
            records=1,
        )
        self.progress.advance(len(x))
        A.consume()
