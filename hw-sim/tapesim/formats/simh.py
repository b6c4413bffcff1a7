"""SIMH ``.tap`` images as event streams (format details: :mod:`tapesim.simh`).

Reading is sequential (one pass, a buffered file), so images of any size stream; it follows the
same rules as :func:`tapesim.simh.scan_fd` (gaps skipped, an end-of-medium word or the end of
the file ends the data) but raises :class:`TapeFormatError` at damage instead of stopping
silently, because a conversion must not drop data unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from .. import simh as _s
from .events import Event, EventWriter, Obj, TapeFormatError, events_of, file_size, located_error

NAME = "simh"
SUFFIXES = (".tap", ".simh")


def walk(f: BinaryIO, *, with_data: bool = True) -> Iterator[Obj]:
    """Objects of the image open (binary, at offset 0) on ``f``; ends with an "eod" object."""
    unpack = _s.WORD.unpack
    size = file_size(f)
    pos = 0
    while True:
        w = f.read(4)
        if not w:
            yield Obj("eod", pos)
            return
        if len(w) < 4:
            raise located_error(f"partial length word ({len(w)} stray bytes)", pos)
        word = unpack(w)[0]
        if word == _s.MTR_TMK:
            yield Obj("filemark", pos)
            pos += 4
            continue
        if word & 0xFF000000 == 0xFF000000:
            if word == _s.MTR_EOM:
                yield Obj("eod", pos)
                return
            if word in (_s.MTR_GAP, _s.MTR_RHGAP):
                pos += 4
                continue
            if word == _s.MTR_FHGAP:  # half gap: resynchronise two bytes on
                pos += 2
                f.seek(pos)
                continue
            raise located_error(f"reserved marker 0x{word:08X}", pos)
        if word & 0x7F000000:
            raise located_error(f"invalid length word 0x{word:08X}", pos)
        length = word & _s.MTR_MAXLEN
        padded = length + (length & 1)
        if pos + 4 + padded + 4 > size:  # checked before reading: no allocation beyond the file
            raise located_error(f"truncated record (length {length})", pos)
        if with_data:
            data = f.read(padded)
            if len(data) < padded:
                raise located_error(f"truncated record (length {length})", pos)
            if length & 1:
                data = data[:-1]
        else:
            data = None
            f.seek(padded, os.SEEK_CUR)
        t = f.read(4)
        if len(t) < 4:
            raise located_error(f"truncated record (length {length})", pos)
        trailer = unpack(t)[0]
        if trailer != word:
            raise located_error(f"record length mismatch (leading 0x{word:08X}, trailing 0x{trailer:08X})", pos)
        yield Obj("record", pos, length, bool(word & _s.MTR_ERF), data)
        pos += 8 + padded


def read_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    """The events of a SIMH image (a generator: the file is read as it is consumed)."""
    with open(path, "rb", buffering=1 << 20) as f:
        yield from events_of(walk(f))


def scan_image(path: str | os.PathLike[str]) -> _s.ScanResult:
    """The object index of a SIMH image (as :func:`tapesim.simh.scan`, the reference)."""
    return _s.scan(path)


class SimhWriter(EventWriter):
    """Writes events to a new SIMH image, sequentially.

    ``f`` is a binary file open for writing at offset 0 (the writer does not close it).
    Records of 0 bytes or over 16 MiB - 1 cannot be represented and raise TapeFormatError.
    """

    name = NAME

    def __init__(self, f: BinaryIO, *, eom_marker: bool = False) -> None:
        self._f = f
        self._eom = eom_marker
        self.offset = 0
        self.records = 0
        self.filemarks = 0
        self.finished = False

    def record(self, data: bytes, *, error: bool = False) -> None:
        n = len(data)
        if n == 0:
            raise TapeFormatError(f"record {self.records + 1} is empty: SIMH images cannot hold 0-byte records")
        if n > _s.MTR_MAXLEN:
            raise TapeFormatError(
                f"record {self.records + 1} has {n} bytes: more than the SIMH maximum {_s.MTR_MAXLEN}"
            )
        w = _s.WORD.pack(n | (_s.MTR_ERF if error else 0))
        self._f.write(w)
        self._f.write(data)
        if n & 1:
            self._f.write(b"\0")
        self._f.write(w)
        self.offset += _s.record_size(n)
        self.records += 1

    def filemark(self) -> None:
        self._f.write(_s.WORD.pack(_s.MTR_TMK))
        self.offset += 4
        self.filemarks += 1

    def finish(self) -> None:
        """End of data: nothing to write (the end of the file is the end of data), or an
        explicit end-of-medium word with ``eom_marker``."""
        if self.finished:
            return
        if self._eom:
            self._f.write(_s.WORD.pack(_s.MTR_EOM))
            self.offset += 4
        self.finished = True
