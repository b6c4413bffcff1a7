"""The one place that decides, block by block, what a backup stores: an all-zero block (a zero
run in the mapping, nothing stored), a block unchanged since the base generation (nothing at
all), or data (its bytes and digest).

A window of blocks that is all zero is decided at once (a hole, free space); every other window
block by block. Change sources that know which blocks changed without reading them (a dirty
bitmap, a changed-block list) plug in here: they decide ``unchanged`` for the blocks they vouch
for, and send the rest through ``classify``.
"""

from __future__ import annotations

from typing import Protocol

from tapearc import format as fmt

DIGEST_LEN = fmt.DIGEST_LEN


class BlockSink(Protocol):
    """Where classified blocks go (the generation writer)."""

    @property
    def stopped(self) -> bool:
        """True once nothing more can be written (the medium is full and there is no next one)."""
        ...

    def add(self, block_id: int, data: memoryview | None, digest: bytes = b"") -> None:
        """Block ``block_id`` is data (``data``, its digest ``digest``) or all zero (None)."""
        ...

    def add_zero_run(self, first: int, count: int) -> None:
        """``count`` all-zero blocks from ``first`` on."""
        ...


class BlockClassifier:
    """Decides zero / unchanged / data for each block of a volume, read in windows.

    ``base`` is the base generation's manifest (16 bytes of digest per block, zero bytes for a
    zero block) and ``base_blocks`` its length in blocks; without a base (a full generation)
    nothing is unchanged. ``unchanged`` counts the blocks decided unchanged so far."""

    def __init__(self, block_size: int, base: bytes | bytearray | None = None, base_blocks: int = 0) -> None:
        self.block_size = block_size
        self.base = base
        self.base_blocks = base_blocks if base is not None else 0
        self.unchanged = 0

    def classify(self, window: bytearray, start: int, length: int, block_id: int, sink: BlockSink) -> int:
        """Classify the ``length`` bytes of ``window`` from ``start`` on, blocks ``block_id`` and
        up, into ``sink``; stop early when the sink stops. Returns the next block's number."""
        if length and fmt.is_zero(window, start, length):  # a whole window of zeros
            count = -(-length // self.block_size)
            base = self.base
            if base is None or block_id >= self.base_blocks:
                sink.add_zero_run(block_id, count)
                return block_id + count
            if block_id + count <= self.base_blocks and fmt.is_zero(base, block_id * DIGEST_LEN, count * DIGEST_LEN):
                self.unchanged += count  # zero before too
                return block_id + count
            # zero now, not all zero before: block by block
        return self._blocks(window, start, start + length, block_id, sink)

    def _blocks(self, window: bytearray, start: int, end: int, block_id: int, sink: BlockSink) -> int:
        """The per-block decisions (the hot path: names bound to locals)."""
        bs = self.block_size
        base = self.base
        base_blocks = self.base_blocks
        is_zero = fmt.is_zero
        block_digest = fmt.block_digest
        zero_digest = bytes(DIGEST_LEN)
        add = sink.add
        wview = memoryview(window)
        unchanged = 0
        for o in range(start, end, bs):
            n = bs if o + bs <= end else end - o
            if is_zero(window, o, n):
                if base is None or block_id >= base_blocks:
                    add(block_id, None)
                else:
                    d0 = block_id * DIGEST_LEN
                    if base[d0 : d0 + DIGEST_LEN] != zero_digest:
                        add(block_id, None)
                    else:
                        unchanged += 1
            else:
                blk = wview[o : o + n]
                dg = block_digest(blk)
                if base is not None and block_id < base_blocks:
                    d0 = block_id * DIGEST_LEN
                    if base[d0 : d0 + DIGEST_LEN] == dg:
                        unchanged += 1
                        block_id += 1
                        continue
                add(block_id, blk, dg)
            block_id += 1
            if sink.stopped:
                break
        self.unchanged += unchanged
        return block_id
