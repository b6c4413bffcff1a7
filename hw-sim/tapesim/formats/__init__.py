"""Tape image formats as streams of events, and lossless conversion between them.

Formats: ``simh`` (SIMH ``.tap``), ``aws`` (Hercules AWSTAPE ``.aws``; HET ``.het`` is read
too), ``tgt`` (the tgt SSC tape file made by ``tgtimg``). Each module has ``read_events(path)``
(a generator of :class:`Record` / :class:`Filemark` / :class:`EndOfData`), ``scan_image(path)``
(the object index ``tapesim info`` reports) and a writer class taking events.

    from tapesim.formats import convert, read_events, Record, Filemark
    convert("in.tap", "out.aws")                       # formats from the suffixes
    convert("in.tap", "out.img", dst_format="tgt", barcode="TAP001", capacity=10 << 20)
    for ev in read_events("out.aws"): ...

Only one record is in memory at a time, so images of any size convert.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from ..sidecar import TapeSettings, load_settings, save_settings
from ..simh import ScanResult, record_size
from . import aws, simh, tgt
from .events import EndOfData, Event, EventWriter, Filemark, Record, TapeFormatError, events_from, layout

__all__ = [
    "FORMATS",
    "ConvertResult",
    "EndOfData",
    "Event",
    "Filemark",
    "Record",
    "TapeFormatError",
    "convert",
    "events_from",
    "guess_format",
    "image_barcode",
    "layout",
    "open_writer",
    "read_events",
    "scan_image",
    "write_events",
]

FORMATS: dict[str, _FormatModule] = {"simh": simh, "aws": aws, "tgt": tgt}


def guess_format(path: str | os.PathLike[str]) -> str | None:
    """The format named by the suffix of ``path`` (``.tap`` simh, ``.aws``/``.het`` aws,
    ``.tgt``/``.ssc`` tgt), or None."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    for name, mod in FORMATS.items():
        if ext in mod.SUFFIXES:
            return name
    return None


class _FormatModule(Protocol):
    """What a format module offers (:mod:`.simh`, :mod:`.aws`, :mod:`.tgt`)."""

    @property
    def SUFFIXES(self) -> tuple[str, ...]: ...

    def read_events(self, path: str | os.PathLike[str]) -> Iterator[Event]: ...

    def scan_image(self, path: str | os.PathLike[str]) -> ScanResult: ...


def _module(fmt: str) -> _FormatModule:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise TapeFormatError(f"unknown format {fmt!r} (expected one of: {', '.join(FORMATS)})") from None


def _resolve(path: str | os.PathLike[str], fmt: str | None) -> str:
    if fmt is None:
        fmt = guess_format(path)
        if fmt is None:
            raise TapeFormatError(
                f"cannot tell the format of {os.fspath(path)} from its suffix (give it: {', '.join(FORMATS)})"
            )
    _module(fmt)
    return fmt


def read_events(path: str | os.PathLike[str], fmt: str | None = None) -> Iterator[Event]:
    """The events of an image (format from ``fmt`` or the suffix)."""
    return _module(_resolve(path, fmt)).read_events(path)


def scan_image(path: str | os.PathLike[str], fmt: str | None = None) -> ScanResult:
    """The object index of an image, damage reported (not raised), as ``tapesim info`` uses."""
    return _module(_resolve(path, fmt)).scan_image(path)


def image_barcode(path: str | os.PathLike[str], fmt: str) -> str | None:
    """The barcode an image carries: the tgt MAM's, or a SIMH image's sidecar's; else None."""
    if fmt == "tgt":
        return tgt.read_info(path).barcode
    if fmt == "simh":
        return load_settings(path).barcode
    return None


def open_writer(f: BinaryIO, fmt: str, **options: Any) -> EventWriter:
    """A writer of ``fmt`` on the binary file ``f``. Options: simh ``eom_marker``; aws
    ``chunk_size``; tgt ``barcode`` (required), ``capacity``, ``serial``."""
    _module(fmt)  # validates the name
    cls = {"simh": simh.SimhWriter, "aws": aws.AwsWriter, "tgt": tgt.TgtWriter}[fmt]
    w: EventWriter = cls(f, **options)
    return w


@dataclass
class ConvertResult:
    """What a conversion wrote."""

    src_format: str
    dst_format: str
    records: int
    filemarks: int
    data_bytes: int
    image_bytes: int
    capacity: int | None = None
    barcode: str | None = None


