"""SIMH ``.tap`` tape images: constants, an object-index scanner and a low-level writer.

Format (open-simh ``sim_tape.h``; TAPE-FACTS §3.1). The image is a sequence of 4-byte
little-endian words:

* data record: ``len | data | pad byte if len is odd | len``. The low 24 bits of ``len`` are the
  record length, bit 31 (``0x80000000``) flags a record that "contains an error", bits 24-30
  must be zero.
* ``0x00000000`` tape mark (filemark);
* ``0xFFFFFFFF`` end of medium (treated as end of data);
* ``0xFFFFFFFE`` erase gap (skipped); ``0xFFFEFFFF`` forward half gap (skipped, and like SIMH
  the scanner then resynchronises two bytes further on); ``0xFFFF0000`` reverse half gap
  (skipped as a whole word when reading forward);
* any other ``0xFF000000``-``0xFFFFFFFD`` word is reserved: a format error.

A plain end of file is end of data. The scanner never raises on a damaged image: it returns the
objects before the damage, reports the damage point as end of data and sets ``truncated``.

Nothing here knows about any archive format: records are opaque bytes.
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

WORD = struct.Struct("<I")
WORD_SIZE = 4

MTR_TMK = 0x00000000
MTR_EOM = 0xFFFFFFFF
MTR_GAP = 0xFFFFFFFE
MTR_FHGAP = 0xFFFEFFFF
MTR_RHGAP = 0xFFFF0000
MTR_MAXLEN = 0x00FFFFFF
MTR_ERF = 0x80000000
_RESERVED_MASK = 0xFF000000

MAX_RECORD_LENGTH = MTR_MAXLEN  # 16,777,215: also the READ/WRITE(6) 24-bit limit


class SimhFormatError(ValueError):
    """An image that does not follow the SIMH format (raised only by strict helpers)."""


class ObjKind(enum.Enum):
    """Kinds of logical objects on the tape."""

    RECORD = "record"
    FILEMARK = "filemark"


class TapeObject(NamedTuple):
    """One logical object of an image.

    ``offset`` is the file offset of its first word (the leading length word of a record, the
    tape-mark word of a filemark); ``length`` is the record's data length (0 for a filemark);
    ``error`` is the SIMH "record contains error" flag.
    """

    kind: ObjKind
    offset: int
    length: int
    error: bool = False

    @property
    def size(self) -> int:
        """Bytes the object occupies in the image, framing words and pad byte included."""
        return WORD_SIZE if self.kind is ObjKind.FILEMARK else record_size(self.length)

    @property
    def end(self) -> int:
        """File offset just after the object."""
        return self.offset + self.size


@dataclass
class ScanResult:
    """What :func:`scan` found in an image.

    ``end_offset`` is where end of data is: the offset just after the last good object (so a
    write there appends). ``truncated`` says the image is damaged at ``damage_offset``
    (``damage`` gives the reason); everything in ``objects`` is still usable.
    ``eom_marker`` says an explicit end-of-medium word ended the data.
    """

    objects: list[TapeObject] = field(default_factory=list)
    end_offset: int = 0
    file_size: int = 0
    truncated: bool = False
    damage: str | None = None
    damage_offset: int | None = None
    eom_marker: bool = False

    @property
    def error_records(self) -> list[int]:
        """Logical positions of records carrying the SIMH error flag."""
        return [i for i, o in enumerate(self.objects) if o.error]


def record_size(length: int) -> int:
    """Image bytes used by a data record of ``length`` bytes (two length words + pad)."""
    return 2 * WORD_SIZE + length + (length & 1)


def _describe(word: int) -> str:
    return f"0x{word:08X}"


def scan_fd(fd: int, *, strict: bool = False) -> ScanResult:
    """Build the object index of the image open on ``fd``.

    Only the length words are read (the data is seeked over): one ``pread`` of 8 bytes per
    record reads its trailing length word and the next object's leading word together.
    With ``strict`` the damage raises :class:`SimhFormatError` instead of being reported.
    """
    file_size = os.fstat(fd).st_size
    result = ScanResult(file_size=file_size)
    objects = result.objects
    append = objects.append
    unpack = WORD.unpack_from
    pos = 0  # file offset of the next word to interpret
    last_end = 0  # end of the last good object
    cache_off = -1
    cache = b""

    def damage(reason: str, at: int) -> ScanResult:
        if strict:
            raise SimhFormatError(f"{reason} at offset {at}")
        result.truncated = True
        result.damage = reason
        result.damage_offset = at
        result.end_offset = last_end
        return result

    while True:
        if pos >= file_size:
            result.end_offset = last_end
            return result
        if file_size - pos < WORD_SIZE:
            return damage(f"partial length word ({file_size - pos} stray bytes)", pos)
        if cache_off == pos and len(cache) >= WORD_SIZE:
            word = unpack(cache, 0)[0]
        else:
            word = unpack(os.pread(fd, WORD_SIZE, pos), 0)[0]
        if word == MTR_TMK:
            append(TapeObject(ObjKind.FILEMARK, pos, 0, False))
            pos += WORD_SIZE
            last_end = pos
            continue
        if word & _RESERVED_MASK == _RESERVED_MASK:
            if word == MTR_EOM:
                result.eom_marker = True
                result.end_offset = last_end
                return result
            if word in (MTR_GAP, MTR_RHGAP):
                pos += WORD_SIZE
                continue
            if word == MTR_FHGAP:
                pos += WORD_SIZE // 2  # SIMH: half gap, resync two bytes on
                continue
            return damage(f"reserved marker {_describe(word)}", pos)
        if word & 0x7F000000:
            return damage(f"invalid length word {_describe(word)}", pos)
        length = word & MTR_MAXLEN
        error = bool(word & MTR_ERF)
        trailer_at = pos + WORD_SIZE + length + (length & 1)
        if trailer_at + WORD_SIZE > file_size:
            return damage(f"truncated record (length {length}, image ends at {file_size})", pos)
        cache = os.pread(fd, 2 * WORD_SIZE, trailer_at)
        cache_off = trailer_at + WORD_SIZE
        trailer = unpack(cache, 0)[0]
        cache = cache[WORD_SIZE:]
        if trailer != word:
            return damage(
                f"record length mismatch (leading {_describe(word)}, trailing {_describe(trailer)})",
                pos,
            )
        append(TapeObject(ObjKind.RECORD, pos, length, error))
        pos = trailer_at + WORD_SIZE
        last_end = pos


def scan(path: str | os.PathLike[str], *, strict: bool = False) -> ScanResult:
    """Build the object index of the image at ``path`` (see :func:`scan_fd`)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return scan_fd(fd, strict=strict)
    finally:
        os.close(fd)


