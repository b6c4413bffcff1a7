"""Full backup of a volume to a medium, as one generation tape file.

The volume is read sequentially in windows of one chunk's worth of blocks; every block is
classified as all-zero (recorded in the mapping, not stored) or data (appended to the chunk's
payload). A chunk is written when it holds ``chunk_blocks`` data blocks (or its mapping reaches
``MAX_RUNS`` runs), so memory stays at a few chunk sizes whatever the size of the volume.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import zstandard

from tapearc import format as fmt
from tapearc.engine.layout import (
    GenerationFile,
    new_label,
    read_label,
    scan_generation_files,
    write_item,
)
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.volume import SourceVolume, default_volume_name
from tapearc.catalog.db import Catalog
from tapearc.engine.plan import load_chain, manifest_at
from tapearc.engine.scan import sync_catalog as _sync
from tapearc.errors import MediumFullError, SourceError, TapearcError, UsageError
from tapearc.media.base import Mark, TapeDrive, WriteStatus

DEFAULT_BLOCK_SIZE = 64 * 1024
DEFAULT_RECORD_SIZE = 1024 * 1024
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MIN_RECORD_SIZE = 4096
MAX_BLOCK_SIZE = 64 * 1024 * 1024
HEADER_RESERVE = 4096  # bytes of a chunk's records kept for its header (fixed part + runs)
RUN_BYTES = 13  # encoded size of one run in a chunk header
MAX_RUNS = (HEADER_RESERVE - 256) // RUN_BYTES
MAX_RUN_COUNT = 0xFFFFFFFF
ZSTD_LEVEL = 3
DIGEST_LEN = fmt.DIGEST_LEN


@dataclass(frozen=True, slots=True)
class BackupOptions:
    block_size: int = DEFAULT_BLOCK_SIZE
    record_size: int | None = None  # None: the medium's (when labeled) or the default
    compress: str = "none"  # "none" | "zstd"
    volume_name: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    label_text: str = ""
    full: bool = False  # write a full generation even when an earlier one exists
    block_size_given: bool = True  # False: the block size is the default and may follow the volume's


@dataclass(slots=True)
class BackupResult:
    medium: str
    volume: str
    generation: int
    tape_file: int
    volume_size: int
    block_size: int
    record_size: int
    compression: str
    chunks: int = 0
    records: int = 0
    data_blocks: int = 0
    zero_blocks: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    new_medium: bool = False
    seconds: float = 0.0
    complete: bool = True
    kind: str = "full"
    base_generation: int = 0
    unchanged_blocks: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        d = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        d["mb_per_s"] = round(self.volume_size / self.seconds / 1e6, 2) if self.seconds > 0 else None
        return d


def chunk_geometry(block_size: int, record_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Data blocks per chunk: fill whole records (a chunk's last record is nearly full)."""
    target = max(record_size, (chunk_size // record_size) * record_size)
    return max(1, (target - HEADER_RESERVE) // block_size)


def _check_sizes(block_size: int, record_size: int, drive: TapeDrive) -> None:
    if block_size < 512 or block_size > MAX_BLOCK_SIZE or block_size % 512:
        raise UsageError(f"block size {block_size} must be a multiple of 512 between 512 and {MAX_BLOCK_SIZE}")
    if record_size < MIN_RECORD_SIZE:
        raise UsageError(f"record size {record_size} is below the minimum of {MIN_RECORD_SIZE} bytes")
    if record_size > drive.max_record_size:
        raise UsageError(
            f"record size {record_size} exceeds the largest record drive {drive.name} takes ({drive.max_record_size})",
            hint=f"use --record-size {drive.max_record_size} or less",
        )


def prepare_medium_for_append(
    drive: TapeDrive, record_size: int | None, now: int, label_text: str = ""
) -> tuple[fmt.Label, list[GenerationFile], bool]:
    """Make the medium ready to append a tape file: label a blank medium, or find the end of a
    labeled one. Returns (label, generation files found, whether the medium was new).

    A last tape file that the medium ends inside (an interrupted backup) is closed with a filemark
    first, so it stays what it is (an incomplete generation) and the new one starts cleanly.
    """
    if not drive.writable:
        from tapearc.errors import WriteProtectedError

        raise WriteProtectedError("medium is write-protected").at(medium=drive.name)
    drive.rewind()
    first = drive.read_record()
    if first is Mark.END_OF_DATA:
        rs = record_size or min(DEFAULT_RECORD_SIZE, drive.max_record_size)
        label = new_label(rs, now, label_text)
        drive.rewind()
        drive.write_record(fmt.encode_label(label))
        drive.write_filemark()
        return label, [], True
    label = read_label(drive)
    if record_size is not None and record_size != label.record_size:
        raise UsageError(
            f"medium {drive.name} was labeled with record size {label.record_size}; --record-size {record_size} differs",
            hint="leave --record-size out to use the medium's",
        )
    gens = scan_generation_files(drive)
    if gens and not gens[-1].closed:
        drive.write_filemark()
    drive.seek_end_of_data()
    return label, gens, False


class _ChunkWriter:
    """Packs blocks into chunks and writes them; keeps the generation's chunk index."""

    def __init__(
        self,
        drive: TapeDrive,
        *,
        run_uuid: uuid.UUID,
        generation: int,
        block_size: int,
        volume_size: int,
        record_size: int,
        chunk_blocks: int,
        compress: bool,
        result: BackupResult,
    ) -> None:
        self.drive = drive
        self.run_uuid = run_uuid
        self.generation = generation
        self.block_size = block_size
        self.volume_size = volume_size
        self.record_size = record_size
        self.chunk_blocks = chunk_blocks
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if compress else None
        self.result = result
        self.index = fmt.TrailerBuilder(
            run_uuid=run_uuid, generation=generation, volume_size=volume_size, block_size=block_size
        )
        self.seq = 0
        self.early_warning = False
        self.dropped_from: int | None = None  # first block of a chunk lost at the physical end
        self.on_chunk: Callable[[fmt.ChunkIndexEntry, bytes], None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.runs: list[list[int]] = []  # [first, count, kind]
        self.payload = bytearray()
        self.digests = bytearray()
        self.data_count = 0

    def add(self, block_id: int, data: memoryview | None, digest: bytes = b"") -> None:
        """Add block ``block_id``: ``data`` is its bytes (``digest`` its BLAKE3-128), or None when
        it is all zero."""
        kind = 1 if data is None else 0
        runs = self.runs
        if runs:
            last = runs[-1]
            if last[2] == kind and last[0] + last[1] == block_id and last[1] < MAX_RUN_COUNT:
                last[1] += 1
            else:
                runs.append([block_id, 1, kind])
        else:
            runs.append([block_id, 1, kind])
        if data is not None:
            self.payload += data
            self.digests += digest
            self.data_count += 1
        if self.data_count >= self.chunk_blocks or len(runs) >= MAX_RUNS:
            self.flush()

    def flush(self) -> None:
        if not self.runs:
            return
        raw = bytes(self.payload)
        stored = raw
        flags = 0
        if self.compressor is not None and raw:
            packed = self.compressor.compress(raw)
            if len(packed) < len(raw):
                stored = packed
                flags = fmt.CHUNK_FLAG_ZSTD
        crc = fmt.crc32c(stored)
        runs = tuple(fmt.Run(r[0], r[1], fmt.RunKind.ZERO if r[2] else fmt.RunKind.DATA) for r in self.runs)
        header = fmt.ChunkHeader(
            flags=flags,
            run_uuid=self.run_uuid,
            generation=self.generation,
            seq=self.seq,
            block_size=self.block_size,
            volume_size=self.volume_size,
            raw_len=len(raw),
            stored_len=len(stored),
            payload_crc=crc,
            runs=runs,
        )
        pos = self.drive.position()
        try:
            status, nrec = write_item(self.drive, fmt.encode_chunk_header(header) + stored, self.record_size)
        except MediumFullError:
            # Physical end inside the chunk: go back to where it started, so the partial chunk
            # is overwritten by the trailer and the medium stays clean up to the last chunk.
            self.drive.locate(pos.logical)
            self.dropped_from = self.runs[0][0]
            self.early_warning = True
            self._reset()
            return
        entry = fmt.ChunkIndexEntry.from_chunk(header, record=pos.record, record_count=nrec)
        digests = bytes(self.digests)
        self.index.add(entry, digests)
        if self.on_chunk is not None:
            self.on_chunk(entry, digests)
        r = self.result
        r.chunks += 1
        r.records += nrec
        r.data_blocks += self.data_count
        r.zero_blocks += sum(x[1] for x in self.runs if x[2])
        r.raw_bytes += len(raw)
        r.stored_bytes += len(stored)
        self.seq += 1
        self._reset()
        if status is WriteStatus.EARLY_WARNING:
            self.early_warning = True


def backup(
    source: str,
    drive: TapeDrive,
    catalog: Catalog,
    options: BackupOptions = BackupOptions(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> BackupResult:
    """Write a generation of ``source`` to ``drive``: incremental when the volume already has a
    complete generation in this media set (unless ``options.full``), else full."""
    progress = progress or NoProgress()
    started = time.monotonic()
    if options.compress not in ("none", "zstd"):
        raise UsageError(f"unknown compression {options.compress!r}; use zstd or none")
    with SourceVolume(source) as src:
        now = int(clock())
        if options.record_size is not None:
            _check_sizes(options.block_size, options.record_size, drive)
        label, gens, new = prepare_medium_for_append(drive, options.record_size, now, options.label_text)
        record_size = label.record_size
        _check_sizes(options.block_size, record_size, drive)
        sync_catalog(drive, catalog, label, gens)
        name = options.volume_name or default_volume_name(source)
        known = catalog.generations(label.media_set_uuid, name)
        generation = max((g.number for g in known), default=0) + 1
        complete = [g for g in known if g.state == "complete"]
        prev = max(complete, key=lambda g: g.number) if complete else None
        volume_uuid = known[-1].volume_uuid if known else uuid.uuid4()
        bs = options.block_size
        if prev is not None and not options.full and prev.block_size != bs:
            if options.block_size_given:
                raise UsageError(
                    f"volume {name!r} was backed up with block size {prev.block_size}; an incremental needs the same",
                    hint="leave --block-size out, or add --full",
                )
            bs = prev.block_size
        incremental = prev is not None and not options.full
        prev_manifest = manifest_at(catalog, load_chain(catalog, label.media_set_uuid, name, prev.number)) if incremental and prev else None
        prev_blocks = prev.nblocks if incremental and prev else 0
        size = src.size
        chunk_blocks = chunk_geometry(bs, record_size, options.chunk_size)
        run_uuid = uuid.uuid4()
        pos0 = drive.position()
        tape_file = pos0.file
        result = BackupResult(
            medium=drive.name,
            volume=name,
            generation=generation,
            tape_file=tape_file,
            volume_size=size,
            block_size=bs,
            record_size=record_size,
            compression=options.compress,
            new_medium=new,
            kind="incremental" if incremental else "full",
            base_generation=prev.number if incremental and prev else 0,
        )
        genhdr = fmt.GenerationHeader(
            run_uuid=run_uuid,
            media_set_uuid=label.media_set_uuid,
            medium_uuid=label.medium_uuid,
            volume_uuid=volume_uuid,
            volume_name=name,
            generation=generation,
            base_generation=result.base_generation,
            kind=fmt.GenerationKind.INCREMENTAL if incremental else fmt.GenerationKind.FULL,
            compression=fmt.Compression.ZSTD if options.compress == "zstd" else fmt.Compression.NONE,
            block_size=bs,
            record_size=record_size,
            chunk_blocks=chunk_blocks,
            volume_size=size,
            part=0,
            created=now,
        )
        gen_id = catalog.begin_generation(genhdr, medium_uuid=label.medium_uuid, tape_file=tape_file, logical=pos0.logical)
        state = "incomplete"
        closed = False
        complete_gen = False
        writer: _ChunkWriter | None = None
        try:
            status, nrec = write_item(drive, fmt.encode_generation_header(genhdr), record_size)
            result.records += nrec
            writer = _ChunkWriter(
                drive,
                run_uuid=run_uuid,
                generation=generation,
                block_size=bs,
                volume_size=size,
                record_size=record_size,
                chunk_blocks=chunk_blocks,
                compress=options.compress == "zstd",
                result=result,
            )
            writer.on_chunk = lambda e, d: catalog.add_chunks(gen_id, label.medium_uuid, tape_file, pos0.logical, [(e, d)])
            writer.early_warning = status is WriteStatus.EARLY_WARNING
            progress.start(f"backup {name}", size)
            nblocks = -(-size // bs)
            window = bytearray(chunk_blocks * bs)
            wview = memoryview(window)
            zero = bytes(bs)
            zero_digest = bytes(DIGEST_LEN)
            block_digest = fmt.block_digest
            block_id = 0
            offset = 0
            while block_id < nblocks and not writer.early_warning:
                want = min(len(window), size - offset)
                got = src.readinto_at(wview[:want], offset)
                if got != want:
                    raise SourceError(
                        f"source {source} shrank during the backup: expected {size} bytes, it ends at {offset + got}"
                    )
                for o in range(0, got, bs):
                    blk = wview[o : o + bs] if o + bs <= got else wview[o:got]
                    if blk == zero[: len(blk)]:
                        if prev_manifest is None or block_id >= prev_blocks:
                            writer.add(block_id, None)
                        else:
                            d0 = block_id * DIGEST_LEN
                            if prev_manifest[d0 : d0 + DIGEST_LEN] != zero_digest:
                                writer.add(block_id, None)
                            else:
                                result.unchanged_blocks += 1
                    else:
                        dg = block_digest(blk)
                        if prev_manifest is not None and block_id < prev_blocks:
                            d0 = block_id * DIGEST_LEN
                            if prev_manifest[d0 : d0 + DIGEST_LEN] == dg:
                                result.unchanged_blocks += 1
                                block_id += 1
                                continue
                        writer.add(block_id, blk, dg)
                    block_id += 1
                    if writer.early_warning:
                        break
                offset += got
                progress.advance(got)
            if not writer.early_warning:
                writer.flush()
            complete_gen = block_id >= nblocks and not writer.runs and writer.dropped_from is None
            first_missing = writer.dropped_from if writer.dropped_from is not None else block_id
            trailer_pos = drive.position()
            trailer = writer.index.finish(complete=complete_gen)
            _, nrec = write_item(drive, trailer, record_size)
            result.records += nrec
            end = fmt.trailer_end_for(trailer, trailer_record=trailer_pos.record, record_size=record_size)
            drive.write_record(fmt.encode_trailer_end(end))
            result.records += 1
            drive.write_filemark()
            closed = True
            state = "complete" if complete_gen else "incomplete"
        except MediumFullError:
            _close_after_full(drive)
            raise MediumFullError(
                f"medium filled up while writing generation {generation} of volume {name} "
                f"(after {result.chunks} chunks, {result.raw_bytes} bytes); the medium is readable up to the last "
                f"complete chunk; spanning onto a next medium is not supported yet",
                hint="use a larger medium (or a fresh one) for this volume",
            ).at(medium=drive.name, tape_file=tape_file) from None
        finally:
            progress.finish()
            catalog.finish_generation(
                gen_id,
                state=state,
                medium_uuid=label.medium_uuid,
                tape_file=tape_file,
                closed=closed,
                has_trailer=closed,
            )
        result.seconds = time.monotonic() - started
        result.complete = complete_gen
        if not complete_gen:
            raise MediumFullError(
                f"medium reached its early-warning zone while writing generation {generation} of volume {name}: "
                f"blocks {first_missing}-{nblocks - 1} are not on it; generation {generation} is marked incomplete; "
                f"the medium is intact and readable up to the last chunk",
                hint="spanning onto a next medium is not supported yet: use a larger medium",
                blocks=(first_missing, nblocks - 1),
            ).at(medium=drive.name, tape_file=tape_file)
        return result


def sync_catalog(drive: TapeDrive, catalog: Catalog, label: fmt.Label, gens: list[GenerationFile]) -> None:
    """Bring the catalog up to date with the medium, then go back to end of data."""
    if _sync(drive, catalog, label, gens):
        drive.seek_end_of_data()


def _close_after_full(drive: TapeDrive) -> None:
    """After the physical end: try to leave a filemark so what is there stays a clean tape file."""
    try:
        drive.write_filemark()
    except TapearcError:
        pass
