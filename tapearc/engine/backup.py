"""Full backup of a volume to a medium, as one generation tape file.

The volume is read sequentially in windows of one chunk's worth of blocks; every block is
classified as all-zero (recorded in the mapping, not stored) or data (appended to the chunk's
payload). A chunk is written when it holds ``chunk_blocks`` data blocks (or its mapping reaches
``MAX_RUNS`` runs), so memory stays at a few chunk sizes whatever the size of the volume.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import zstandard

from tapearc import format as fmt
from tapearc import interrupts
from tapearc.catalog.db import Catalog, path_text
from tapearc.engine.identity import damaged_label, refuse_source_is_medium, refuse_unless_blank
from tapearc.engine.layout import (
    GenerationFile,
    new_label,
    read_label,
    scan_tape_files,
    write_item,
    write_stream,
)
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.pipeline import ReadAhead
from tapearc.engine.plan import load_chain, manifest_at
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.scan import sync_catalog as _sync
from tapearc.engine.spool import SpoolStore
from tapearc.engine.volume import SourceVolume
from tapearc.engine.volumes import choose_volume, source_identity
from tapearc.errors import (
    DamagedDataError,
    FormatError,
    MediumFullError,
    SourceError,
    TapearcError,
    UsageError,
    WriteProtectedError,
    WrongMediumError,
)
from tapearc.media.base import Mark, TapeDrive, WriteStatus

DEFAULT_BLOCK_SIZE = 64 * 1024
DEFAULT_RECORD_SIZE = 1024 * 1024
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MAX_CHUNK_SIZE = 256 * 1024 * 1024
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
    volume_name: str | None = None  # --volume NAME: that volume (moved if its source differs)
    new_volume: bool = False  # --new-volume: never continue an existing volume
    chunk_size: int = DEFAULT_CHUNK_SIZE
    label_text: str = ""
    full: bool = False  # write a full generation even when an earlier one exists
    media_set: uuid.UUID | None = None  # refuse a medium of any other set
    verify: bool = False  # read back each tape file after writing it
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
    volume_uuid: str = ""
    source_path: str = ""  # the source as recorded (absolute, symlinks not resolved)
    source_real: str = ""  # the same with symlinks resolved
    parts: list[dict[str, object]] = field(default_factory=list)  # one per medium the generation is on
    early_warnings: list[dict[str, object]] = field(default_factory=list)  # where early warning was hit
    verified: list[dict[str, object]] = field(default_factory=list)  # --verify: each tape file read back

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
    drive: TapeDrive,
    record_size: int | None,
    now: int,
    label_text: str = "",
    media_set: uuid.UUID | None = None,
    *,
    catalog: Catalog | None = None,
    barcode: str | None = None,
    by_place: bool = True,
) -> tuple[fmt.Label, list[GenerationFile], bool]:
    """Make the medium ready to append a tape file: label a blank medium, or find the end of a
    labeled one. Returns (label, generation files found, whether the medium was new).

    A medium is labeled only when it is provably blank (identity.refuse_unless_blank: not a
    ``sim:`` image holding other bytes or a damaged label, nor a medium the ``catalog`` holds
    generations for at that place -- unless not ``by_place``: a drive whose tapes are swapped --
    or ``barcode``); a damaged label is reported, not replaced.

    A last tape file that the medium ends inside (an interrupted backup) is closed with a filemark
    first, so it stays what it is (an incomplete generation) and the new one starts cleanly.
    """
    if not drive.writable:
        raise WriteProtectedError("medium is write-protected; nothing was written").at(medium=drive.name)
    drive.rewind()
    first = drive.read_record()
    if first is Mark.END_OF_DATA:
        refuse_unless_blank(drive, catalog, barcode, by_place=by_place)
        if media_set is not None:
            raise WrongMediumError(
                f"medium is blank, not a medium of media set {media_set}; nothing was written",
                hint="leave --media-set out to start a new set on it, or label it with tapearc label --media-set",
            ).at(medium=drive.name)
        rs = record_size or min(DEFAULT_RECORD_SIZE, drive.max_record_size)
        label = new_label(rs, now, label_text)
        drive.rewind()
        drive.write_record(fmt.encode_label(label))
        drive.write_filemark()
        return label, [], True
    try:
        label = read_label(drive)
    except FormatError as e:  # a damaged label: damage, never a medium to relabel
        raise damaged_label(e, drive.name) from None
    if media_set is not None and label.media_set_uuid != media_set:
        raise WrongMediumError(
            f"medium belongs to media set {label.media_set_uuid}, not {media_set}; nothing was written"
        ).at(medium=drive.name)
    if record_size is not None and record_size != label.record_size:
        raise UsageError(
            f"medium {drive.name} was labeled with record size {label.record_size}; --record-size {record_size} differs",
            hint="leave --record-size out to use the medium's",
        )
    if drive.position().file == 0:  # labeling was interrupted before the label's filemark
        drive.write_filemark()
        return label, [], False
    gens, open_tail = scan_tape_files(drive)
    if open_tail:  # the medium ends inside a tape file (an interrupted backup): close it first
        drive.write_filemark()
    drive.seek_end_of_data()
    return label, gens, False


@dataclass(slots=True)
class _Part:
    """The generation's part on one medium."""

    drive: TapeDrive
    label: fmt.Label
    number: int
    tape_file: int
    logical: int  # logical position of the part's first record (its generation header)
    builder: fmt.TrailerBuilder


