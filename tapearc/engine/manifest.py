"""A generation's block digests with memory that follows the data, not the volume.

:class:`RunManifest` (an incremental's base, built by :func:`build_manifest`) keeps the chain's
last generation as runs: a run of zero blocks (or blocks no generation recorded) is one interval,
a run of data blocks one interval plus the 16-byte digests of its blocks in a
:class:`DigestStore`, in memory up to a limit and in an unnamed temporary file past it. A volume
claiming 1 TiB that holds 64 MiB of data costs its 1024 data blocks' digests and a few
intervals, not 16 bytes for each of its 16 million blocks.

:class:`MappedDigests` gives the same view of a chain map without copying anything: the digests
are read from the catalog chunk by chunk as a walk in block order reaches them (restore's target
detection compares a target against candidate generations this way, window by window).
"""

from __future__ import annotations

import bisect
import errno
import os
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, BinaryIO

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, GenerationRow
from tapearc.engine.tapefiles import SHORT, spool_error, spool_read_error
from tapearc.errors import TempFileError

if TYPE_CHECKING:
    from tapearc.engine.plan import BlockMap

DIGEST_LEN = fmt.DIGEST_LEN

MANIFEST_MEMORY = 16 * 1024 * 1024  # digest bytes kept in memory before they go to a temporary file
_FILL = 4 * 1024 * 1024  # bytes of zeros written at once when a temporary file is extended


class DigestStore:
    """``size`` bytes of digests written at any offset and read back: a bytearray up to
    ``limit`` bytes, else an unnamed temporary file in ``$TMPDIR`` (read with pread, so the
    store costs page cache, not the process's memory)."""

    def __init__(self, size: int, limit: int = MANIFEST_MEMORY) -> None:
        self.size = size
        self.mem: bytearray | None = None
        self.file: BinaryIO | None = None
        if size <= limit:
            self.mem = bytearray(size)
            return
        import tempfile  # (a base of more than 1 M data blocks: not imported by every backup)

        try:
            # lives as long as the store (closed by close()), not a with block
            self.file = tempfile.TemporaryFile(prefix="tapearc-manifest-")  # noqa: SIM115
            self.file.truncate(size)
        except OSError as e:
            raise self._fail(e) from None

    def _fail(self, e: OSError, reading: bool = False) -> TempFileError:
        what = "the base generation's block digests"
        if reading:
            return spool_read_error(what, e)
        err = spool_error(what, e)
        err.hint = f"set TMPDIR to a folder with room ({self.size} bytes: 16 per data block of the base generation)"
        return err

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.mem is not None:
            self.mem[offset : offset + len(data)] = data
            return
        assert self.file is not None
        try:
            os.pwrite(self.file.fileno(), data, offset)
        except OSError as e:
            raise self._fail(e) from None

    def read(self, offset: int, length: int) -> bytes | memoryview:
        if self.mem is not None:
            return memoryview(self.mem)[offset : offset + length]
        assert self.file is not None
        try:
            got = os.pread(self.file.fileno(), length, offset)
        except OSError as e:
            raise self._fail(e, reading=True) from None
        if len(got) != length:
            raise self._fail(OSError(errno.EIO, SHORT), reading=True)
        return got

    def is_zero(self, offset: int, length: int) -> bool:
        if self.mem is not None:
            return fmt.is_zero(self.mem, offset, length)
        got = self.read(offset, length)
        assert isinstance(got, bytes)
        return fmt.is_zero(got)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self) -> DigestStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunManifest:
    """A :class:`~tapearc.engine.classify.BaseManifest` as runs: sorted, disjoint intervals
    ``[start, end)`` covering ``[0, nblocks)``, each either zero (``off`` -1) or data whose
    digests are the store's bytes from ``off`` on. Memory: 24 bytes per interval (the base's
    extents: data and zero runs alternate) plus the store (16 bytes per data block, spilled to a
    temporary file past :data:`MANIFEST_MEMORY`). Windows asked for in increasing order (a
    backup's) are found without a search."""

    __slots__ = ("_k", "ends", "nblocks", "offs", "starts", "store")

    def __init__(self, nblocks: int, starts: array[int], ends: array[int], offs: array[int], store: DigestStore):
        self.nblocks = nblocks
        self.starts = starts
        self.ends = ends
        self.offs = offs
        self.store = store
        self._k = 0

    def __len__(self) -> int:
        return len(self.starts)

    def _find(self, b: int) -> int:
        """The index of the interval holding block ``b``."""
        k = self._k
        ends = self.ends
        if k < len(ends) and self.starts[k] <= b < ends[k]:
            return k
        if k + 1 < len(ends) and self.starts[k + 1] <= b < ends[k + 1]:
            self._k = k + 1
            return k + 1
        self._k = bisect.bisect_right(ends, b)
        return self._k

    def digests(self, first: int, count: int) -> bytes | bytearray | memoryview:
        if count <= 0:
            return b""
        end = first + count
        k = self._find(first)
        if end <= self.ends[k]:  # inside one interval (nearly every window): no copy
            o = self.offs[k]
            if o < 0:
                return bytes(count * DIGEST_LEN)
            return self.store.read(o + (first - self.starts[k]) * DIGEST_LEN, count * DIGEST_LEN)
        out = bytearray(count * DIGEST_LEN)
        b = first
        while b < end:
            e = min(self.ends[k], end)
            o = self.offs[k]
            if o >= 0:
                a = (b - first) * DIGEST_LEN
                out[a : a + (e - b) * DIGEST_LEN] = self.store.read(
                    o + (b - self.starts[k]) * DIGEST_LEN, (e - b) * DIGEST_LEN
                )
            b = e
            k += 1
        self._k = k - 1
        return out

    def all_zero(self, first: int, count: int) -> bool:
        end = first + count
        k = self._find(first)
        b = first
        while b < end:
            e = min(self.ends[k], end)
            o = self.offs[k]
            if o >= 0 and not self.store.is_zero(o + (b - self.starts[k]) * DIGEST_LEN, (e - b) * DIGEST_LEN):
                return False
            b = e
            k += 1
        return True

    def close(self) -> None:
        """Remove the store's temporary file (if any); idempotent."""
        self.store.close()

    def __enter__(self) -> RunManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_manifest(catalog: Catalog, chain: list[GenerationRow], limit: int = MANIFEST_MEMORY) -> RunManifest:
    """The block digests of the chain's last generation as a :class:`RunManifest` (zero where
    no generation recorded a block), read from the catalog one chunk's digest table at a time."""
    from tapearc.engine.plan import runs_map  # (the chain's reader: imported by incrementals, not every backup)

    bmap, _ = runs_map(catalog, chain)
    starts, ends, offs = array("q"), array("q"), array("q")
    wanted: list[tuple[int, int, int, int]] = []  # (chunk index, offset in its table, store offset, length)
    total = 0
    for s, e, v, d in bmap:
        if v >= 0:
            wanted.append((v, d, total, (e - s) * DIGEST_LEN))
        _append_run(starts, ends, offs, s, e, total if v >= 0 else -1)
        if v >= 0:
            total += (e - s) * DIGEST_LEN
    del bmap
    wanted.sort()
    store = DigestStore(total, limit)
    try:
        _fill(catalog, chain, wanted, store)
    except BaseException:
        store.close()
        raise
    return RunManifest(chain[-1].nblocks, starts, ends, offs, store)


