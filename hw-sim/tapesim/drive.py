"""A simulated tape drive that behaves like an open Linux st no-rewind device (``/dev/nstN``).

:class:`SimDrive` holds one SIMH ``.tap`` image (see :mod:`tapesim.simh`) and offers the calls a
program makes on ``/dev/nstN`` in variable-block mode: ``read(n)`` (``os.read``),
``write(buf)`` (``os.write``), ``mtop(op, count)`` (``MTIOCTOP``), ``mtget()`` (``MTIOCGET``)
and ``mtpos()`` (``MTIOCPOS`` with ``MT_ST_SCSI2LOGICAL``). Failures are ``OSError`` with the
errno the st driver gives (see TAPE-FACTS §1 and §6 and the method docstrings).

The cartridge's settings live in a JSON sidecar ``IMAGE + ".tapesim"`` (see
:mod:`tapesim.sidecar`; its names are re-exported here): ``capacity`` (bytes of image, framing
included), ``early_warning`` (size of the early-warning zone before the capacity),
``max_record`` (the drive's READ BLOCK LIMITS maximum), ``write_protected`` and ``barcode``,
and the injected ``faults`` (media errors, power cuts, write errors, early end of medium, short
reads: see :mod:`tapesim.faults`).

The simulator knows nothing of any archive format; it never imports tapearc.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import warnings
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, ClassVar

from . import mtio
from .faults import load_faults, remove_fault, save_faults
from .index import SavedIndex, load_index, object_words_agree, remove_index, save_index
from .mtio import MtGet
from .sidecar import (
    DEFAULT_BUFFER,
    DEFAULT_CAPACITY,
    DEFAULT_MAX_RECORD,
    SidecarError,
    TapeSettings,
    default_early_warning,
    early_writeback_enabled,
    index_min_bytes,
    load_settings,
    read_sidecar,
    save_settings,
    sidecar_path,
)
from .simh import (
    WORD,
    WORD_SIZE,
    ObjKind,
    ScanResult,
    pwritev_all,
    record_size,
    scan_fd,
    write_record,
    write_tape_marks,
)
from .transport import DriveStats, TapeClock, add_stats

WRITEBACK_EVERY = 8 * 1024 * 1024
_sfr: Any = None


def _start_writeback(fd: int) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE) on the image: start writing dirty pages now, so
    the fsync at a filemark does not have to write everything since the last one. Best effort."""
    global _sfr
    if _sfr is None:
        try:
            f = ctypes.CDLL(None, use_errno=True).sync_file_range
            f.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sfr = f
        except (OSError, AttributeError):
            _sfr = False
    if _sfr:
        _sfr(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE


__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_RECORD",
    "MtGet",
    "SidecarError",
    "SimDrive",
    "TapeSettings",
    "create_image",
    "default_early_warning",
    "load_settings",
    "save_settings",
    "sidecar_path",
]