def read_record_data(fd: int, obj: TapeObject) -> bytes:
    """The data bytes of a record object (no framing)."""
    if obj.kind is not ObjKind.RECORD:
        raise ValueError("not a record")
    data = os.pread(fd, obj.length, obj.offset + WORD_SIZE)
    if len(data) != obj.length:
        raise SimhFormatError(f"short read of record at offset {obj.offset}")
    return data


# ---------------------------------------------------------------- writer


_PAD = b"\x00"


def write_record(
    fd: int,
    offset: int,
    data: bytes | bytearray | memoryview,
    *,
    error: bool = False,
    truncate: bool = True,
) -> int:
    """Write one data record at ``offset`` and (with ``truncate``) make it the end of the image.

    Returns the offset just after the record. Writing on tape erases everything beyond it, so
    by default the file is truncated there.
    """
    length = memoryview(data).nbytes
    if length > MTR_MAXLEN:
        raise ValueError(f"record of {length} bytes exceeds the SIMH maximum {MTR_MAXLEN}")
    word = WORD.pack(length | (MTR_ERF if error else 0))
    parts: list[bytes | bytearray | memoryview] = [word, data]
    if length & 1:
        parts.append(_PAD)
    parts.append(word)
    end = offset + record_size(length)
    pwritev_all(fd, parts, offset, end - offset)
    if truncate:
        os.ftruncate(fd, end)
    return end


def write_tape_marks(fd: int, offset: int, count: int = 1, *, truncate: bool = True) -> int:
    """Write ``count`` tape marks at ``offset``; return the offset after them."""
    if count < 0:
        raise ValueError("negative count")
    end = offset + WORD_SIZE * count
    if count:
        pwritev_all(fd, [WORD.pack(MTR_TMK) * count], offset, end - offset)
    if truncate:
        os.ftruncate(fd, end)
    return end


def write_tape_mark(fd: int, offset: int, *, truncate: bool = True) -> int:
    """Write one tape mark at ``offset``; return the offset after it."""
    return write_tape_marks(fd, offset, 1, truncate=truncate)


def write_eom(fd: int, offset: int, *, truncate: bool = True) -> int:
    """Write an explicit end-of-medium word (optional in SIMH images; tapesim never needs it)."""
    end = offset + WORD_SIZE
    pwritev_all(fd, [WORD.pack(MTR_EOM)], offset, WORD_SIZE)
    if truncate:
        os.ftruncate(fd, end)
    return end


def pwritev_all(fd: int, parts: list[bytes | bytearray | memoryview], offset: int, total: int) -> None:
    """Write ``parts`` (``total`` bytes in all) at ``offset`` of ``fd``, finishing a short write."""
    written = os.pwritev(fd, parts, offset)
    if written == total:
        return
    # A short write (rare: signals, huge buffers): finish it with plain pwrite calls.
    blob = b"".join(bytes(p) for p in parts)
    while written < total:
        n = os.pwrite(fd, blob[written:], offset + written)
        if n <= 0:
            raise OSError("short write to tape image")
        written += n
