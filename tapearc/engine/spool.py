"""Bytes that may outgrow memory: kept in a bytearray up to a limit, then in an unnamed temporary
file (``$TMPDIR``). The backup keeps a generation's trailer in two of these (the chunk index and
the digest table, 16 bytes per data block), so its memory does not grow with the volume: the
digest table of a 1 TiB volume of 64 KiB blocks is 256 MiB, on disk instead of in memory."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import BinaryIO

from tapearc.engine.tapefiles import SHORT, spool_error, spool_read_error
from tapearc.errors import TempFileError

SPOOL_LIMIT = 8 * 1024 * 1024  # bytes kept in memory before spooling to a file
PIECE = 1024 * 1024  # bytes per piece when reading back


class SpoolStore:
    def __init__(self, limit: int = SPOOL_LIMIT) -> None:
        self.limit = limit
        self.mem = bytearray()
        self.file: BinaryIO | None = None
        self.n = 0

    def _fail(self, e: OSError, reading: bool = False) -> TempFileError:
        what = "the trailer being written"
        if reading:
            return spool_read_error(what, e)
        err = spool_error(what, e)
        err.hint = "set TMPDIR to a folder with room (about 17 bytes per data block of the generation)"
        return err

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        try:
            if self.file is None and len(self.mem) + n > self.limit:
                import tempfile  # (a trailer past the limit: not imported by every backup)

                # the file lives as long as the store (closed by close()), not a with block
                self.file = tempfile.TemporaryFile(prefix="tapearc-trailer-")  # noqa: SIM115
                self.file.write(self.mem)
                self.mem = bytearray()
            if self.file is None:
                self.mem += data
            else:
                self.file.write(data)
        except OSError as e:
            raise self._fail(e) from None
        self.n += n

    def __len__(self) -> int:
        return self.n

    def pieces(self) -> Iterator[bytes | memoryview]:
        if self.file is None:
            if self.mem:
                yield memoryview(self.mem)
            return
        try:
            self.file.flush()  # what write() kept buffered: a full $TMPDIR shows here
        except OSError as e:
            raise self._fail(e) from None
        try:
            self.file.seek(0)
            left = self.n
            while left > 0:
                b = self.file.read(min(PIECE, left))
                if not b:
                    raise OSError(errno.EIO, SHORT)
                left -= len(b)
                yield b
        except OSError as e:
            raise self._fail(e, reading=True) from None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
