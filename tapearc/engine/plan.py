"""The restore planner: which chunk on which tape file of which medium holds the newest version
of each block, and the order to read them in.

A generation N of a volume is restored from its *chain*: the latest full generation at or before
N and the incrementals after it up to N (each incremental names its base). For every block of N
the newest version wins: a data block in some chunk, or a zero run. The plan reads only the
chunks that hold a needed version, sorted by (medium sequence, logical position): each medium
once, forward, positioning past stretches it does not need.

Rolling a copy forward or back: when the target already holds another generation K of the
volume (older or newer than N), only blocks whose version at N differs from K's (by digest) are
read, and blocks that are zero at N but not at K are zeroed.

Memory follows what is on the medium, never what a header claims: the newest version of every
block is kept as sorted intervals (:class:`BlockMap`), one per run of blocks that came from one
run of one chunk, so a generation claiming a 1 TiB volume held in a few chunks takes a few
intervals. Claims that cannot be true are refused as malformed before anything is written
(:func:`check_chain`): an incremental whose block size differs from its base's, a generation
whose chunks do not account for the blocks of the volume size it claims, or that map a block
twice or past the end.
"""

from __future__ import annotations

import bisect
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, ChunkRow, GenerationRow
from tapearc.catalog.states import GenerationState
from tapearc.crypto.keys import fingerprint_text
from tapearc.errors import IncompleteChainError, MalformedError, NoSuchGenerationError

DIGEST_LEN = fmt.DIGEST_LEN
ZERO = -1  # in a block map: the block is zero
NONE = -2  # in a block map: no generation recorded the block
UNKNOWN = -3  # in a block map: what the target holds there is not known


@dataclass(frozen=True, slots=True)
class PlannedRead:
    chunk: ChunkRow
    runs: tuple[tuple[int, int], ...]  # (first block, count): the chunk's data blocks to write

    @property
    def blocks(self) -> int:
        return sum(n for _, n in self.runs)