def write_events(f: BinaryIO, fmt: str, events: Iterable[Event], **options: Any) -> EventWriter:
    """Write ``events`` (up to and including their EndOfData) with a new writer; returns it."""
    w = open_writer(f, fmt, **options)
    ended = False
    for ev in events:
        w.write(ev)
        if isinstance(ev, EndOfData):
            ended = True
            break
    if not ended:
        w.finish()
    return w


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    src_format: str | None = None,
    dst_format: str | None = None,
    barcode: str | None = None,
    capacity: int | None = None,
    overwrite: bool = False,
    **writer_options: Any,
) -> ConvertResult:
    """Convert the image ``src`` into a new image ``dst``, records and filemarks unchanged.

    The destination is written to a temporary file beside it and renamed into place only when
    complete, so a failed conversion leaves nothing behind. For tgt, ``barcode`` defaults to
    the source's (tgt MAM, SIMH sidecar), else the destination's file name stem; ``capacity``
    defaults to the image size rounded up to a MiB.
    """
    sfmt = _resolve(src, src_format)
    dfmt = _resolve(dst, dst_format)
    src_s, dst_s = os.fspath(src), os.fspath(dst)
    _check_paths(src_s, dst_s, overwrite)
    _check_label(src_s, sfmt, dfmt, barcode, capacity)
    if barcode is None and dfmt != "aws":
        barcode = image_barcode(src_s, sfmt)
    options = dict(writer_options)
    if dfmt == "tgt":
        if barcode is None:
            stem = os.path.splitext(os.path.basename(dst_s))[0]
            barcode = stem[: tgt.MAX_BARCODE] or "TAPE"
        options.update(barcode=barcode, capacity=capacity)
    counter = _Counter(src_s, sfmt)
    w, size = _write_atomically(dst_s, dfmt, counter.counted(_module(sfmt).read_events(src_s)), options)
    result = ConvertResult(sfmt, dfmt, counter.records, counter.filemarks, counter.data_bytes, size)
    if isinstance(w, tgt.TgtWriter):
        result.capacity = w.capacity
        result.barcode = w.barcode
    elif dfmt == "simh" and (barcode is not None or capacity is not None):
        # the cartridge's label and size live in the SIMH image's tapesim sidecar
        settings = TapeSettings(capacity=capacity, barcode=barcode) if capacity else TapeSettings(barcode=barcode)
        save_settings(dst_s, settings)
        result.barcode, result.capacity = barcode, capacity
    return result


def _check_paths(src_s: str, dst_s: str, overwrite: bool) -> None:
    """The source must be an existing file; the destination not the source, nor a directory,
    and absent unless ``overwrite``."""
    if not os.path.exists(src_s):
        raise FileNotFoundError(2, "No such file or directory", src_s)
    if os.path.isdir(src_s):
        raise TapeFormatError(f"{src_s} is a directory")
    if os.path.exists(dst_s):
        if os.path.samefile(src_s, dst_s):
            raise TapeFormatError("source and destination are the same file")
        if not overwrite:
            raise FileExistsError(17, "already exists (use --force to replace it)", dst_s)
        if os.path.isdir(dst_s):
            raise TapeFormatError(f"{dst_s} is a directory")


def _check_label(src_s: str, sfmt: str, dfmt: str, barcode: str | None, capacity: int | None) -> None:
    """A barcode or capacity the destination format can hold (and a capacity the data fits)."""
    if dfmt == "aws" and (barcode is not None or capacity is not None):
        raise TapeFormatError("AWS images hold no barcode or capacity (--barcode/--capacity: simh or tgt only)")
    if dfmt == "simh" and capacity is not None:
        need = _simh_size(src_s, sfmt)
        if need is not None and need > capacity:
            raise TapeFormatError(f"the data needs {need} bytes of SIMH image, more than the capacity {capacity}")


class _Counter:
    """Counts the records, filemarks and data bytes of an event stream as it passes."""

    def __init__(self, src_s: str, sfmt: str) -> None:
        self.src_s, self.sfmt = src_s, sfmt
        self.records = self.filemarks = self.data_bytes = 0

    def counted(self, events: Iterable[Event]) -> Iterator[Event]:
        it = iter(events)
        while True:
            try:
                ev = next(it)
            except StopIteration:
                return
            except TapeFormatError as e:  # name the damaged source in the message
                raise TapeFormatError(f"{self.src_s} ({self.sfmt}): {e}") from None
            if isinstance(ev, Record):
                self.records += 1
                self.data_bytes += len(ev.data)
            elif isinstance(ev, Filemark):
                self.filemarks += 1
            yield ev


def _write_atomically(
    dst_s: str, dfmt: str, events: Iterable[Event], options: dict[str, Any]
) -> tuple[EventWriter, int]:
    """Write ``events`` as a ``dfmt`` image to a temporary file beside ``dst_s``, then rename it
    into place (removed on any failure); returns the writer and the image size."""
    folder = os.path.dirname(os.path.abspath(dst_s))
    fd, tmp = tempfile.mkstemp(prefix=".convert-", dir=folder)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            w = write_events(f, dfmt, events, **options)
            f.flush()
            size = f.tell()
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, dst_s)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return w, size


def _simh_size(path: str, fmt: str) -> int | None:
    """Bytes of SIMH image the content of ``path`` needs (from a scan; None if damaged)."""
    res = scan_image(path, fmt)
    if res.truncated:
        return None
    return sum(record_size(o.length) if o.kind.value == "record" else 4 for o in res.objects)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
