"""AWSTAPE images (Hercules ``.aws``; also reads HET, its compressed variant).

Every chunk has a 6-byte header (TAPE-FACTS §3.2; Hercules ``hetlib.h``)::

    u16 LE curblkl   bytes in this chunk
    u16 LE prvblkl   bytes in the previous chunk (0 at the start and after a tape mark)
    u8     flags1    0x80 NEWREC (first chunk of a record), 0x20 ENDREC (last chunk),
                     0x40 TAPEMARK; HET: 0x03 compression (1 zlib, 2 bzip2)
    u8     flags2    0; HET: 0x80 Bus-Tech zlib

A record longer than 65,535 bytes is split into chunks (NEWREC on the first, ENDREC on the
last, neither on the middle ones); a tape mark is a chunk of 0 bytes with flags1 0x40. There is
no end-of-data marker: the end of the file is the end of data.
"""

from __future__ import annotations

import bz2
import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from ..simh import ScanResult
from .events import Event, EventWriter, Obj, TapeFormatError, events_of, file_size, located_error, scan_result_of

NAME = "aws"
SUFFIXES = (".aws", ".het")

HEADER = struct.Struct("<HHBB")
HEADER_SIZE = 6
NEWREC = 0x80
TAPEMARK = 0x40
ENDREC = 0x20
COMPRESS_MASK = 0x03
COMPRESS_ZLIB = 0x01
COMPRESS_BZIP2 = 0x02
FLAGS2_BUSTECH_ZLIB = 0x80
MAX_CHUNK = 0xFFFF
HET_MAX_BLOCK = 0xFFFF  # Hercules HETMAX_BLOCKSIZE: largest (uncompressed) HET block


def _decompress(data: bytes, flags1: int, flags2: int, at: int) -> bytes:
    """Decompress a HET block. Like Hercules (``HETMAX_BLOCKSIZE``), a block decompresses to at
    most 65,535 bytes: a larger result is an error, found without inflating it all (so a
    damaged or hostile block cannot make the reader allocate more than that)."""
    method = flags1 & COMPRESS_MASK
    limit = HET_MAX_BLOCK + 1
    if not (method in (COMPRESS_ZLIB, COMPRESS_BZIP2) or flags2 & FLAGS2_BUSTECH_ZLIB):
        raise located_error(f"unknown HET compression method {method}", at)
    try:
        if method == COMPRESS_ZLIB or flags2 & FLAGS2_BUSTECH_ZLIB:
            z = zlib.decompressobj()
            out = z.decompress(data, limit)
            complete = z.eof
        else:
            b = bz2.BZ2Decompressor()
            out = b.decompress(data, max_length=limit)
            complete = b.eof
    except (zlib.error, OSError, ValueError, EOFError) as e:
        raise located_error(f"cannot decompress HET block ({e})", at) from None
    if len(out) > HET_MAX_BLOCK:
        raise located_error(f"HET block decompresses to more than {HET_MAX_BLOCK} bytes", at)
    if not complete:
        raise located_error("cannot decompress HET block (truncated compressed data)", at)
    return out


def walk(f: BinaryIO, *, with_data: bool = True) -> Iterator[Obj]:
    """Objects of the image open on ``f``; ends with an "eod" object.

    Records are reassembled from their chunks (and decompressed for HET; then ``length`` is
    the uncompressed size, which needs the data even when ``with_data`` is false).
    """
    size = file_size(f)
    pos = 0
    start = 0  # offset of the current record's first chunk
    parts: list[bytes] = []
    length = 0
    in_record = False
    rec_flags = (0, 0)
    while True:
        hdr = f.read(HEADER_SIZE)
        if not hdr:
            if in_record:
                raise located_error("record without its last chunk (ENDREC) at the end of the image", start)
            yield Obj("eod", pos)
            return
        if len(hdr) < HEADER_SIZE:
            raise located_error(f"partial chunk header ({len(hdr)} stray bytes)", pos)
        cur, _prv, flags1, flags2 = HEADER.unpack(hdr)
        if flags1 & TAPEMARK:
            _check_tapemark(in_record, cur, pos)
            yield Obj("filemark", pos)
            pos += HEADER_SIZE
            continue
        if flags1 & NEWREC:
            if in_record:
                raise located_error("new record before the previous one ended", pos)
            in_record = True
            start = pos
            parts = []
            length = 0
            rec_flags = (flags1, flags2)
        elif not in_record:
            raise located_error(f"chunk continues no record (flags1 0x{flags1:02X})", pos)
        compressed = bool(rec_flags[0] & COMPRESS_MASK or rec_flags[1] & FLAGS2_BUSTECH_ZLIB)
        chunk = _chunk_data(f, pos, cur, size, with_data or compressed)
        if chunk is not None:
            parts.append(chunk)
        length += cur
        pos += HEADER_SIZE + cur
        if flags1 & ENDREC:
            in_record = False
            yield _record_obj(parts, start, length, rec_flags if compressed else None, with_data)
            parts = []