class _ChunkWriter:
    """Packs blocks into chunks and writes them to the current part; spans media on demand."""

    def __init__(
        self,
        *,
        genhdr: fmt.GenerationHeader,
        record_size: int,
        compress: bool,
        result: BackupResult,
        catalog: Catalog,
        gen_id: int,
        next_medium: Callable[[fmt.Label], tuple[TapeDrive, fmt.Label]],
        can_continue: Callable[[], bool],
    ) -> None:
        self.genhdr = genhdr
        self.record_size = record_size
        self.chunk_blocks = genhdr.chunk_blocks
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if compress else None
        self.result = result
        self.catalog = catalog
        self.gen_id = gen_id
        self.next_medium = next_medium
        self.can_continue = can_continue
        self.part: _Part | None = None
        self.seq = 0
        self.stopped = False  # the medium is full and there is no next one
        self.verify = False
        self.pending_span = False  # early warning seen: the next chunk goes on the next medium
        self.buf = bytearray(HEADER_RESERVE + self.chunk_blocks * genhdr.block_size)
        self.dropped_from: int | None = None  # first block of a chunk that could not be written
        self.recorded = False  # close_part wrote the generation's final catalog state
        self._reset()

    def _reset(self) -> None:
        self.runs: list[list[int]] = []  # [first, count, kind]
        self.plen = 0  # payload bytes in self.buf, from HEADER_RESERVE on
        self.digests = bytearray()
        self.data_count = 0

    # -------------------------------------------------------------- parts

    def open_part(self, drive: TapeDrive, label: fmt.Label, number: int) -> WriteStatus:
        pos = drive.position()
        hdr = fmt.GenerationHeader(**{**_fields(self.genhdr), "medium_uuid": label.medium_uuid, "part": number})
        self.catalog.begin_generation(hdr, medium_uuid=label.medium_uuid, tape_file=pos.file, logical=pos.logical)
        status, nrec = write_item(drive, fmt.encode_generation_header(hdr), self.record_size)
        self.result.records += nrec
        self.part = _Part(
            drive,
            label,
            number,
            pos.file,
            pos.logical,
            fmt.TrailerBuilder(
                run_uuid=hdr.run_uuid,
                generation=hdr.generation,
                volume_size=hdr.volume_size,
                block_size=hdr.block_size,
                store=SpoolStore,  # past 8 MiB in a temporary file: memory does not grow with the volume
            ),
        )
        self.result.parts.append(
            {
                "medium": drive.name,
                "medium_uuid": str(label.medium_uuid),
                "sequence": label.sequence,
                "tape_file": pos.file,
            }
        )
        return status

    def close_part(self, *, complete: bool, continues: bool) -> None:
        """Trailer, end record and filemark: the part is a clean tape file."""
        p = self.part
        assert p is not None
        pos = p.drive.position()
        header, total, pieces = p.builder.finish_pieces(complete=complete, continues=continues)
        _, nrec = write_stream(p.drive, header, pieces, self.record_size)
        p.builder.close()
        end = fmt.trailer_end_from_header(header, total, trailer_record=pos.record, record_size=self.record_size)

        def record() -> None:
            self.catalog.finish_generation(
                self.gen_id,
                state="auto" if complete else ("writing" if continues else "incomplete"),
                final=complete,
                continues=continues,
                medium_uuid=p.label.medium_uuid,
                tape_file=p.tape_file,
                closed=True,
                has_trailer=True,
            )
            self.recorded = not continues

        # Ctrl-C waits while the end record, the filemark and the catalog row are written: once
        # the end record is on the medium the generation is complete there, and the catalog
        # must say so (a Ctrl-C then ends the command with a message saying it is complete)
        with interrupts.deferred():
            p.drive.write_record(fmt.encode_trailer_end(end))
            if complete:
                interrupts.note(
                    f"generation {self.genhdr.generation} of volume {self.genhdr.volume_name!r} is complete on "
                    f"medium {p.drive.name} (tape file {p.tape_file})"
                )
            p.drive.write_filemark()
            self.result.records += nrec + 1
            if not self.verify:
                record()
        if self.verify:
            try:
                self._verify_part(p)
            except KeyboardInterrupt:
                with interrupts.deferred():
                    record()  # the medium holds it whole; only the read-back check was cut short
                interrupts.note("its read-back check (--verify) did not finish")
                raise
            record()

    def _verify_part(self, p: _Part) -> None:
        """Read the part's tape file back (every CRC and digest) before going on."""
        from tapearc.engine.verify import verify_tape_file

        p.drive.locate(p.logical)
        rep, _ = verify_tape_file(p.drive, p.label)
        self.result.verified.append(
            {"sequence": p.label.sequence, "tape_file": p.tape_file, "ok": rep.ok, "chunks": rep.chunks_ok}
        )
        if not rep.ok:
            first = rep.problems[0]
            raise DamagedDataError(
                f"reading back tape file {p.tape_file} after writing it found damage: {first.message}"
                + (f" ({len(rep.problems)} problems)" if len(rep.problems) > 1 else ""),
                hint="the medium or drive may be faulty: clean the drive, use another medium, run tapearc verify",
                blocks=first.blocks[0] if first.blocks else None,
            ).at(medium=p.drive.name, tape_file=p.tape_file, record=first.record)

    def _span(self, pending: tuple[fmt.ChunkHeader, bytes | memoryview, bytes] | None) -> bool:
        """The medium is at its end: close the part and go on on the next medium of the set.
        Returns False when there is no next medium (the part is then closed as incomplete)."""
        p = self.part
        assert p is not None
        if not self.can_continue():
            self.close_part(complete=False, continues=False)
            self.stopped = True
            return False
        self.close_part(complete=False, continues=True)
        self.pending_span = False
        drive, label = self.next_medium(p.label)
        if self.open_part(drive, label, p.number + 1) is WriteStatus.EARLY_WARNING:
            self.pending_span = True
        if pending is not None:
            header, item, digests = pending
            if not self._write_chunk(header, item, digests):
                raise MediumFullError(
                    f"chunk {header.seq} ({len(item)} bytes) does not fit even on a fresh medium: the media are too small"
                ).at(medium=drive.name)
        return True

    # -------------------------------------------------------------- chunks

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
            a = HEADER_RESERVE + self.plen
            self.buf[a : a + len(data)] = data
            self.plen += len(data)
            self.digests += digest
            self.data_count += 1
        if self.data_count >= self.chunk_blocks or len(runs) >= MAX_RUNS:
            self.flush()

    def add_zero_run(self, first: int, count: int) -> None:
        """Add ``count`` all-zero blocks from ``first`` on: the same runs as ``count`` calls of
        ``add(block, None)``, without a call per block."""
        runs = self.runs
        while count > 0:
            if runs and runs[-1][2] == 1 and runs[-1][0] + runs[-1][1] == first and runs[-1][1] < MAX_RUN_COUNT:
                n = min(count, MAX_RUN_COUNT - runs[-1][1])
                runs[-1][1] += n
            else:
                n = min(count, MAX_RUN_COUNT)
                runs.append([first, n, 1])
            first += n
            count -= n
            if len(runs) >= MAX_RUNS:
                self.flush()
                runs = self.runs

    def flush(self) -> None:
        if not self.runs or self.stopped:
            return
        # the payload sits in self.buf after HEADER_RESERVE bytes: the header is written just before
        # it, so an uncompressed chunk goes to the medium without being copied again
        raw = memoryview(self.buf)[HEADER_RESERVE : HEADER_RESERVE + self.plen]
        stored: bytes | memoryview = raw
        flags = 0
        if self.compressor is not None and len(raw):
            packed = self.compressor.compress(raw)
            if len(packed) < len(raw):
                stored = packed
                flags = fmt.CHUNK_FLAG_ZSTD
        runs = tuple(fmt.Run(r[0], r[1], fmt.RunKind.ZERO if r[2] else fmt.RunKind.DATA) for r in self.runs)
        g = self.genhdr
        header = fmt.ChunkHeader(
            flags=flags,
            run_uuid=g.run_uuid,
            generation=g.generation,
            seq=self.seq,
            block_size=g.block_size,
            volume_size=g.volume_size,
            raw_len=len(raw),
            stored_len=len(stored),
            payload_crc=fmt.crc32c(stored),
            runs=runs,
        )
        hb = fmt.encode_chunk_header(header)
        item: bytes | memoryview
        if stored is raw and len(hb) <= HEADER_RESERVE:
            self.buf[HEADER_RESERVE - len(hb) : HEADER_RESERVE] = hb
            item = memoryview(self.buf)[HEADER_RESERVE - len(hb) : HEADER_RESERVE + self.plen]
        else:
            item = hb + bytes(stored)
        digests = bytes(self.digests)
        first_block = self.runs[0][0]
        self._reset()
        if self.pending_span:
            if not self._span(None):
                self.dropped_from = first_block
                return
        ok = self._write_chunk(header, item, digests)
        if not ok:
            # physical end inside the chunk: the part was rewound to the chunk's start
            if not self._span((header, item, digests)):
                self.dropped_from = first_block

    def _write_chunk(self, header: fmt.ChunkHeader, item: bytes | memoryview, digests: bytes) -> bool:
        """Write one chunk into the current part; False if the medium ended inside it (then the
        medium is positioned back at the chunk's start). Spans media after an early warning."""
        p = self.part
        assert p is not None
        pos = p.drive.position()
        status = WriteStatus.OK
        records = fmt.split_records(item, self.record_size)
        try:
            for i, rec in enumerate(records):
                st = p.drive.write_record(rec)
                if st is WriteStatus.EARLY_WARNING and status is not WriteStatus.EARLY_WARNING:
                    status = st
                    self.result.early_warnings.append(
                        {
                            "sequence": p.label.sequence,
                            "tape_file": p.tape_file,
                            "chunk": header.seq,
                            "record_in_chunk": i,
                            "records_in_chunk": len(records),
                        }
                    )
        except MediumFullError:
            p.drive.locate(pos.logical)
            return False
        nrec = len(records)
        entry = fmt.ChunkIndexEntry.from_chunk(header, record=pos.record, record_count=nrec)
        p.builder.add(entry, digests)
        self.catalog.add_chunks(self.gen_id, p.label.medium_uuid, p.tape_file, p.logical, [(entry, digests)])
        r = self.result
        r.chunks += 1
        r.records += nrec
        r.data_blocks += header.data_blocks
        r.zero_blocks += header.zero_blocks
        r.raw_bytes += header.raw_len
        r.stored_bytes += header.stored_len
        self.seq += 1
        if status is WriteStatus.EARLY_WARNING:
            self.pending_span = True  # change media before the next chunk (not if this was the last)
        return True


