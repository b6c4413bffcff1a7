"""What a backup reads: the volume cut into runs of whole blocks from the source's extents and
the change source's verdicts, so that only data is read.

* a run of whole blocks that the source reports as reading as zeros (a hole, unallocated) is
  ``ZERO``: classified as zeros without a read (a block partly hole, partly data, is data);
* a run of blocks of the base generation that a change source vouches for as unchanged (every
  byte of each block in an unchanged range) is ``UNCHANGED``: neither read nor hashed -- unless
  the backup checks the tracker (``verify``), then it is ``DATA`` with ``vouched`` set;
* everything else is ``DATA``: read and classified.

Runs come out lazily, in block order, covering ``[0, nblocks)`` exactly: memory follows the
number of extents in flight, not the volume's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from tapearc.sources.base import ChangeMap, Extent

__all__ = ["Kind", "Segment", "block_runs", "segments", "vouched_runs"]


class Kind(IntEnum):
    ZERO = 0
    UNCHANGED = 1
    DATA = 2


@dataclass(frozen=True, slots=True)
class Segment:
    """Blocks ``[first, first + count)`` of one kind; ``vouched``: a change source vouched for
    them (set only when they are read anyway, to check it, or are zero)."""

    first: int
    count: int
    kind: Kind
    vouched: bool = False


def block_runs(extents: Iterator[Extent], block_size: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """``(first, count, data)`` runs of blocks covering the volume: a block touching any data
    extent is data, a block wholly in extents that read as zeros is not."""
    nblocks = -(-size // block_size)
    cur_a = cur_b = -1  # the data run being built, blocks [cur_a, cur_b)
    done = 0  # blocks emitted so far
    for e in extents:
        if not e.data or e.length <= 0:
            continue
        a = e.offset // block_size
        b = min(nblocks, -(-(e.offset + e.length) // block_size))
        if a >= nblocks:
            break
        if cur_b >= 0 and a <= cur_b:
            cur_b = max(cur_b, b)
            continue
        if cur_b >= 0:
            yield cur_a, cur_b - cur_a, True
            done = cur_b
        if a > done:
            yield done, a - done, False
        cur_a, cur_b = a, b
    if cur_b >= 0:
        yield cur_a, cur_b - cur_a, True
        done = cur_b
    if done < nblocks:
        yield done, nblocks - done, False


def vouched_runs(
    change_map: ChangeMap | None, block_size: int, size: int, base_blocks: int
) -> Iterator[tuple[int, int, bool]]:
    """``(first, count, vouched)`` runs covering the volume: a block of the base generation whose
    every byte lies in a range ``change_map`` says did not change is vouched for."""
    nblocks = -(-size // block_size)
    limit = min(nblocks, base_blocks)
    done = 0
    if change_map is not None and limit > 0:
        end_byte = min(size, limit * block_size)
        for start, length, changed in change_map.changed(0, end_byte):
            if changed or length <= 0:
                continue
            a = -(-start // block_size)
            stop = start + length
            b = limit if stop >= end_byte else min(limit, stop // block_size)
            if b <= a:
                continue
            if a > done:
                yield done, a - done, False
            yield a, b - a, True
            done = b
    if done < nblocks:
        yield done, nblocks - done, False


def segments(
    extents: Iterator[Extent],
    block_size: int,
    size: int,
    *,
    change_map: ChangeMap | None = None,
    base_blocks: int = 0,
    verify: bool = False,
) -> Iterator[Segment]:
    """The volume's segments (module text): the source's block runs merged with the change
    source's vouched runs; adjacent segments of the same kind are joined."""
    data_runs = block_runs(extents, block_size, size)
    vouch_runs = vouched_runs(change_map, block_size, size, base_blocks)
    pending: Segment | None = None
    for first, count, data, vouched in _merge(data_runs, vouch_runs):
        if not data:
            kind = Kind.ZERO
        elif vouched and not verify:
            kind = Kind.UNCHANGED
        else:
            kind = Kind.DATA
        mark = vouched and verify
        if pending is not None and pending.kind == kind and pending.vouched == mark:
            pending = Segment(pending.first, pending.count + count, kind, mark)
            continue
        if pending is not None:
            yield pending
        pending = Segment(first, count, kind, mark)
    if pending is not None:
        yield pending


def _merge(
    a: Iterator[tuple[int, int, bool]], b: Iterator[tuple[int, int, bool]]
) -> Iterator[tuple[int, int, bool, bool]]:
    """Two run streams over the same blocks, cut where either changes: ``(first, count, a, b)``."""
    ra, rb = next(a, None), next(b, None)
    while ra is not None and rb is not None:
        first = max(ra[0], rb[0])
        end = min(ra[0] + ra[1], rb[0] + rb[1])
        if end > first:
            yield first, end - first, ra[2], rb[2]
        if ra[0] + ra[1] == end:
            ra = next(a, None)
        if rb is not None and rb[0] + rb[1] == end:
            rb = next(b, None)