def _append_run(starts: array[int], ends: array[int], offs: array[int], s: int, e: int, off: int) -> None:
    """Append ``[s, e)`` (zero: ``off`` -1), joined to the interval before it when both are
    zero or both data (a data run's digests follow the one before it in the store)."""
    if len(ends) and ends[-1] == s and (offs[-1] < 0) == (off < 0):
        ends[-1] = e
        return
    starts.append(s)
    ends.append(e)
    offs.append(off)


def _fill(
    catalog: Catalog, chain: list[GenerationRow], wanted: list[tuple[int, int, int, int]], store: DigestStore
) -> None:
    """Copy the wanted slices of each chunk's digest table into the store, streaming the chain's
    tables in chunk order (one table in memory at a time)."""
    w = 0
    idx = 0
    for g in chain:
        if w >= len(wanted):
            return
        for _, table in catalog.chunk_digests(g.id):
            while w < len(wanted) and wanted[w][0] == idx:
                _, d, at, n = wanted[w]
                piece = table[d : d + n]
                store.write(at, piece + bytes(n - len(piece)))  # a short table reads as zeros, as before
                w += 1
            idx += 1
            if w >= len(wanted):
                return


class MappedDigests:
    """The block digests of a chain map (``[0, map.n)``), read from the catalog one chunk's
    table at a time as a walk in increasing block order reaches them: nothing is copied, memory
    is the map's intervals and a few tables. Blocks that are not data digest as zero."""

    def __init__(self, catalog: Catalog, bmap: BlockMap, ids: Iterable[int]) -> None:
        from tapearc.engine.plan import ChunkTables

        self.map = bmap
        self.nblocks = bmap.n
        self.tables = ChunkTables(catalog, ids)

    @classmethod
    def of_chain(cls, catalog: Catalog, chain: list[GenerationRow]) -> MappedDigests:
        """The chain's last generation, its mapping checked as :func:`~tapearc.engine.plan.chain_map`
        checks it (MalformedError)."""
        from tapearc.engine.plan import runs_map

        bmap, ids = runs_map(catalog, chain, check=True)
        return cls(catalog, bmap, ids)

    def digests(self, first: int, count: int) -> bytearray | None:
        """The digests of blocks ``[first, first + count)``, or None when the catalog does not
        hold them all (a chunk without digests: nothing can be said to match it)."""
        out = bytearray(count * DIGEST_LEN)
        for s, e, v, d in self.map.segments(first, first + count):
            if v >= 0:
                a = (s - first) * DIGEST_LEN
                n = (e - s) * DIGEST_LEN
                piece = self.tables.slice(v, d, n)
                if len(piece) != n:
                    return None
                out[a : a + n] = piece
        return out

    def all_zero(self, first: int, count: int) -> bool:
        for s, e, v, d in self.map.segments(first, first + count):
            if v >= 0:
                n = (e - s) * DIGEST_LEN
                piece = self.tables.slice(v, d, n)
                if len(piece) != n or not fmt.is_zero(piece, 0, n):
                    return False
        return True
