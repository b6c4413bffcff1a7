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


class _Scanner:
    """The state of one :func:`scan_fd` pass: a walk over the length words of an image."""

    def __init__(self, fd: int, strict: bool) -> None:
        self.fd = fd
        self.strict = strict
        self.file_size = os.fstat(fd).st_size
        self.result = ScanResult(file_size=self.file_size)
        self.pos = 0  # file offset of the next word to interpret
        self.last_end = 0  # end of the last good object
        self.cache_off = -1  # the next object's leading word, read with the last trailer
        self.cache = b""

    def damage(self, reason: str, at: int) -> ScanResult:
        """The damaged tail at ``at``: report it (or raise it when strict)."""
        if self.strict:
            raise SimhFormatError(f"{reason} at offset {at}")
        result = self.result
        result.truncated = True
        result.damage = reason
        result.damage_offset = at
        result.end_offset = self.last_end
        return result

    def word_at_pos(self) -> int:
        """The length word at ``pos`` (from the cache when the last trailer read brought it)."""
        if self.cache_off == self.pos and len(self.cache) >= WORD_SIZE:
            word: int = WORD.unpack_from(self.cache, 0)[0]
        else:
            word = WORD.unpack_from(os.pread(self.fd, WORD_SIZE, self.pos), 0)[0]
        return word

    def marker(self, word: int) -> ScanResult | None:
        """A reserved marker word at ``pos``: skip a gap (None) or end the scan (the result)."""
        if word == MTR_EOM:
            self.result.eom_marker = True
            self.result.end_offset = self.last_end
            return self.result
        if word in (MTR_GAP, MTR_RHGAP):
            self.pos += WORD_SIZE
            return None
        if word == MTR_FHGAP:
            self.pos += WORD_SIZE // 2  # SIMH: half gap, resync two bytes on
            return None
        return self.damage(f"reserved marker {_describe(word)}", self.pos)

    def record(self, word: int) -> ScanResult | None:
        """A record's leading length word at ``pos``: index it (None) or end at the damage."""
        pos = self.pos
        if word & 0x7F000000:
            return self.damage(f"invalid length word {_describe(word)}", pos)
        length = word & MTR_MAXLEN
        trailer_at = pos + WORD_SIZE + length + (length & 1)
        if trailer_at + WORD_SIZE > self.file_size:
            return self.damage(f"truncated record (length {length}, image ends at {self.file_size})", pos)
        cache = os.pread(self.fd, 2 * WORD_SIZE, trailer_at)
        self.cache_off = trailer_at + WORD_SIZE
        trailer = WORD.unpack_from(cache, 0)[0]
        self.cache = cache[WORD_SIZE:]
        if trailer != word:
            return self.damage(
                f"record length mismatch (leading {_describe(word)}, trailing {_describe(trailer)})",
                pos,
            )
        self.result.objects.append(TapeObject(ObjKind.RECORD, pos, length, bool(word & MTR_ERF)))
        self.pos = self.last_end = trailer_at + WORD_SIZE
        return None

    def run(self) -> ScanResult:
        """Walk the image from its start to end of data or the damage."""
        file_size = self.file_size
        append = self.result.objects.append
        while True:
            pos = self.pos
            if pos >= file_size:
                self.result.end_offset = self.last_end
                return self.result
            if file_size - pos < WORD_SIZE:
                return self.damage(f"partial length word ({file_size - pos} stray bytes)", pos)
            word = self.word_at_pos()
            if word == MTR_TMK:
                append(TapeObject(ObjKind.FILEMARK, pos, 0, False))
                self.pos = self.last_end = pos + WORD_SIZE
                continue
            if word & _RESERVED_MASK == _RESERVED_MASK:
                done = self.marker(word)
            else:
                done = self.record(word)
            if done is not None:
                return done


def scan_fd(fd: int, *, strict: bool = False) -> ScanResult:
    """Build the object index of the image open on ``fd``.

    Only the length words are read (the data is seeked over): one ``pread`` of 8 bytes per
    record reads its trailing length word and the next object's leading word together.
    With ``strict`` the damage raises :class:`SimhFormatError` instead of being reported.
    """
    return _Scanner(fd, strict).run()


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
