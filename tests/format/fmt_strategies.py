"""Hypothesis strategies and helpers shared by the format tests."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from tapearc.format import (
    CHUNK_FLAG_ENCRYPTED,
    CHUNK_FLAG_ZSTD,
    SEAL_OVERHEAD,
    ChunkHeader,
    ChunkIndexEntry,
    Cipher,
    Compression,
    GenerationHeader,
    GenerationKind,
    Label,
    Run,
    RunKind,
    Trailer,
    TrailerEnd,
    VolumeSource,
    crc32c,
    runs_data_len,
)
from tapearc.format.framing import record_count

U16 = 2**16 - 1
U32 = 2**32 - 1
U64 = 2**64 - 1

uuids = st.uuids()
utf8_chars = st.characters(codec="utf-8")


def utf8_text(max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=utf8_chars, max_size=max_bytes).filter(lambda s: len(s.encode("utf-8")) <= max_bytes)


labels = st.builds(
    Label,
    medium_uuid=uuids,
    media_set_uuid=uuids,
    sequence=st.integers(1, U32),
    record_size=st.integers(512, 64 * 1024 * 1024),
    created=st.integers(0, U64),
    text=utf8_text(64),
    flags=st.just(0),
)


@st.composite
def generation_headers(draw: st.DrawFn) -> GenerationHeader:
    kind = draw(st.sampled_from(GenerationKind))
    generation = draw(st.integers(1 if kind == GenerationKind.FULL else 2, U32))
    base = 0 if kind == GenerationKind.FULL else draw(st.integers(1, generation - 1))
    block_size = draw(st.integers(1, 64 * 1024 * 1024))
    return GenerationHeader(
        run_uuid=draw(uuids),
        media_set_uuid=draw(uuids),
        medium_uuid=draw(uuids),
        volume_uuid=draw(uuids),
        volume_name=draw(utf8_text(1024)),
        generation=generation,
        base_generation=base,
        kind=kind,
        compression=draw(st.sampled_from(Compression)),
        block_size=block_size,
        record_size=draw(st.integers(512, 64 * 1024 * 1024)),
        chunk_blocks=draw(st.integers(1, (1 << 30) // block_size)),
        volume_size=draw(st.integers(0, U64)),
        part=draw(st.integers(0, U32)),
        created=draw(st.integers(0, U64)),
        **_source_and_key(draw),
    )


def _source_and_key(draw: st.DrawFn) -> dict[str, object]:
    """A header's source and key: plain (layouts 1, 2) or encrypted (layout 3), where a source of
    empty paths and zeros stands for "not known" (it decodes as None)."""
    source = draw(st.none() | volume_sources())
    fingerprint = draw(st.none() | st.binary(min_size=16, max_size=16))
    if fingerprint is None:
        return {"source": source}
    if source == VolumeSource(path="", real_path="", dev=0, ino=0):
        source = None
    return {"source": source, "cipher": Cipher.AES_256_GCM, "key_fingerprint": fingerprint}


def _paths() -> st.SearchStrategy[str]:
    """Paths as tapearc holds them: any bytes but NUL, decoded with surrogateescape."""
    raw = st.binary(max_size=300).filter(lambda b: b"\0" not in b)
    return raw.map(lambda b: b.decode("utf-8", "surrogateescape"))


@st.composite
def volume_sources(draw: st.DrawFn) -> VolumeSource:
    return VolumeSource(
        path=draw(_paths()), real_path=draw(_paths()), dev=draw(st.integers(0, U64)), ino=draw(st.integers(0, U64))
    )


@st.composite
def geometries(draw: st.DrawFn, max_blocks: int = 64, max_block_size: int = 4096) -> tuple[int, int]:
    """(block_size, volume_size) of a small volume, often with a partial last block."""
    block_size = draw(st.integers(1, max_block_size))
    nblocks = draw(st.integers(1, max_blocks))
    last = draw(st.integers(1, block_size))
    return block_size, (nblocks - 1) * block_size + last


@st.composite
def runs_in(draw: st.DrawFn, block_size: int, volume_size: int, max_runs: int = 12) -> tuple[Run, ...]:
    nblocks = -(-volume_size // block_size)
    out = []
    for _ in range(draw(st.integers(1, max_runs))):
        first = draw(st.integers(0, nblocks - 1))
        count = draw(st.integers(1, nblocks - first))
        out.append(Run(first, count, draw(st.sampled_from(RunKind))))
    return tuple(out)


@st.composite
def chunk_headers(draw: st.DrawFn, encrypted: bool | None = False) -> ChunkHeader:
    """Chunk headers with consistent lengths (payload not materialised); ``encrypted``: True,
    False or None (either)."""
    block_size, volume_size = draw(geometries(max_blocks=1000, max_block_size=65536))  # raw_len < 1 GiB
    runs = draw(runs_in(block_size, volume_size))
    raw_len = runs_data_len(runs, block_size, volume_size)
    compressed = raw_len > 0 and draw(st.booleans())
    stored_len = draw(st.integers(0, raw_len - 1)) if compressed else raw_len
    sealed = draw(st.booleans()) if encrypted is None else encrypted
    if sealed:
        stored_len += SEAL_OVERHEAD
    return ChunkHeader(
        flags=(CHUNK_FLAG_ZSTD if compressed else 0) | (CHUNK_FLAG_ENCRYPTED if sealed else 0),
        run_uuid=draw(uuids),
        generation=draw(st.integers(1, U32)),
        seq=draw(st.integers(0, U32)),
        block_size=block_size,
        volume_size=volume_size,
        runs=runs,
        raw_len=raw_len,
        stored_len=stored_len,
        payload_crc=draw(st.integers(0, U32)),
    )


def digest_table(draw: st.DrawFn, data_blocks: int) -> bytes:
    """Random 16-byte digests for ``data_blocks`` blocks (hypothesis-drawn, shrinkable)."""
    return b"".join(draw(st.binary(min_size=16, max_size=16)) for _ in range(data_blocks))


@st.composite
def trailers(draw: st.DrawFn, digest_algs: tuple[int, ...] = (0, 1)) -> Trailer:
    """Trailers with consistent totals; with digest_alg 1 random digests (data_blocks * 16 bytes)."""
    block_size, volume_size = draw(geometries(max_blocks=2000, max_block_size=65536))
    entries = []
    record = draw(st.integers(1, 3))
    for seq in range(draw(st.integers(0, 6))):
        runs = draw(runs_in(block_size, volume_size, max_runs=5))
        raw_len = runs_data_len(runs, block_size, volume_size)
        compressed = raw_len > 0 and draw(st.booleans())
        stored_len = draw(st.integers(0, raw_len - 1)) if compressed else raw_len
        n = draw(st.integers(1, 100))
        entries.append(
            ChunkIndexEntry(
                seq=seq,
                record=record,
                record_count=n,
                flags=1 if compressed else 0,
                stored_len=stored_len,
                raw_len=raw_len,
                payload_crc=draw(st.integers(0, U32)),
                runs=runs,
            )
        )
        record += n + draw(st.integers(0, 2))
    digest_alg = draw(st.sampled_from(digest_algs))
    data_blocks = sum(r.count for e in entries for r in e.runs if r.kind == RunKind.DATA)
    if digest_alg and data_blocks <= 200:
        digests = digest_table(draw, data_blocks)
    elif digest_alg:  # many blocks: a cheap reproducible table instead of drawing each digest
        seed = draw(st.binary(min_size=16, max_size=16))
        digests = b"".join(bytes(a ^ (i & 0xFF) for a in seed) for i in range(data_blocks))
    else:
        digests = b""
    return Trailer.from_entries(
        run_uuid=draw(uuids),
        generation=draw(st.integers(1, U32)),
        volume_size=volume_size,
        block_size=block_size,
        entries=entries,
        digests=digests,
        digest_alg=digest_alg,
        complete=draw(st.booleans()),
    )


@st.composite
def trailer_ends(draw: st.DrawFn) -> TrailerEnd:
    trailer_len = draw(st.integers(100, U32))
    record_size = draw(st.integers(512, 64 * 1024 * 1024))
    return TrailerEnd(
        run_uuid=draw(uuids),
        generation=draw(st.integers(1, U32)),
        trailer_record=draw(st.integers(1, U32)),
        trailer_records=record_count(trailer_len, record_size),
        trailer_len=trailer_len,
        trailer_crc=draw(st.integers(0, U32)),
    )


def fix_crcs(item: bytes | bytearray) -> bytes:
    """Recompute the header CRC (and a trailer's body CRC) of a possibly modified item."""
    x = bytearray(item)
    if len(x) < 16:
        return bytes(x)
    hl = int.from_bytes(x[8:12], "little")
    if x[:8] == b"TATRAIL1" and hl == 100 and len(x) >= 100:
        x[88:92] = crc32c(bytes(x[100:])).to_bytes(4, "little")
    if 4 <= hl <= len(x):
        x[hl - 4 : hl] = crc32c(bytes(x[: hl - 4])).to_bytes(4, "little")
    return bytes(x)


__all__ = [
    "chunk_headers",
    "fix_crcs",
    "generation_headers",
    "geometries",
    "labels",
    "record_count",
    "runs_in",
    "sealed_chunk_inputs",
    "trailer_ends",
    "trailers",
    "utf8_text",
]


@st.composite
def sealed_chunk_inputs(draw: st.DrawFn) -> tuple[GenerationHeader, tuple[Run, ...], bytes]:
    """(an encrypted generation header, runs inside its volume, a raw payload for the runs):
    what a writer seals. Payloads mix compressible and random bytes, some only zero runs."""
    gen = draw(generation_headers())
    block_size, volume_size = draw(geometries(max_blocks=32, max_block_size=2048))
    runs = draw(runs_in(block_size, volume_size, max_runs=4))
    data_blocks = sum(r.count for r in runs if r.kind is RunKind.DATA)  # runs may repeat blocks
    gen = dataclasses.replace(
        gen,
        block_size=block_size,
        volume_size=volume_size,
        chunk_blocks=max(32, data_blocks),  # a chunk holds at most chunk_blocks data blocks
        cipher=Cipher.AES_256_GCM,
        key_fingerprint=draw(st.binary(min_size=16, max_size=16)),
    )
    n = runs_data_len(runs, block_size, volume_size)
    pattern = draw(st.binary(min_size=1, max_size=64))
    raw = (pattern * (n // len(pattern) + 1))[:n] if draw(st.booleans()) else draw(st.binary(min_size=n, max_size=n))
    return gen, runs, raw
