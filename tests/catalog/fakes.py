"""Catalog rows made up for the catalog tests: labels, generation headers, chunk entries, and a
whole generation recorded the way a backup records it (begin, add_chunks, finish)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.catalog.states import GenerationState


def label(set_uuid: uuid.UUID, sequence: int = 1, text: str = "", medium: uuid.UUID | None = None) -> fmt.Label:
    return fmt.Label(
        medium_uuid=medium or uuid.uuid4(),
        media_set_uuid=set_uuid,
        sequence=sequence,
        record_size=256 * 1024,
        created=1_700_000_000 + sequence,
        text=text,
    )


def header(
    lab: fmt.Label,
    volume: str,
    number: int,
    *,
    base: int = 0,
    volume_uuid: uuid.UUID | None = None,
    created: int | None = None,
    part: int = 0,
    run_uuid: uuid.UUID | None = None,
    source: str | None = None,
    key: bytes | None = None,
    volume_size: int = 64 * 65536,
) -> fmt.GenerationHeader:
    return fmt.GenerationHeader(
        run_uuid=run_uuid or uuid.uuid4(),
        media_set_uuid=lab.media_set_uuid,
        medium_uuid=lab.medium_uuid,
        volume_uuid=volume_uuid or uuid.uuid5(uuid.NAMESPACE_OID, volume),
        volume_name=volume,
        generation=number,
        base_generation=base,
        kind=fmt.GenerationKind.FULL if base == 0 else fmt.GenerationKind.INCREMENTAL,
        compression=fmt.Compression.ZSTD,
        block_size=65536,
        record_size=lab.record_size,
        chunk_blocks=16,
        volume_size=volume_size,
        created=created if created is not None else 1_700_000_100 + number,
        part=part,
        source=None if source is None else fmt.VolumeSource(path=source, real_path=source, dev=2049, ino=12),
        cipher=fmt.Cipher.NONE if key is None else fmt.Cipher.AES_256_GCM,
        key_fingerprint=key,
    )


def entries(
    count: int, *, first_seq: int = 0, blocks: int = 16, first_block: int = 0, rng: random.Random | None = None
) -> list[tuple[fmt.ChunkIndexEntry, bytes]]:
    """``count`` chunks of ``blocks`` data blocks each (the last run of each chunk zero), with
    their digests (16 bytes per data block)."""
    rng = rng or random.Random(first_seq)
    out = []
    for i in range(count):
        b0 = first_block + i * (blocks + 1)
        runs = (fmt.Run(b0, blocks), fmt.Run(b0 + blocks, 1, fmt.RunKind.ZERO))
        e = fmt.ChunkIndexEntry(
            seq=first_seq + i,
            record=1 + 5 * i,
            record_count=5,
            stored_len=1000 + i,
            raw_len=blocks * 65536,
            payload_crc=0xFFFFFFF0 + (i % 16),  # past 2^31: an unsigned 32-bit value
            runs=runs,
            flags=1,
        )
        out.append((e, rng.randbytes(16 * blocks)))
    return out


def record_generation(
    cat: Catalog,
    lab: fmt.Label,
    hdr: fmt.GenerationHeader,
    tape_file: int,
    chunks: Sequence[tuple[fmt.ChunkIndexEntry, bytes]],
    *,
    state: GenerationState | str = GenerationState.COMPLETE,
    logical: int | None = None,
) -> int:
    """Record a generation as a backup does; its id."""
    at = logical if logical is not None else tape_file * 1000
    gid = cat.begin_generation(hdr, medium_uuid=lab.medium_uuid, tape_file=tape_file, logical=at)
    cat.add_chunks(gid, lab.medium_uuid, tape_file, at, chunks)
    cat.finish_generation(
        gid, state=state, medium_uuid=lab.medium_uuid, tape_file=tape_file, closed=True, has_trailer=True, final=True
    )
    return gid
