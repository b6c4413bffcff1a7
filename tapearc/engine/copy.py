"""Copying a whole medium, record for record and filemark for filemark.

:func:`copy_medium` reads the source from its beginning to its end of data and writes every
record and every filemark to the target in the same order, one record in memory at a time. It
knows nothing of tapearc's format: any medium is copied exactly (a tapearc medium, a tar tape, a
foreign SIMH image). When the source's first record is a tapearc volume label the result
reports it, and its record size lets an unsuitable target be refused before anything is written.

Rules:

* the target must be blank (its first read is end of data, and the backend says it is provably
  blank: a ``sim:`` image holding bytes that are not a tape is refused even with ``force``;
  only ``tapearc label --force`` goes over those) unless ``force``; a medium is never
  copied onto itself (:func:`same_medium` compares what two specs name; the engine refuses the
  same drive object);
* a source record larger than the target drive's largest record stops the copy before
  anything past it is written (:class:`~tapearc.errors.RecordTooLargeError`); for a tapearc
  medium whose label's record size exceeds the target's largest record this is known from the
  first record, and nothing is written;
* a copy must fit: when a write on the target reports the early warning and the source holds
  more records (filemarks still fit: they are written), the copy stops with :class:`~tapearc.errors.MediumFullError` (a copy does not span
  media; the target then holds an incomplete copy);
* any failure after the first write says how far the copy got: the target holds the source's
  objects up to that point and nothing else.

A medium of an encrypted set is copied the same way, with no key: its chunks stay sealed as
they are (their associated data binds the media set, volume, run, generation and part, all
unchanged in a copy, not the medium), its key record is copied with tape file 0, and the copy
opens with the set's key. The result names the key (``label["key_fingerprint"]``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tapearc import format as fmt
from tapearc.crypto.keys import fingerprint_text
from tapearc.engine.identity import refuse_unless_blank
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.tapefiles import FileRecords
from tapearc.errors import (
    MediumFullError,
    MediumInUseError,
    RecordTooLargeError,
    TapearcError,
    UsageError,
    WriteProtectedError,
)
from tapearc.media.base import Mark, TapeDrive, WriteStatus

__all__ = ["CopyResult", "copy_medium", "ensure_not_self", "label_info", "medium_identity", "same_medium"]


@dataclass(slots=True)
class CopyResult:
    """What a copy wrote."""

    source: str
    target: str
    tape_files: int = 0  # tape files holding at least one object (a record or their filemark)
    records: int = 0
    bytes: int = 0  # record data bytes (no framing)
    filemarks: int = 0
    largest_record: int = 0
    label: dict[str, Any] | None = None  # the source's tapearc label, when it has one
    erased_label: dict[str, Any] | None = None  # the tapearc label --force erased on the target
    complete: bool = True
    early_warning: bool = False  # the last writes went into the target's early-warning zone
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["mb_per_s"] = round(self.bytes / self.seconds / 1e6, 2) if self.seconds > 0 else None
        return d

    def summary(self) -> str:
        return (
            f"{self.tape_files} tape file{'s' if self.tape_files != 1 else ''}, {self.records} records, "
            f"{self.bytes} bytes, {self.filemarks} filemark{'s' if self.filemarks != 1 else ''}"
        )


def label_info(record: bytes) -> dict[str, Any] | None:
    """The tapearc volume label in ``record`` (a medium's first record), or None."""
    if record[:7] != fmt.LABEL_MAGIC[:7]:  # as layout.read_label: the magic without its version byte
        return None
    try:
        lab = fmt.decode_label(record)
    except TapearcError:
        return None
    return {
        "medium_uuid": str(lab.medium_uuid),
        "media_set": str(lab.media_set_uuid),
        "sequence": lab.sequence,
        "record_size": lab.record_size,
        "created": lab.created,
        "text": lab.text,
    }


def _key_record(record: bytes, label: dict[str, Any]) -> None:
    """The record after a tapearc label: an encrypted set's key record names the set's key in
    the result (``label["key_fingerprint"]``). The copy carries it as it is: the chunks'
    associated data binds the media set, not the medium, so the copy opens with the same key
    and no key is needed to make it (SPEC 15.3)."""
    if bytes(record[:7]) != fmt.KEY_RECORD_MAGIC[:7]:
        return
    try:
        label["key_fingerprint"] = fingerprint_text(fmt.decode_key_record(record).key_fingerprint)
    except TapearcError:
        label["key_fingerprint"] = None  # copied as it is; verify names the damage


# ---------------------------------------------------------------------- same medium


def medium_identity(spec: str) -> str | None:
    """What ``spec`` names, as a comparable string: the real path of the image, folder or
    device (``/dev/nstN`` and ``/dev/stN`` are the same drive); None for the stream ``-``
    (standard input and standard output are never the same medium)."""
    from tapearc.media import split_spec

    if spec == "-":
        return None
    kind, path = split_spec(spec)
    if not path:
        return None
    real = os.path.realpath(path)
    if kind == "st" or real.startswith("/dev/"):
        head, base = os.path.split(real)
        if base.startswith("nst"):
            base = base[1:]
        return os.path.join(head, base)
    return real


def same_medium(a: str, b: str) -> bool:
    """Do specs ``a`` and ``b`` name the same medium (same image, folder or drive)?"""
    ia, ib = medium_identity(a), medium_identity(b)
    if ia is None or ib is None:
        return False
    if ia == ib:
        return True
    try:
        return os.path.samefile(ia, ib)
    except OSError:
        return False


# ---------------------------------------------------------------------- copy


def _incomplete(err: TapearcError, res: CopyResult, pos: tuple[int, int, int], what: str) -> TapearcError:
    """``err`` with what the target now holds appended to its message."""
    logical, tfile, rec = pos
    if res.records == 0 and res.filemarks == 0:
        held = "nothing was written to it"
    else:
        held = (
            f"it holds the first {logical} objects of the source ({res.summary()}), "
            f"up to tape file {tfile} record {rec}"
        )
    err.message = f"{err.message}; {what}: the copy on {res.target} is incomplete: {held}"
    err.args = (err.message,)
    return err


def copy_medium(
    source: TapeDrive,
    target: TapeDrive,
    *,
    force: bool = False,
    progress: Progress | None = None,
    erasing: Callable[[dict[str, Any]], None] | None = None,
    rewritten: Callable[[dict[str, Any], int], None] | None = None,
) -> CopyResult:
    """Copy every record and filemark of ``source``, from its beginning to its end of data, to
    ``target`` from its beginning. Returns what was copied; raises on failure (see the module
    docstring for the rules). Both drives stay open; the target's position is left after the
    last object written. ``erasing(label)`` is told, before anything is written, the tapearc
    label ``force`` is about to erase on the target (the catalog forgets that medium's data).
    ``rewritten(label, n)`` is told, once the copy ended (done or failed) after writing over a
    medium with the source's own label, that the target now holds the source's first ``n`` tape
    files whole and nothing of what it held after them (an older copy written back over it)."""
    progress = progress or NoProgress()
    started = time.monotonic()
    res = CopyResult(source=source.name, target=target.name)
    _check_target(source, target, force, res)
    progress.start(f"copy {source.name}", _source_size(source))
    try:
        _copy_tape_files(source, target, res, progress, erasing)
    except BaseException:
        with contextlib.suppress(Exception):  # the copy's own error is the one to report
            _tell_rewritten(res, rewritten)
        raise
    finally:
        progress.finish()
    _tell_rewritten(res, rewritten)
    if res.early_warning:
        res.warnings.append("the copy fits, but it reached the target's early-warning zone")
    res.seconds = time.monotonic() - started
    return res


def _tell_rewritten(res: CopyResult, rewritten: Callable[[dict[str, Any], int], None] | None) -> None:
    """``rewritten`` (copy_medium) when the target's erased label is the source's and something
    was written: its whole tape files are the ``res.filemarks`` first ones."""
    lab, src = res.erased_label, res.label
    if rewritten is None or lab is None or src is None or src.get("medium_uuid") != lab["medium_uuid"]:
        return
    if res.records or res.filemarks:
        rewritten(lab, res.filemarks)


def _check_target(source: TapeDrive, target: TapeDrive, force: bool, res: CopyResult) -> None:
    """Refuse a target that is the source, write-protected, or not blank (unless ``force``);
    leaves both media rewound."""
    if source is target or (source.name == target.name and source.name != "-"):
        raise UsageError(
            f"cannot copy medium {source.name} onto itself",
            hint="give another medium as --to",
        )
    if not target.writable:
        raise WriteProtectedError("target medium is write-protected (or open read-only); nothing was written").at(
            medium=target.name
        )
    source.rewind()
    target.rewind()
    first_target = target.read_record()
    if first_target is Mark.END_OF_DATA:
        # blank only when provably so (a sim: image holding other bytes is not), even with force:
        # only `tapearc label --force` goes over content that is not a tape's
        refuse_unless_blank(target, None)
    else:
        what = "a filemark" if first_target is Mark.FILEMARK else "records"
        lab = label_info(first_target) if isinstance(first_target, (bytes, bytearray)) else None
        if not force:
            if lab is not None:
                raise MediumInUseError(
                    f"target medium is not blank: it holds a tapearc label (medium {lab['medium_uuid']}"
                    + (f", {lab['text']}" if lab["text"] else "")
                    + f", sequence {lab['sequence']} of media set {lab['media_set']}); copying would erase it; "
                    "nothing was written",
                    hint="use a blank medium, or add --force to erase it",
                ).at(medium=target.name)
            raise MediumInUseError(
                f"target medium is not blank (it begins with {what}); copying would erase it; nothing was written",
                hint="use a blank medium, or add --force to erase it",
            ).at(medium=target.name)
        res.warnings.append(f"target was not blank (it began with {what}); its contents were replaced")
        res.erased_label = lab
    target.rewind()


def _source_size(source: TapeDrive) -> int | None:
    """The bytes the source holds, when its backend knows (for the progress total)."""
    try:
        used = source.status().used
        return int(used) if used else None
    except TapearcError:
        return None


@dataclass(slots=True)
class _At:
    """Where the copy is: the next object's logical number, tape file and record in it."""

    logical: int = 0
    tape_file: int = 0
    record: int = 0
    erasing: Callable[[dict[str, Any]], None] | None = None  # told before the first write

    def pos(self) -> tuple[int, int, int]:
        return (self.logical, self.tape_file, self.record)

    def first_write(self, res: CopyResult) -> None:
        """Before the first object is written: the tapearc label --force erases on the target is
        reported -- unless the source carries the same label (an older copy of the same medium
        written over: its data stays where the catalog says)."""
        erasing, self.erasing = self.erasing, None
        lab = res.erased_label
        if erasing is not None and lab is not None and (res.label or {}).get("medium_uuid") != lab["medium_uuid"]:
            erasing(lab)


def _copy_tape_files(
    source: TapeDrive,
    target: TapeDrive,
    res: CopyResult,
    progress: Progress,
    erasing: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Copy tape file after tape file (its records, then its filemark) up to the end of data."""
    at = _At(erasing=erasing)
    while True:
        mark = _copy_records(FileRecords(source), source, target, res, progress, at)
        if mark is Mark.END_OF_DATA:
            return
        at.first_write(res)
        status = _write(target, None, res, at.pos())  # filemarks still fit in the early-warning zone
        res.filemarks += 1
        if at.record == 0:  # an empty tape file: just its filemark
            res.tape_files += 1
        at.logical += 1
        at.tape_file += 1
        at.record = 0
        if status is WriteStatus.EARLY_WARNING:
            res.early_warning = True


def _copy_records(
    recs: FileRecords, source: TapeDrive, target: TapeDrive, res: CopyResult, progress: Progress, at: _At
) -> Mark:
    """Copy the records of one tape file; returns the mark that ends it."""
    while True:
        try:
            obj = recs.read()
        except TapearcError as e:
            e.at(medium=source.name, tape_file=at.tape_file, record=at.record)
            raise _incomplete(e, res, at.pos(), f"reading the source failed at object {at.logical}") from None
        if isinstance(obj, Mark):
            return obj
        if res.early_warning:
            raise _incomplete(
                MediumFullError(
                    f"target medium reached its early warning after {at.logical} objects and the source holds more "
                    "(a copy must fit on one medium; it does not span media)",
                    hint="copy to a larger medium",
                ).at(medium=target.name, tape_file=at.tape_file, record=at.record),
                res,
                at.pos(),
                "stopped",
            )
        _check_record(obj, source, target, res, at)
        at.first_write(res)
        status = _write(target, obj, res, at.pos())
        n = len(obj)
        res.records += 1
        res.bytes += n
        res.largest_record = max(res.largest_record, n)
        if at.record == 0:
            res.tape_files += 1
        at.logical += 1
        at.record += 1
        progress.advance(n)
        if status is WriteStatus.EARLY_WARNING:
            res.early_warning = True


def _check_record(obj: bytes, source: TapeDrive, target: TapeDrive, res: CopyResult, at: _At) -> None:
    """Refuse a record larger than the target takes (for a tapearc source, from its label's
    record size at the first record, before anything is written)."""
    n = len(obj)
    if at.logical == 0:
        res.label = label_info(obj)
        if res.label is not None and res.label["record_size"] > target.max_record_size:
            raise RecordTooLargeError(
                f"source {source.name} is a tapearc medium written with records of up to "
                f"{res.label['record_size']} bytes (its label's record size), larger than the "
                f"largest record target drive {target.name} takes ({target.max_record_size}); "
                "nothing was written",
                hint="copy to a medium or drive that takes larger records",
            ).at(medium=target.name)
    if at.logical == 1 and at.tape_file == 0 and res.label is not None:
        _key_record(obj, res.label)
    if n > target.max_record_size:
        raise _incomplete(
            RecordTooLargeError(
                f"source record {at.record} of tape file {at.tape_file} (object {at.logical}) holds {n} bytes, more "
                f"than the largest record target drive {target.name} takes ({target.max_record_size}); "
                "nothing past it was written",
                hint="copy to a medium or drive that takes larger records",
            ).at(medium=source.name, tape_file=at.tape_file, record=at.record),
            res,
            at.pos(),
            "stopped",
        )


def _write(target: TapeDrive, data: bytes | None, res: CopyResult, pos: tuple[int, int, int]) -> WriteStatus:
    try:
        return target.write_filemark() if data is None else target.write_record(data)
    except MediumFullError as e:
        raise _incomplete(
            e.at(medium=target.name),
            res,
            pos,
            "target medium is full (a copy must fit on one medium; it does not span media)",
        ) from None
    except TapearcError as e:
        raise _incomplete(e.at(medium=target.name), res, pos, f"writing object {pos[0]} failed") from None


def ensure_not_self(source_spec: str, target_spec: str) -> None:
    """Refuse (UsageError) to copy a medium onto itself, before either is opened."""
    if same_medium(source_spec, target_spec):
        raise UsageError(
            f"--from {source_spec} and --to {target_spec} are the same medium; a medium cannot be copied onto itself",
            hint="give another medium as --to",
        )
