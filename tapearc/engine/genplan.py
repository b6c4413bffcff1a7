"""Planning a generation: which volume, which number, full or incremental on which base, and the
generation header that starts each of its parts -- decided once, before anything is written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, GenerationRow
from tapearc.crypto.keys import Key, fingerprint_text
from tapearc.engine.classify import BaseManifest
from tapearc.engine.encryption import encrypted_header
from tapearc.engine.manifest import RunManifest, build_manifest
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
    digest_key: bytes | None = None  # the block digests' BLAKE3 key (an encrypted generation), else None

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
    key: Key | None = None  # --encrypt: the data key (the header gets its fingerprint, digests are keyed)


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
    warnings = list(choice.warnings)
    if base is not None and base.key_fingerprint != (req.key.fingerprint if req.key else None):
        warnings.append(_not_comparable(base, req.key))
        base = None  # its digests cannot be compared with this generation's: a full generation
    # the base's digests as runs (its zero runs cost nothing, its data 16 bytes per block)
    manifest = _base_manifest(catalog, set_uuid, name, base)
    header = encrypted_header(
        fmt.GenerationHeader(
            run_uuid=uuid.uuid4(),
            media_set_uuid=set_uuid,
            medium_uuid=req.label.medium_uuid,
            volume_uuid=choice.volume_uuid,
            volume_name=name,
            generation=max(max((g.number for g in known), default=0), catalog.last_number(set_uuid, name)) + 1,
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
        ),
        req.key,
    )
    digest_key = req.key.digest_key() if req.key is not None else None
    return GenerationPlan(header, manifest, tuple(warnings), digest_key)


def _base_manifest(catalog: Catalog, set_uuid: uuid.UUID, name: str, base: GenerationRow | None) -> RunManifest | None:
    """The block digests of an incremental's ``base`` (None: a full generation)."""
    if base is None:
        return None
    from tapearc.engine.plan import load_chain  # (the chain's reader: a full backup does not import it)

    return build_manifest(catalog, load_chain(catalog, set_uuid, name, base.number))


def _not_comparable(base: GenerationRow, key: Key | None) -> str:
    """The warning for a base generation whose block digests are of another kind than the new
    generation's (plain against keyed, or keyed with another key): nothing can be compared."""
    was = f"encrypted with key {fingerprint_text(base.key_fingerprint)}" if base.key_fingerprint else "plain"
    now = f"encrypted with key {key.fingerprint_text}" if key is not None else "plain"
    return (
        f"generation {base.number} of volume {base.volume!r} is {was}, this one {now}: their block digests cannot "
        "be compared, so this generation is written full (every block stored)"
    )
