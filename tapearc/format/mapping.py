"""Block-run mapping helpers: volume blocks <-> runs <-> chunk payload.

A volume of ``volume_size`` bytes is cut into blocks of ``block_size`` bytes, numbered from 0;
every block is ``block_size`` bytes except the last one, which is shorter when ``volume_size``
is not a multiple of ``block_size``. A chunk lists its blocks as runs (see
:class:`~tapearc.format.model.Run`): data runs are stored in the payload in run order, zero
runs are not stored.

Plain helpers, no validation against damaged data (the codec does that); misuse raises
``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .model import Run, RunKind

__all__ = [
    "MAX_RUN_COUNT",
    "block_count",
    "block_len",
    "iter_blocks",
    "iter_run_payload",
    "run_data_len",
    "runs_data_len",
    "runs_from_ids",
]

#: Largest ``count`` of one run (u32 on media); longer stretches are cut into several runs.
MAX_RUN_COUNT = 0xFFFFFFFF


def block_count(volume_size: int, block_size: int) -> int:
    """Number of blocks of a volume (the last one may be partial)."""
    if block_size <= 0 or volume_size < 0:
        raise ValueError(f"bad geometry: volume_size={volume_size}, block_size={block_size}")
    return -(-volume_size // block_size)


def block_len(block_id: int, block_size: int, volume_size: int) -> int:
    """Length in bytes of block ``block_id``: ``block_size``, or less for a partial last block."""
    start = block_id * block_size
    if block_id < 0 or block_size <= 0 or start >= volume_size:
        raise ValueError(f"block {block_id} is outside a volume of {volume_size} bytes in blocks of {block_size}")
    return min(block_size, volume_size - start)


def run_data_len(first: int, count: int, block_size: int, volume_size: int) -> int:
    """Bytes of blocks ``first`` .. ``first + count - 1`` (all inside the volume)."""
    if count <= 0 or first < 0 or block_size <= 0 or (first + count - 1) * block_size >= volume_size:
        raise ValueError(f"run {first}+{count} is outside a volume of {volume_size} bytes in blocks of {block_size}")
    return min((first + count) * block_size, volume_size) - first * block_size


def runs_data_len(runs: Iterable[Run], block_size: int, volume_size: int) -> int:
    """Bytes the data runs of ``runs`` take in a raw (uncompressed) payload."""
    return sum(run_data_len(r.first, r.count, block_size, volume_size) for r in runs if r.kind == RunKind.DATA)


def runs_from_ids(ids_with_kind: Iterable[tuple[int, bool]]) -> tuple[Run, ...]:
    """Compress an ordered sequence of ``(block_id, is_zero)`` into runs.

    Consecutive ids (each one more than the one before) of the same kind become one run; any
    other step starts a new run, so the order of the input is kept exactly
    (``tuple(iter_blocks(runs_from_ids(x))) == tuple(x)``).
    """
    runs: list[Run] = []
    first = prev = -2
    count = 0
    zero = False
    for block_id, is_zero in ids_with_kind:
        is_zero = bool(is_zero)
        if count and block_id == prev + 1 and is_zero == zero and count < MAX_RUN_COUNT:
            count += 1
        else:
            if count:
                runs.append(Run(first, count, RunKind.ZERO if zero else RunKind.DATA))
            first, count, zero = block_id, 1, is_zero
        prev = block_id
    if count:
        runs.append(Run(first, count, RunKind.ZERO if zero else RunKind.DATA))
    return tuple(runs)


def iter_blocks(runs: Iterable[Run]) -> Iterator[tuple[int, bool]]:
    """Yield ``(block_id, is_zero)`` for every block of ``runs``, in order."""
    for r in runs:
        zero = r.kind == RunKind.ZERO
        for block_id in range(r.first, r.first + r.count):
            yield block_id, zero


def iter_run_payload(
    runs: Sequence[Run],
    raw: bytes | bytearray | memoryview,
    block_size: int,
    volume_size: int,
) -> Iterator[tuple[Run, memoryview | None]]:
    """Yield ``(run, data)`` per run: the run's slice of the raw payload, or None for a zero run.

    The byte offset of a data run's first block in the volume is ``run.first * block_size``.
    Raises ValueError when ``raw`` is not exactly as long as the data runs.
    """
    mv = memoryview(raw).cast("B") if not isinstance(raw, memoryview) else raw
    pos = 0
    for r in runs:
        if r.kind == RunKind.ZERO:
            yield r, None
            continue
        n = run_data_len(r.first, r.count, block_size, volume_size)
        if pos + n > len(mv):
            raise ValueError(f"payload of {len(mv)} bytes is shorter than its runs")
        yield r, mv[pos : pos + n]
        pos += n
    if pos != len(mv):
        raise ValueError(f"payload of {len(mv)} bytes is longer than its runs ({pos} bytes)")
