"""Reading a ``--changed-blocks FILE``: which byte ranges of a volume changed since a checkpoint.

Four formats, told apart by their first character (``<`` XML, ``{`` JSON, else CSV) and, for
XML, by the root element (docs/changes.md has examples of each):

- ``thin_delta`` XML (thin-provisioning-tools, LVM thin snapshots): ``<superblock
  data_block_size=SECTORS><diff left=ID right=ID>`` with ``different`` / ``right_only`` /
  ``left_only`` (changed) and ``same`` (unchanged) ranges of thin blocks, short
  (``<different begin= length=/>``) or ``--verbose`` (``<different><range begin= length= .../>``).
  Blocks it does not name are unmapped in both snapshots (zeros in both: unchanged).
- ``era_invalidate`` XML (dm-era): ``<blocks>`` of ``<range begin= end=/>`` (end exclusive) and
  ``<block block=/>`` in era blocks; the file states no block size (``--change-block-size``).
- JSON: ``{"unit": "bytes"|"sectors"|"blocks", "block_size": N, "since": ID, "until": ID,
  "volume_size": N, "changed": [[start, length], ...]}``, or VMware's DiskChangeInfo form
  (``startOffset``, ``length``, ``changedArea``: ``[{"start": N, "length": N}, ...]``, bytes).
- CSV: a header row naming the columns and so the unit (``offset,length`` bytes,
  ``sector,sectors`` 512-byte sectors, ``block,blocks`` blocks of ``--change-block-size``), then
  one range per row; ``#`` lines are comments.

Bad input is a :class:`~tapearc.errors.ChangeSourceError`: one line naming the file and the
line (XML, CSV) or element (JSON) at fault, never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, BinaryIO

from tapearc.errors import ChangeSourceError
from tapearc.sources.changes import ChangedBlocks, Ranges, whole_number
from tapearc.sources.changes_xml import parse_xml

SECTOR = 512
CSV_UNITS = {("offset", "length"): "bytes", ("sector", "sectors"): "sectors", ("block", "blocks"): "blocks"}
JSON_UNITS = ("bytes", "sectors", "blocks")


def read_changed_blocks(path: str, volume_size: int, block_size: int | None = None) -> ChangedBlocks:
    """Parse ``path`` (any of the formats) for a volume of ``volume_size`` bytes; ``block_size``:
    the size of a tracker block where the file counts in blocks without saying their size.
    XML and CSV are read as a stream (memory follows the changed runs, not the file)."""
    f = _open_regular(path)
    try:
        head = _first_char(f)
        if not head:
            raise ChangeSourceError(f"{path}: the changed-blocks file is empty (a tool that failed?)")
        if head == b"<":
            return parse_xml(path, f, volume_size, block_size)
        if head in (b"{", b"["):
            return _json(path, _text(path, f.read()), volume_size, block_size)
        return _csv(path, f, volume_size, block_size)
    except OSError as e:
        raise ChangeSourceError(f"cannot read --changed-blocks file {path}: {e.strerror or e}") from None
    finally:
        f.close()


def _open_regular(path: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file: a FIFO without a writer would make
    the open wait for ever, a device like /dev/zero never end (opened without waiting, then
    checked)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ChangeSourceError(f"cannot read --changed-blocks file {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise ChangeSourceError(
            f"--changed-blocks file {path} is not a regular file ({what})",
            hint="write the tracker's output to a file first",
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _first_char(f: BinaryIO) -> bytes:
    """The first byte that is not white space (the file is left at its start)."""
    while True:
        piece = f.read(4096)
        if not piece:
            f.seek(0)
            return b""
        stripped = piece.lstrip()
        if stripped:
            f.seek(0)
            return stripped[:1]


def _text(path: str, data: bytes, line: int = 0) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        n = line or data[: e.start].count(b"\n") + 1
        raise ChangeSourceError(f"{path}:{n}: not UTF-8 text") from None


def _unit(path: str, where: str, unit: str, block_size: int | None) -> int:
    if unit == "bytes":
        return 1
    if unit == "sectors":
        return SECTOR
    if unit == "blocks":
        if not block_size:
            raise ChangeSourceError(
                f"{path}:{where}: ranges in blocks need a block size", hint="give --change-block-size SIZE"
            )
        return block_size
    raise ChangeSourceError(f"{path}:{where}: unknown unit {unit!r}; use one of {', '.join(JSON_UNITS)}")


def _json_int(path: str, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChangeSourceError(f"{path}:{where}: {value!r} is not a whole number")
    return value


def _json_text(path: str, where: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise ChangeSourceError(f"{path}:{where}: {value!r} is not a checkpoint name")
    return str(value)


def _json(path: str, text: str, volume_size: int, block_size: int | None) -> ChangedBlocks:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ChangeSourceError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
    except RecursionError:
        raise ChangeSourceError(f"{path}: JSON nested too deeply") from None
    except ValueError as e:  # a number of more digits than int() converts
        raise ChangeSourceError(f"{path}: malformed JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ChangeSourceError(f'{path}: JSON must be an object holding "changed" or "changedArea"')
    known = {"unit", "block_size", "since", "until", "volume_size", "changed", "changedArea", "startOffset", "length"}
    known |= {"changeId", "format", "version", "comment"}
    extra = sorted(set(doc) - known)
    if extra:
        raise ChangeSourceError(f"{path}: unknown JSON key {extra[0]!r}", hint="see docs/changes.md for the formats")
    vmware = _json_form(path, doc)
    key = "changedArea" if vmware else "changed"
    if key not in doc or not isinstance(doc[key], list):
        raise ChangeSourceError(f"{path}: JSON element {key!r} (a list of ranges) is missing")
    if "block_size" in doc:
        block_size = _json_int(path, "block_size", doc["block_size"])
        if block_size <= 0:
            raise ChangeSourceError(f"{path}:block_size: must be positive")
    unit = _unit(path, "unit", str(doc.get("unit", "bytes")), block_size)
    pairs = [_json_range(path, f"{key}[{i}]", item) for i, item in enumerate(doc[key])]
    ranges = Ranges(path, volume_size, unit)
    for i, (s, n) in sorted(enumerate(pairs), key=lambda x: x[1]):
        ranges.add(f"{key}[{i}]", s, n)
    covered = _json_area(path, doc, volume_size, unit)
    size = doc.get("volume_size")
    return ChangedBlocks(
        "json",
        path,
        ranges.runs,
        since=_json_text(path, "since", doc.get("since", doc.get("changeId"))),
        until=_json_text(path, "until", doc.get("until")),
        covered=covered,
        volume_size=None if size is None else _json_int(path, "volume_size", size),
    )


def _json_form(path: str, doc: dict[str, Any]) -> bool:
    """True for VMware's form (``changedArea``), False for ours (``changed``); keys of the two
    mixed are refused: whichever was ignored might have been the one that was right."""
    vmware = "changedArea" in doc
    if vmware and "changed" in doc:
        raise ChangeSourceError(f'{path}: both "changed" and "changedArea": give one list of ranges')
    for key in ("startOffset", "length"):
        if key in doc and not vmware:
            raise ChangeSourceError(f'{path}:{key}: goes with VMware\'s "changedArea", not with "changed"')
    if "since" in doc and "changeId" in doc and doc["since"] != doc["changeId"]:
        raise ChangeSourceError(f'{path}: "since" and "changeId" name different checkpoints')
    return vmware


def _json_area(path: str, doc: dict[str, Any], volume_size: int, unit: int) -> tuple[int, int] | None:
    """The byte range a VMware DiskChangeInfo describes (``startOffset``, ``length``), if it says."""
    if "startOffset" not in doc and "length" not in doc:
        return None
    lo = _json_int(path, "startOffset", doc.get("startOffset", 0))
    n = _json_int(path, "length", doc.get("length", volume_size - lo))
    if lo < 0 or n < 0:
        raise ChangeSourceError(f"{path}: negative startOffset or length ({lo}, {n})")
    return lo * unit, (lo + n) * unit


def _json_range(path: str, where: str, item: Any) -> tuple[int, int]:
    if isinstance(item, list) and len(item) == 2:
        return _json_int(path, where, item[0]), _json_int(path, where, item[1])
    if isinstance(item, dict) and "length" in item and ("start" in item or "offset" in item):
        start = item["start"] if "start" in item else item["offset"]
        return _json_int(path, where, start), _json_int(path, where, item["length"])
    raise ChangeSourceError(f'{path}:{where}: a range is [start, length] or {{"start": N, "length": N}}')


def _csv(path: str, f: BinaryIO, volume_size: int, block_size: int | None) -> ChangedBlocks:
    ranges: Ranges | None = None
    for n, raw in enumerate(f, 1):
        line = _text(path, raw, n).strip()
        if not line or line.startswith("#"):
            continue
        cells = tuple(c.strip() for c in line.split(","))
        if ranges is None:
            unit = CSV_UNITS.get(tuple(c.lower() for c in cells))  # type: ignore[arg-type]
            if unit is None:
                raise ChangeSourceError(
                    f"{path}:{n}: unknown CSV header {line!r} (the unit of the ranges)",
                    hint="start with a header row: offset,length (bytes), sector,sectors or block,blocks",
                )
            ranges = Ranges(path, volume_size, _unit(path, str(n), unit, block_size))
            continue
        if len(cells) != 2:
            raise ChangeSourceError(f"{path}:{n}: expected 2 fields (start,length), found {len(cells)}")
        start, length = whole_number(cells[0]), whole_number(cells[1])
        if start is None or length is None:
            raise ChangeSourceError(f"{path}:{n}: {line!r} is not two whole numbers")
        ranges.add(str(n), start, length)
    if ranges is None:
        raise ChangeSourceError(f"{path}: no CSV header row (offset,length / sector,sectors / block,blocks)")
    return ChangedBlocks("csv", path, ranges.runs)


__all__ = ["read_changed_blocks"]
