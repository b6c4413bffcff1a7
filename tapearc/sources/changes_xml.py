"""The two XML formats of ``--changed-blocks``: ``thin_delta`` (LVM thin, thin-provisioning-tools)
and ``era_invalidate`` (dm-era). Read with expat, element by element (line numbers in errors;
no DTDs or entities accepted). Formats: tapearc.sources.changes_files and docs/changes.md."""

from __future__ import annotations

from typing import Any, BinaryIO
from xml.parsers import expat

from tapearc.errors import ChangeSourceError
from tapearc.sources.changes import ChangedBlocks, Ranges, whole_number

SECTOR = 512
#: thin_delta's kinds of range: True = changed between the two snapshots.
THIN_KINDS = {"different": True, "right_only": True, "left_only": True, "same": False}


class _Handler:
    """Collects the ranges of one document; ``line()`` is the parser's current line."""

    def __init__(self, path: str, volume_size: int, block_size: int | None, line: Any) -> None:
        self.path = path
        self.size = volume_size
        self.block_size = block_size
        self.line = line
        self.root: str | None = None
        self.ranges: Ranges | None = None
        self.kind: str | None = None  # thin_delta --verbose: the kind of the <range> elements inside
        self.since: str | None = None
        self.until: str | None = None
        self.diffs = 0

    def fail(self, what: str) -> ChangeSourceError:
        return ChangeSourceError(f"{self.path}:{self.line()}: {what}", hint="see docs/changes.md for the formats")

    def num(self, name: str, attrs: dict[str, str], elem: str) -> int:
        if name not in attrs:
            raise self.fail(f"<{elem}> has no {name}= attribute")
        n = whole_number(attrs[name].strip())
        if n is None:
            raise self.fail(f"<{elem} {name}={attrs[name]!r}>: not a whole number")
        return n

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if self.root is None:
            self.root = name
            if name == "superblock":
                bs = self.num("data_block_size", attrs, name)
                if bs <= 0:
                    raise self.fail("data_block_size must be positive")
                self.ranges = Ranges(self.path, self.size, bs * SECTOR)
            elif name == "blocks":
                if not self.block_size:
                    raise ChangeSourceError(
                        f"{self.path}: era_invalidate XML does not say its block size",
                        hint="give --change-block-size SIZE (the dm-era block size: era_dump's block_size x 512)",
                    )
                self.ranges = Ranges(self.path, self.size, self.block_size)
            else:
                raise self.fail(
                    f"unknown XML document <{name}>: expected thin_delta's <superblock> or era_invalidate's <blocks>"
                )
            return
        if self.root == "superblock":
            self.thin(name, attrs)
        else:
            self.era(name, attrs)

    def thin(self, name: str, attrs: dict[str, str]) -> None:
        assert self.ranges is not None
        if name == "diff":
            self.diffs += 1
            if self.diffs > 1:
                raise self.fail("more than one <diff>")
            for a in ("left", "right"):
                if not attrs.get(a, "").strip():
                    raise self.fail(f"<diff> has no {a}= attribute")
            self.since, self.until = f"thin:{attrs['left'].strip()}", f"thin:{attrs['right'].strip()}"
            return
        if self.diffs != 1:
            raise self.fail(f"<{name}> outside <diff>")
        if name in THIN_KINDS:
            if "begin" not in attrs:  # --verbose: a group of <range> elements
                self.kind = name
                return
            self.thin_range(name, attrs, name)
        elif name == "range" and self.kind is not None:
            self.thin_range(name, attrs, self.kind)
        else:
            raise self.fail(f"unexpected element <{name}> in thin_delta output")

    def thin_range(self, name: str, attrs: dict[str, str], kind: str) -> None:
        assert self.ranges is not None
        self.ranges.add(
            str(self.line()), self.num("begin", attrs, name), self.num("length", attrs, name), THIN_KINDS[kind]
        )

    def end(self, name: str) -> None:
        if name in THIN_KINDS:
            self.kind = None

    def era(self, name: str, attrs: dict[str, str]) -> None:
        assert self.ranges is not None
        where = str(self.line())
        if name == "range":
            b, e = self.num("begin", attrs, name), self.num("end", attrs, name)
            if e < b:
                raise self.fail(f"<range begin={b} end={e}>: end before begin")
            self.ranges.add(where, b, e - b)
        elif name == "block":
            self.ranges.add(where, self.num("block", attrs, name), 1)
        else:
            raise self.fail(f"unexpected element <{name}> in era_invalidate output")


def _refuse_dtd(*_: object) -> None:
    raise ValueError("DTD")


def parse_xml(path: str, f: BinaryIO, volume_size: int, block_size: int | None) -> ChangedBlocks:
    """A thin_delta or era_invalidate document (see the module's text)."""
    p = expat.ParserCreate()
    h = _Handler(path, volume_size, block_size, lambda: p.CurrentLineNumber)
    p.StartElementHandler = h.start
    p.EndElementHandler = h.end
    p.StartDoctypeDeclHandler = _refuse_dtd
    p.EntityDeclHandler = _refuse_dtd
    try:
        p.ParseFile(f)
    except expat.ExpatError as e:
        raise ChangeSourceError(f"{path}:{e.lineno}: malformed XML: {expat.ErrorString(e.code)}") from None
    except ValueError:
        raise ChangeSourceError(f"{path}:{p.CurrentLineNumber}: DTDs and entities are not accepted") from None
    assert h.ranges is not None
    if h.root == "superblock":
        if h.diffs != 1:
            raise ChangeSourceError(
                f"{path}: thin_delta output without a <diff> (give thin_delta --thin1/--snap1 and --thin2/--snap2)"
            )
        return ChangedBlocks("thin_delta", path, h.ranges.runs, since=h.since, until=h.until)
    return ChangedBlocks("era_invalidate", path, h.ranges.runs)
