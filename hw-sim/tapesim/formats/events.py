"""The common, format-independent model of a tape's content: a stream of events.

A tape image is read as an iterator of :class:`Record` (one data block, opaque bytes),
:class:`Filemark` and, last, exactly one :class:`EndOfData`. Writers take the same events, so a
conversion is ``for ev in reader: writer.write(ev)``: only one record is in memory at a time.

``offset`` (where the object starts in its image, when read from one) is informational and is
not part of equality: ``Record(b"x") == Record(b"x", offset=40)``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from ..simh import ObjKind, ScanResult, TapeObject


class TapeFormatError(ValueError):
    """An image that does not follow its format, or an event a format cannot represent."""


@dataclass(frozen=True, slots=True)
class Record:
    """One data record (tape block). ``error`` is SIMH's "record contains an error" flag."""

    data: bytes
    error: bool = False
    offset: int | None = field(default=None, compare=False)

    @property
    def length(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:  # keep reprs of huge records short
        err = ", error=True" if self.error else ""
        return f"Record(<{len(self.data)} bytes>{err})"


@dataclass(frozen=True, slots=True)
class Filemark:
    """A tape mark."""

    offset: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class EndOfData:
    """End of the recorded data (the last event of every stream)."""

    offset: int | None = field(default=None, compare=False)


Event = Record | Filemark | EndOfData


class EventWriter:
    """What the format writers share: ``write(event)`` dispatches an event to ``record``,
    ``filemark`` or ``finish``, which each writer defines."""

    def record(self, data: bytes, *, error: bool = False) -> None:
        raise NotImplementedError

    def filemark(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def write(self, ev: Event) -> None:
        if isinstance(ev, Record):
            self.record(ev.data, error=ev.error)
        elif isinstance(ev, Filemark):
            self.filemark()
        elif isinstance(ev, EndOfData):
            self.finish()
        else:
            raise TypeError(f"not an event: {ev!r}")


class Obj(NamedTuple):
    """One object found by a format's low-level walker (``kind``: "record", "filemark", "eod").

    ``data`` is None when the walker was asked to skip the data (scanning for ``info``).
    """

    kind: str
    offset: int
    length: int = 0
    error: bool = False
    data: bytes | None = None


def file_size(f: object) -> int:
    """Size of the binary file ``f`` (a real file or any seekable stream), leaving its position.

    Walkers check every announced length against what is left of the file *before* reading
    (or allocating) anything for it, so a damaged length word cannot make them allocate more
    than the file holds.
    """
    try:
        return os.fstat(f.fileno()).st_size  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        here = f.tell()  # type: ignore[attr-defined]
        end: int = f.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
        f.seek(here)  # type: ignore[attr-defined]
        return end


def located_error(message: str, offset: int) -> TapeFormatError:
    """A :class:`TapeFormatError` carrying the image offset of the damage."""
    e = TapeFormatError(f"{message} at offset {offset}")
    e.offset = offset  # type: ignore[attr-defined]
    e.reason = message  # type: ignore[attr-defined]
    return e


def events_of(objs: Iterable[Obj]) -> Iterator[Event]:
    """Events from a walker's objects (walked with data)."""
    for o in objs:
        if o.kind == "record":
            assert o.data is not None
            yield Record(o.data, o.error, o.offset)
        elif o.kind == "filemark":
            yield Filemark(o.offset)
        else:
            yield EndOfData(o.offset)
            return


def events_from(items: Iterable[bytes | int | Event | None]) -> Iterator[Event]:
    """Shorthand for tests and scripts: ``bytes`` -> Record, ``None`` -> Filemark; events pass.

    An :class:`EndOfData` is appended if the items do not end with one.
    """
    for it in items:
        if isinstance(it, (Record, Filemark)):
            yield it
        elif isinstance(it, EndOfData):
            yield it
            return
        elif it is None:
            yield Filemark()
        elif isinstance(it, (bytes, bytearray, memoryview)):
            yield Record(bytes(it))
        else:
            raise TypeError(f"not an event: {it!r}")
    yield EndOfData()


def layout(events: Iterable[Event]) -> list[int | None]:
    """Record lengths and filemarks (``None``) of a stream, up to its end of data."""
    out: list[int | None] = []
    for ev in events:
        if isinstance(ev, Record):
            out.append(len(ev.data))
        elif isinstance(ev, Filemark):
            out.append(None)
        else:
            break
    return out


def scan_result_of(objs: Iterable[Obj], file_size: int) -> ScanResult:
    """A :class:`tapesim.simh.ScanResult` (what ``tapesim info`` reports) from a walker.

    A :class:`TapeFormatError` raised by the walker is reported as damage, as the SIMH scanner
    does: the objects before it stay listed and end of data is put at the damage.
    """
    res = ScanResult(file_size=file_size)
    it = iter(objs)
    while True:
        try:
            o = next(it)
        except StopIteration:  # pragma: no cover - walkers always end with "eod"
            return res
        except TapeFormatError as e:
            res.truncated = True
            res.damage = getattr(e, "reason", str(e))
            res.damage_offset = getattr(e, "offset", 0)
            res.end_offset = res.damage_offset
            return res
        if o.kind == "eod":
            res.end_offset = o.offset
            return res
        kind = ObjKind.RECORD if o.kind == "record" else ObjKind.FILEMARK
        res.objects.append(TapeObject(kind, o.offset, o.length, o.error))
