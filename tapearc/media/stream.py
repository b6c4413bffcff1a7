"""The stream medium ``-``: records and filemarks over standard input or standard output.

A stream carries a whole medium, in order, in the SIMH ``.tap`` framing (the same bytes as a
``sim:`` image, see ``hw-sim/tapesim/simh.py``), so it can go through a pipe, ``ssh`` or
``mbuffer`` to a tape host, or be saved to a file and opened later as ``sim:FILE``:

* a record: ``len`` (4-byte little-endian) | data | one pad byte if ``len`` is odd | ``len``;
* a filemark: the word ``0x00000000``;
* the end of the stream: the end-of-medium word ``0xFFFFFFFF``. The writer puts it there when
  it is closed after a job that did not fail; a reader that reaches the end of its input
  without it knows the stream was cut (the writer died, the pipe or the connection broke) and
  raises :class:`~tapearc.errors.TruncatedError` naming the byte offset. The same happens for
  an end of input inside a record.

Readers also skip SIMH erase gaps (``0xFFFFFFFE``, ``0xFFFF0000``, and the half gap
``0xFFFEFFFF``) and turn a record flagged "contains an error" (bit 31 of its length) into a
MediumIOError, as the simulated drive does, so a ``.tap`` image from elsewhere can be streamed in
(``cat img.tap | ...``) provided it ends with the end-of-medium word.

A stream is opened either for reading (``read_record`` only) or for writing (``write_record``,
``write_filemark`` only); it can only move forward. ``rewind``, ``locate`` and spacing raise
MediumStateError, exit 14 ("the stream medium `-` can only be read or written in order") except when they
would not move it (``rewind``/``locate`` to the position it is at). A stream opened for
writing is a *blank medium*: it is always at its end of data, so ``read_record`` returns
``Mark.END_OF_DATA`` and ``seek_end_of_data`` returns the position (that is what a backup
that labels a blank medium needs). A stream has no capacity: writes never report
EARLY_WARNING.

Writes go through a buffer; a filemark flushes it into the pipe or file (for a stream the data
is "on the medium" once written to its descriptor). An immediate filemark
(``write_filemark(immediate=True)``) leaves it in the buffer; :meth:`StreamDrive.sync` flushes
it and, when the stream is a regular file or a block device, also fsyncs it (the only place a
stream is made durable on disk; close flushes but does not fsync).

Standard output, when it is the process's file descriptor 1, is *taken* by the stream: the
stream writes on a private duplicate of it and points descriptor 1 at standard error for the
rest of the process, so no message printed later (a command's summary, a warning) can end up
inside the data. A terminal is refused on either side.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
from typing import BinaryIO, cast

from ..errors import (
    MediumIOError,
    MediumStateError,
    MediumUnavailableError,
    RecordTooLargeError,
    TruncatedError,
    WriteProtectedError,
)
from .base import DriveStatus, Mark, Position, TapeDrive, WriteStatus

__all__ = ["MAX_STREAM_RECORD", "STREAM_SPEC", "StreamDrive", "open_stream"]

STREAM_SPEC = "-"
_WORD = struct.Struct("<I")
_TMK = 0x00000000
_EOM = 0xFFFFFFFF
_GAP = 0xFFFFFFFE
_FHGAP = 0xFFFEFFFF
_RHGAP = 0xFFFF0000
_MAXLEN = 0x00FFFFFF
_ERF = 0x80000000
_RESERVED = 0xFF000000
MAX_STREAM_RECORD = _MAXLEN  # 16,777,215 bytes: the SIMH length field
_EOM_WORD = _WORD.pack(_EOM)
_SKIP_CHUNK = 1 << 20

IN_ORDER = "the stream medium `-` can only be read or written in order"


class StreamDrive(TapeDrive):
    """A TapeDrive over a byte stream (see the module docstring).

    ``stream``: a binary file object, read from when ``write`` is False, written to when True.
    ``owns``: close ``stream`` at :meth:`close`. ``max_record_size``: largest record written or
    read (default and maximum: 16 MiB - 1, the SIMH limit). ``where``: what the stream is, for
    messages (``standard input``).
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        write: bool,
        name: str = STREAM_SPEC,
        owns: bool = False,
        max_record_size: int | None = None,
        where: str | None = None,
    ) -> None:
        self._stream = stream
        self.name = name
        self.writable = bool(write)
        self._owns = owns
        mrs = MAX_STREAM_RECORD if max_record_size is None else int(max_record_size)
        if not 1 <= mrs <= MAX_STREAM_RECORD:
            raise ValueError(f"max_record_size must be 1 .. {MAX_STREAM_RECORD}")
        self.max_record_size = mrs
        self.where = where or ("the output stream" if write else "the input stream")
        self._closed = False
        self._logical = 0
        self._file = 0
        self._record = 0
        self._offset = 0  # bytes of the stream read or written so far
        self._eod = False  # reader: the end-of-medium word was read
        self._failed: TruncatedError | MediumIOError | None = None  # reader: sticky framing error
        self._pushback = b""  # reader: bytes given back by a half gap
        self._bytes = 0  # record data bytes read or written

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise MediumStateError("the stream medium is closed", medium=self.name)

    def _here(self) -> Position:
        return Position(self._logical, self._file, self._record)

    def _not_in_order(self, what: str) -> MediumStateError:
        side = "written" if self.writable else "read"
        return MediumStateError(
            f"{IN_ORDER}: cannot {what} (it is being {side} at object {self._logical}, "
            f"tape file {self._file}, record {self._record})",
            medium=self.name,
            hint="copy the stream to a sim: image or a dir: folder first (tapearc copy --from - --to sim:FILE)",
        )

    # ------------------------------------------------------------------ reading

    def _read_exact(self, n: int) -> bytes:
        """Up to ``n`` bytes: fewer only at the end of the input."""
        parts: list[bytes] = []
        if self._pushback:
            take = self._pushback[:n]
            self._pushback = self._pushback[n:]
            parts.append(take)
            n -= len(take)
        while n > 0:
            try:
                chunk = self._stream.read(n)
            except OSError as err:
                raise MediumIOError(
                    f"cannot read {self.where} at byte {self._offset + sum(map(len, parts))}: {err.strerror or err}",
                    medium=self.name,
                ) from err
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._offset += len(data)
        return data

    def _cut(self, message: str, at: int) -> TruncatedError:
        err = TruncatedError(
            f"{self.where} ends at byte {self._offset}: {message} (object {self._logical} began at byte {at}); "
            "the stream was cut: its writer stopped or the pipe or connection broke",
            medium=self.name,
            tape_file=self._file,
            record=self._record,
            hint="what came before this point was read; the rest of the medium is missing",
            byte_offset=self._offset,
        )
        self._failed = err
        return err

    def _bad(self, message: str, at: int) -> MediumIOError:
        err = MediumIOError(
            f"{self.where} is not a tape stream at byte {at}: {message}",
            medium=self.name,
            tape_file=self._file,
            record=self._record,
            hint="the stream medium carries SIMH tape framing, as `tapearc backup --media -` or `tapearc copy --to -` write it",
            byte_offset=at,
        )
        self._failed = err
        return err

    def read_record(self) -> bytes | Mark:
        self._check_open()
        if self.writable or self._eod:
            return Mark.END_OF_DATA  # a stream being written is a blank medium: always at its end
        if self._failed is not None:
            raise self._failed
        while True:
            at = self._offset
            raw = self._read_exact(4)
            if len(raw) < 4:
                if not raw and at == 0:
                    raise self._cut("the input is empty (no tape stream at all)", at)
                if not raw:
                    raise self._cut("the end-of-medium marker is missing", at)
                raise self._cut(f"a length word is cut after {len(raw)} bytes", at)
            word = _WORD.unpack(raw)[0]
            if word == _TMK or word & _RESERVED == _RESERVED:
                mark = self._marker(word, raw, at)
                if mark is None:
                    continue  # a gap
                return mark
            return self._record_after(word, at)

    def _marker(self, word: int, raw: bytes, at: int) -> Mark | None:
        """The filemark or end-of-medium word ``word`` (read as ``raw`` at byte ``at``) as a Mark;
        None for an erase gap (skipped: the next word follows); a bad reserved marker raises."""
        if word == _TMK:
            self._logical += 1
            self._file += 1
            self._record = 0
            return Mark.FILEMARK
        if word == _EOM:
            self._eod = True
            return Mark.END_OF_DATA
        if word in (_GAP, _RHGAP):
            return None
        if word == _FHGAP:  # SIMH: a half gap; the next word starts two bytes on
            self._pushback = raw[2:] + self._pushback
            self._offset -= 2
            return None
        raise self._bad(f"reserved marker 0x{word:08X}", at)

    def _record_after(self, word: int, at: int) -> bytes:
        """The record whose leading length word ``word`` was read at byte ``at``: its data and
        trailing length word. A record larger than ``max_record_size`` is skipped and raises
        RecordTooLargeError, one flagged bad raises MediumIOError (both then past it)."""
        if word & 0x7F000000:
            raise self._bad(f"invalid length word 0x{word:08X}", at)
        length = word & _MAXLEN
        flagged = bool(word & _ERF)
        if length == 0:  # only possible with the error flag set
            raise self._bad(f"invalid length word 0x{word:08X}", at)
        if length > self.max_record_size:
            self._skip(length + (length & 1), at)
            self._check_trailer(word, at)
            where = (self._file, self._record)
            self._record += 1
            self._logical += 1
            raise RecordTooLargeError(
                f"record at object {self._logical - 1} ({length} bytes) is larger than {self.max_record_size} bytes",
                medium=self.name,
                tape_file=where[0],
                record=where[1],
            )
        data = self._read_exact(length + (length & 1))
        if len(data) < length + (length & 1):
            raise self._cut(f"a record of {length} bytes is cut after {len(data)} bytes of data", at)
        if length & 1:
            data = data[:length]
        self._check_trailer(word, at)
        where = (self._file, self._record)
        self._record += 1
        self._logical += 1
        if flagged:
            raise MediumIOError(
                f"record at object {self._logical - 1} is flagged as bad in the stream (SIMH error flag)",
                medium=self.name,
                tape_file=where[0],
                record=where[1],
                byte_offset=at,
            )
        self._bytes += length
        return data

    def _skip(self, n: int, at: int) -> None:
        while n > 0:
            got = self._read_exact(min(n, _SKIP_CHUNK))
            if not got:
                raise self._cut("a record is cut", at)
            n -= len(got)

    def _check_trailer(self, word: int, at: int) -> None:
        raw = self._read_exact(4)
        if len(raw) < 4:
            raise self._cut("a record's trailing length word is cut", at)
        trailer = _WORD.unpack(raw)[0]
        if trailer != word:
            raise self._bad(f"record length words differ (leading 0x{word:08X}, trailing 0x{trailer:08X})", at)

    # ------------------------------------------------------------------ writing

    def _check_writable(self) -> None:
        self._check_open()
        if not self.writable:
            raise WriteProtectedError(
                f"the stream medium `-` is open for reading ({self.where}); it cannot be written",
                medium=self.name,
            )

    def _put(self, *parts: bytes | bytearray | memoryview) -> None:
        try:
            for p in parts:
                self._stream.write(p)
        except BrokenPipeError as err:
            raise MediumIOError(
                f"cannot write {self.where} at byte {self._offset}: its reader went away (broken pipe)",
                medium=self.name,
                tape_file=self._file,
                record=self._record,
                hint="the command reading the stream stopped; see its error",
            ) from err
        except OSError as err:
            raise MediumIOError(
                f"cannot write {self.where} at byte {self._offset}: {err.strerror or err}",
                medium=self.name,
                tape_file=self._file,
                record=self._record,
            ) from err
        self._offset += sum(memoryview(p).nbytes for p in parts)

    def _flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError as err:
            raise MediumIOError(
                f"cannot write {self.where} at byte {self._offset}: its reader went away (broken pipe)",
                medium=self.name,
            ) from err
        except OSError as err:
            raise MediumIOError(f"cannot flush {self.where}: {err.strerror or err}", medium=self.name) from err

    def write_record(self, data: bytes | bytearray | memoryview) -> WriteStatus:
        self._check_writable()
        n = memoryview(data).nbytes
        if n < 1:
            raise ValueError("cannot write an empty record")
        if n > self.max_record_size:
            raise ValueError(f"record of {n} bytes exceeds the maximum of {self.max_record_size}")
        word = _WORD.pack(n)
        if n & 1:
            self._put(word, data, b"\x00", word)
        else:
            self._put(word, data, word)
        self._record += 1
        self._logical += 1
        self._bytes += n
        return WriteStatus.OK

    def write_filemark(self, *, immediate: bool = False) -> WriteStatus:
        self._check_writable()
        self._put(_WORD.pack(_TMK))
        if not immediate:
            self._flush()
        self._logical += 1
        self._file += 1
        self._record = 0
        return WriteStatus.OK

    def sync(self) -> None:
        """Hand everything written to the stream (flush the buffer); on a regular file or a
        block device, also fsync it. Nothing on a stream opened for reading."""
        self._check_open()
        if not self.writable:
            return
        self._flush()
        fd = _fileno(self._stream)
        if fd is None:
            return
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
                os.fsync(fd)
        except OSError as err:
            raise MediumIOError(f"cannot flush {self.where}: {err.strerror or err}", medium=self.name) from err

    # ------------------------------------------------------------------ moving

    def rewind(self) -> None:
        self._check_open()
        if self._logical != 0:
            raise self._not_in_order("rewind")

    def position(self) -> Position:
        self._check_open()
        return self._here()

    def locate(self, logical: int) -> None:
        self._check_open()
        if logical != self._logical:
            raise self._not_in_order(f"locate object {logical}")

    def space_files(self, count: int) -> int:
        self._check_open()
        if count == 0:
            return 0
        raise self._not_in_order(f"space {'forward' if count > 0 else 'backward'} over {abs(count)} filemark(s)")

    def seek_end_of_data(self) -> Position:
        self._check_open()
        if self.writable or self._eod:
            return self._here()
        raise self._not_in_order("go to its end of data")

    def status(self) -> DriveStatus:
        self._check_open()
        return DriveStatus(
            name=self.name,
            position=self._here(),
            at_bot=self._logical == 0,
            at_eod=True if (self.writable or self._eod) else None,
            early_warning=False,
            write_protected=not self.writable,
            max_record_size=self.max_record_size,
            capacity=None,
            used=self._bytes,
            details={
                "backend": "stream",
                "direction": "write" if self.writable else "read",
                "stream": self.where,
                "byte_offset": self._offset,
            },
        )

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Writer: end the stream with the end-of-medium word and flush it -- unless an exception
        is on its way out (the job failed): then the stream is left without it, so that its
        reader reports it cut instead of taking a partial medium for a whole one."""
        if self._closed:
            return
        failing = sys.exc_info()[1] is not None
        self._end(clean=not failing)

    def abort(self) -> None:
        """Release the stream without the end-of-medium word: its reader will report it cut."""
        if not self._closed:
            self._end(clean=False)

    def _end(self, *, clean: bool) -> None:
        self._closed = True
        try:
            if self.writable:
                if clean:
                    self._put(_EOM_WORD)
                try:
                    self._flush()
                except MediumIOError:
                    if clean:
                        raise
        finally:
            if self._owns:
                try:
                    self._stream.close()
                except OSError:
                    pass

    def __enter__(self) -> StreamDrive:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            self.abort()
        else:
            self.close()

    def __repr__(self) -> str:
        side = "writing" if self.writable else "reading"
        return (
            f"<StreamDrive {self.name} {side} at {self._logical} ({self._file}, {self._record}), byte {self._offset}>"
        )


def _fileno(f: object) -> int | None:
    try:
        return int(f.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def open_stream(*, write: bool, name: str = STREAM_SPEC) -> StreamDrive:
    """The stream medium on this process's standard output (``write``) or standard input.

    Standard output on descriptor 1 is taken over: the stream writes on a private duplicate and
    descriptor 1 then points at standard error, for the rest of the process. A terminal is
    refused (MediumUnavailableError).
    """
    if write:
        out = sys.stdout
        fd = _fileno(out)
        if fd is not None and os.isatty(fd):
            raise MediumUnavailableError(
                "the stream medium `-` writes to standard output, which is a terminal",
                medium=name,
                hint="pipe it into a command (… | tapearc copy --from - --to /dev/nst0) or redirect it to a file",
            )
        if fd is None:  # not a real file (a test harness): write to its buffer as it is
            buf = cast(BinaryIO, getattr(out, "buffer", out))
            out.flush()
            return StreamDrive(buf, write=True, name=name, where="standard output")
        out.flush()
        private = os.dup(fd)
        err_fd = _fileno(sys.stderr)
        if err_fd is not None:
            os.dup2(err_fd, fd)
        else:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        stream = os.fdopen(private, "wb", buffering=1 << 20)
        return StreamDrive(stream, write=True, name=name, owns=True, where="standard output")
    inp = sys.stdin
    if inp is None:
        raise MediumUnavailableError("the stream medium `-` reads standard input, and there is none", medium=name)
    fd = _fileno(inp)
    if fd is not None and os.isatty(fd):
        raise MediumUnavailableError(
            "the stream medium `-` reads standard input, which is a terminal",
            medium=name,
            hint="pipe a stream into it (tapearc backup VOL --media - | tapearc copy --from - --to ...)",
        )
    source = cast(BinaryIO, getattr(inp, "buffer", inp))  # a test harness's stdin may have no buffer
    return StreamDrive(source, write=False, name=name, where="standard input")
