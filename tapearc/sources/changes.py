"""Change sources for incrementals: what a change tracker says changed since the base generation.

Two kinds implement :class:`tapearc.sources.base.ChangeMap`:

- :class:`RangeMap`: a list of changed byte ranges known up front, from a ``--changed-blocks``
  file (``thin_delta`` XML of LVM thin / thin-provisioning-tools, ``era_invalidate`` XML of
  dm-era, or a plain JSON or CSV list of ranges, e.g. exported from VMware CBT); parsed by
  :func:`tapearc.sources.changes_files.read_changed_blocks`.
- :class:`tapearc.sources.changes_nbd.DirtyBitmapMap`: the NBD export's ``qemu:dirty-bitmap:NAME``
  metadata context (``qemu-nbd -B NAME``), asked piece by piece as the backup advances.

Both keep what they know as *runs*: one flat ``array`` of ints, ``start, end, start, end, ...``
of the changed byte ranges (sorted, merged), never one entry per block. Whether a change map is
trusted at all is decided elsewhere (:mod:`tapearc.sources.changes_trust`); a map only answers
which ranges changed.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tapearc.errors import ChangeSourceError

_WHOLE = re.compile(r"-?[0-9]+")


def whole_number(text: str) -> int | None:
    """``text`` as a whole number of ASCII digits (a leading minus allowed), else None: int()
    also takes ``1_0``, ``+1`` and digits of other scripts, which no tracker writes."""
    if not _WHOLE.fullmatch(text):
        return None
    if len(text.lstrip("-")) > 19:  # past any volume (and past what int() converts: 4300 digits)
        return -(1 << 63) if text.startswith("-") else 1 << 63
    return int(text)


class ChangedRuns:
    """Sorted, merged changed byte ranges as a flat ``array('q')``: ``start0, end0, start1, ...``
    (ends exclusive). 16 bytes per run of changed bytes, whatever the volume's size."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs = array("q")

    def add(self, start: int, end: int) -> None:
        """Add ``[start, end)``; ranges must come in ascending order of ``start`` (adjacent or
        overlapping ones merge with the last)."""
        if end <= start:
            return
        r = self.runs
        if r and start <= r[-1]:
            if start < r[-2]:
                raise ValueError("changed ranges must be added in ascending order")
            r[-1] = max(r[-1], end)
            return
        r.append(start)
        r.append(end)

    @property
    def count(self) -> int:
        """Runs held."""
        return len(self.runs) // 2

    @property
    def changed_bytes(self) -> int:
        r = self.runs
        return sum(r[i + 1] - r[i] for i in range(0, len(r), 2))

    def pairs(self) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of each run."""
        r = self.runs
        for i in range(0, len(r), 2):
            yield r[i], r[i + 1]

    def changed(self, offset: int, length: int) -> Iterator[tuple[int, int, bool]]:
        """``(start, length, changed)`` covering ``[offset, offset + length)`` exactly, in order."""
        end = offset + length
        r = self.runs
        # the first run that may overlap: the last whose start is <= offset (or the next one)
        i = max(0, (bisect_right(r, offset) - 1) & ~1)
        pos = offset
        while pos < end and i < len(r):
            s, e = r[i], r[i + 1]
            i += 2
            if e <= pos:
                continue
            if s >= end:
                break
            if s > pos:
                yield pos, s - pos, False
                pos = s
            stop = min(e, end)
            yield pos, stop - pos, True
            pos = stop
        if pos < end:
            yield pos, end - pos, False


class Ranges:
    """Checks ranges as they come (ascending, not overlapping, inside the volume) and keeps the
    changed ones as runs; ``where`` names the place of the range being added in errors."""

    def __init__(self, path: str, volume_size: int, unit: int) -> None:
        self.path = path
        self.size = volume_size
        self.unit = unit
        self.runs = ChangedRuns()
        self.last_end = 0  # end (bytes, unclipped) of the last range seen
        self.count = 0

    def fail(self, where: str, what: str) -> ChangeSourceError:
        return ChangeSourceError(f"{self.path}:{where}: {what}", hint="see docs/changes.md for the formats")

    def add(self, where: str, start: int, length: int, changed: bool = True) -> None:
        """A range of ``length`` units from unit ``start``."""
        if start < 0 or length < 0:
            raise self.fail(where, f"negative range (start {start}, length {length})")
        s, e = start * self.unit, (start + length) * self.unit
        if length == 0:
            return
        if s < self.last_end:
            raise self.fail(
                where,
                f"range at byte {s} overlaps or comes before the previous one (which ends at byte {self.last_end})",
            )
        if s >= self.size or e > -(-self.size // self.unit) * self.unit:
            raise self.fail(where, f"range bytes {s}-{e - 1} lies outside the volume ({self.size} bytes)")
        self.last_end = e
        self.count += 1
        if changed:
            self.runs.add(s, min(e, self.size))


@dataclass(frozen=True, slots=True)
class ChangedBlocks:
    """What a ``--changed-blocks`` file says, checked and in bytes.

    ``since``/``until``: the tracker checkpoints the file goes from and to, when it says
    (``thin_delta``: ``thin:LEFT`` / ``thin:RIGHT``; JSON ``since``/``until``); ``covered``:
    the byte range the file describes (outside it everything counts as changed);
    ``volume_size``: the size the file says the volume has (None: it does not say)."""

    format: str  # thin_delta | era_invalidate | json | csv
    path: str
    runs: ChangedRuns
    since: str | None = None
    until: str | None = None
    covered: tuple[int, int] | None = None
    volume_size: int | None = None


class RunsMap:
    """A :class:`~tapearc.sources.base.ChangeMap` over changed runs known up front (``runs``) of
    a volume of ``size`` bytes: the base of the changed-block file's and the dirty bitmap's."""

    runs: ChangedRuns
    size: int

    @property
    def changed_bytes(self) -> int:
        return self.runs.changed_bytes

    @property
    def changed_runs(self) -> int:
        return self.runs.count

    def changed(self, offset: int, length: int) -> Iterator[tuple[int, int, bool]]:
        return clipped(self.runs, offset, length, self.size)

    def close(self) -> None:
        pass


class RangeMap(RunsMap):
    """The ranges of a changed-block file. Bytes outside the file's covered area count as
    changed."""

    def __init__(self, blocks: ChangedBlocks, volume_size: int) -> None:
        self.name = f"changed-blocks:{blocks.format}"
        self.blocks = blocks
        self.size = volume_size
        runs = blocks.runs
        if blocks.covered is not None:
            runs = _with_uncovered(runs, blocks.covered, volume_size)
        self.runs = runs


def clipped(runs: ChangedRuns, offset: int, length: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """``runs.changed`` for a tracker that knows bytes ``[0, size)``: bytes past it (never asked
    for by a backup of a volume of that size) count as changed."""
    end = offset + length
    if offset < size:
        yield from runs.changed(offset, min(end, size) - offset)
    if end > size:
        start = max(offset, size)
        yield start, end - start, True


def _with_uncovered(runs: ChangedRuns, covered: tuple[int, int], size: int) -> ChangedRuns:
    """``runs`` plus everything of ``[0, size)`` outside ``covered`` (unknown: changed)."""
    lo, hi = covered
    out = ChangedRuns()
    out.add(0, min(lo, size))
    for s, e in runs.pairs():
        out.add(s, e)
    out.add(max(hi, 0), size)
    return out


def runs_of(pairs: Iterable[tuple[int, int]]) -> ChangedRuns:
    """ChangedRuns of sorted ``(start, end)`` pairs."""
    out = ChangedRuns()
    for s, e in pairs:
        out.add(s, e)
    return out
