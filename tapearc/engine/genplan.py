"""Planning a generation: which volume, which number, full or incremental on which base, and the
generation header that starts each of its parts -- decided once, before anything is written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine.classify import BaseManifest
from tapearc.engine.manifest import RunManifest, build_manifest
from tapearc.engine.plan import load_chain
from tapearc.engine.volumes import choose_volume
from tapearc.errors import UsageError

HEADER_RESERVE = 4096  # bytes of a chunk's records kept for its header (fixed part + runs)


@dataclass(frozen=True, slots=True)
class GenerationPlan:
    """What a backup will write: the generation header (``part`` 0; each part's header is this one
    with the medium and part number of that part), and what an incremental compares against."""

    header: fmt.GenerationHeader
    base_manifest: BaseManifest | None  # the base generation's block digests (an incremental), else None
    warnings: tuple[str, ...]  # from choosing the volume (e.g. a volume moved to a new source)

    @property
    def incremental(self) -> bool:
        return self.header.kind == fmt.GenerationKind.INCREMENTAL

    @property
    def kind(self) -> str:
        return "incremental" if self.incremental else "full"

    def close(self) -> None:
        """Remove the base manifest's temporary file (past 16 MiB of digests), if any; idempotent."""
        if isinstance(self.base_manifest, RunManifest):
            self.base_manifest.close()

    def __enter__(self) -> GenerationPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunk_geometry(block_size: int, record_size: int, chunk_size: int) -> int:
    """Data blocks per chunk: fill whole records (a chunk's last record is nearly full)."""
    target = max(record_size, (chunk_size // record_size) * record_size)
    return max(1, (target - HEADER_RESERVE) // block_size)


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What the backup was asked for, and what it found (the medium's label, the source)."""

    source: str
    ident: fmt.VolumeSource
    size: int
    label: fmt.Label
    now: int
    block_size: int
    block_size_given: bool
    chunk_size: int
    compress: str
    full: bool
    volume_name: str | None
    new_volume: bool


def plan_generation(catalog: Catalog, req: PlanRequest) -> GenerationPlan:
    """Choose the volume and the generation's number, kind and base; build its header."""
    set_uuid = req.label.media_set_uuid
    choice = choose_volume(catalog, set_uuid, req.source, req.ident, name=req.volume_name, new_volume=req.new_volume)
    name, known = choice.name, choice.known
    complete = [g for g in known if g.state == "complete"]
    prev = max(complete, key=lambda g: g.number) if complete else None
    bs = req.block_size
    if prev is not None and not req.full and prev.block_size != bs:
        if req.block_size_given:
            raise UsageError(
                f"volume {name!r} was backed up with block size {prev.block_size}; an incremental needs the same",
                hint="leave --block-size out, or add --full",
            )
        bs = prev.block_size
    base = prev if prev is not None and not req.full else None
    # the base's digests as runs (its zero runs cost nothing, its data 16 bytes per block)
    manifest = build_manifest(catalog, load_chain(catalog, set_uuid, name, base.number)) if base else None
    header = fmt.GenerationHeader(
        run_uuid=uuid.uuid4(),
        media_set_uuid=set_uuid,
        medium_uuid=req.label.medium_uuid,
        volume_uuid=choice.volume_uuid,
        volume_name=name,
        generation=max((g.number for g in known), default=0) + 1,
        base_generation=base.number if base else 0,
        kind=fmt.GenerationKind.INCREMENTAL if base else fmt.GenerationKind.FULL,
        compression=fmt.Compression.ZSTD if req.compress == "zstd" else fmt.Compression.NONE,
        block_size=bs,
        record_size=req.label.record_size,
        chunk_blocks=chunk_geometry(bs, req.label.record_size, req.chunk_size),
        volume_size=req.size,
        part=0,
        created=req.now,
        source=req.ident,
    )
    return GenerationPlan(header, manifest, tuple(choice.warnings))
