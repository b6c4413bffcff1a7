"""The removable-disk backend: a folder holding the same records and filemarks as a tape.

Layout of a ``dir:PATH`` medium::

    PATH/TAPEARC-DIR-MEDIUM        {"format": "tapearc-dir-medium", "version": 1, ...}
    PATH/file-000000/rec-000000000 one file per record, raw bytes
    PATH/file-000000/rec-000000001
    PATH/file-000000/FILEMARK      empty; present once tape file 0 is closed by a filemark
    PATH/file-000001/...

Optional marker keys: ``"write_protected": true`` (the medium's write-protect tab),
``"capacity"`` (bytes of record data the medium may hold; writes beyond it raise
MediumFullError), ``"early_warning"`` (bytes before ``capacity`` where the early-warning zone
starts; default min(64 MiB, capacity // 10)), ``"max_record_size"``.

Early warning without a capacity: when the file system's free space (``os.statvfs``) drops
below ``reserve`` (64 MiB by default) after a write. Full: the record does not fit (in the
capacity, or in the file system's free space) -> MediumFullError, nothing written (a file the OS
failed to finish with ENOSPC is removed).

Crash states: in the last tape file (no FILEMARK yet), an empty record file (a write killed after
creating it) or a gap in the numbering (a power cut before the folder reached the disk) ends the
data: that record and any after it are a torn tail, not records (as a SIMH image's torn last
record); ``status().details["image_truncated"]`` says so, and the next write removes them.

Logical positions are computed from the per-tape-file record counts, read once at open and
kept up to date. Writing at a position removes everything after it (as on tape); a filemark
makes that tape file's records durable (one syncfs of the file system; an fsync per record where
the C library has no syncfs), then fsyncs the FILEMARK file and the folders.

An *immediate* filemark (``write_filemark(immediate=True)``) creates the FILEMARK file like the
synchronous one (positions, end of data and reading back are the same at once) but leaves its
fsync, the records' and the folders' to :meth:`DirDrive.sync` (also done by the next synchronous
filemark and by close): until then they sit in the page cache, as data in a tape drive's buffer.
``sync`` makes everything written so far durable (syncfs or fsyncs as above) and does nothing
on a read-only medium or when nothing is pending; after a flush that failed (a synchronous
filemark's, close's) the next ``sync`` fails once, as the kernel reports a writeback error only
once. A power cut before it may lose the tail: at
the next open, a missing record ends the data (the crash states above). The folder is locked
(``flock``) while open, exclusively for writing, shared for reading.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
from bisect import bisect_right
from typing import Any

from ..buffers import aligned_bytearray, direct_io_enabled
from ..errors import (
    MediumError,
    MediumFullError,
    MediumIOError,
    MediumUnavailableError,
    NotTapearcMediumError,
    RecordTooLargeError,
    WriteProtectedError,
)
from ..format.jsonio import parse_json
from .base import DriveStatus, Mark, Position, TapeDrive, WriteStatus
from .writeback import start_writeback, syncfs

__all__ = ["MARKER_FORMAT", "MARKER_NAME", "DirDrive", "create_dir_medium"]

MARKER_NAME = "TAPEARC-DIR-MEDIUM"
MARKER_FORMAT = "tapearc-dir-medium"
MARKER_VERSION = 1
FILEMARK_NAME = "FILEMARK"
DEFAULT_MAX_RECORD = 16 * 1024 * 1024
DEFAULT_RESERVE = 64 * 1024 * 1024
_FILE_RE = re.compile(r"^file-(\d{6,})$")
_REC_RE = re.compile(r"^rec-(\d{9,})$")
_IGNORED = {"lost+found"}  # a freshly formatted removable disk's root counts as empty


def _file_dir(n: int) -> str:
    return f"file-{n:06d}"


def _rec_name(n: int) -> str:
    return f"rec-{n:09d}"


def _fsync_path(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_dir_medium(
    path: str,
    *,
    capacity: int | None = None,
    early_warning: int | None = None,
    max_record_size: int | None = None,
    write_protected: bool = False,
) -> None:
    """Make ``path`` (missing or empty) a blank dir medium with the given marker options."""
    os.makedirs(path, exist_ok=True)
    if any(e not in _IGNORED for e in os.listdir(path)):
        raise NotTapearcMediumError(f"folder is not empty: {path}", medium=f"dir:{path}")
    marker: dict[str, Any] = {"format": MARKER_FORMAT, "version": MARKER_VERSION}
    if capacity is not None:
        marker["capacity"] = int(capacity)
    if early_warning is not None:
        marker["early_warning"] = int(early_warning)
    if max_record_size is not None:
        marker["max_record_size"] = int(max_record_size)
    if write_protected:
        marker["write_protected"] = True
    _write_marker(path, marker)


def _write_marker(path: str, marker: dict[str, Any]) -> None:
    tmp = os.path.join(path, MARKER_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=1, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(path, MARKER_NAME))
    _fsync_path(path, directory=True)


class DirDrive(TapeDrive):
    """A TapeDrive over a ``dir:`` folder (see the module docstring for the layout).

    ``write``: open for reading and writing (a missing folder is then created, an empty one gets
    its marker). ``name`` defaults to ``dir:PATH``. ``reserve``: free-space threshold of the
    early warning when the marker sets no capacity. ``max_record_size`` overrides the marker's
    (default 16 MiB).
    """

    def __init__(
        self,
        path: str,
        *,
        write: bool,
        name: str | None = None,
        reserve: int = DEFAULT_RESERVE,
        max_record_size: int | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self.name = name or f"dir:{path}"
        self.reserve = int(reserve)
        self._direct = direct_io_enabled()  # O_DIRECT record reads (turned off at the first EINVAL)
        self._rbuf: tuple[bytearray, int] | None = None
        self._closed = True
        self._lock_fd: int | None = None
        marker = self._open_folder(write)
        self.max_record_size = int(max_record_size or marker.get("max_record_size") or DEFAULT_MAX_RECORD)
        self.capacity: int | None = _opt_int(marker.get("capacity"))
        ew = marker.get("early_warning")
        if self.capacity is not None and ew is None:
            ew = min(DEFAULT_RESERVE, self.capacity // 10)
        self.early_warning_zone: int | None = _opt_int(ew)
        self.write_protected = bool(marker.get("write_protected", False)) or (
            os.path.isdir(self.path) and not os.access(self.path, os.W_OK)
        )
        self.writable = bool(write) and not self.write_protected
        self._marker = marker
        self._closed = False
        # tape state: counts[f] = records in tape file f; files < nmarks are closed by a filemark;
        # len(counts) == nmarks + 1 (the last entry is the unclosed tail file, maybe empty)
        self._counts: list[int] = [0]
        self._starts: list[int] = [0]  # logical position of the first object of each tape file
        self._nmarks = 0
        self._used: int | None = None
        self._unsynced: set[str] = set()  # record files not yet made durable
        self._unsynced_marks: set[str] = set()  # FILEMARK files of immediate filemarks, not yet durable
        # a flush failed: Linux reports a writeback error once and drops the pages, so a later
        # flush succeeds; the next sync() must fail instead of confirming what may be gone
        self._unconfirmed: str | None = None
        self._file = 0
        self._record = 0
        self._ew = False
        self._torn: list[str] = []  # record files after the end of data (a write cut short)
        try:
            self._scan()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ opening

    def _open_folder(self, write: bool) -> dict[str, Any]:
        path = self.path
        if not os.path.exists(path):
            if not write:
                raise MediumUnavailableError(
                    f"no such folder: {path}",
                    medium=self.name,
                    hint="a dir: medium is created when it is first opened for writing",
                )
            from .identity import refuse_creating_in_dev

            refuse_creating_in_dev(path, self.name)
            try:
                os.makedirs(path)
            except OSError as err:
                raise MediumUnavailableError(f"cannot create folder {path}: {err.strerror}", medium=self.name) from err
        if not os.path.isdir(path):
            raise NotTapearcMediumError(f"not a folder: {path}", medium=self.name)
        self._lock(write)
        marker_path = os.path.join(path, MARKER_NAME)
        if not os.path.exists(marker_path):
            entries = [e for e in os.listdir(path) if e not in _IGNORED]
            if entries:
                raise NotTapearcMediumError(
                    f"folder {path} is not empty and is not a tapearc dir medium (no {MARKER_NAME} file)",
                    medium=self.name,
                    hint="use an empty folder; tapearc never writes into a folder it did not create",
                )
            marker = {"format": MARKER_FORMAT, "version": MARKER_VERSION}
            if write and os.access(path, os.W_OK):
                try:
                    _write_marker(path, marker)
                except OSError as err:
                    raise WriteProtectedError(
                        f"cannot write the medium marker: {err.strerror}", medium=self.name
                    ) from err
            return marker
        try:
            with open(marker_path, encoding="utf-8") as fh:
                marker = parse_json(fh.read())
        except (OSError, ValueError) as err:
            raise NotTapearcMediumError(f"unreadable {marker_path}: {err}", medium=self.name) from None
        if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
            raise NotTapearcMediumError(f"{MARKER_NAME} in {path} is not a tapearc dir medium marker", medium=self.name)
        if marker.get("version") != MARKER_VERSION:
            raise NotTapearcMediumError(
                f"dir medium version {marker.get('version')!r} is not supported "
                f"(this tapearc reads version {MARKER_VERSION})",
                medium=self.name,
            )
        return marker

    def _lock(self, write: bool) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if write else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise MediumUnavailableError(f"{self.path} is in use by another tapearc", medium=self.name) from err
            raise MediumUnavailableError(f"cannot lock {self.path}: {err.strerror}") from err
        self._lock_fd = fd

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def _damaged(self, message: str) -> MediumIOError:
        return MediumIOError(
            f"damaged dir medium: {message}", medium=self.name, hint="the folder was changed outside tapearc"
        )

    def _scan(self) -> None:
        files: dict[int, str] = {}
        for entry in os.listdir(self.path):
            m = _FILE_RE.match(entry)
            if m:
                files[int(m.group(1))] = entry
        counts: list[int] = []
        nmarks = 0
        for n in range(len(files)):
            if n not in files:
                raise self._damaged(f"tape file {n} is missing but later ones exist")
            folder = os.path.join(self.path, files[n])
            recs = set()
            has_mark = False
            for entry in os.listdir(folder):
                m = _REC_RE.match(entry)
                if m:
                    recs.add(int(m.group(1)))
                elif entry == FILEMARK_NAME:
                    has_mark = True
            if nmarks != n:
                raise self._damaged(f"tape file {n - 1} has no filemark but tape file {n} exists")
            count = len(recs)
            if not has_mark:
                # the last tape file, still open: a write killed in the middle leaves an empty
                # record file (created, no byte written yet), or a gap in the numbering (a power
                # cut before the folder's entries reached the disk). Such a torn tail is not
                # data: the end of data is before it (as a SIMH image's torn last record), and
                # the next write removes it.
                count = 0
                while count in recs and os.path.getsize(os.path.join(folder, _rec_name(count))) > 0:
                    count += 1
                torn = [os.path.join(folder, _rec_name(r)) for r in sorted(recs) if r >= count]
                self._torn.extend(torn)
            elif recs != set(range(len(recs))):
                raise self._damaged(f"records of tape file {n} are not numbered 0..{len(recs) - 1}")
            counts.append(count)
            if has_mark:
                nmarks += 1
        if len(counts) == nmarks:
            counts.append(0)
        self._counts = counts
        self._nmarks = nmarks
        self._rebuild_starts()
        if self.capacity is not None:
            self._used = self._compute_used()

    def _rebuild_starts(self) -> None:
        starts, pos = [], 0
        for c in self._counts:
            starts.append(pos)
            pos += c + 1
        self._starts = starts

    def _compute_used(self) -> int:
        total = 0
        for f, c in enumerate(self._counts):
            folder = self._folder(f)
            for r in range(c):
                total += os.stat(os.path.join(folder, _rec_name(r))).st_size
        return total

    # ------------------------------------------------------------------ helpers

    def _folder(self, f: int) -> str:
        return os.path.join(self.path, _file_dir(f))

    def _logical(self) -> int:
        return self._starts[self._file] + self._record

    def _eod(self) -> tuple[int, int]:
        return self._nmarks, self._counts[self._nmarks]

    def _eod_logical(self) -> int:
        f, r = self._eod()
        return self._starts[f] + r

    def _err(self, cls: type[MediumError], message: str, **details: Any) -> MediumError:
        return cls(message, medium=self.name, tape_file=self._file, record=self._record, **details)

    def _check_open(self) -> None:
        if self._closed:
            raise MediumIOError("the drive is closed", medium=self.name)

    def _free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def _used_bytes(self) -> int:
        if self._used is None:
            self._used = self._compute_used()
        return self._used

    def _in_early_warning(self) -> bool:
        if (
            self.capacity is not None
            and self.early_warning_zone is not None
            and self._used_bytes() >= self.capacity - self.early_warning_zone
        ):
            return True
        return self._free_bytes() < self.reserve

    def _drop_torn(self) -> None:
        """Remove the record files of a write cut short (after the end of data) before writing."""
        while self._torn:
            path = self._torn.pop()
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                self._torn.append(path)
                raise self._err(MediumIOError, f"cannot remove the cut record {path}: {err.strerror}") from err

    def _truncate_here(self) -> None:
        """Make the current position the end of data, removing everything after it."""
        f, r = self._file, self._record
        if (f, r) == self._eod():
            return
        folder = self._folder(f)
        removed = 0
        # later tape files
        for g in range(f + 1, len(self._counts)):
            gdir = self._folder(g)
            if self._used is not None:
                removed += sum(os.stat(os.path.join(gdir, _rec_name(i))).st_size for i in range(self._counts[g]))
            if os.path.isdir(gdir):
                shutil.rmtree(gdir)
        mark = os.path.join(folder, FILEMARK_NAME)
        if os.path.exists(mark):
            os.unlink(mark)
        for i in range(r, self._counts[f]):
            rec = os.path.join(folder, _rec_name(i))
            if self._used is not None:
                removed += os.stat(rec).st_size
            os.unlink(rec)
            self._unsynced.discard(rec)
        # what is left of earlier tape files may be unsynced too (immediate filemarks)
        self._unsynced = {p for p in self._unsynced if os.path.exists(p)}
        self._unsynced_marks = {p for p in self._unsynced_marks if os.path.exists(p)}
        del self._counts[f + 1 :]
        self._counts[f] = r
        self._nmarks = f
        self._starts = self._starts[: f + 1]
        if self._used is not None:
            self._used -= removed

    # ------------------------------------------------------------------ TapeDrive

    def read_record(self) -> bytes | Mark:
        self._check_open()
        f, r = self._file, self._record
        if r < self._counts[f]:
            rec = os.path.join(self._folder(f), _rec_name(r))
            self._record += 1  # past the record, readable or not
            try:
                data, size = self._read_file(rec, f, r)
            except OSError as err:
                raise MediumIOError(
                    f"unreadable record: {err.strerror}", medium=self.name, tape_file=f, record=r
                ) from err
            if not data or len(data) != size:
                raise MediumIOError(
                    f"record file changed while reading ({len(data)} of {size} bytes)",
                    medium=self.name,
                    tape_file=f,
                    record=r,
                )
            return data
        if f < self._nmarks:
            self._file, self._record = f + 1, 0
            return Mark.FILEMARK
        return Mark.END_OF_DATA

    def _too_large(self, size: int, f: int, r: int) -> RecordTooLargeError:
        return RecordTooLargeError(
            f"record of {size} bytes is larger than {self.max_record_size} bytes",
            medium=self.name,
            tape_file=f,
            record=r,
            hint="read it with a larger maximum record size",
        )

    def _read_file(self, rec: str, f: int, r: int) -> tuple[bytes, int]:
        """A record file's bytes (one more asked for, to see it did not grow) and its size.
        With O_DIRECT into an aligned buffer where the file system takes it (the page cache is
        skipped: here it cost more system CPU than the copy out of the buffer); else buffered."""
        if self._direct:
            try:
                fd = os.open(rec, os.O_RDONLY | os.O_DIRECT)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                self._direct = False
            else:
                try:
                    size = os.fstat(fd).st_size
                    if size > self.max_record_size:
                        raise self._too_large(size, f, r)
                    want = -(-(size + 1) // 4096) * 4096
                    if self._rbuf is None or len(self._rbuf[0]) - self._rbuf[1] < want:
                        self._rbuf = aligned_bytearray(want)
                    ba, base = self._rbuf
                    view = memoryview(ba)[base : base + want]
                    try:
                        n = os.preadv(fd, [view], 0)
                    except OSError as err:
                        if err.errno != errno.EINVAL:
                            raise
                        self._direct = False
                    else:
                        return bytes(view[:n]), size
                finally:
                    os.close(fd)
        with open(rec, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > self.max_record_size:
                raise self._too_large(size, f, r)
            return fh.read(size + 1), size

    def _check_write(self) -> None:
        self._check_open()
        if not self.writable:
            why = "the medium is write-protected" if self.write_protected else "opened read-only"
            raise self._err(WriteProtectedError, f"cannot write: {why}")

    def write_record(self, data: bytes | bytearray | memoryview) -> WriteStatus:
        view = memoryview(data)
        size = view.nbytes
        if size == 0:
            raise ValueError("cannot write an empty record")
        if size > self.max_record_size:
            raise ValueError(f"record of {size} bytes exceeds max_record_size {self.max_record_size}")
        self._check_write()
        here = self._logical()
        self._drop_torn()

        def full() -> MediumError:
            return self._err(
                MediumFullError,
                f"the medium is full: cannot write a record of {size} bytes at object {here}",
                hint="continue on another medium",
            )

        try:
            self._truncate_here()
            if self.capacity is not None and self._used_bytes() + size > self.capacity:
                raise full()
            if self._free_bytes() < size + 65536:
                raise full()
            folder = self._folder(self._file)
            if self._record == 0:
                os.makedirs(folder, exist_ok=True)
            rec = os.path.join(folder, _rec_name(self._record))
            try:
                with open(rec, "wb", buffering=0) as fh:
                    done = 0
                    while done < size:
                        done += fh.write(view[done:])
                    start_writeback(fh.fileno())  # on its way to disk before the filemark's syncfs
            except OSError as err:
                try:
                    os.unlink(rec)
                except OSError:
                    pass
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise full() from err
                raise
        except MediumError:
            raise
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise self._err(WriteProtectedError, f"cannot write: {err.strerror}") from err
            raise self._err(MediumIOError, f"cannot write a record at object {here}: {err.strerror}") from err
        self._unsynced.add(rec)
        self._counts[self._file] += 1
        self._record += 1
        if self._used is not None:
            self._used += size
        self._ew = self._in_early_warning()
        return WriteStatus.EARLY_WARNING if self._ew else WriteStatus.OK

    def write_filemark(self, *, immediate: bool = False) -> WriteStatus:
        self._check_write()
        here = self._logical()
        self._drop_torn()
        try:
            self._truncate_here()
            folder = self._folder(self._file)
            os.makedirs(folder, exist_ok=True)
            mark = os.path.join(folder, FILEMARK_NAME)
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            self._unsynced_marks.add(mark)
            if not immediate:
                self._sync_pending()
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._err(
                    MediumFullError, f"the medium is full: cannot write a filemark at object {here}"
                ) from err
            if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise self._err(WriteProtectedError, f"cannot write: {err.strerror}") from err
            raise self._err(MediumIOError, f"cannot write a filemark at object {here}: {err.strerror}") from err
        self._nmarks += 1
        self._counts.append(0)
        self._starts.append(self._starts[self._file] + self._counts[self._file] + 1)
        self._file, self._record = self._file + 1, 0
        self._ew = self._in_early_warning()
        return WriteStatus.EARLY_WARNING if self._ew else WriteStatus.OK

    def _sync_pending(self) -> None:
        """Make every record and FILEMARK written so far durable (records first, as a tape drive
        writes them in order): one syncfs, else an fsync per file; then each unsynced FILEMARK,
        its folder and the medium's folder."""
        try:
            self._sync_pending_files()
        except OSError as err:
            self._unconfirmed = f"flushing records failed: {err.strerror}"
            raise

    def _sync_pending_files(self) -> None:
        self._sync_records()
        marks = sorted(self._unsynced_marks)
        for mark in marks:
            if os.path.exists(mark):
                _fsync_path(mark)
                _fsync_path(os.path.dirname(mark), directory=True)
        if marks:
            _fsync_path(self.path, directory=True)
        self._unsynced_marks.clear()

    def sync(self) -> None:
        self._check_open()
        if self._unconfirmed is not None:
            why, self._unconfirmed = self._unconfirmed, None
            raise self._err(MediumIOError, f"data written before an error is not confirmed on the medium ({why})")
        if not self.writable or not (self._unsynced or self._unsynced_marks):
            return
        try:
            self._sync_pending()
        except OSError as err:
            self._unconfirmed = None  # reported here, now
            raise self._err(MediumIOError, f"cannot flush records: {err.strerror}") from err

    def _sync_records(self) -> None:
        if self._unsynced and syncfs(self.path):
            self._unsynced.clear()
            return
        folders = set()
        for rec in sorted(self._unsynced):
            if os.path.exists(rec):
                _fsync_path(rec)
                folders.add(os.path.dirname(rec))
        for folder in folders:
            _fsync_path(folder, directory=True)
        if folders:
            _fsync_path(self.path, directory=True)
        self._unsynced.clear()

    def rewind(self) -> None:
        self._check_open()
        self._file, self._record = 0, 0

    def position(self) -> Position:
        self._check_open()
        return Position(self._logical(), self._file, self._record)

    def locate(self, logical: int) -> None:
        if logical < 0:
            raise ValueError(f"cannot locate a negative position ({logical})")
        self._check_open()
        eod = self._eod_logical()
        if logical > eod:
            self._file, self._record = self._eod()
            raise self._err(MediumIOError, f"cannot locate object {logical}: end of data is at object {eod}")
        f = bisect_right(self._starts, logical) - 1
        self._file, self._record = f, logical - self._starts[f]

    def space_files(self, count: int) -> int:
        self._check_open()
        if count > 0:
            avail = self._nmarks - self._file
            if count <= avail:
                self._file, self._record = self._file + count, 0
                return count
            self._file, self._record = self._eod()
            return avail
        if count < 0:
            n = -count
            if n <= self._file:
                f = self._file - n
                self._file, self._record = f, self._counts[f]
                return n
            crossed = self._file
            self._file, self._record = 0, 0
            return crossed
        return 0

    def seek_end_of_data(self) -> Position:
        self._check_open()
        self._file, self._record = self._eod()
        return self.position()

    def status(self) -> DriveStatus:
        self._check_open()
        pos = self.position()
        try:
            free = self._free_bytes()
        except OSError:
            free = None
        return DriveStatus(
            name=self.name,
            position=pos,
            at_bot=pos.logical == 0,
            at_eod=(self._file, self._record) == self._eod(),
            early_warning=self._in_early_warning() if self.writable else self._ew,
            write_protected=self.write_protected,
            max_record_size=self.max_record_size,
            capacity=self.capacity,
            used=self._used_bytes(),
            details={
                "backend": "dir",
                "path": self.path,
                "tape_files": self._nmarks + (1 if self._counts[self._nmarks] else 0),
                "filemarks": self._nmarks,
                "end_of_data": self._eod_logical(),
                "free_bytes": free,
                "reserve": self.reserve,
                "early_warning_zone": self.early_warning_zone,
                # a write was cut short after the end of data (an interrupted backup)
                "image_truncated": bool(self._torn),
            },
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._unsynced or self._unsynced_marks:
                self._sync_pending()
        except OSError as err:
            raise MediumIOError(f"cannot flush records: {err.strerror}", medium=self.name) from err
        finally:
            self._release()

    def __enter__(self) -> DirDrive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DirDrive {self.name} at ({self._file}, {self._record})>"


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
