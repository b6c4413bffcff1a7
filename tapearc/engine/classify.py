"""The one place that decides, block by block, what a backup stores: an all-zero block (a zero
run in the mapping, nothing stored), a block unchanged since the base generation (nothing at
all), or data (its bytes and digest).

A window of blocks that is all zero is decided at once (a hole, free space); every other window
block by block. Blocks known to be zero without reading them (a hole the source reports) go
through :meth:`BlockClassifier.zeros`; blocks a change source (a dirty bitmap, a changed-block
list) vouches for as unchanged through :meth:`BlockClassifier.unchanged`; the rest are read and
sent through :meth:`BlockClassifier.classify`.

The base generation's digests are reached through :class:`BaseManifest`, window by window, so
the classifier does not care how they are kept (in memory, as runs, spooled to disk).
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


class BaseManifest(Protocol):
    """The base generation's block digests (an incremental compares against them).

    A block's digest is 16 bytes; an all-zero block's is 16 zero bytes (format.ZERO_DIGEST).
    Blocks at or after ``nblocks`` do not exist in the base."""

    @property
    def nblocks(self) -> int:
        """Blocks of the base generation."""
        ...

    def digests(self, first: int, count: int) -> bytes | bytearray | memoryview:
        """The digests of blocks ``[first, first + count)`` (all below ``nblocks``), 16 bytes each."""
        ...

    def all_zero(self, first: int, count: int) -> bool:
        """True when every block of ``[first, first + count)`` (all below ``nblocks``) is all zero."""
        ...


class ArrayManifest:
    """A :class:`BaseManifest` over one byte array of 16 bytes per block."""

    __slots__ = ("data", "nblocks")

    def __init__(self, data: bytes | bytearray, nblocks: int | None = None) -> None:
        self.data = data
        self.nblocks = len(data) // DIGEST_LEN if nblocks is None else nblocks

    def digests(self, first: int, count: int) -> bytes | bytearray | memoryview:
        return memoryview(self.data)[first * DIGEST_LEN : (first + count) * DIGEST_LEN]

    def all_zero(self, first: int, count: int) -> bool:
        return fmt.is_zero(self.data, first * DIGEST_LEN, count * DIGEST_LEN)


class BlockClassifier:
    """Decides zero / unchanged / data for each block of a volume, read in windows.

    ``base`` is the base generation's manifest; without a base (a full generation) nothing is
    unchanged. ``digest`` is the generation's block digest function (``fmt.digest_function``:
    BLAKE3-128, keyed with the key's digest key in an encrypted generation; the base's digests
    are of the same kind). ``unchanged`` counts the blocks decided unchanged so far."""

    def __init__(
        self, block_size: int, base: BaseManifest | None = None, digest: fmt.DigestFunction = fmt.block_digest
    ) -> None:
        self.block_size = block_size
        self.digest = digest
        self.base = base
        self.base_blocks = base.nblocks if base is not None else 0
        self.unchanged = 0

    def classify(self, window: bytearray, start: int, length: int, block_id: int, sink: BlockSink) -> int:
        """Classify the ``length`` bytes of ``window`` from ``start`` on, blocks ``block_id`` and
        up, into ``sink``; stop early when the sink stops. Returns the next block's number."""
        if length and fmt.is_zero(window, start, length):  # a whole window of zeros
            return self.zeros(block_id, -(-length // self.block_size), sink)
        return self._blocks(window, start, start + length, block_id, sink)

    def zeros(self, block_id: int, count: int, sink: BlockSink) -> int:
        """Blocks ``[block_id, block_id + count)`` are all zero (read, or a hole the source
        reports): unchanged where the base had zeros, a zero run elsewhere. Nothing is read.
        Returns the next block's number."""
        end = block_id + count
        base = self.base
        if base is None or block_id >= self.base_blocks:
            sink.add_zero_run(block_id, count)
            return end
        in_base = min(end, self.base_blocks)
        if base.all_zero(block_id, in_base - block_id):
            self.unchanged += in_base - block_id
        else:  # zero now, not all zero before: runs of zero-before (unchanged) and not (zero run)
            self._zeros_over_base(base, block_id, in_base, sink)
        if in_base < end:
            sink.add_zero_run(in_base, end - in_base)
        return end

    def _zeros_over_base(self, base: BaseManifest, first: int, end: int, sink: BlockSink) -> None:
        step = 4096  # blocks of digests looked at at once (64 KiB)
        zero = bytes(DIGEST_LEN)
        for w0 in range(first, end, step):
            w1 = min(end, w0 + step)
            dg = bytes(base.digests(w0, w1 - w0))
            run_start = -1
            for b in range(w0, w1):
                d0 = (b - w0) * DIGEST_LEN
                if dg[d0 : d0 + DIGEST_LEN] == zero:  # zero before too: unchanged
                    if run_start >= 0:
                        sink.add_zero_run(run_start, b - run_start)
                        run_start = -1
                    self.unchanged += 1
                elif run_start < 0:
                    run_start = b
            if run_start >= 0:
                sink.add_zero_run(run_start, w1 - run_start)
            if sink.stopped:
                return

    def unchanged_blocks(self, block_id: int, count: int) -> int:
        """A change source vouches that blocks ``[block_id, block_id + count)`` (all in the base)
        are as in the base: nothing is read or stored. Returns the next block's number."""
        if block_id + count > self.base_blocks:
            raise ValueError(f"blocks {block_id}-{block_id + count - 1} are not all in the base generation")
        self.unchanged += count
        return block_id + count

    def _blocks(self, window: bytearray, start: int, end: int, block_id: int, sink: BlockSink) -> int:
        """The per-block decisions (the hot path: names bound to locals)."""
        bs = self.block_size
        base_blocks = self.base_blocks
        first = block_id
        nwin = -(-(end - start) // bs)
        in_base = max(0, min(nwin, base_blocks - block_id)) if self.base is not None else 0
        base = self.base.digests(block_id, in_base) if self.base is not None and in_base else b""
        is_zero = fmt.is_zero
        block_digest = self.digest
        zero_digest = bytes(DIGEST_LEN)
        add = sink.add
        wview = memoryview(window)
        unchanged = 0
        for o in range(start, end, bs):
            n = bs if o + bs <= end else end - o
            k = block_id - first  # the block's index in the window (and in ``base``)
            if is_zero(window, o, n):
                if k >= in_base:
                    add(block_id, None)
                else:
                    d0 = k * DIGEST_LEN
                    if base[d0 : d0 + DIGEST_LEN] != zero_digest:
                        add(block_id, None)
                    else:
                        unchanged += 1
            else:
                blk = wview[o : o + n]
                dg = block_digest(blk)
                if k < in_base:
                    d0 = k * DIGEST_LEN
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
