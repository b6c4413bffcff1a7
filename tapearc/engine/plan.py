"""The restore planner: which chunk on which tape file of which medium holds the newest version
of each block, and the order to read them in.

A generation N of a volume is restored from its *chain*: the latest full generation at or before
N and the incrementals after it up to N (each incremental names its base). For every block of N
the newest version wins: a data block in some chunk, or a zero run. The plan reads only the
chunks that hold a needed version, sorted by (medium sequence, logical position): each medium
once, forward, positioning past stretches it does not need.

Rolling a copy forward: when the target already holds generation K of the chain, only blocks
whose newest version at N came after K *and* whose digest differs from K's are read, and blocks
that became zero are zeroed.

Memory: 4 bytes per volume block for the block -> chunk map, plus 16 bytes per block for each
digest manifest held (N's, and K's when rolling forward).
"""

from __future__ import annotations

import uuid
from array import array
from dataclasses import dataclass, field

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, ChunkRow, GenerationRow
from tapearc.errors import NoSuchGenerationError, TapearcError

DIGEST_LEN = fmt.DIGEST_LEN
ZERO = -1  # in the block -> chunk map: the block is zero at N


class IncompleteChainError(TapearcError):
    """A generation the restore needs is incomplete or missing from the catalog."""

    exit_code = 22
    kind = "incomplete-chain"


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
    warnings: list[str] = field(default_factory=list)  # damaged or rebuilt generations met while reading the media

    @property
    def nblocks(self) -> int:
        return -(-self.volume_size // self.block_size)

    def to_json(self, with_chunks: bool = True) -> dict[str, object]:
        files: dict[tuple[str, int], dict[str, object]] = {}
        for r in self.reads:
            key = (str(r.chunk.medium_uuid), r.chunk.tape_file)
            f = files.setdefault(
                key,
                {"medium": key[0], "tape_file": key[1], "generation": r.chunk.generation, "chunks_to_read": 0, "bytes_to_read": 0},
            )
            f["chunks_to_read"] = int(f["chunks_to_read"]) + 1  # type: ignore[call-overload]
            f["bytes_to_read"] = int(f["bytes_to_read"]) + r.chunk.stored_len  # type: ignore[call-overload]
        out: dict[str, object] = {
            "volume": self.volume,
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
        complete = [g for g in gens.values() if g.state == "complete"]
        # a generation whose backup finished but whose trailer is damaged on the medium (and could
        # not be rebuilt from its chunks) is the latest one: never silently replaced by an older
        latest_damaged = max((g.number for g in gens.values() if g.state == "damaged"), default=0)
        if latest_damaged > max((g.number for g in complete), default=0):
            older = max((g.number for g in complete if g.number < latest_damaged), default=None)
            raise IncompleteChainError(
                f"the latest generation of volume {volume!r}, {latest_damaged}, is damaged: its trailer or end "
                "record is unreadable and its index could not be rebuilt from its chunks",
                hint=(f"restore generation {older} with --generation {older} if an older one will do; " if older else "")
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
        if g.state != "complete":
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
        g = gens[g.base]
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


def block_sources(
    catalog: Catalog, chain: list[GenerationRow], exclude: set[int] | None = None
) -> tuple[array, list[ChunkRow]]:
    """For each block of the chain's last generation, the index of the chunk holding its newest
    version (into the returned chunk list), or ZERO. Chunks whose catalog id is in ``exclude``
    (damaged ones) are passed over, so an older version shows through."""
    src, chunks, _ = block_sources_known(catalog, chain, exclude)
    return src, chunks


def block_sources_known(
    catalog: Catalog, chain: list[GenerationRow], exclude: set[int] | None = None
) -> tuple[array, list[ChunkRow], bytearray]:
    """block_sources, plus a map of the blocks some (not excluded) generation recorded at all."""
    chunks: list[ChunkRow] = []
    src = array("i")
    known = bytearray()
    for g in chain:
        n = g.nblocks
        del src[n:]
        del known[n:]
        if len(src) < n:
            src.extend(array("i", [ZERO]) * (n - len(src)))
            known.extend(bytes(n - len(known)))
        for c in catalog.chunks(g.id):
            idx = len(chunks)
            chunks.append(c)
            if exclude and c.id in exclude:
                continue
            for r in c.runs:
                src[r.first : r.first + r.count] = array("i", [ZERO if r.is_zero else idx]) * r.count
                known[r.first : r.first + r.count] = b"\x01" * r.count
    return src, chunks, known


def fallback_reads(
    catalog: Catalog, chain: list[GenerationRow], lost: list[tuple[int, int]], damaged: set[int]
) -> tuple[list[PlannedRead], list[tuple[int, int]], list[tuple[int, int]]]:
    """For blocks lost with damaged chunks, the newest older versions: (chunks to read, runs whose
    older version is zero, runs with no older version at all)."""
    src, chunks, known = block_sources_known(catalog, chain, damaged)
    per: dict[int, list[int]] = {}
    zero: list[tuple[int, int]] = []
    none: list[tuple[int, int]] = []
    for a, n in lost:
        for b in range(a, a + n):
            if b >= len(src) or not known[b]:
                _append(none, b)
            elif src[b] == ZERO:
                _append(zero, b)
            else:
                per.setdefault(src[b], []).append(b)
    reads = []
    for idx, blocks in per.items():
        runs: list[tuple[int, int]] = []
        for b in blocks:
            _append(runs, b)
        reads.append(PlannedRead(chunks[idx], tuple(runs)))
    reads.sort(key=lambda r: (r.chunk.medium_sequence, r.chunk.logical))
    return reads, zero, none


def _append(runs: list[tuple[int, int]], b: int) -> None:
    if runs and runs[-1][0] + runs[-1][1] == b:
        runs[-1] = (runs[-1][0], runs[-1][1] + 1)
    else:
        runs.append((b, 1))


def _runs_of(flags: bytearray, base: int = 0) -> list[tuple[int, int]]:
    """(first, count) runs of the 1-bytes in ``flags``."""
    runs = []
    i = flags.find(1)
    while i >= 0:
        j = flags.find(0, i)
        if j < 0:
            j = len(flags)
        runs.append((base + i, j - i))
        i = flags.find(1, j)
    return runs


def make_plan(
    catalog: Catalog,
    chain: list[GenerationRow],
    *,
    have: int | None = None,
    zero_target: bool = True,
    media_order: dict[uuid.UUID, int] | None = None,
) -> Plan:
    """Plan restoring the chain's last generation.

    ``have``: the target already holds generation ``have`` (of this chain's volume, <= N): only
    differing blocks are read/zeroed. ``zero_target``: the target reads as zeros where nothing is
    written (a fresh sparse file); False for a device, whose zero blocks must be written.
    """
    last = chain[-1]
    n = last.nblocks
    src, chunks = block_sources(catalog, chain)
    need = bytearray(n)  # 1: write this block from its chunk
    zero_need = bytearray(n)  # 1: make this block zero
    if have is None:
        # every data block is needed; zero blocks only when the target is not already zero
        for idx, c in enumerate(chunks):
            for r in c.runs:
                if r.is_zero or r.first >= n:
                    continue
                end = min(r.first + r.count, n)
                seg = src[r.first : end]
                if seg == array("i", [idx]) * (end - r.first):
                    need[r.first : end] = b"\x01" * (end - r.first)
                else:
                    for b in range(r.first, end):
                        if src[b] == idx:
                            need[b] = 1
        if not zero_target:  # every block that is not data at N is zero at N
            zero_need = bytearray(need.translate(bytes.maketrans(b"\x00\x01", b"\x01\x00")))
        from_gen = None
    else:
        gens = {g.number: g for g in catalog.generations(last.set_uuid, last.volume)}
        if have not in gens or have > last.number:
            raise NoSuchGenerationError(f"volume {last.volume!r} has no generation {have} at or before {last.number}")
        k_chain = load_chain(catalog, last.set_uuid, last.volume, have)
        man_n = manifest_at(catalog, chain)
        man_k = manifest_at(catalog, k_chain)
        nk = k_chain[-1].nblocks
        zero_d = bytes(DIGEST_LEN)
        W = 4096 * DIGEST_LEN
        for w in range(0, n * DIGEST_LEN, W):
            if man_n[w : w + W] == man_k[w : w + W]:
                continue  # the whole window is unchanged
            for off in range(w, min(w + W, n * DIGEST_LEN), DIGEST_LEN):
                b = off // DIGEST_LEN
                dn = man_n[off : off + DIGEST_LEN]
                if b < nk and dn == man_k[off : off + DIGEST_LEN]:
                    continue
                if src[b] == ZERO:
                    if b < nk and man_k[off : off + DIGEST_LEN] != zero_d:
                        zero_need[b] = 1
                    elif b >= nk and not zero_target:
                        zero_need[b] = 1
                else:
                    need[b] = 1
        if not zero_target:
            for b in range(nk, n):
                if src[b] == ZERO:
                    zero_need[b] = 1
        from_gen = have
    # group needed blocks by chunk
    per_chunk: dict[int, list[int]] = {}
    i = need.find(1)
    while i >= 0:
        j = need.find(0, i)
        if j < 0:
            j = n
        b = i
        while b < j:
            idx = src[b]
            e = b + 1
            while e < j and src[e] == idx:
                e += 1
            per_chunk.setdefault(idx, []).append(b)
            per_chunk[idx].append(e - b)
            b = e
        i = need.find(1, j)
    order = media_order or {}
    reads = []
    for idx, flat in per_chunk.items():
        c = chunks[idx]
        runs = tuple((flat[k], flat[k + 1]) for k in range(0, len(flat), 2))
        reads.append(PlannedRead(c, _merge(runs)))
    reads.sort(key=lambda r: (order.get(r.chunk.medium_uuid, r.chunk.medium_sequence), r.chunk.logical))
    read_ids = {r.chunk.id for r in reads}
    media: list[tuple[uuid.UUID, int]] = []
    for r in reads:
        m = (r.chunk.medium_uuid, r.chunk.medium_sequence)
        if not media or media[-1] != m:
            media.append(m)
    plan = Plan(
        volume=last.volume,
        generation=last.number,
        set_uuid=last.set_uuid,
        volume_size=last.volume_size,
        block_size=last.block_size,
        chain=[g.number for g in chain],
        reads=reads,
        zero_runs=_runs_of(zero_need),
        from_generation=from_gen,
        chunks_in_chain=len(chunks),
        bytes_to_read=sum(r.chunk.stored_len for r in reads),
        bytes_to_skip=sum(c.stored_len for c in chunks if c.id not in read_ids),
        blocks_to_write=need.count(1),
        blocks_to_zero=zero_need.count(1),
        media=media,
    )
    return plan


def _merge(runs: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, n in sorted(runs):
        if out and out[-1][0] + out[-1][1] == a:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((a, n))
    return tuple(out)
