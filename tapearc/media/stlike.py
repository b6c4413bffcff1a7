"""The st-semantics adapter: a :class:`~tapearc.media.base.TapeDrive` over an st-like device.

:class:`StLikeDrive` turns the behaviour of an open Linux st *no-rewind* device in variable-block
mode (``read``/``write``/MTIOCTOP/MTIOCGET/MTIOCPOS, errno for errno, TAPE-FACTS §1) into the
TapeDrive contract. It runs over any *st ops* object with the method set of
``tapesim.drive.SimDrive`` (see :class:`StOps`): the simulator, and the real ``/dev/nstN``
through :class:`tapearc.media.linux_st.LinuxStOps`.

How st's corner cases are handled
---------------------------------
Reads
    Every read uses a buffer of exactly ``max_record_size`` (st rejects larger requests with
    EINVAL). ``read() == b""`` is a filemark when MTIOCPOS moved by one, end of data when it
    did not move (st returns 0 once at end of data right after a filemark). EIO is end of data
    when MTIOCGET reports GMT_EOD (or the position is the end of data already seen, or -- when
    the drive did not move and says nothing -- MTEOM does not move it either); any other EIO is
    an unreadable record (MediumIOError naming the position; the tape is then past it). ENOMEM (record larger than
    the buffer; st has moved past it) is RecordTooLargeError.
Writes
    The first ENOSPC after the early warning is st's "every other write fails" rule: the same
    record is retried once; a second ENOSPC is the physical end (MediumFullError, nothing
    written, position unchanged -- checked with MTIOCPOS). A write after which MTIOCGET reports
    GMT_EOT returns ``WriteStatus.EARLY_WARNING`` (so does a write that needed the retry).
    The zone is a place on the tape: once a write at object N reported it, every write or
    filemark at N or later reports EARLY_WARNING too (st shows GMT_EOT only while its eof
    state is ST_EOM_OK: not after a refused write nor, depending on the drive, a filemark);
    writing again before N forgets it. EACCES / EROFS are WriteProtectedError.
No filemark behind tapearc's back
    st writes a filemark when the device is closed, rewound, LOCATEd or spaced backward right
    after a write. Before any of those the adapter issues ``MTWEOF 0`` (flush, writes nothing,
    makes st idle), so close/rewind/locate never add a filemark: tapearc writes each filemark
    explicitly.
Immediate filemarks and sync
    ``write_filemark(immediate=True)`` issues ``MTWEOFI 1`` (WRITE FILEMARKS with IMMED=1: the
    filemark is queued, the drive's buffer is not flushed, the tape keeps streaming) with the
    same position checks as ``MTWEOF 1``. Like any MTIOCTOP other than NOP/SETBLK/... it makes
    st idle, so st writes no filemark at close after it (TAPE-FACTS §1.6). What was written
    since the last flush is *unsynced*: :meth:`sync` issues ``MTWEOF 0`` (WRITE FILEMARKS
    count 0, IMMED=0: SSC's "write the buffer out"; st accepts count 0) and returns when the
    drive has; a write error of the buffered data surfaces there (or at the next call, as st
    reports deferred errors). Close and every move flush unsynced data the same way first, so
    their errors are reported as flush errors, not as errors of the move. A failed flush leaves
    the position unknown (tapearc never writes after data that may not be on the tape).
    A device error (write, filemark, flush, status) while data is unsynced makes the next :meth:`sync`
    fail too (once): the error may be the buffered data's, and st's flush after a reported
    error succeeds.
Positions
    The adapter counts (logical, tape file, record) itself and cross-checks the logical number
    with MTIOCPOS on every positioning operation, every filemark (read or written), every mark
    and error outcome of a read and in :meth:`position`. A mismatch raises MediumIOError
    ("position mismatch: tapearc expected N, drive says M") and the position becomes *lost*:
    reads and writes are then refused until rewind / locate / seek_end_of_data re-establish it
    (tapearc never writes at an unknown position).

    After MTSEEK, MTEOM, MTBSF or a short MTFSF the (tape file, record) pair is recomputed:
    from MTIOCGET's ``mt_fileno``/``mt_blkno`` when they are valid (>= 0) -- always the case
    with the simulator -- otherwise from the adapter's own bookkeeping: the logical positions of
    the filemarks and of end of data it has seen (read, written or spaced over). When that
    table cannot place the position (real st after a LOCATE on a tape it has not walked yet),
    the adapter rewinds, walks the tape file by file with ``MTFSF 1`` to learn the filemark
    positions, and LOCATEs back. When both sources are available they must agree (a
    disagreement is a position mismatch; the bookkeeping is then dropped). After an end of data
    found by a zero-byte read the drive's ``mt_fileno`` is not trusted until the next rewind
    (st.c increments ``drv_file`` on its ST_EOD_1 zero read).

    :meth:`position` asks MTIOCPOS each time (a READ POSITION on real hardware): call it at
    tape-file boundaries, not per record.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Protocol, runtime_checkable

from ..errors import (
    MediumError,
    MediumFullError,
    MediumIOError,
    MediumUnavailableError,
    RecordTooLargeError,
    WriteProtectedError,
)
from . import mtio
from .base import DriveStatus, Mark, Position, TapeDrive, WriteStatus

__all__ = ["StLikeDrive", "StOps", "translate_oserror"]


@runtime_checkable
class StOps(Protocol):
    """An open st-like device (the method set of ``tapesim.drive.SimDrive``).

    Every method raises ``OSError`` with the errno the Linux st driver would give.
    ``max_record`` is the largest record the drive reads or writes (READ BLOCK LIMITS).
    """

    @property
    def max_record(self) -> int: ...

    def read(self, n: int) -> bytes: ...

    def write(self, buf: bytes | bytearray | memoryview) -> int: ...

    def mtop(self, op: int, count: int = 1) -> None: ...

    def mtget(self) -> Any: ...  # has mt_type, mt_resid, mt_dsreg, mt_gstat, mt_erreg, mt_fileno, mt_blkno

    def mtpos(self) -> int: ...

    def close(self) -> None: ...


_UNAVAILABLE = {errno.ENOMEDIUM, errno.ENOENT, errno.ENXIO, errno.EBUSY, errno.ENODEV}
_PROTECTED = {errno.EACCES, errno.EROFS, errno.EPERM}


def translate_oserror(err: OSError, what: str, *, medium: str | None = None, **where: Any) -> MediumError:
    """Map an errno from an st-like device to the matching tapearc error (not raised)."""
    code = err.errno
    reason = os.strerror(code) if code else str(err)
    name = errno.errorcode.get(code, str(code)) if code else "?"
    message = f"{what}: {reason} ({name})"
    cls: type[MediumError]
    if code in _UNAVAILABLE:
        cls = MediumUnavailableError
    elif code in _PROTECTED:
        cls = WriteProtectedError
    elif code == errno.ENOSPC:
        cls = MediumFullError
    else:
        cls = MediumIOError
    return cls(message, medium=medium, errno=name, **where)


class StLikeDrive(TapeDrive):
    """A TapeDrive over an st-like device (see the module docstring for the rules).

    ``ops`` is the open device; ``name`` is how the medium is named in messages (the spec the
    user wrote, e.g. ``sim:/srv/t1.tap``); ``writable`` is False when the device was opened
    read-only (a write-protected medium, GMT_WR_PROT, also makes it False);
    ``max_record_size`` defaults to ``ops.max_record``. ``check_eot_every_write``: ask MTIOCGET
    after each record to detect the early warning at the write that enters the zone (on real
    st MTIOCGET flushes the driver buffer; without it the early warning is reported one write
    later, at st's first ENOSPC).

    The position must be known at open: when the device cannot tell (mt_fileno < 0) the adapter
    rewinds.
    """

    def __init__(
        self,
        ops: StOps,
        *,
        name: str,
        writable: bool,
        max_record_size: int | None = None,
        check_eot_every_write: bool = True,
        grow_reads_to: int | None = None,
    ) -> None:
        self._ops = ops
        self.name = name
        if max_record_size is None:
            max_record_size = int(ops.max_record)
        self.max_record_size = int(max_record_size)
        self._check_eot = check_eot_every_write
        # larger read buffers to try (doubling, up to this) when a record does not fit (ENOMEM);
        # None: RecordTooLargeError at once (the contract's default)
        self._grow_reads_to = grow_reads_to
        self._closed = False
        self._writing = False  # last operation wrote a record: st would add a filemark on move/close
        # written since the last flush (MTWEOF 1 or 0): may still be in the drive's buffer
        self._unsynced = False
        # an error while data was unsynced (st reports a write-behind error one call later):
        # that data may not be on the medium, so the next sync must fail although st's flush
        # after a reported error succeeds
        self._unconfirmed: str | None = None
        self._lost: str | None = None  # why the position is unknown, or None
        self._logical = 0
        self._file = 0
        self._record = 0
        # bookkeeping: logical position of filemark k (the filemark object itself), end of data
        self._marks: dict[int, int] = {}
        self._eod: int | None = None
        self._eod_file: int | None = None
        # logical position of the first write that reported the early warning: the zone is a
        # place on the tape, so every later write beyond it reports EARLY_WARNING even when
        # st's GMT_EOT is momentarily clear (st shows it only while eof == ST_EOM_OK)
        self._ew_from: int | None = None
        # False once the drive's mt_fileno may be off (st bumps drv_file on the EOD_1 zero
        # read); the bookkeeping is used instead until the next rewind
        self._trust_fileno = True
        try:
            g = self._ops.mtget()
            self.write_protected = bool(g.mt_gstat & mtio.GMT_WR_PROT)
            self.writable = bool(writable) and not self.write_protected
            if g.mt_fileno < 0 and self._ops.mtpos() != 0:
                self._ops.mtop(mtio.MTREW, 1)
            self._sync_from_device()
        except OSError as err:
            raise translate_oserror(err, "cannot read the drive's position", medium=name) from err

    # ------------------------------------------------------------------ helpers

    def _err(self, cls: type[MediumError], message: str, **details: Any) -> MediumError:
        return cls(message, medium=self.name, tape_file=self._file, record=self._record, **details)

    def _oserr(self, err: OSError, what: str) -> MediumError:
        if self._unsynced:  # the device's error may be the buffered data's (reported one call later)
            self._unconfirmed = what
        return translate_oserror(err, what, medium=self.name, tape_file=self._file, record=self._record)

    def _check_open(self) -> None:
        if self._closed:
            raise MediumIOError("the drive is closed", medium=self.name)

    def _check_known(self) -> None:
        self._check_open()
        if self._lost is not None:
            raise MediumIOError(
                f"position unknown ({self._lost})",
                medium=self.name,
                hint="rewind or locate before reading or writing",
            )

    def _mtpos(self) -> int:
        try:
            return int(self._ops.mtpos())
        except OSError as err:
            self._lost = "MTIOCPOS failed"
            raise self._oserr(err, "cannot read the drive's position") from err

    def _mtget(self) -> Any:
        try:
            return self._ops.mtget()
        except OSError as err:
            raise self._oserr(err, "cannot read the drive's status") from err

    def _forget(self) -> None:
        """Drop the bookkeeping: the tape may not be what tapearc saw."""
        self._marks.clear()
        self._eod = self._eod_file = None
        self._ew_from = None

    def _mismatch(self, expected: int, actual: int) -> MediumIOError:
        self._lost = f"tapearc expected {expected}, drive said {actual}"
        self._forget()
        return MediumIOError(
            f"position mismatch: tapearc expected {expected}, drive says {actual}",
            medium=self.name,
            tape_file=self._file,
            record=self._record,
            hint="the tape was moved behind tapearc's back or the drive lost its position; rewind and start again",
            expected=expected,
            actual=actual,
        )

    def _expect(self, logical: int) -> None:
        actual = self._mtpos()
        if actual != logical:
            raise self._mismatch(logical, actual)

    def _learn(self, file: int, record: int, logical: int) -> None:
        """Remember what a known (file, record, logical) triple says about the filemarks."""
        if file > 0:
            self._marks[file - 1] = logical - record - 1

    def _set(self, file: int, record: int, logical: int) -> None:
        self._file, self._record, self._logical = file, record, logical
        self._lost = None
        self._learn(file, record, logical)

    def _truncate_after(self, logical: int) -> None:
        """Writing at ``logical`` discards every filemark at or after it."""
        for k in [k for k, p in self._marks.items() if p >= logical]:
            del self._marks[k]

    def _idle_before_move(self) -> None:
        """Stop st from writing a filemark of its own (close/rewind/seek/bsf after a write) and
        write out what an immediate filemark left in the drive's buffer."""
        if self._writing or self._unsynced:
            self._flush()

    def _flush(self, *, check: bool = True) -> None:
        """``MTWEOF 0``: the drive writes its buffer out; st becomes idle (no filemark at close).
        ``check``: cross-check the position afterwards."""
        self._writing = False
        self._unsynced = False
        try:
            self._ops.mtop(mtio.MTWEOF, 0)
        except OSError as err:
            self._lost = "flushing the drive's buffer failed"
            self._unconfirmed = "flushing the drive's buffer failed"
            raise self._oserr(err, "cannot flush the drive") from err
        if check and self._lost is None:
            self._expect(self._logical)

    # ----------------------------------------------------- (file, record) recovery

    def _resolve(self, logical: int, file_hint: int | None = None) -> tuple[int, int] | None:
        """(file, record) of ``logical`` from the bookkeeping table, or None when unknown."""
        if file_hint is not None:
            if file_hint == 0:
                return 0, logical
            prev = self._marks.get(file_hint - 1)
            if prev is not None and prev < logical:
                return file_hint, logical - prev - 1
        marks = sorted(self._marks.items())
        below = [(k, p) for k, p in marks if p < logical]
        if below:
            k, p = below[-1]
            file, record = k + 1, logical - p - 1
        else:
            file, record = 0, logical
        nxt = self._marks.get(file)
        if nxt is not None and nxt >= logical:
            return file, record
        if self._eod is not None and self._eod_file == file and logical <= self._eod:
            return file, record
        return None

    def _walk(self, target: int) -> None:
        """Learn the filemark positions up to ``target`` by walking from BOT, then go back."""
        try:
            self._ops.mtop(mtio.MTREW, 1)
            self._trust_fileno = True
            file = 0
            while True:
                try:
                    self._ops.mtop(mtio.MTFSF, 1)
                except OSError as err:
                    if err.errno != errno.EIO:
                        raise
                    self._eod = int(self._ops.mtpos())
                    self._eod_file = file
                    break
                file += 1
                after = int(self._ops.mtpos())
                self._marks[file - 1] = after - 1
                if after - 1 >= target:
                    break
            self._ops.mtop(mtio.MTSEEK, target)
        except OSError as err:
            self._lost = "walk failed"
            raise self._oserr(err, "cannot recover the tape file number") from err

    def _sync_from_device(self, file_hint: int | None = None) -> None:
        """Set the counters from the device after a positioning operation."""
        logical = self._mtpos()
        g = self._mtget()
        fileno, blkno = int(g.mt_fileno), int(g.mt_blkno)
        if not self._trust_fileno:
            fileno = blkno = -1
        known = self._resolve(logical, file_hint)
        if fileno >= 0 and blkno >= 0:
            if known is not None and known != (fileno, blkno):
                self._lost = "bookkeeping disagrees with the drive"
                self._forget()
                raise MediumIOError(
                    f"position mismatch: tapearc expected tape file {known[0]} record {known[1]}"
                    f" at object {logical}, drive says tape file {fileno} record {blkno}",
                    medium=self.name,
                    hint="the tape was changed behind tapearc's back; rewind and start again",
                )
            self._set(fileno, blkno, logical)
            return
        if known is None and fileno >= 0:
            known = self._resolve(logical, fileno)
        if known is None:
            self._walk(logical)
            if self._mtpos() != logical:
                self._lost = "walk did not return"
                raise self._mismatch(logical, self._mtpos())
            known = self._resolve(logical)
            if known is None:
                self._lost = "cannot place the position"
                raise MediumIOError(f"cannot tell which tape file object {logical} belongs to", medium=self.name)
        self._set(known[0], known[1], logical)

    # ------------------------------------------------------------------ reading

    def read_record(self) -> bytes | Mark:
        self._check_known()
        self._writing = False
        here = self._logical
        try:
            data = self._ops.read(self.max_record_size)
        except OSError as err:
            if err.errno == errno.ENOMEM:
                return self._read_too_large(err, here)
            if err.errno == errno.EIO:
                return self._read_eio(err, here)
            raise self._oserr(err, f"cannot read object {here}") from err
        if data:
            self._record += 1
            self._logical += 1
            return bytes(data)
        actual = self._mtpos()
        if actual == here + 1:
            self._marks[self._file] = here
            self._set(self._file + 1, 0, here + 1)
            return Mark.FILEMARK
        if actual == here:
            self._eod, self._eod_file = here, self._file
            self._trust_fileno = False  # st may have bumped mt_fileno (ST_EOD_1)
            return Mark.END_OF_DATA
        raise self._mismatch(here + 1, actual)

    def _read_too_large(self, err: OSError, here: int) -> bytes:
        """ENOMEM from the read at ``here``: the record is larger than the buffer and st has moved
        past it. Returns the record read with a larger buffer (``grow_reads_to``), or raises
        RecordTooLargeError (the drive is then past the record)."""
        where = (self._file, self._record)
        self._expect(here + 1)  # st moved past the record
        grow_to = self._grow_reads_to
        if grow_to is not None and grow_to > self.max_record_size:
            big = self._read_larger(here, grow_to)
            if big is not None:
                self._record += 1
                self._logical += 1
                return big
        self._record += 1
        self._logical += 1
        self._expect(self._logical)
        limit = max(self.max_record_size, self._grow_reads_to or 0)
        raise RecordTooLargeError(
            f"record at object {here} is larger than {limit} bytes",
            medium=self.name,
            tape_file=where[0],
            record=where[1],
            hint="read it with a larger maximum record size",
        ) from err

    def _read_eio(self, err: OSError, here: int) -> Mark:
        """EIO from the read at ``here``: end of data (returned), or an unreadable record (raised
        as MediumIOError, the drive then past it)."""
        g = self._mtget()
        actual = self._mtpos()
        if g.mt_gstat & mtio.GMT_EOD or self._eod == here:
            if actual != here:
                raise self._mismatch(here, actual) from err
            self._eod, self._eod_file = here, self._file
            return Mark.END_OF_DATA
        where = (self._file, self._record)
        if actual == here:
            if self._probe_end_of_data(here):
                return Mark.END_OF_DATA
            actual = here + 1  # the probe moved past the unreadable record
        if actual == here + 1:
            self._record += 1
            self._logical += 1
        elif actual != here:
            raise self._mismatch(here, actual) from err
        raise MediumIOError(
            f"unreadable record at object {here}: {os.strerror(errno.EIO)}",
            medium=self.name,
            tape_file=where[0],
            record=where[1],
            errno="EIO",
        ) from err

    def _read_larger(self, here: int, grow_to: int) -> bytes | None:
        """Re-read the record at ``here`` (the drive is just past it, at ``here + 1``) with larger
        buffers: MTBSR 1, then read with twice the buffer, up to ``grow_to``. Returns the
        record (the drive is then past it), or None when no buffer the drive accepts holds it
        (the drive is then past it too)."""
        size = self.max_record_size
        while size < grow_to:
            size = min(size * 2, grow_to)
            try:
                self._ops.mtop(mtio.MTBSR, 1)
            except OSError as err:
                self._lost = "backspace over a large record failed"
                raise self._oserr(err, f"cannot go back to re-read object {here}") from err
            self._expect(here)
            try:
                data = self._ops.read(size)
            except OSError as err:
                if err.errno == errno.ENOMEM:  # still too small; st is past the record again
                    self._expect(here + 1)
                    continue
                # EINVAL (above the drive's limit), EBUSY/EOVERFLOW (st cannot get a buffer
                # that large): give up, leaving the drive past the record as the contract asks
                try:
                    if int(self._ops.mtpos()) == here:
                        self._ops.mtop(mtio.MTFSR, 1)
                except OSError as err2:
                    self._lost = "cannot skip a large record"
                    raise self._oserr(err2, f"cannot skip object {here}") from err2
                self._expect(here + 1)
                return None
            if not data:
                raise self._mismatch(here + 1, self._mtpos())
            return bytes(data)
        return None

    def _probe_end_of_data(self, here: int) -> bool:
        """EIO without moving and without GMT_EOD: end of data, or a record the drive could
        not read? (st sets GMT_EOD only for some BLANK CHECKs.) Space to end of data: if that
        does not move, ``here`` is the end of data. Otherwise the record was unreadable: LOCATE
        past it (``here + 1``), as the contract asks, and return False."""
        try:
            self._ops.mtop(mtio.MTEOM, 1)
            eod = int(self._ops.mtpos())
            if eod == here:
                self._eod, self._eod_file = here, self._file
                return True
            self._eod = eod
            self._eod_file = None
            self._ops.mtop(mtio.MTSEEK, here + 1)
        except OSError as err:
            self._lost = "end-of-data probe failed"
            raise self._oserr(err, f"cannot recover after a read error at object {here}") from err
        self._expect(here + 1)
        return False

    # ------------------------------------------------------------------ writing

    def _check_writable(self) -> None:
        if not self.writable:
            why = "the medium is write-protected" if self.write_protected else "opened read-only"
            raise self._err(WriteProtectedError, f"cannot write: {why}")

    def _write_with_retry(self, do: Any, what: str) -> tuple[Any, bool]:
        """Run ``do()``; on st's early-warning ENOSPC retry once. Returns (result, retried)."""
        here = self._logical
        try:
            return do(), False
        except OSError as err:
            if err.errno != errno.ENOSPC:
                self._after_write_error(here)
                raise self._oserr(err, f"cannot write {what} at object {here}") from err
        self._expect(here)  # st wrote nothing
        try:
            return do(), True
        except OSError as err:
            if err.errno != errno.ENOSPC:
                self._after_write_error(here)
                raise self._oserr(err, f"cannot write {what} at object {here}") from err
        self._expect(here)
        self._note_ew(here, True)
        raise self._err(
            MediumFullError,
            f"the medium is full: cannot write {what} at object {here}",
            hint="continue on another medium",
        )

    def _note_ew(self, here: int, eot: bool) -> WriteStatus:
        """The status of a write at ``here`` given the drive's report; remember the zone."""
        if eot:
            if self._ew_from is None or here < self._ew_from:
                self._ew_from = here
            return WriteStatus.EARLY_WARNING
        if self._ew_from is not None and here < self._ew_from:
            self._ew_from = None  # rewritten before the zone: learn it again from the drive
        if self._ew_from is not None:
            return WriteStatus.EARLY_WARNING
        return WriteStatus.OK

    def _after_write_error(self, here: int) -> None:
        try:
            actual = int(self._ops.mtpos())
        except OSError:
            self._lost = "write failed and the position cannot be read"
            return
        if actual != here:
            self._lost = f"write failed; tapearc expected {here}, drive said {actual}"

    def write_record(self, data: bytes | bytearray | memoryview) -> WriteStatus:
        size = memoryview(data).nbytes
        if size == 0:
            raise ValueError("cannot write an empty record")
        if size > self.max_record_size:
            raise ValueError(f"record of {size} bytes exceeds max_record_size {self.max_record_size}")
        self._check_open()
        self._check_writable()
        self._check_known()
        here = self._logical
        # st enters its writing state even for a refused write: flush before moving or closing
        self._writing = True
        try:
            written, retried = self._write_with_retry(lambda: self._ops.write(data), "a record")
        except WriteProtectedError:
            self._writing = False
            raise
        self._unsynced = True
        if written != size:
            self._lost = f"short write of {written} of {size} bytes"
            raise self._err(MediumIOError, f"short write at object {here}: {written} of {size} bytes")
        eot = retried
        if self._check_eot:
            try:
                eot = eot or bool(self._ops.mtget().mt_gstat & mtio.GMT_EOT)
            except OSError as err:
                # st reports the outcome of a write-behind (asynchronous) write at the next
                # call, here MTIOCGET's flush: ENOSPC = written, early warning; anything else =
                # the record may not be on the tape: the position tells
                eot = self._write_behind_failed(err, here)
        self._truncate_after(here)
        self._record += 1
        self._logical += 1
        self._eod, self._eod_file = self._logical, self._file
        return self._note_ew(here, eot)

    def _write_behind_failed(self, err: OSError, here: int) -> bool:
        """A write-behind error surfaced by MTIOCGET after the write of the record at ``here``.
        Returns True (early warning) when the record is on the tape; raises otherwise."""
        if err.errno != errno.ENOSPC:
            self._unconfirmed = f"a write-behind error after object {here}"
        try:
            actual = int(self._ops.mtpos())
        except OSError:
            self._lost = "write-behind failed and the position cannot be read"
            raise self._oserr(err, f"cannot write a record at object {here}") from err
        if actual == here + 1:
            if err.errno == errno.ENOSPC:
                return True
            self._lost = f"write-behind error after object {here}"
            raise self._oserr(err, f"write of object {here} reported an error") from err
        if actual == here:
            if err.errno in (errno.ENOSPC, errno.EIO) and self._ew_from is not None:
                # past the early warning the drive refused the data: the physical end
                raise self._err(
                    MediumFullError,
                    f"the medium is full: cannot write a record at object {here}",
                    hint="continue on another medium",
                ) from err
            raise self._oserr(err, f"cannot write a record at object {here}") from err
        self._lost = f"write failed; tapearc expected {here + 1}, drive said {actual}"
        raise self._oserr(err, f"cannot write a record at object {here}") from err

    def write_filemark(self, *, immediate: bool = False) -> WriteStatus:
        self._check_open()
        self._check_writable()
        self._check_known()
        here = self._logical
        op = mtio.MTWEOFI if immediate else mtio.MTWEOF
        what = "an immediate filemark" if immediate else "a filemark"
        _, retried = self._write_with_retry(lambda: self._ops.mtop(op, 1), what)
        self._writing = False  # st is idle after any WEOF: close adds no filemark
        self._unsynced = immediate
        self._truncate_after(here)
        self._expect(here + 1)
        self._marks[self._file] = here
        self._set(self._file + 1, 0, here + 1)
        self._eod, self._eod_file = self._logical, self._file
        g = self._mtget()
        if int(g.mt_fileno) >= 0 and int(g.mt_fileno) != self._file:
            self._lost = "tape file number mismatch"
            raise self._err(
                MediumIOError,
                f"position mismatch: tapearc expected tape file {self._file}, drive says {g.mt_fileno}",
            )
        return self._note_ew(here, retried or bool(g.mt_gstat & mtio.GMT_EOT))

    def sync(self) -> None:
        self._check_open()
        if self._unconfirmed is not None:
            why, self._unconfirmed = self._unconfirmed, None
            raise self._err(
                MediumIOError,
                f"data written before an error is not confirmed on the medium ({why})",
                hint="tapearc scan reads what the medium holds",
            )
        if not self.writable or not (self._unsynced or self._writing):
            return
        try:
            self._flush()
        except MediumError:
            self._unconfirmed = None  # reported here, now
            raise

    # ------------------------------------------------------------------ positioning

    def _mtop(self, op: int, count: int, what: str) -> None:
        try:
            self._ops.mtop(op, count)
        except OSError as err:
            self._lost = f"{what} failed"
            try:
                self._sync_from_device()
            except MediumError:
                pass
            raise self._oserr(err, f"cannot {what}") from err

    def rewind(self) -> None:
        self._check_open()
        self._idle_before_move()
        self._mtop(mtio.MTREW, 1, "rewind")
        self._trust_fileno = True
        self._expect(0)
        self._set(0, 0, 0)

    def position(self) -> Position:
        self._check_known()
        self._expect(self._logical)
        return Position(self._logical, self._file, self._record)

    def locate(self, logical: int) -> None:
        if logical < 0:
            raise ValueError(f"cannot locate a negative position ({logical})")
        self._check_open()
        self._idle_before_move()
        try:
            self._ops.mtop(mtio.MTSEEK, logical)
            failed: OSError | None = None
        except OSError as err:
            if err.errno not in (errno.EIO, errno.EINVAL):
                self._lost = "locate failed"
                raise self._oserr(err, f"cannot locate object {logical}") from err
            failed = err
        self._sync_from_device()
        if failed is not None or self._logical != logical:
            if self._eod is None or self._logical >= self._eod:
                self._eod, self._eod_file = self._logical, self._file
            raise MediumIOError(
                f"cannot locate object {logical}: end of data is at object {self._logical}",
                medium=self.name,
                tape_file=self._file,
                record=self._record,
            ) from failed

    def space_files(self, count: int) -> int:
        if count == 0:
            return 0
        self._check_known()
        self._idle_before_move()
        start_file, start_logical = self._file, self._logical
        op = mtio.MTFSF if count > 0 else mtio.MTBSF
        short = False
        try:
            self._ops.mtop(op, abs(count))
        except OSError as err:
            if err.errno != errno.EIO:
                self._lost = "spacing failed"
                raise self._oserr(err, "cannot space over filemarks") from err
            short = True
        if count > 0:
            self._sync_from_device(None if short else start_file + count)
            crossed = self._file - start_file
            if not short and (crossed != count or self._record != 0):
                self._lost = "spacing ended in the wrong place"
                raise self._err(
                    MediumIOError,
                    f"position mismatch: after spacing {count} filemarks forward from tape file "
                    f"{start_file} tapearc expected tape file {start_file + count} record 0, "
                    f"drive says tape file {self._file} record {self._record}",
                )
            if short:
                self._eod, self._eod_file = self._logical, self._file
        else:
            self._sync_from_device(None if short else start_file + count)
            crossed = start_file - self._file
            if not short:
                if crossed != -count or self._logical >= start_logical:
                    self._lost = "spacing ended in the wrong place"
                    raise self._err(
                        MediumIOError,
                        f"position mismatch: after spacing {-count} filemarks backward from tape "
                        f"file {start_file} tapearc expected tape file {start_file + count}, "
                        f"drive says tape file {self._file}",
                    )
                self._marks[self._file] = self._logical
            elif self._logical != 0:
                self._lost = "short backward spacing did not end at BOT"
                raise self._mismatch(0, self._logical)
        if crossed < 0 or crossed > abs(count):
            self._lost = "spacing crossed an impossible number of filemarks"
            raise self._err(MediumIOError, f"spacing crossed {crossed} of {abs(count)} filemarks")
        return crossed

    def seek_end_of_data(self) -> Position:
        self._check_open()
        self._idle_before_move()
        self._mtop(mtio.MTEOM, 1, "space to end of data")
        self._sync_from_device()
        self._eod, self._eod_file = self._logical, self._file
        return Position(self._logical, self._file, self._record)

    # ------------------------------------------------------------------ status, close

    def status(self) -> DriveStatus:
        self._check_open()
        g = self._mtget()
        logical = self._mtpos()
        gstat = int(g.mt_gstat)
        if self._lost is None:
            pos = Position(self._logical, self._file, self._record)
        else:
            pos = Position(logical, int(g.mt_fileno), int(g.mt_blkno))
        if gstat & mtio.GMT_EOD:
            at_eod: bool | None = True
        elif self._eod is not None and self._lost is None:
            at_eod = logical == self._eod
        else:
            at_eod = None
        details: dict[str, object] = {
            "backend": "st",
            "mt_type": int(g.mt_type),
            "mt_fileno": int(g.mt_fileno),
            "mt_blkno": int(g.mt_blkno),
            "mt_gstat": f"0x{gstat:08x}",
            "flags": mtio.gstat_flags(gstat),
            "drive_position": logical,
            "block_size": int(g.mt_dsreg) & 0xFFFFFF,
        }
        if self._lost is not None:
            details["position_lost"] = self._lost
        if getattr(self._ops, "truncated", False):  # a simulator image whose tail is cut or damaged
            details["image_truncated"] = True
        return DriveStatus(
            name=self.name,
            position=pos,
            # MTIOCPOS decides: st derives GMT_BOT from its file/block counters, which MTWEOF 0
            # resets to block 0 (so st would claim BOT in the middle of tape file 0)
            at_bot=logical == 0,
            at_eod=at_eod,
            early_warning=bool(gstat & mtio.GMT_EOT)
            or (self._ew_from is not None and self._lost is None and self._logical >= self._ew_from),
            write_protected=bool(gstat & mtio.GMT_WR_PROT),
            max_record_size=self.max_record_size,
            capacity=_opt_int(getattr(self._ops, "capacity", None)),
            used=_opt_int(getattr(self._ops, "used", None)),
            details=details,
        )

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._writing or self._unsynced:
                self._flush(check=False)
        finally:
            self._closed = True
            try:
                self._ops.close()
            except OSError as err:
                raise self._oserr(err, "cannot close the drive") from err

    def __enter__(self) -> StLikeDrive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StLikeDrive {self.name} at {self._logical} ({self._file}, {self._record})>"


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