@dataclass(slots=True)
class Plan:
    volume: str
    generation: int
    set_uuid: uuid.UUID
    volume_size: int
    block_size: int
    chain: list[int]
    reads: list[PlannedRead]
    zero_runs: list[tuple[int, int]]  # blocks to make zero in the target
    from_generation: int | None = None  # rolling forward from this generation
    chunks_in_chain: int = 0
    bytes_to_read: int = 0
    bytes_to_skip: int = 0
    blocks_to_write: int = 0
    blocks_to_zero: int = 0
    media: list[tuple[uuid.UUID, int]] = field(default_factory=list)  # (medium uuid, sequence), read order
    source_path: str | None = None  # the volume's source as recorded for the generation (None: not recorded)
    warnings: list[str] = field(default_factory=list)  # damaged or rebuilt generations met while reading the media
    encrypted: bool = False  # the chain's chunks are encrypted: a restore needs the key
    key_fingerprint: str | None = None  # the key's (from the catalog, or the medium's key record)

    @property
    def nblocks(self) -> int:
        return -(-self.volume_size // self.block_size)

    def to_json(self, with_chunks: bool = True) -> dict[str, object]:
        files: dict[tuple[str, int], dict[str, object]] = {}
        for r in self.reads:
            key = (str(r.chunk.medium_uuid), r.chunk.tape_file)
            f = files.setdefault(
                key,
                {
                    "medium": key[0],
                    "tape_file": key[1],
                    "generation": r.chunk.generation,
                    "chunks_to_read": 0,
                    "bytes_to_read": 0,
                },
            )
            f["chunks_to_read"] = int(f["chunks_to_read"]) + 1  # type: ignore[call-overload]
            f["bytes_to_read"] = int(f["bytes_to_read"]) + r.chunk.stored_len  # type: ignore[call-overload]
        out: dict[str, object] = {
            "volume": self.volume,
            "source_path": self.source_path,
            "generation": self.generation,
            "media_set": str(self.set_uuid),
            "volume_size": self.volume_size,
            "block_size": self.block_size,
            "chain": self.chain,
            "from_generation": self.from_generation,
            "media": [{"medium": str(m), "sequence": s} for m, s in self.media],
            "tape_files": list(files.values()),
            "chunks_in_chain": self.chunks_in_chain,
            "chunks_to_read": len(self.reads),
            "bytes_to_read": self.bytes_to_read,
            "bytes_to_skip": self.bytes_to_skip,
            "blocks_to_write": self.blocks_to_write,
            "blocks_to_zero": self.blocks_to_zero,
            "encrypted": self.encrypted,
            "key_fingerprint": self.key_fingerprint,
            "warnings": self.warnings,
        }
        if with_chunks:
            out["chunks"] = [
                {
                    "medium": str(r.chunk.medium_uuid),
                    "tape_file": r.chunk.tape_file,
                    "logical": r.chunk.logical,
                    "generation": r.chunk.generation,
                    "seq": r.chunk.seq,
                    "stored_len": r.chunk.stored_len,
                    "encrypted": bool(r.chunk.flags & fmt.CHUNK_FLAG_ENCRYPTED),
                    "blocks": [list(x) for x in r.runs],
                }
                for r in self.reads
            ]
        return out


def load_chain(catalog: Catalog, set_uuid: uuid.UUID, volume: str, number: int | None) -> list[GenerationRow]:
    """The generations needed to restore ``number`` (default: the latest complete), oldest first."""
    gens = {g.number: g for g in catalog.generations(set_uuid, volume)}
    if not gens:
        raise NoSuchGenerationError(f"the catalog knows no generation of volume {volume!r} in this media set")
    if number is None:
        complete = [g for g in gens.values() if g.state == GenerationState.COMPLETE]
        # a generation whose backup finished but whose trailer is damaged on the medium (and could
        # not be rebuilt from its chunks) is the latest one: never silently replaced by an older
        latest_damaged = max((g.number for g in gens.values() if g.state == GenerationState.DAMAGED), default=0)
        if latest_damaged > max((g.number for g in complete), default=0):
            older = max((g.number for g in complete if g.number < latest_damaged), default=None)
            raise IncompleteChainError(
                f"the latest generation of volume {volume!r}, {latest_damaged}, is damaged: its trailer or end "
                "record is unreadable and its index could not be rebuilt from its chunks, or its chunks disagree "
                "with its trailer (a deep scan found it)",
                hint=(
                    f"restore generation {older} with --generation {older} if an older one will do; " if older else ""
                )
                + "tapearc verify shows the damage",
            )
        if not complete:
            raise NoSuchGenerationError(f"volume {volume!r} has no complete generation")
        number = max(g.number for g in complete)
    if number not in gens:
        have = ", ".join(str(n) for n in sorted(gens))
        raise NoSuchGenerationError(f"volume {volume!r} has no generation {number} (it has: {have})")
    chain = []
    g = gens[number]
    while True:
        if g.state != GenerationState.COMPLETE:
            raise IncompleteChainError(
                f"generation {g.number} of volume {volume!r} is {g.state}"
                + (f"; generation {number} needs it" if g.number != number else ""),
                hint="restore an earlier generation (tapearc list shows which are complete)",
            )
        chain.append(g)
        if g.base == 0:
            break
        if g.base not in gens or g.base >= g.number:
            raise IncompleteChainError(
                f"generation {g.number} of volume {volume!r} is based on generation {g.base}, which the catalog does not know",
                hint="run tapearc scan on the media of this set",
            )
        base = gens[g.base]
        if base.block_size != g.block_size:
            raise MalformedError(
                f"generation {g.number} of volume {volume!r} is an incremental with block size {g.block_size}, "
                f"but its base generation {base.number} has block size {base.block_size}: its block ids cannot be laid "
                "over its base's",
                hint="the medium or the catalog is damaged (tapearc verify); restore the base generation instead",
            )
        g = base
    chain.reverse()
    return chain


def manifest_at(catalog: Catalog, chain: list[GenerationRow]) -> bytearray:
    """Block digests of the chain's last generation: 16 bytes per block, zero bytes for zero blocks."""
    m = bytearray()
    for g in chain:
        n = g.nblocks * DIGEST_LEN
        del m[n:]
        if len(m) < n:
            m.extend(bytes(n - len(m)))
        for runs, digests in catalog.chunk_digests(g.id):
            off = 0
            for r in runs:
                a = r.first * DIGEST_LEN
                b = a + r.count * DIGEST_LEN
                if r.is_zero:
                    m[a:b] = bytes(b - a)
                else:
                    m[a:b] = digests[off : off + (b - a)]
                    off += b - a
    return m


class BlockMap:
    """The version of every block ``[0, n)`` of a volume as sorted, disjoint intervals that cover
    it: ``[start, end) -> value``, where value is a chunk index (the blocks are data in that
    chunk; ``doff`` is the offset of the interval's first block in the chunk's digest table),
    ZERO, NONE (no generation recorded the block) or UNKNOWN (the target's content there is not
    known). Memory: 32 bytes per interval, whatever the volume size."""

    __slots__ = ("doffs", "ends", "n", "starts", "vals")

    def __init__(self, n: int = 0, fill: int = -2) -> None:
        self.n = 0
        self.starts = array("q")
        self.ends = array("q")
        self.vals = array("q")
        self.doffs = array("q")
        self.resize(n, fill)

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        return zip(self.starts, self.ends, self.vals, self.doffs, strict=False)  # parallel arrays of one length

    def _add(self, s: int, e: int, v: int, d: int) -> None:
        """Append an interval after the last one, joining it when it continues it."""
        if e <= s:
            return
        if (
            len(self.starts)
            and self.ends[-1] == s
            and self.vals[-1] == v
            and (v < 0 or self.doffs[-1] + (s - self.starts[-1]) * DIGEST_LEN == d)
        ):
            self.ends[-1] = e
            return
        self.starts.append(s)
        self.ends.append(e)
        self.vals.append(v)
        self.doffs.append(d if v >= 0 else 0)

    def resize(self, n: int, fill: int = -2) -> None:
        """Cut the map at ``n`` blocks, or extend it with ``fill`` up to ``n``."""
        if n < self.n:
            k = bisect.bisect_left(self.starts, n)
            del self.starts[k:], self.ends[k:], self.vals[k:], self.doffs[k:]
            if len(self.ends) and self.ends[-1] > n:
                self.ends[-1] = n
        elif n > self.n:
            self._add(self.n, n, fill, 0)
        self.n = n

    def overlay(self, pieces: list[tuple[int, int, int, int]]) -> None:
        """Lay ``pieces`` ``(start, end, value, doff)``, sorted by start, over the map (newer
        versions over older ones). Pieces past ``n`` are cut; a piece overlapping the one before
        it only counts from where that one ended."""
        os_, oe, ov, od = self.starts, self.ends, self.vals, self.doffs
        self.starts, self.ends, self.vals, self.doffs = array("q"), array("q"), array("q"), array("q")

        def clipped(k: int, a: int, b: int) -> None:
            s = max(os_[k], a)
            e = min(oe[k], b)
            v = ov[k]
            self._add(s, e, v, od[k] + (s - os_[k]) * DIGEST_LEN if v >= 0 else 0)

        def emit_old(a: int, b: int) -> None:
            """The old intervals cut to [a, b); those inside it are copied whole (in C)."""
            k0 = bisect.bisect_right(oe, a)  # the first ending after a
            k1 = bisect.bisect_left(os_, b)  # the first starting at or after b
            if k0 >= k1:
                return
            clipped(k0, a, b)
            if k1 - k0 > 2:  # already joined where they could be: no _add needed between them
                self.starts.extend(os_[k0 + 1 : k1 - 1])
                self.ends.extend(oe[k0 + 1 : k1 - 1])
                self.vals.extend(ov[k0 + 1 : k1 - 1])
                self.doffs.extend(od[k0 + 1 : k1 - 1])
            if k1 - 1 > k0:
                clipped(k1 - 1, a, b)

        pos = 0
        n = self.n
        for s, e, v, d in pieces:
            e = min(e, n)
            if s < pos:
                if v >= 0:
                    d += (pos - s) * DIGEST_LEN
                s = pos
            if e <= s:
                continue
            if s > pos:
                emit_old(pos, s)
            self._add(s, e, v, d)
            pos = e
        if pos < n:
            emit_old(pos, n)

    def segments(self, a: int, b: int) -> Iterator[tuple[int, int, int, int]]:
        """The intervals cut to ``[a, b)``, in order."""
        k = max(bisect.bisect_right(self.starts, a) - 1, 0)
        while k < len(self.starts) and self.starts[k] < b:
            s = max(self.starts[k], a)
            e = min(self.ends[k], b)
            v = self.vals[k]
            if s < e:
                yield s, e, v, (self.doffs[k] + (s - self.starts[k]) * DIGEST_LEN if v >= 0 else 0)
            k += 1


def _pieces(chunks: list[ChunkRow], base_idx: int, exclude: set[int] | None) -> list[tuple[int, int, int, int]]:
    """One generation's runs as map pieces, sorted by first block."""
    return _pieces_of(((c.id, c.runs) for c in chunks), base_idx, exclude)


def _pieces_of(
    chunks: Iterable[tuple[int, tuple[fmt.Run, ...]]],
    base_idx: int,
    exclude: set[int] | None,
    ids: array[int] | None = None,
) -> list[tuple[int, int, int, int]]:
    """``(chunk id, runs)`` of one generation's chunks as map pieces, sorted by first block;
    each chunk's id appended to ``ids`` when given."""
    out: list[tuple[int, int, int, int]] = []
    for k, (cid, runs) in enumerate(chunks):
        if ids is not None:
            ids.append(cid)
        if exclude and cid in exclude:
            continue
        d = 0
        for r in runs:
            if r.is_zero:
                out.append((r.first, r.first + r.count, ZERO, 0))
            else:
                out.append((r.first, r.first + r.count, base_idx + k, d))
                d += r.count * DIGEST_LEN
    out.sort()
    return out


def _check_generation(g: GenerationRow, pieces: list[tuple[int, int, int, int]], base_blocks: int | None) -> None:
    """A generation's mapping must fit the volume size it claims: no block past the end or
    mapped twice, and every block accounted for (a full generation: all of them; an
    incremental: at least those past its base's end)."""
    n = g.nblocks
    must_from = 0 if base_blocks is None else min(base_blocks, n)
    what = f"generation {g.number} of volume {g.volume!r}"
    claim = f"claims {g.volume_size} bytes ({n} blocks of {g.block_size})"
    hint = "the medium or the catalog is damaged: tapearc verify shows where; tapearc scan relearns the medium"
    pos = 0
    for s, e, _, _ in pieces:
        if e > n:
            raise MalformedError(f"{what} {claim} but a chunk maps blocks up to {e - 1}", hint=hint, blocks=(s, e - 1))
        if s < pos:
            raise MalformedError(
                f"{what} maps blocks {s}-{min(e, pos) - 1} twice", hint=hint, blocks=(s, min(e, pos) - 1)
            )
        if s > pos and s > must_from:
            a = max(pos, must_from)
            raise MalformedError(
                f"{what} {claim} but its chunks do not account for blocks {a}-{s - 1}", hint=hint, blocks=(a, s - 1)
            )
        pos = e
    if pos < n and n > must_from:
        a = max(pos, must_from)
        raise MalformedError(
            f"{what} {claim} but its chunks do not account for blocks {a}-{n - 1}", hint=hint, blocks=(a, n - 1)
        )


@dataclass(slots=True)
class ChainMap:
    """The newest version of every block of a chain's last generation."""

    map: BlockMap
    chunks: list[ChunkRow]  # chunk index -> chunk
    digests: list[bytes] | None = None  # chunk index -> its digest table, when asked for

    def chunk_id(self, v: int) -> int:
        """The catalog id of value ``v``'s chunk, or ``v`` itself for ZERO, NONE, UNKNOWN."""
        return self.chunks[v].id if v >= 0 else v


def chain_map(
    catalog: Catalog, chain: list[GenerationRow], exclude: set[int] | None = None, *, digests: bool = False
) -> ChainMap:
    """For each block of the chain's last generation, the chunk holding its newest version, or
    ZERO; NONE where no generation recorded the block. Chunks whose catalog id is in ``exclude``
    (damaged ones) are passed over, so an older version shows through. Without ``exclude``
    (None) each generation's mapping is checked against the volume size it claims
    (MalformedError)."""
    bmap = BlockMap()
    chunks: list[ChunkRow] = []
    tables: list[bytes] | None = [] if digests else None
    prev: GenerationRow | None = None
    for g in chain:
        rows = catalog.chunks(g.id)
        pieces = _pieces(rows, len(chunks), exclude)
        if exclude is None:
            _check_generation(g, pieces, None if prev is None else prev.nblocks)
        chunks.extend(rows)
        if tables is not None:
            got = [d for _, d in catalog.chunk_digests(g.id)]
            if len(got) != len(rows):
                raise MalformedError(
                    f"the catalog holds {len(got)} digest tables for {len(rows)} chunks of generation {g.number}"
                )
            tables.extend(got)
        bmap.resize(g.nblocks, NONE)
        bmap.overlay(pieces)
        prev = g
    return ChainMap(bmap, chunks, tables)


def runs_map(catalog: Catalog, chain: list[GenerationRow], *, check: bool = False) -> tuple[BlockMap, array[int]]:
    """The newest version of every block of the chain's last generation, like :func:`chain_map`
    but from the chunks' runs alone (no chunk rows: memory is the intervals and 8 bytes per
    chunk): the map's values index the returned chunk ids (catalog ids, chain order). Unchecked,
    as an incremental's base is read, unless ``check`` (the checks of :func:`chain_map`)."""
    bmap = BlockMap()
    ids = array("q")
    prev: GenerationRow | None = None
    for g in chain:
        pieces = _pieces_of(catalog.chunk_runs(g.id), len(ids), None, ids)
        if check:
            _check_generation(g, pieces, None if prev is None else prev.nblocks)
        bmap.resize(g.nblocks, NONE)
        bmap.overlay(pieces)
        prev = g
    return bmap, ids


class ChunkTables:
    """The digest tables of chunks, read from the catalog when first asked for and kept for the
    ``keep`` most recently used chunks: a walk over a chain map in block order asks for each
    chunk's table a few times in a row, so memory is a few tables, not the chain's."""

    def __init__(self, catalog: Catalog, ids: Iterable[int], keep: int = 16) -> None:
        self.catalog = catalog
        self.ids = ids if isinstance(ids, array) else array("q", ids)
        self.keep = keep
        self.cache: OrderedDict[int, bytes] = OrderedDict()

    def table(self, idx: int) -> bytes:
        """The digest table of the chunk at index ``idx`` of ``ids``."""
        t = self.cache.get(idx)
        if t is not None:
            self.cache.move_to_end(idx)
            return t
        t = self.catalog.chunk_digest_table(self.ids[idx])
        self.cache[idx] = t
        if len(self.cache) > self.keep:
            self.cache.popitem(last=False)
        return t

    def slice(self, idx: int, doff: int, length: int) -> bytes:
        """``length`` bytes of chunk ``idx``'s table from ``doff`` (fewer when the catalog holds
        fewer: a medium scanned without digests)."""
        return self.table(idx)[doff : doff + length]


def check_chain(catalog: Catalog, chain: list[GenerationRow]) -> None:
    """MalformedError when a generation of the chain claims what its chunks cannot hold."""
    chain_map(catalog, chain)


def check_generation(catalog: Catalog, g: GenerationRow) -> None:
    """The checks of :func:`load_chain` and :func:`check_chain` for one generation alone (its
    base's block size and size, its own chunks): MalformedError. Cost: its own chunks."""
    base: GenerationRow | None = None
    if g.base:
        base = next((x for x in catalog.generations(g.set_uuid, g.volume) if x.number == g.base), None)
        if base is not None and base.block_size != g.block_size:
            load_chain(catalog, g.set_uuid, g.volume, g.number)  # raises the block size error
    _check_generation(g, _pieces(catalog.chunks(g.id), 0, None), None if base is None else base.nblocks)


def fallback_reads(
    catalog: Catalog, chain: list[GenerationRow], lost: list[tuple[int, int]], damaged: set[int]
) -> tuple[list[PlannedRead], list[tuple[int, int]], list[tuple[int, int]]]:
    """For blocks lost with damaged chunks, the newest older versions: (chunks to read, runs whose
    older version is zero, runs with no older version at all)."""
    cm = chain_map(catalog, chain, set(damaged))
    per: dict[int, list[tuple[int, int]]] = {}
    zero: list[tuple[int, int]] = []
    none: list[tuple[int, int]] = []
    for a, n in lost:
        end = a + n
        if end > cm.map.n:
            none.append((max(a, cm.map.n), end - max(a, cm.map.n)))
        for s, e, v, _ in cm.map.segments(a, min(end, cm.map.n)):
            if v >= 0:
                per.setdefault(v, []).append((s, e - s))
            elif v == ZERO:
                zero.append((s, e - s))
            else:
                none.append((s, e - s))
    reads = [PlannedRead(cm.chunks[idx], _merge(tuple(runs))) for idx, runs in per.items()]
    reads.sort(key=lambda r: (r.chunk.medium_sequence, r.chunk.logical))
    return reads, list(_merge(tuple(zero))), list(_merge(tuple(none)))


def _zip_maps(a: BlockMap, b: BlockMap, n: int) -> Iterator[tuple[int, int, int, int, int, int]]:
    """``(start, end, value in a, doff in a, value in b, doff in b)`` over ``[0, n)``; ``b`` reads
    NONE past its end."""
    sa = a.segments(0, n)
    sb = b.segments(0, min(n, b.n))
    ca = next(sa, None)
    cb = next(sb, None)
    pos = 0
    while ca is not None and pos < n:
        if cb is None or cb[0] > pos:
            e = min(ca[1], cb[0] if cb is not None else n)
            yield pos, e, ca[2], ca[3] + (pos - ca[0]) * DIGEST_LEN, NONE, 0
        else:
            e = min(ca[1], cb[1])
            yield pos, e, ca[2], ca[3] + (pos - ca[0]) * DIGEST_LEN, cb[2], cb[3] + (pos - cb[0]) * DIGEST_LEN
            if cb[1] == e:
                cb = next(sb, None)
        pos = e
        if ca[1] == e:
            ca = next(sa, None)


def make_plan(
    catalog: Catalog,
    chain: list[GenerationRow],
    *,
    have: int | None = None,
    zero_target: bool = True,
    media_order: dict[uuid.UUID, int] | None = None,
) -> Plan:
    """Plan restoring the chain's last generation.

    ``have``: the target already holds generation ``have`` of this volume (older or newer than
    N): only differing blocks are read/zeroed. ``zero_target``: the target reads as zeros where
    nothing is written (a fresh sparse file); False for a device, whose zero blocks must be
    written.
    """
    if have is None:
        cm, per_chunk, zero_runs = _blocks_for_empty_target(catalog, chain, zero_target)
    else:
        cm, per_chunk, zero_runs = _blocks_differing_from(catalog, chain, have, zero_target)
    reads = _reads_in_tape_order(cm, per_chunk, media_order or {})
    return _plan_of(chain, cm.chunks, reads, list(_merge(tuple(zero_runs))), have)


_Runs = dict[int, list[tuple[int, int]]]  # chunk index in the chain map -> block runs to read from it


def _blocks_for_empty_target(
    catalog: Catalog, chain: list[GenerationRow], zero_target: bool
) -> tuple[ChainMap, _Runs, list[tuple[int, int]]]:
    """Every data block of generation N is read; zero blocks are written only to a target
    that does not read as zeros already."""
    cm = chain_map(catalog, chain)
    per_chunk: _Runs = {}
    zero_runs: list[tuple[int, int]] = []
    for s, e, v, _ in cm.map:
        if v >= 0:
            per_chunk.setdefault(v, []).append((s, e - s))
        elif not zero_target:  # every block that is not data at N is zero at N
            zero_runs.append((s, e - s))
    return cm, per_chunk, zero_runs


def _blocks_differing_from(
    catalog: Catalog, chain: list[GenerationRow], have: int, zero_target: bool
) -> tuple[ChainMap, _Runs, list[tuple[int, int]]]:
    """The blocks of generation N that differ from generation ``have`` (which the target
    holds): their chunks to read, and the blocks to make zero."""
    last = chain[-1]
    n = last.nblocks
    gens = {g.number: g for g in catalog.generations(last.set_uuid, last.volume)}
    if have not in gens:
        raise NoSuchGenerationError(f"volume {last.volume!r} has no generation {have}")
    k_chain = load_chain(catalog, last.set_uuid, last.volume, have)
    cm = chain_map(catalog, chain)
    if k_chain[-1].block_size == last.block_size:
        km = chain_map(catalog, k_chain)
    else:  # another block size: block ids do not line up, nothing is known to be in place
        km = ChainMap(BlockMap(n, UNKNOWN), [])
    dn = ChunkTables(catalog, (c.id for c in cm.chunks))  # read as the walk needs them
    dk = ChunkTables(catalog, (c.id for c in km.chunks))
    per_chunk: _Runs = {}
    zero_runs: list[tuple[int, int]] = []
    for s, e, vn, on, vk, ok in _zip_maps(cm.map, km.map, n):
        if vn < 0:  # zero at N (NONE cannot remain in a checked chain: treated as zero)
            if vk >= 0 or vk == UNKNOWN or (vk == NONE and not zero_target):
                zero_runs.append((s, e - s))
            continue
        if vk < 0:
            per_chunk.setdefault(vn, []).append((s, e - s))
            continue
        if cm.chunk_id(vn) == km.chunk_id(vk) and on == ok:
            continue  # the same version of these blocks
        ln = (e - s) * DIGEST_LEN
        differ = _differing_runs(s, e, dn.slice(vn, on, ln), dk.slice(vk, ok, ln))
        if differ:
            per_chunk.setdefault(vn, []).extend(differ)
    return cm, per_chunk, zero_runs


def _differing_runs(s: int, e: int, a_dig: bytes, b_dig: bytes) -> list[tuple[int, int]]:
    """The runs of blocks ``s``..``e`` whose digests differ between ``a_dig`` and ``b_dig``."""
    out: list[tuple[int, int]] = []
    if a_dig == b_dig:
        return out
    b = s
    while b < e:  # block by block: the runs that differ
        o = (b - s) * DIGEST_LEN
        if a_dig[o : o + DIGEST_LEN] == b_dig[o : o + DIGEST_LEN]:
            b += 1
            continue
        c = b + 1
        while (
            c < e
            and a_dig[(c - s) * DIGEST_LEN : (c - s + 1) * DIGEST_LEN]
            != b_dig[(c - s) * DIGEST_LEN : (c - s + 1) * DIGEST_LEN]
        ):
            c += 1
        out.append((b, c - b))
        b = c
    return out


def _reads_in_tape_order(cm: ChainMap, per_chunk: _Runs, order: dict[uuid.UUID, int]) -> list[PlannedRead]:
    """One read per chunk, sorted medium by medium (``order``, else the sequence), then by
    position on the medium."""
    reads = [PlannedRead(cm.chunks[idx], _merge(tuple(runs))) for idx, runs in per_chunk.items()]
    reads.sort(key=lambda r: (order.get(r.chunk.medium_uuid, r.chunk.medium_sequence), r.chunk.logical))
    return reads


def _plan_of(
    chain: list[GenerationRow],
    chunks: list[ChunkRow],
    reads: list[PlannedRead],
    zero_runs: list[tuple[int, int]],
    from_gen: int | None,
) -> Plan:
    last = chain[-1]
    read_ids = {r.chunk.id for r in reads}
    media: list[tuple[uuid.UUID, int]] = []
    for r in reads:
        m = (r.chunk.medium_uuid, r.chunk.medium_sequence)
        if not media or media[-1] != m:
            media.append(m)
    return Plan(
        volume=last.volume,
        generation=last.number,
        set_uuid=last.set_uuid,
        volume_size=last.volume_size,
        block_size=last.block_size,
        chain=[g.number for g in chain],
        reads=reads,
        zero_runs=zero_runs,
        from_generation=from_gen,
        chunks_in_chain=len(chunks),
        bytes_to_read=sum(r.chunk.stored_len for r in reads),
        bytes_to_skip=sum(c.stored_len for c in chunks if c.id not in read_ids),
        blocks_to_write=sum(r.blocks for r in reads),
        blocks_to_zero=sum(k for _, k in zero_runs),
        media=media,
        source_path=last.source_path or None,
        encrypted=any(c.flags & fmt.CHUNK_FLAG_ENCRYPTED for c in chunks),
        key_fingerprint=row_fingerprint(last),
    )


def row_fingerprint(g: GenerationRow) -> str | None:
    """The key fingerprint (text) a catalog row of an encrypted generation records, when the
    catalog records one (its ``key_fingerprint``, as 16 bytes or as text)."""
    fp = getattr(g, "key_fingerprint", None)
    if isinstance(fp, (bytes, bytearray)) and len(fp) == fmt.KEY_FINGERPRINT_LEN:
        return fingerprint_text(bytes(fp))
    return fp if isinstance(fp, str) and fp else None


def _merge(runs: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, n in sorted(runs):
        if out and out[-1][0] + out[-1][1] == a:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((a, n))
    return tuple(out)


# ---------------------------------------------------------------- several drives


def assign_drives(needs: Mapping[str, tuple[Iterable[uuid.UUID], int]], drives: int) -> list[list[str]]:
    """Which volumes each of ``drives`` drives restores, in order, so that no medium is needed
    by two drives: ``needs[volume]`` is (the media its plan reads, the bytes it reads).

    Volumes that share a medium (directly or through others) form one group and go to one
    drive, one after the other; the groups go largest first (by bytes) to the drive with the
    fewest bytes so far (the longest-processing-time rule: the drives end at about the same
    time). Within a drive the groups keep that order, and a group's volumes the order of
    ``needs``. Drives left without work get an empty list."""
    names = list(needs)
    parent = {v: v for v in names}

    def root(v: str) -> str:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    holder: dict[uuid.UUID, str] = {}
    for v in names:
        for m in needs[v][0]:
            if m in holder:
                parent[root(v)] = root(holder[m])
            else:
                holder[m] = v
    groups: dict[str, list[str]] = {}
    for v in names:
        groups.setdefault(root(v), []).append(v)
    order = sorted(groups.values(), key=lambda g: (-sum(needs[v][1] for v in g), names.index(g[0])))
    out: list[list[str]] = [[] for _ in range(max(1, drives))]
    load = [0] * len(out)
    for g in order:
        k = min(range(len(out)), key=lambda i: (load[i], i))
        out[k] += g
        load[k] += sum(needs[v][1] for v in g)
    return out