def _check_tapemark(in_record: bool, cur: int, pos: int) -> None:
    """A tape mark header must stand between records and announce no data."""
    if in_record:
        raise located_error("tape mark inside a record", pos)
    if cur:
        raise located_error(f"tape mark with a length of {cur}", pos)


def _chunk_data(f: BinaryIO, pos: int, cur: int, size: int, keep: bool) -> bytes | None:
    """The ``cur`` data bytes of the chunk whose header is at ``pos`` (skipped, None, unless
    ``keep``); its length is checked against the file before anything is read."""
    if pos + HEADER_SIZE + cur > size:  # checked before reading: no allocation beyond the file
        raise located_error(f"truncated chunk ({cur} bytes announced)", pos)
    if keep:
        chunk = f.read(cur)
        if len(chunk) < cur:
            raise located_error(f"truncated chunk ({cur} bytes announced)", pos)
        return chunk
    f.seek(cur, os.SEEK_CUR)
    return None


def _record_obj(
    parts: list[bytes], start: int, length: int, compression: tuple[int, int] | None, with_data: bool
) -> Obj:
    """The record reassembled from its chunks (decompressed with the first chunk's flags
    ``compression`` when it has them)."""
    data = b"".join(parts) if parts or with_data else None
    if compression is not None:
        assert data is not None
        data = _decompress(data, compression[0], compression[1], start)
        length = len(data)
    return Obj("record", start, length, False, data if with_data else None)


def read_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    """The events of an AWS (or HET) image, read as they are consumed."""
    with open(path, "rb", buffering=1 << 20) as f:
        yield from events_of(walk(f))


def scan_image(path: str | os.PathLike[str]) -> ScanResult:
    """The object index of an AWS image (offsets of first chunks; damage reported, not raised)."""
    with open(path, "rb", buffering=1 << 16) as f:
        return scan_result_of(walk(f, with_data=False), os.fstat(f.fileno()).st_size)


class AwsWriter(EventWriter):
    """Writes events to a new AWS image (uncompressed), sequentially.

    Records longer than ``chunk_size`` (at most 65,535) are split into chunks of
    ``chunk_size`` bytes, the last one shorter. ``f`` is a binary file open for writing at
    offset 0 (the writer does not close it).
    """

    name = NAME

    def __init__(self, f: BinaryIO, *, chunk_size: int = MAX_CHUNK) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK}")
        self._f = f
        self._chunk = chunk_size
        self._prev = 0
        self.offset = 0
        self.records = 0
        self.filemarks = 0
        self.chunks = 0
        self.finished = False

    def _put(self, data: bytes | memoryview, flags1: int) -> None:
        n = len(data)
        self._f.write(HEADER.pack(n, self._prev, flags1, 0))
        if n:
            self._f.write(data)
        self._prev = n
        self.offset += HEADER_SIZE + n
        self.chunks += 1

    def record(self, data: bytes, *, error: bool = False) -> None:
        if error:
            raise TapeFormatError(f"record {self.records + 1} carries the SIMH error flag, which AWS cannot represent")
        n = len(data)
        if n <= self._chunk:
            self._put(data, NEWREC | ENDREC)
        else:
            view = memoryview(data)
            for at in range(0, n, self._chunk):
                flags = (NEWREC if at == 0 else 0) | (ENDREC if at + self._chunk >= n else 0)
                self._put(view[at : at + self._chunk], flags)
        self.records += 1

    def filemark(self) -> None:
        self._put(b"", TAPEMARK)
        self.filemarks += 1

    def finish(self) -> None:
        """End of data: AWS has no marker (the end of the file is the end of data)."""
        self.finished = True