def create_image(
    path: str | os.PathLike[str],
    capacity: int = DEFAULT_CAPACITY,
    early_warning: int | None = None,
    max_record: int = DEFAULT_MAX_RECORD,
    write_protected: bool = False,
    barcode: str | None = None,
    *,
    overwrite: bool = True,
    rate: int = 0,
    buffer: int = DEFAULT_BUFFER,
) -> TapeSettings:
    """Make a blank tape: an empty image file at ``path`` plus its settings sidecar.

    ``early_warning`` defaults to ``min(capacity // 8, 4 GiB)``. An existing image is erased
    unless ``overwrite`` is false (then ``FileExistsError``). ``rate`` (bytes/s, 0 =
    unlimited) and ``buffer``: the drive's native transfer rate (:mod:`tapesim.transport`).
    """
    settings = TapeSettings(
        capacity=capacity,
        early_warning=early_warning,
        max_record=max_record,
        write_protected=write_protected,
        barcode=barcode,
        rate=rate,
        buffer=buffer,
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    if not overwrite:
        flags |= os.O_EXCL
    fd = os.open(path, flags, 0o666)
    os.close(fd)
    save_settings(path, settings)
    try:
        old_faults = "faults" in (read_sidecar(path) or {})
    except SidecarError:
        old_faults = False
    if old_faults:  # a new tape: no injected faults from the erased one
        save_faults(path, [])
    return settings


def _oserror(code: int, detail: str | None = None, filename: str | None = None) -> OSError:
    msg = os.strerror(code)
    if detail:
        msg = f"{msg} ({detail})"
    if filename is not None:
        return OSError(code, msg, filename)
    return OSError(code, msg)


# EOM state while writing in the early-warning zone (st's ST_EOM_OK / ST_EOD_1 dance)
_EOM_NONE = 0  # no pending early-warning refusal
_EOM_HIT = 1  # the last write reached the early warning: the next write gets ENOSPC
_EOM_REFUSED = 2  # a write was just refused: the next one is attempted

# mtops that do not stop st's "writing" state (st.rst: these don't cancel the filemark at close)
_KEEP_WRITING_OPS = frozenset(
    {mtio.MTNOP, mtio.MTSETBLK, mtio.MTSETDENSITY, mtio.MTWSM, mtio.MTSETDRVBUFFER, mtio.MTSETPART}
)
# mtops before which st writes one filemark if the last operation was a write
_FM_BEFORE_OPS = frozenset({mtio.MTREW, mtio.MTOFFL, mtio.MTSEEK, mtio.MTBSF, mtio.MTBSFM})
# mtops that do not wait for the drive's buffer to reach the tape (tapesim.transport)
_NO_DRAIN_OPS = _KEEP_WRITING_OPS | {mtio.MTWEOFI, mtio.MTLOCK, mtio.MTUNLOCK, mtio.MTCOMPRESSION}
# mtops st knows but the simulator does not model (setmarks, partitions)
_UNSUPPORTED_OPS = frozenset(
    {mtio.MTFSS, mtio.MTBSS, mtio.MTWSM, mtio.MTSETPART, mtio.MTMKPART, mtio.MTRAS1, mtio.MTRAS2, mtio.MTRAS3}
)


class SimDrive:
    """A simulated drive with one SIMH image loaded, used like an open ``/dev/nstN``.

    ``SimDrive(path)`` is ``open("/dev/nst0", O_RDWR)``; ``readonly=True`` is ``O_RDONLY``.
    Variable-block mode only. Positions are logical objects (records and filemarks) counted
    from 0 at BOT, as MTIOCPOS with SCSI2LOGICAL reports them.

    Like st, after a ``write()`` the drive is "writing": closing it, or MTREW / MTOFFL /
    MTSEEK / MTBSF / MTBSFM, first writes one filemark (MTBSF/MTBSFM then also space back over
    it). ``implicit_filemarks=False`` turns both off (a deviation from st, for tools).

    Opening an image that another ``SimDrive`` holds fails with EBUSY (st allows one open).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        create: bool = False,
        implicit_filemarks: bool = True,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """Open the tape image at ``path`` like ``open("/dev/nstN")``.

        Missing image and not ``create``: ``OSError(ENOENT)`` naming the path. A
        write-protected cartridge opened for writing: ``OSError(EROFS)`` (st checks at open);
        with ``readonly`` it opens and writes/MTWEOF/MTERASE then give EACCES. Another
        ``SimDrive`` holding the image: ``OSError(EBUSY)``. A bad sidecar: ``SidecarError``.

        A sidecar ``rate``: the drive moves data at most at that rate behind its ``buffer``
        (:class:`tapesim.transport.TapeClock`, with ``clock`` and ``sleep`` when given: tests);
        its stats are added to ``PATH.tapesim-stats`` at close.
        """
        self._fd = -1
        self._path = os.fspath(path)
        self._readonly = readonly
        self._implicit_fms = implicit_filemarks
        if not os.path.exists(self._path) and not create:
            raise _oserror(errno.ENOENT, None, self._path)
        self._early_writeback = early_writeback_enabled()
        self._settings = load_settings(self._path)
        self._dead = False  # a power_cut fault happened: every operation gives EIO
        self._session_writes = 0  # records written since open (power_cut "after")
        self._unflushed = 0  # bytes written since writeback was last started
        self._load_faults()
        if self._settings.write_protected and not readonly:
            raise _oserror(errno.EROFS, "cartridge is write-protected", self._path)
        if create and not os.path.exists(self._path):
            os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        self._fd, scan = self._open_image(readonly)
        self._load_index(scan)
        self._reset_state()
        self._tape: TapeClock | None = None
        if self._settings.rate:
            kw: dict[str, Any] = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}
            self._tape = TapeClock(self._settings.rate, self._settings.buffer, **kw)

    def _saved_index(self, fd: int) -> SavedIndex | None:
        """The image's saved index when it is big enough to have one and the index holds."""
        self._index_min = index_min_bytes()
        if os.fstat(fd).st_size < self._index_min:
            return None
        return load_index(self._path, fd)

    def _open_image(self, readonly: bool) -> tuple[int, ScanResult | SavedIndex]:
        """Open, check and lock the image file; returns its fd and its scan."""
        # O_NONBLOCK: a FIFO given as an image must not hang the open; it is refused below
        fd = os.open(self._path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _oserror(errno.EINVAL, "not a regular file: a tape image is a file", self._path)
            os.set_blocking(fd, True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _oserror(errno.EBUSY, "tape image is open in another SimDrive", self._path) from None
            return fd, self._saved_index(fd) or scan_fd(fd)
        except BaseException:
            os.close(fd)
            raise

    def _load_index(self, scan: ScanResult | SavedIndex) -> None:
        """The object index: offset and length (-1 = filemark) of every object."""
        # a saved index (tapesim.index) is checked object by object as the objects are read
        self._saved: os.stat_result | None = os.fstat(self._fd) if isinstance(scan, SavedIndex) else None
        self._index_wrong = False
        if isinstance(scan, ScanResult):
            scan = SavedIndex(
                array("q", (o.offset for o in scan.objects)),
                array("q", (o.length if o.kind is ObjKind.RECORD else -1 for o in scan.objects)),
                scan.error_records,
                scan.end_offset,
                scan.file_size,
                scan.truncated,
                scan.damage,
            )
        self._offs, self._lens = scan.offs, scan.lens
        self._fms: list[int] = [i for i, ln in enumerate(scan.lens) if ln < 0]
        self._errs: set[int] = set(scan.errs)
        self._end = scan.end
        self._file_size = scan.file_size
        self._truncated = scan.truncated
        self._damage = scan.damage

    def _reset_state(self) -> None:
        """The drive state at open: loaded, at BOT, nothing written."""
        self._pos = 0
        self._loaded = True
        self._after_fm = False  # st's ST_FM: the last operation left the tape just past a filemark
        self._eod = False  # GMT_EOD: end of data was reported
        self._eot = False  # GMT_EOT: the early warning was reached while writing
        self._eom_state = _EOM_NONE
        self._writing = False  # st's ST_WRITING: a filemark is due at close
        self._dirty = False  # unsynced writes

    # ------------------------------------------------------------------ properties

    @property
    def path(self) -> str:
        """Path of the image file."""
        return self._path

    @property
    def max_record(self) -> int:
        """The drive's READ BLOCK LIMITS maximum: the largest record ``read``/``write`` accept."""
        return self._settings.max_record

    @property
    def capacity(self) -> int:
        """Capacity of the cartridge in image bytes (framing words included)."""
        return self._settings.capacity

    @property
    def early_warning(self) -> int:
        """Size of the early-warning zone before the capacity, in bytes."""
        assert self._settings.early_warning is not None
        return self._settings.early_warning

    @property
    def used(self) -> int:
        """Image bytes up to end of data."""
        return self._end

    @property
    def write_protected(self) -> bool:
        """The cartridge's write-protect tab."""
        return self._settings.write_protected

    @property
    def readonly(self) -> bool:
        """Opened read-only (``O_RDONLY``)."""
        return self._readonly

    @property
    def barcode(self) -> str | None:
        """The cartridge's barcode label, if any."""
        return self._settings.barcode

    @property
    def object_count(self) -> int:
        """Logical objects (records and filemarks) before end of data."""
        return len(self._offs)

    @property
    def truncated(self) -> bool:
        """The image has a damaged tail (reading there gives EIO; writing there repairs it)."""
        return self._truncated

    @property
    def damage(self) -> str | None:
        """What the scanner found wrong at the damaged tail (None when the image is intact)."""
        return self._damage if self._truncated else None

    @property
    def closed(self) -> bool:
        return self._fd < 0

    @property
    def faults(self) -> list[dict[str, Any]]:
        """The faults in effect (from the sidecar, see :mod:`tapesim.faults`)."""
        return [dict(f) for f in self._faults]

    @property
    def powered_off(self) -> bool:
        """A ``power_cut`` fault happened: every operation gives EIO until reopened."""
        return self._dead

    # ------------------------------------------------------------------ faults

    def _load_faults(self) -> None:
        faults = load_faults(self._path)
        self._faults = faults
        self._unreadable = [(f["at"], f["at"] + f["count"]) for f in faults if f["kind"] == "unreadable"]
        self._write_errors = [(f["at"], f["at"] + f["count"]) for f in faults if f["kind"] == "write_error"]
        self._short_reads: dict[int, int] = {}
        for f in faults:
            if f["kind"] == "short_read":
                self._short_reads.setdefault(f["at"], f["length"])
        self._power_cuts = [f for f in faults if f["kind"] == "power_cut"]
        cap = self._settings.capacity
        for f in faults:
            if f["kind"] == "early_eom":
                cap = min(cap, f["offset"])
        assert self._settings.early_warning is not None
        self._cap = cap  # effective capacity (early_eom)
        self._ew_start = max(0, cap - self._settings.early_warning)

    def reload_faults(self) -> None:
        """Re-read the faults from the sidecar (they are read at open and on MTLOAD)."""
        self._check_open()
        self._load_faults()

    @staticmethod
    def _in_ranges(ranges: list[tuple[int, int]], p: int) -> bool:
        return any(a <= p < b for a, b in ranges)

    def _due_power_cut(self) -> dict[str, Any] | None:
        for f in self._power_cuts:
            if f.get("after") == self._session_writes or f.get("at") == self._pos:
                return f
        return None

    def _cut_power(self, fault: dict[str, Any], start: int, mv: memoryview) -> OSError:
        """Write half of the record at ``start`` and die, as an interrupted write leaves a
        SIMH file: the leading length word and part of the data, no trailing length word."""
        n = mv.nbytes
        part = n // 2
        self._truncate_index(self._pos)
        pwritev_all(self._fd, [WORD.pack(n), mv[:part]], start, WORD_SIZE + part)
        end = start + WORD_SIZE + part
        os.ftruncate(self._fd, end)
        os.fsync(self._fd)
        self._file_size = end
        self._end = start
        self._truncated = True
        self._damage = "interrupted write (power cut)"
        self._dirty = False
        self._writing = False
        self._dead = True
        self._power_cuts = [f for f in self._power_cuts if f is not fault]
        self._faults = [f for f in self._faults if f is not fault]
        remove_fault(self._path, fault)  # one-shot: the drive rebooted
        return _oserror(errno.EIO, "power cut while writing")

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._fd < 0:
            raise _oserror(errno.EBADF, "drive is closed")
        if self._dead:
            raise _oserror(errno.EIO, "the drive lost power")

    def _check_ready(self) -> None:
        self._check_open()
        if not self._loaded:
            raise _oserror(errno.ENOMEDIUM, "no tape loaded")

    def _offset_of(self, p: int) -> int:
        return self._offs[p] if p < len(self._offs) else self._end

    def _move_to(self, p: int) -> None:
        """Position at logical object ``p``; resets the per-operation st state."""
        self._pos = p
        self._after_fm = False
        self._eod = False
        self._eom_state = _EOM_NONE
        if self._offset_of(p) < self._ew_start:
            self._eot = False

    def _truncate_index(self, p: int) -> None:
        """Make logical position ``p`` the end of data in the index (not the file)."""
        n = len(self._offs)
        if p < n:
            self._end = self._offs[p]
            del self._offs[p:]
            del self._lens[p:]
            del self._fms[bisect_left(self._fms, p) :]
            if self._errs:
                self._errs = {i for i in self._errs if i < p}
        self._truncated = False
        self._damage = None

    def _set_file_end(self, end: int) -> None:
        if self._file_size > end:
            os.ftruncate(self._fd, end)
        self._file_size = end
        self._end = end
        self._dirty = True

    def _fileno_blkno(self) -> tuple[int, int]:
        fileno = bisect_left(self._fms, self._pos)
        start = self._fms[fileno - 1] + 1 if fileno else 0
        return fileno, self._pos - start

    def _write_filemarks(self, count: int, *, sync: bool, ignore_capacity: bool = False) -> None:
        self._check_saved(self._pos)
        start = self._offset_of(self._pos)
        end = start + WORD_SIZE * count
        if end > self._cap and not ignore_capacity:
            raise _oserror(errno.ENOSPC, "physical end of medium")
        self._truncate_index(self._pos)
        write_tape_marks(self._fd, start, count, truncate=False)
        p = self._pos
        for i in range(count):
            self._offs.append(start + WORD_SIZE * i)
            self._lens.append(-1)
            self._fms.append(p + i)
        self._set_file_end(end)
        self._pos = p + count
        self._after_fm = False
        self._eod = False
        self._eom_state = _EOM_NONE
        self._writing = False
        if end > self._ew_start:
            self._eot = True
        if sync:
            os.fsync(self._fd)
            self._dirty = False

    # ------------------------------------------------------------------ data

    def read(self, n: int) -> bytes:
        """Read one record, like ``os.read(fd, n)`` on ``/dev/nstN`` in variable mode.

        * ``n > max_record``: EINVAL (st applies READ BLOCK LIMITS to reads); ``n == 0``:
          returns ``b""`` and does nothing.
        * a record of at most ``n`` bytes: its bytes; the tape is past it.
        * a record longer than ``n``: ENOMEM, and the tape is past the record (st's ILI).
        * a filemark: ``b""``, the tape is past the filemark (fileno + 1).
        * end of data right after a filemark was read or spaced over (MTFSF, MTFSR): ``b""``
          once, without moving, and GMT_EOD is set; further reads: EIO.
        * end of data otherwise (mid-file, blank tape, after MTSEEK/MTEOM/a write): EIO.
        * a record with the SIMH error flag: EIO, tape past the record.
        * the damaged tail of a truncated image: EIO.
        * injected faults (:mod:`tapesim.faults`): an ``unreadable`` record gives EIO with the
          tape past it; a ``short_read`` record returns its first ``length`` bytes.
        """
        self._check_ready()
        if n < 0 or n > self._settings.max_record:
            raise _oserror(errno.EINVAL, f"read of {n} bytes, drive maximum is {self._settings.max_record}")
        if n == 0:
            return b""
        p = self._read_prepare()
        if p < 0:
            return b""
        ln = self._lens[p]
        self._check_saved(p)
        if ln < 0:
            return b""
        ln = self._read_check_record(p, ln, n)
        data = os.pread(self._fd, ln, self._offs[p] + WORD_SIZE)
        if len(data) != ln:
            raise _oserror(errno.EIO, "short read from image")
        if self._tape is not None:
            self._tape.read(ln)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        """Like :meth:`read` with ``n = len(buf)``, filling ``buf``; returns the byte count.

        Same outcomes as :meth:`read` (0 for a filemark or the end-of-data zero read).
        """
        mv = memoryview(buf).cast("B")
        n = mv.nbytes
        self._check_ready()
        if n > self._settings.max_record:
            raise _oserror(errno.EINVAL, f"read of {n} bytes, drive maximum is {self._settings.max_record}")
        if n == 0:
            return 0
        p = self._read_prepare()
        if p < 0:
            return 0
        ln = self._lens[p]
        self._check_saved(p)
        if ln < 0:
            return 0
        ln = self._read_check_record(p, ln, n)
        got = os.preadv(self._fd, [mv[:ln]], self._offs[p] + WORD_SIZE)
        if got != ln:
            raise _oserror(errno.EIO, "short read from image")
        if self._tape is not None:
            self._tape.read(ln)
        return ln

    def _read_prepare(self) -> int:
        """Common part of a read: handle end of data, step over the object, return its index
        (-1 for the zero-byte read at end of data right after a filemark)."""
        self._writing = False
        self._eom_state = _EOM_NONE
        p = self._pos
        if p >= len(self._offs):
            if self._truncated:
                self._eod = True
                self._after_fm = False
                raise _oserror(errno.EIO, f"damaged tape image: {self._damage}")
            if self._after_fm and not self._eod:
                self._after_fm = False
                self._eod = True
                return -1
            self._after_fm = False
            self._eod = True
            raise _oserror(errno.EIO, "end of data")
        self._eod = False
        self._pos = p + 1
        self._after_fm = self._lens[p] < 0
        return p

    def _check_saved(self, p: int) -> None:
        """With a saved index (tapesim.index): the object at ``p`` (being read, or written over)
        must be in the image where the index says; else the index file is removed and this and
        every later read or write is an I/O error (nothing is written where the index was wrong)."""
        if self._saved is None:
            return
        if not self._index_wrong and (
            p >= len(self._offs) or object_words_agree(self._fd, self._offs[p], self._lens[p])
        ):
            return
        if not self._index_wrong:
            self._index_wrong = True
            remove_index(self._path)
        raise _oserror(errno.EIO, f"object {p} is not where the saved index said (index removed: reopen the image)")

    def _read_check_record(self, p: int, ln: int, n: int) -> int:
        """Errors of reading the record ``p`` of ``ln`` bytes with an ``n``-byte buffer (the
        tape is already past it); returns the length the drive delivers."""
        if p in self._errs:
            raise _oserror(errno.EIO, "record flagged as containing an error")
        if self._unreadable and self._in_ranges(self._unreadable, p):
            raise _oserror(errno.EIO, f"medium error reading object {p} (injected fault)")
        if self._short_reads:
            ln = min(ln, self._short_reads.get(p, ln))
        if ln > n:
            raise _oserror(errno.ENOMEM, f"{ln} byte record, {n} byte read")
        return ln

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        """Write one record of ``len(buf)`` bytes, like ``os.write`` on ``/dev/nstN``.

        The record goes at the current position, which becomes the new end of data (anything
        after it is erased). ``len(buf) == 0`` returns 0 and writes nothing;
        ``len(buf) > max_record``: EINVAL; opened read-only: EACCES.

        End of medium (st.rst "EOM Behaviour When Writing"), with
        ``ew_start = capacity - early_warning``: the write whose end passes ``ew_start``
        completes, returns its count and sets GMT_EOT; the next write gets ENOSPC and writes
        nothing; the one after is written; then ENOSPC and success alternate. A write that
        would not fit within ``capacity`` gets ENOSPC and writes nothing (every later one too).

        Injected faults (:mod:`tapesim.faults`): ``early_eom`` lowers the capacity used here;
        ``write_error`` at this position: EIO, nothing written, position unchanged;
        ``power_cut``: EIO, the image ends half-way through this record and every later
        operation gives EIO.
        """
        self._check_ready()
        if self._readonly:
            raise _oserror(errno.EACCES, "opened read-only")
        mv = memoryview(buf)
        n = mv.nbytes
        if n > self._settings.max_record:
            raise _oserror(errno.EINVAL, f"write of {n} bytes, drive maximum is {self._settings.max_record}")
        if n == 0:
            return 0
        self._check_saved(self._pos)  # overwriting from an object: it must be where the index says
        start = self._write_prepare(mv)
        end = start + record_size(n)
        self._truncate_index(self._pos)
        write_record(self._fd, start, mv, truncate=False)
        if self._tape is not None:
            self._tape.write(n)
        self._unflushed += n
        if self._unflushed >= WRITEBACK_EVERY:  # like a drive's buffer draining to tape
            self._unflushed = 0
            if self._early_writeback:
                _start_writeback(self._fd)
        self._offs.append(start)
        self._lens.append(n)
        self._set_file_end(end)
        self._pos += 1
        self._session_writes += 1
        if end > self._ew_start:
            self._eot = True
            self._eom_state = _EOM_HIT
        else:
            self._eom_state = _EOM_NONE
        return n

    def _write_prepare(self, mv: memoryview) -> int:
        """The checks before a record write, in st's order (early warning, end of medium,
        injected faults); returns the image offset the record goes to."""
        self._writing = True
        self._after_fm = False
        self._eod = False
        if self._eom_state == _EOM_HIT:
            self._eom_state = _EOM_REFUSED
            raise _oserror(errno.ENOSPC, "early warning")
        start = self._offset_of(self._pos)
        if start + record_size(mv.nbytes) > self._cap:
            raise _oserror(errno.ENOSPC, "physical end of medium")
        if self._write_errors and self._in_ranges(self._write_errors, self._pos):
            raise _oserror(errno.EIO, f"medium error writing object {self._pos} (injected fault)")
        if self._power_cuts:
            cut = self._due_power_cut()
            if cut is not None:
                raise self._cut_power(cut, start, mv)
        return start

    # ------------------------------------------------------------------ ioctls

    def mtop(self, op: int, count: int = 1) -> None:
        """Perform ``MTIOCTOP`` ``op`` with ``count``, as st does.

        * MTFSF: past the ``count``-th filemark; MTBSF: back over ``count`` filemarks, ending on
          the BOT side of the last one. MTFSFM/MTBSFM: the same, then one filemark the other way.
        * MTFSR/MTBSR: space records. A filemark met forward stops past it, met backward stops
          on its BOT side (it is crossed); both give EIO for the short count.
        * Running into end of data (MTFSF, MTFSR): EIO, positioned at end of data (GMT_EOD).
          Reaching BOT early (MTBSF, MTBSR): EIO, positioned at BOT.
        * Negative counts space the other way (as SCSI SPACE does).
        * MTWEOF/MTWEOFI: write ``count`` filemarks here, making them the end of data; allowed
          in the early-warning zone; ENOSPC if they would not fit in the capacity; EACCES when
          read-only. MTWEOF syncs the image (a drive flushing its buffer).
        * MTREW/MTRETEN: to BOT. MTOFFL/MTUNLOAD: unload; later I/O gives ENOMEDIUM (MTLOAD
          loads it again, at BOT). MTNOP, MTLOCK, MTUNLOCK, MTSETDENSITY, MTSETDRVBUFFER,
          MTCOMPRESSION: accepted, no effect.
        * MTEOM: to end of data (GMT_EOD). MTERASE: erase from here to the end (EACCES when
          read-only).
        * MTSEEK: LOCATE to logical object ``count``; beyond end of data: EIO at end of data.
        * MTSETBLK: 0 (variable mode) is accepted; a fixed block size gives EINVAL because fixed
          mode is not simulated (st would accept sizes within the block limits).
        * MTTELL, MTRESET and unknown ops: ENOSYS (st's ``st_int_ioctl`` default); setmark and
          partition ops (MTFSS, MTBSS, MTWSM, MTSETPART, MTMKPART): EINVAL.

        As in st, if the last operation was a write, MTREW/MTOFFL/MTSEEK/MTBSF/MTBSFM first
        write one filemark (and MTBSF/MTBSFM count it); like the one written at close, it may
        go up to 4 bytes past the capacity.
        """
        self._check_open()
        if op == mtio.MTLOAD:
            self._load_faults()
            self._loaded = True
            self._writing = False
            self._move_to(0)
            return
        if op in (mtio.MTTELL, mtio.MTRESET):
            raise _oserror(errno.ENOSYS, "not implemented by st")
        self._check_ready()
        if op in _UNSUPPORTED_OPS:
            raise _oserror(errno.EINVAL, f"MTIOCTOP op {op} is not simulated")
        if self._tape is not None and op not in _NO_DRAIN_OPS:
            self._tape.drain()  # a filemark, a flush or a move: the buffer goes to tape first
        if self._writing and self._implicit_fms and op in _FM_BEFORE_OPS:
            self._write_filemarks(1, sync=True, ignore_capacity=True)
            if op in (mtio.MTBSF, mtio.MTBSFM):
                count += 1
        if op not in _KEEP_WRITING_OPS:
            self._writing = False
        handler = self._MTOPS.get(op)
        if handler is None:
            raise _oserror(errno.ENOSYS, f"unknown MTIOCTOP op {op}")
        handler(self, count)

    def _op_fsf(self, count: int) -> None:
        if count < 0:
            return self._op_bsf(-count)
        if count == 0:
            return
        i = bisect_left(self._fms, self._pos) + count - 1
        if i < len(self._fms):
            self._move_to(self._fms[i] + 1)
            self._after_fm = True
            return
        self._move_to(len(self._offs))
        self._eod = True
        raise _oserror(errno.EIO, "end of data while spacing filemarks")

    def _op_bsf(self, count: int) -> None:
        if count < 0:
            return self._op_fsf(-count)
        if count == 0:
            return
        i = bisect_left(self._fms, self._pos) - count
        if i >= 0:
            self._move_to(self._fms[i])
            return
        self._move_to(0)
        raise _oserror(errno.EIO, "beginning of tape while spacing filemarks")

    def _op_fsfm(self, count: int) -> None:
        self._op_fsf(count)
        self._op_bsf(1)

    def _op_bsfm(self, count: int) -> None:
        self._op_bsf(count)
        self._op_fsf(1)

    def _op_fsr(self, count: int) -> None:
        if count < 0:
            return self._op_bsr(-count)
        p = self._pos
        n = len(self._offs)
        # the next filemark at or after p
        j = bisect_left(self._fms, p)
        next_fm = self._fms[j] if j < len(self._fms) else n
        target = p + count
        if target <= next_fm:  # only records in between (next_fm <= n)
            self._move_to(target)
            return
        if next_fm < n:
            self._move_to(next_fm + 1)
            self._after_fm = True
            raise _oserror(errno.EIO, "filemark while spacing records")
        self._move_to(n)
        self._eod = True
        raise _oserror(errno.EIO, "end of data while spacing records")

    def _op_bsr(self, count: int) -> None:
        if count < 0:
            return self._op_fsr(-count)
        p = self._pos
        # the last filemark before p
        j = bisect_left(self._fms, p) - 1
        prev_fm = self._fms[j] if j >= 0 else -1
        target = p - count
        if target > prev_fm and target >= 0:
            self._move_to(target)
            return
        if prev_fm >= 0:
            self._move_to(prev_fm)  # crossed the filemark: on its BOT side
            raise _oserror(errno.EIO, "filemark while spacing records")
        self._move_to(0)
        raise _oserror(errno.EIO, "beginning of tape while spacing records")

    def _op_weof(self, count: int) -> None:
        if self._readonly:
            raise _oserror(errno.EACCES, "opened read-only")
        if count < 0:
            raise _oserror(errno.EINVAL, "negative filemark count")
        if count == 0:
            os.fsync(self._fd)
            self._dirty = False
            return
        self._write_filemarks(count, sync=True)

    def _op_weofi(self, count: int) -> None:
        if self._readonly:
            raise _oserror(errno.EACCES, "opened read-only")
        if count < 0:
            raise _oserror(errno.EINVAL, "negative filemark count")
        if count:
            self._write_filemarks(count, sync=False)

    def _op_rew(self, count: int) -> None:
        self._move_to(0)

    def _op_offl(self, count: int) -> None:
        self._move_to(0)
        self._loaded = False
        self._eot = False

    def _op_nop(self, count: int) -> None:
        return None

    def _op_eom(self, count: int) -> None:
        self._move_to(len(self._offs))
        self._eod = True

    def _op_erase(self, count: int) -> None:
        if self._readonly:
            raise _oserror(errno.EACCES, "opened read-only")
        start = self._offset_of(self._pos)
        self._truncate_index(self._pos)
        self._set_file_end(start)
        self._move_to(self._pos)

    def _op_seek(self, count: int) -> None:
        if count < 0:
            raise _oserror(errno.EINVAL, "negative position")
        n = len(self._offs)
        if count > n:
            self._move_to(n)
            self._eod = True
            raise _oserror(errno.EIO, f"locate to {count} is beyond end of data ({n})")
        self._move_to(count)

    def _op_setblk(self, count: int) -> None:
        if count & mtio.MT_ST_BLKSIZE_MASK:
            raise _oserror(errno.EINVAL, "fixed block mode is not simulated")

    _MTOPS: ClassVar[dict[int, Callable[[SimDrive, int], None]]] = {
        mtio.MTFSF: _op_fsf,
        mtio.MTBSF: _op_bsf,
        mtio.MTFSR: _op_fsr,
        mtio.MTBSR: _op_bsr,
        mtio.MTFSFM: _op_fsfm,
        mtio.MTBSFM: _op_bsfm,
        mtio.MTWEOF: _op_weof,
        mtio.MTWEOFI: _op_weofi,
        mtio.MTREW: _op_rew,
        mtio.MTRETEN: _op_rew,
        mtio.MTOFFL: _op_offl,
        mtio.MTUNLOAD: _op_offl,
        mtio.MTNOP: _op_nop,
        mtio.MTLOCK: _op_nop,
        mtio.MTUNLOCK: _op_nop,
        mtio.MTSETDENSITY: _op_nop,
        mtio.MTSETDRVBUFFER: _op_nop,
        mtio.MTCOMPRESSION: _op_nop,
        mtio.MTEOM: _op_eom,
        mtio.MTERASE: _op_erase,
        mtio.MTSEEK: _op_seek,
        mtio.MTSETBLK: _op_setblk,
    }

    def mtget(self) -> MtGet:
        """``MTIOCGET``: drive status like st reports it.

        ``mt_type`` 0x72 (SCSI-2), ``mt_resid`` = partition 0, ``mt_dsreg`` = 0 (variable
        block size, density 0), ``mt_gstat``: GMT_ONLINE and GMT_IM_REP_EN while loaded,
        GMT_BOT at BOT, GMT_EOF just past a filemark (blkno 0, fileno > 0), GMT_EOT once a
        write reached the early warning (cleared by moving before it), GMT_EOD after end of
        data was reported, GMT_WR_PROT for a write-protected cartridge, GMT_DR_OPEN when
        unloaded (then fileno = blkno = -1). ``mt_fileno``/``mt_blkno``: the tape file and
        the record within it (the simulator always knows them; st reports -1 after MTBSF,
        MTSEEK and some errors).
        """
        self._check_open()
        wp = mtio.GMT_WR_PROT if self._settings.write_protected else 0
        if not self._loaded:
            return MtGet(mtio.MT_ISSCSI2, 0, 0, mtio.GMT_DR_OPEN | wp, 0, -1, -1)
        fileno, blkno = self._fileno_blkno()
        gstat = mtio.GMT_ONLINE | mtio.GMT_IM_REP_EN | wp
        if self._pos == 0:
            gstat |= mtio.GMT_BOT
        if blkno == 0 and fileno > 0:
            gstat |= mtio.GMT_EOF
        if self._eot:
            gstat |= mtio.GMT_EOT
        if self._eod:
            gstat |= mtio.GMT_EOD
        return MtGet(mtio.MT_ISSCSI2, 0, 0, gstat, 0, fileno, blkno)

    def mtpos(self) -> int:
        """``MTIOCPOS`` with SCSI2LOGICAL: the logical object number (records and filemarks
        counted from 0 at BOT). ENOMEDIUM when unloaded."""
        self._check_ready()
        return self._pos

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Close the drive like closing ``/dev/nstN``.

        If the last operation was a write, one filemark is written first (st's close). As on the
        stlab drive this works even at the physical end of the medium: that filemark may go up
        to 4 bytes past ``capacity``. ``implicit_filemarks=False`` skips it (and the one st
        writes before MTREW/MTOFFL/MTSEEK/MTBSF/MTBSFM). Written data is flushed (fsync).
        """
        if self._fd < 0:
            return
        try:
            if self._dead:  # lost power: nothing more reaches the tape
                self._writing = self._dirty = False
            if self._loaded and self._writing and self._implicit_fms:
                self._write_filemarks(1, sync=False, ignore_capacity=True)
            if self._dirty:
                os.fsync(self._fd)
                self._dirty = False
            self._keep_index()
            self._close_tape()
        finally:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the flock

    def _close_tape(self) -> None:
        """Close returns when the drive's buffer is on tape (a dead drive's is lost); the
        session's stats go to ``PATH.tapesim-stats`` (best effort: a folder we cannot write to
        keeps none)."""
        tape, self._tape = self._tape, None
        if tape is None:
            return
        stats = tape.stats if self._dead else tape.close()
        try:
            add_stats(self._path, stats)
        except OSError:
            pass

    @property
    def tape_stats(self) -> DriveStats | None:
        """This open's stats of a rate-limited drive (:mod:`tapesim.transport`), else None."""
        return None if self._tape is None else self._tape.stats

    def _keep_index(self) -> None:
        """Save the index for the next open (tapesim.index) of a big, undamaged image whose
        saved index is missing or no longer describes it; a dead drive saves nothing."""
        if self._dead or self._truncated or self._index_wrong or self._file_size < self._index_min:
            return
        st = os.fstat(self._fd)
        if self._saved is not None and (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (
            self._saved.st_size,
            self._saved.st_mtime_ns,
            self._saved.st_ctime_ns,
        ):
            return  # unchanged since it was loaded
        save_index(
            self._path, self._fd, SavedIndex(self._offs, self._lens, sorted(self._errs), self._end, self._file_size)
        )

    def __enter__(self) -> SimDrive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            warnings.warn(f"unclosed SimDrive {self._path!r}", ResourceWarning, stacklevel=2)
            self._fd = -1
            try:
                os.close(fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else ("unloaded" if not self._loaded else f"pos {self._pos}")
        return f"<SimDrive {self._path!r} {state}>"