def _fields(h: fmt.GenerationHeader) -> dict[str, object]:
    return {k: getattr(h, k) for k in h.__dataclass_fields__}


def backup(
    source: str,
    media: MediaSource | TapeDrive,
    catalog: Catalog,
    options: BackupOptions = BackupOptions(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> BackupResult:
    """Write a generation of ``source``: incremental when the volume already has a complete
    generation in the media set (unless ``options.full``), else full. When the medium fills up
    and the source can change media, the generation continues on the next medium of the set."""
    progress = progress or NoProgress()
    started = time.monotonic()
    if options.compress not in ("none", "zstd"):
        raise UsageError(f"unknown compression {options.compress!r}; use zstd or none")
    if not 0 <= options.chunk_size <= MAX_CHUNK_SIZE:
        raise UsageError(f"chunk size {options.chunk_size} must be at most {MAX_CHUNK_SIZE} bytes")
    if not isinstance(media, MediaSource):
        media = MediaSource.fixed(media, catalog)
    refuse_source_is_medium(source, media.spec)
    with SourceVolume(source) as src:
        now = int(clock())
        drive = media.current()
        if options.record_size is not None:
            _check_sizes(options.block_size, options.record_size, drive)
        barcode = media.loaded_barcode() or ""
        label, gens, new = prepare_medium_for_append(
            drive,
            options.record_size,
            now,
            options.label_text or barcode,
            options.media_set,
            catalog=catalog,
            barcode=barcode or None,
            by_place=media.changer is None,
        )
        record_size = label.record_size
        _check_sizes(options.block_size, record_size, drive)
        sync_catalog(drive, catalog, label, gens)
        later = [m for m in catalog.media_of_set(label.media_set_uuid) if m.sequence > label.sequence]
        if later:
            raise WrongMediumError(
                f"medium is sequence {label.sequence} of media set {label.media_set_uuid}, which continues on "
                f"sequence {later[-1].sequence}; a backup appends to the last medium of a set; nothing was written",
                hint=f"load sequence {later[-1].sequence}" + (f" ({later[-1].label})" if later[-1].label else ""),
            ).at(medium=drive.name)
        ident = source_identity(source, os.fstat(src.fd))
        choice = choose_volume(
            catalog, label.media_set_uuid, source, ident, name=options.volume_name, new_volume=options.new_volume
        )
        name, known, volume_uuid = choice.name, choice.known, choice.volume_uuid
        generation = max((g.number for g in known), default=0) + 1
        complete = [g for g in known if g.state == "complete"]
        prev = max(complete, key=lambda g: g.number) if complete else None
        bs = options.block_size
        if prev is not None and not options.full and prev.block_size != bs:
            if options.block_size_given:
                raise UsageError(
                    f"volume {name!r} was backed up with block size {prev.block_size}; an incremental needs the same",
                    hint="leave --block-size out, or add --full",
                )
            bs = prev.block_size
        incremental = prev is not None and not options.full
        prev_manifest = (
            manifest_at(catalog, load_chain(catalog, label.media_set_uuid, name, prev.number))
            if incremental and prev
            else None
        )
        prev_blocks = prev.nblocks if incremental and prev else 0
        size = src.size
        chunk_blocks = chunk_geometry(bs, record_size, options.chunk_size)
        pos0 = drive.position()
        result = BackupResult(
            medium=drive.name,
            volume=name,
            generation=generation,
            tape_file=pos0.file,
            volume_size=size,
            block_size=bs,
            record_size=record_size,
            compression=options.compress,
            new_medium=new,
            kind="incremental" if incremental else "full",
            base_generation=prev.number if incremental and prev else 0,
            warnings=list(choice.warnings),
            volume_uuid=str(volume_uuid),
            source_path=path_text(ident.path),
            source_real=path_text(ident.real_path),
        )
        genhdr = fmt.GenerationHeader(
            run_uuid=uuid.uuid4(),
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
            source=ident,
        )

        def next_medium(cur: fmt.Label) -> tuple[TapeDrive, fmt.Label]:
            media.release()
            d = media.blank_for(cur.media_set_uuid, cur.sequence + 1)
            if not d.writable:
                raise WriteProtectedError("the next medium is write-protected").at(medium=d.name)
            lab = fmt.Label(
                medium_uuid=uuid.uuid4(),
                media_set_uuid=cur.media_set_uuid,
                sequence=cur.sequence + 1,
                record_size=cur.record_size,
                created=int(clock()),
                text=media.loaded_barcode() or "",
            )
            d.rewind()
            d.write_record(fmt.encode_label(lab))
            d.write_filemark()
            catalog.record_medium(lab, d.name)
            return d, lab

        writer: _ChunkWriter | None = None
        complete_gen = False
        nblocks = -(-size // bs)
        block_id = 0
        try:
            writer = _ChunkWriter(
                genhdr=genhdr,
                record_size=record_size,
                compress=options.compress == "zstd",
                result=result,
                catalog=catalog,
                gen_id=0,
                next_medium=next_medium,
                can_continue=lambda: media.can_change,
            )
            writer.verify = options.verify
            writer.gen_id = catalog.begin_generation(
                genhdr, medium_uuid=label.medium_uuid, tape_file=pos0.file, logical=pos0.logical
            )
            status = writer.open_part(drive, label, 0)
            writer.pending_span = status is WriteStatus.EARLY_WARNING
            progress.start(f"backup {name}", size)
            zero_digest = bytes(DIGEST_LEN)
            block_digest = fmt.block_digest
            is_zero = fmt.is_zero
            # a reader thread fills the next windows while this one is digested, packed and written
            reader = ReadAhead(src.readinto_at, size, chunk_blocks * bs)
            for offset, window, base, got in reader:
                if writer.stopped:
                    reader.close()
                    break
                want = min(chunk_blocks * bs, size - offset)
                if got != want:
                    now = src.current_size()
                    raise SourceError(
                        f"source {source} shrank during the backup: expected {size} bytes, the read at byte "
                        f"{offset + got} found its end" + (f" (it now holds {now} bytes)" if now is not None else "")
                    )
                wview = memoryview(window)
                end = base + got
                count = -(-got // bs)
                if got and is_zero(window, base, got):  # a whole window of zeros (a hole, free space)
                    if prev_manifest is None or block_id >= prev_blocks:
                        writer.add_zero_run(block_id, count)
                    elif block_id + count <= prev_blocks and is_zero(
                        prev_manifest, block_id * DIGEST_LEN, count * DIGEST_LEN
                    ):
                        result.unchanged_blocks += count  # zero before too
                    else:
                        count = 0  # zero now, not all zero before: block by block below
                    if count:
                        block_id += count
                        progress.advance(got)
                        continue
                for o in range(base, end, bs):
                    n = bs if o + bs <= end else end - o
                    if is_zero(window, o, n):
                        if prev_manifest is None or block_id >= prev_blocks:
                            writer.add(block_id, None)
                        else:
                            d0 = block_id * DIGEST_LEN
                            if prev_manifest[d0 : d0 + DIGEST_LEN] != zero_digest:
                                writer.add(block_id, None)
                            else:
                                result.unchanged_blocks += 1
                    else:
                        blk = wview[o : o + n]
                        dg = block_digest(blk)
                        if prev_manifest is not None and block_id < prev_blocks:
                            d0 = block_id * DIGEST_LEN
                            if prev_manifest[d0 : d0 + DIGEST_LEN] == dg:
                                result.unchanged_blocks += 1
                                block_id += 1
                                continue
                        writer.add(block_id, blk, dg)
                    block_id += 1
                    if writer.stopped:
                        break
                progress.advance(got)
                if writer.stopped:
                    reader.close()
                    break
            if not writer.stopped:
                _check_source_size(src, source, size, result)
            writer.flush()
            if not writer.stopped:
                writer.close_part(complete=True, continues=False)
                complete_gen = True
        except SourceError as e:
            # the source failed (shrank, EIO): close the tape file cleanly, trailer marked
            # incomplete, so the medium stays readable and the catalog row says incomplete
            if writer is not None and writer.part is not None and not writer.stopped:
                writer.verify = False
                try:
                    writer.close_part(complete=False, continues=False)
                    writer.stopped = True  # close_part recorded it as incomplete
                except TapearcError:
                    pass  # the medium failed too: the finally below marks the row incomplete
            if e.hint is None:
                e.hint = (
                    f"generation {generation} of volume {name} is marked incomplete (its first {result.chunks} "
                    "chunks are on the medium); back up a quiet (unmounted or snapshotted) volume"
                )
            raise
        except MediumFullError as e:
            _close_after_full(media.drive)
            raise MediumFullError(
                f"medium filled up while writing generation {generation} of volume {name} "
                f"(after {result.chunks} chunks, {result.raw_bytes} bytes) and tapearc could not close it cleanly "
                f"({e.message}); the medium is readable up to the last complete chunk",
                hint="use a medium with an early-warning zone, or a larger one",
            ).at(medium=drive.name, tape_file=pos0.file) from None
        finally:
            progress.finish()
            if writer is not None and writer.gen_id and not complete_gen:
                if writer.stopped or writer.recorded:
                    pass  # close_part recorded its state (incomplete, or complete on the medium)
                else:
                    catalog.finish_generation(
                        writer.gen_id,
                        state="incomplete",
                        medium_uuid=(writer.part.label.medium_uuid if writer.part else label.medium_uuid),
                        tape_file=(writer.part.tape_file if writer.part else pos0.file),
                        closed=False,
                        has_trailer=False,
                    )
        result.seconds = time.monotonic() - started
        result.complete = complete_gen
        result.medium = writer.part.drive.name if writer.part else drive.name
        if not complete_gen:
            first_missing = writer.dropped_from if writer.dropped_from is not None else block_id
            raise MediumFullError(
                f"medium reached its end while writing generation {generation} of volume {name}, and no next medium "
                f"can be loaded: blocks {first_missing}-{nblocks - 1} are not on it; generation {generation} is marked "
                f"incomplete; the medium is intact and readable up to the last chunk",
                hint="give --changer (a library, mtx, serial or operator) to continue on the next medium of the set",
                blocks=(first_missing, nblocks - 1),
            ).at(medium=result.medium, tape_file=writer.part.tape_file if writer.part else pos0.file)
        return result


def _check_source_size(src: SourceVolume, source: str, size: int, result: BackupResult) -> None:
    """After the last read: a source that grew (or shrank behind the reads) is backed up for the
    size it had at the start, with a warning (docs: SourceVolume)."""
    now = src.current_size()
    if now is None or now == size:
        return
    if now > size:
        result.warnings.append(
            f"source {source} grew during the backup: bytes after {size} were not backed up (it now holds {now} bytes)"
        )
    else:
        result.warnings.append(
            f"source {source} shrank to {now} bytes during the backup, after its {size} bytes were read: "
            f"the generation holds the {size} bytes read"
        )


def sync_catalog(drive: TapeDrive, catalog: Catalog, label: fmt.Label, gens: list[GenerationFile]) -> None:
    """Bring the catalog up to date with the medium, then go back to end of data."""
    if _sync(drive, catalog, label, gens):
        drive.seek_end_of_data()


def _close_after_full(drive: TapeDrive | None) -> None:
    """After an unexpected physical end: try to leave a filemark so the tape file ends cleanly."""
    if drive is None:
        return
    try:
        drive.write_filemark()
    except TapearcError:
        pass
