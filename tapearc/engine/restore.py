"""Restore a generation from a medium to a file or block device, byte for byte.

Every chunk's header CRC and payload CRC are checked, every block of the volume must be
accounted for exactly once (as data or as zero), and the chunk sequence must be complete up
to the trailer. Anything else stops the restore with an error naming the medium, tape file,
record and block range; a regular-file target is then removed, never left looking complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tapearc import format as fmt
from tapearc.engine.layout import (
    MAGIC_CHUNK,
    MAGIC_TRAILER,
    GenerationFile,
    read_generation_header,
    read_item,
    scan_generation_files,
)
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.volume import RestoreTarget
from tapearc.errors import (
    BadMagicError,
    MalformedError,
    NoSuchGenerationError,
    TapearcError,
    TruncatedError,
    UsageError,
)
from tapearc.media.base import Mark, TapeDrive


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    generation: int | None = None  # None: the latest complete one
    volume: str | None = None  # None: the only volume on the medium
    force: bool = False


@dataclass(slots=True)
class RestoreResult:
    medium: str
    volume: str
    generation: int
    target: str
    volume_size: int
    block_size: int
    chunks_read: int = 0
    data_blocks: int = 0
    zero_blocks: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        d = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        d["mb_per_s"] = round(self.volume_size / self.seconds / 1e6, 2) if self.seconds > 0 else None
        return d


def choose_generation(drive: TapeDrive, gens: list[GenerationFile], options: RestoreOptions) -> GenerationFile:
    """Pick the generation file to restore from those found on the medium."""
    if not gens:
        raise NoSuchGenerationError("medium holds no backup generation").at(medium=drive.name)
    names = sorted({g.header.volume_name for g in gens})
    if options.volume is not None:
        cands = [g for g in gens if g.header.volume_name == options.volume]
        if not cands:
            raise NoSuchGenerationError(
                f"medium holds no volume named {options.volume!r} (it holds: {', '.join(names)})"
            ).at(medium=drive.name)
    else:
        if len(names) > 1:
            raise UsageError(
                f"medium holds several volumes ({', '.join(names)}); choose one with --volume"
            ).at(medium=drive.name)
        cands = gens
    if options.generation is not None:
        match = [g for g in cands if g.header.generation == options.generation]
        if not match:
            have = ", ".join(str(g.header.generation) for g in cands)
            raise NoSuchGenerationError(
                f"volume {cands[0].header.volume_name!r} has no generation {options.generation} (it has: {have})"
            ).at(medium=drive.name)
        return match[-1]
    closed = [g for g in cands if g.closed]
    if not closed:
        raise NoSuchGenerationError(
            f"volume {cands[0].header.volume_name!r} has no complete generation on this medium"
        ).at(medium=drive.name)
    return max(closed, key=lambda g: (g.header.generation, g.tape_file))


def restore(
    drive: TapeDrive,
    target_path: str,
    options: RestoreOptions = RestoreOptions(),
    progress: Progress | None = None,
) -> RestoreResult:
    progress = progress or NoProgress()
    started = time.monotonic()
    gens = scan_generation_files(drive)
    gf = choose_generation(drive, gens, options)
    hdr = gf.header
    if hdr.kind != fmt.GenerationKind.FULL or hdr.base_generation != 0:
        raise UsageError(
            f"generation {hdr.generation} of {hdr.volume_name!r} is incremental; restoring incremental "
            "generations is not supported yet"
        ).at(medium=drive.name, tape_file=gf.tape_file)
    drive.locate(gf.logical)
    got = read_generation_header(drive)
    if isinstance(got, Mark):
        raise TruncatedError("generation tape file vanished while restoring").at(
            medium=drive.name, tape_file=gf.tape_file
        )
    target = RestoreTarget(target_path, hdr.volume_size, force=options.force)
    result = RestoreResult(
        medium=drive.name,
        volume=hdr.volume_name,
        generation=hdr.generation,
        target=target_path,
        volume_size=hdr.volume_size,
        block_size=hdr.block_size,
    )
    try:
        progress.start(f"restore {hdr.volume_name} gen {hdr.generation}", hdr.volume_size)
        _restore_file(drive, gf, target, result, progress)
        target.commit()
    except BaseException:
        target.abort()
        raise
    finally:
        progress.finish()
    result.seconds = time.monotonic() - started
    return result


def _restore_file(
    drive: TapeDrive,
    gf: GenerationFile,
    target: RestoreTarget,
    result: RestoreResult,
    progress: Progress,
) -> None:
    hdr = gf.header
    bs = hdr.block_size
    size = hdr.volume_size
    nblocks = -(-size // bs)
    seen = bytearray(nblocks)  # 1 per block once restored; bounded: 1 byte per block
    expect_seq = 0
    where = {"medium": drive.name, "tape_file": gf.tape_file}
    while True:
        item = read_item(drive)
        if isinstance(item, Mark):
            raise TruncatedError(
                f"generation {hdr.generation} ends ({item.value}) after chunk {expect_seq - 1} without a trailer; "
                "the backup was interrupted"
            ).at(**where)
        loc = {**where, "record": item.record}
        if item.magic == MAGIC_TRAILER:
            try:
                trailer = fmt.decode_trailer(item.data)
            except TapearcError as e:
                raise e.at(**loc)
            _check_trailer(trailer, hdr, expect_seq, result, loc)
            break
        if item.magic != MAGIC_CHUNK:
            raise BadMagicError(f"expected a chunk or trailer, found {item.magic!r}").at(**loc)
        try:
            chdr, payload = fmt.decode_chunk(item.data)
        except TapearcError as e:
            blocks = _blocks_of(item.data)
            raise e.at(**loc, blocks=blocks)
        span = _span(chdr.runs)
        if chdr.run_uuid != hdr.run_uuid or chdr.generation != hdr.generation:
            raise MalformedError(
                f"chunk belongs to another backup run (generation {chdr.generation}, run {chdr.run_uuid})"
            ).at(**loc, blocks=span)
        if chdr.seq != expect_seq:
            raise MalformedError(f"chunk {chdr.seq} found where chunk {expect_seq} was expected").at(**loc, blocks=span)
        if chdr.block_size != bs or chdr.volume_size != size:
            raise MalformedError("chunk geometry differs from its generation header").at(**loc, blocks=span)
        try:
            raw = fmt.unpack_payload(chdr, payload)
        except TapearcError as e:
            raise e.at(**loc, blocks=span)
        view = memoryview(raw)
        off = 0
        for run in chdr.runs:
            end_id = run.first + run.count
            if end_id > nblocks:
                raise MalformedError(f"chunk maps blocks past the end of the volume ({nblocks} blocks)").at(
                    **loc, blocks=(run.first, end_id - 1)
                )
            if any(seen[run.first:end_id]):
                raise MalformedError("blocks mapped twice in one generation").at(**loc, blocks=(run.first, end_id - 1))
            seen[run.first:end_id] = b"\x01" * run.count
            start = run.first * bs
            length = min(end_id * bs, size) - start
            if run.is_zero:
                target.zero_range(start, length)
                result.zero_blocks += run.count
            else:
                target.write_at(view[off : off + length], start)
                off += length
                result.data_blocks += run.count
            progress.advance(length)
        result.chunks_read += 1
        result.bytes_read += len(item.data)
        expect_seq += 1
    if seen.count(1) != nblocks:
        first = seen.index(0)
        raise MalformedError(
            f"generation {hdr.generation} does not account for every block of the volume"
        ).at(**where, blocks=(first, first))


def _check_trailer(
    trailer: fmt.Trailer, hdr: fmt.GenerationHeader, chunks: int, result: RestoreResult, loc: dict[str, object]
) -> None:
    if trailer.run_uuid != hdr.run_uuid or trailer.generation != hdr.generation:
        raise MalformedError("trailer belongs to another backup run").at(**loc)  # type: ignore[arg-type]
    if not trailer.complete:
        raise TruncatedError(
            f"generation {hdr.generation} is incomplete: the medium filled up during its backup"
        ).at(**loc)  # type: ignore[arg-type]
    if trailer.chunk_count != chunks:
        raise MalformedError(f"trailer counts {trailer.chunk_count} chunks, the tape file holds {chunks}").at(**loc)  # type: ignore[arg-type]
    if trailer.data_blocks != result.data_blocks or trailer.zero_blocks != result.zero_blocks:
        raise MalformedError("trailer block counts differ from the chunks read").at(**loc)  # type: ignore[arg-type]


def _span(runs: tuple[fmt.Run, ...]) -> tuple[int, int] | None:
    if not runs:
        return None
    return min(r.first for r in runs), max(r.first + r.count - 1 for r in runs)


def _blocks_of(data: bytes) -> tuple[int, int] | None:
    """Best effort: the block range a damaged chunk claims, from its header if that decodes."""
    try:
        chdr, _ = fmt.decode_chunk_header(data)
    except TapearcError:
        return None
    return _span(chdr.runs)
