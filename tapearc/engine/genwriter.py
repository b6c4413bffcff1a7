"""The generation writer: packs classified blocks into chunks and writes them as the parts of one
generation -- one tape file per medium, spanning to the next medium of the set when one fills
up -- and keeps the catalog's rows for the generation, its tape files and chunks in step.

A chunk is written when it holds ``chunk_blocks`` data blocks or its mapping reaches
``RUNS_PER_CHUNK_HEADER`` runs, so memory stays at a few chunk sizes whatever the volume's size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import zstandard

from tapearc import format as fmt
from tapearc import interrupts
from tapearc.catalog.db import Catalog
from tapearc.engine.backup_result import BackupResult
from tapearc.engine.encryption import ChunkSealer
from tapearc.engine.genplan import HEADER_RESERVE
from tapearc.engine.labeling import label_next_medium
from tapearc.engine.layout import write_item, write_stream
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.spool import SpoolStore
from tapearc.engine.verify import verify_tape_file
from tapearc.errors import DamagedDataError, MediumFullError
from tapearc.format.constants import RUN_LEN
from tapearc.format.mapping import MAX_RUN_COUNT
from tapearc.media.base import TapeDrive, WriteStatus

#: Runs one chunk header takes: what fits in the header reserve after the header's fixed part.
RUNS_PER_CHUNK_HEADER = (HEADER_RESERVE - 256) // RUN_LEN
ZSTD_LEVEL = 3


@dataclass(slots=True)
class _Part:
    """The generation's part on one medium."""

    drive: TapeDrive
    label: fmt.Label
    number: int
    tape_file: int
    logical: int  # logical position of the part's first record (its generation header)
    builder: fmt.TrailerBuilder
    header: fmt.GenerationHeader  # the generation header of this part (what chunks are sealed for)


class GenerationWriter:
    """Packs blocks into chunks and writes them to the current part; spans media on demand; keeps
    the catalog rows of the generation (``gen_id``, set when the first part opens)."""

    def __init__(
        self,
        *,
        genhdr: fmt.GenerationHeader,
        result: BackupResult,
        catalog: Catalog,
        media: MediaSource,
        verify: bool = False,
        clock: Callable[[], float] = time.time,
        seal: ChunkSealer | None = None,
        key_record: fmt.WrappedKey | None = None,
        digest_alg: int = fmt.DIGEST_BLAKE3_128,
    ) -> None:
        """``seal``: the seal of an encrypted generation (engine.encryption.ChunkSealer), None:
        plain; ``key_record``: the set's key record, written after the label of each next
        medium; ``digest_alg``: the trailers' digest algorithm (2: keyed, encrypted)."""
        self.genhdr = genhdr
        self.seal = seal
        self.key_record = key_record
        self.digest_alg = digest_alg
        self.record_size = genhdr.record_size
        self.chunk_blocks = genhdr.chunk_blocks
        compress = genhdr.compression == fmt.Compression.ZSTD
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if compress else None
        self.result = result
        self.catalog = catalog
        self.media = media
        self.clock = clock
        self.gen_id = 0  # the catalog row of the generation, once the first part is open
        self.part: _Part | None = None
        self.seq = 0
        self.stopped = False  # the medium is full and there is no next one
        self.verify = verify
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

    def start(self, drive: TapeDrive, label: fmt.Label) -> None:
        """Open the generation's first part on ``drive`` (an early warning there: the first chunk
        goes on the next medium)."""
        self.pending_span = self.open_part(drive, label, 0) is WriteStatus.EARLY_WARNING

    def close_incomplete(self) -> None:
        """The source failed: close the open part as incomplete (trailer and end record, no
        read-back check), recording it so in the catalog, and write nothing more."""
        if self.part is None or self.stopped:
            return
        self.verify = False
        self.close_part(complete=False, continues=False)
        self.stopped = True

    def open_part(self, drive: TapeDrive, label: fmt.Label, number: int) -> WriteStatus:
        pos = drive.position()
        hdr = replace(self.genhdr, medium_uuid=label.medium_uuid, part=number)
        self.gen_id = self.catalog.begin_generation(
            hdr, medium_uuid=label.medium_uuid, tape_file=pos.file, logical=pos.logical
        )
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
                digest_alg=self.digest_alg,
            ),
            hdr,
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

    def record_unfinished(self, label: fmt.Label, tape_file: int) -> None:
        """The backup ended without closing its part (an error on the way): the catalog row says
        incomplete, on the part's medium (or ``label``'s, at ``tape_file``, before any part)."""
        p = self.part
        self.catalog.finish_generation(
            self.gen_id,
            state="incomplete",
            medium_uuid=p.label.medium_uuid if p else label.medium_uuid,
            tape_file=p.tape_file if p else tape_file,
            closed=False,
            has_trailer=False,
        )

    def _verify_part(self, p: _Part) -> None:
        """Read the part's tape file back (every CRC and digest) before going on."""
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
        if not self.media.can_change:
            self.close_part(complete=False, continues=False)
            self.stopped = True
            return False
        self.close_part(complete=False, continues=True)
        self.pending_span = False
        drive, label = label_next_medium(self.media, self.catalog, p.label, self.clock, self.key_record)
        if self.open_part(drive, label, p.number + 1) is WriteStatus.EARLY_WARNING:
            self.pending_span = True
        if pending is not None:
            header, item, digests = self._reseal(p.header, pending)
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
        if self.data_count >= self.chunk_blocks or len(runs) >= RUNS_PER_CHUNK_HEADER:
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
            if len(runs) >= RUNS_PER_CHUNK_HEADER:
                self.flush()
                runs = self.runs

    def flush(self) -> None:
        if not self.runs or self.stopped:
            return
        # the payload sits in self.buf after HEADER_RESERVE bytes: the header is written just before
        # it, so an uncompressed chunk goes to the medium without being copied again
        if self.pending_span and not self._span(None):  # before sealing: the chunk is sealed for the next part
            self.dropped_from = self.runs[0][0]
            self._reset()
            return
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
        if self.seal is not None:
            header, stored = self._sealed(header, stored)
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
        # False: the physical end inside the chunk; the part was rewound to the chunk's start
        if not self._write_chunk(header, item, digests) and not self._span((header, item, digests)):
            self.dropped_from = first_block

    def _sealed(self, header: fmt.ChunkHeader, inner: bytes | memoryview) -> tuple[fmt.ChunkHeader, bytes]:
        """The chunk sealed for the part it goes into (an encrypted generation)."""
        assert self.seal is not None
        gen = self.part.header if self.part is not None else self.genhdr
        base = replace(header, stored_len=len(inner), payload_crc=0)
        stored, extra = self.seal(gen, base, inner)
        sealed = replace(base, flags=base.flags | extra, stored_len=len(stored), payload_crc=fmt.crc32c(stored))
        return sealed, bytes(stored)

    def _reseal(
        self, old: fmt.GenerationHeader, pending: tuple[fmt.ChunkHeader, bytes | memoryview, bytes]
    ) -> tuple[fmt.ChunkHeader, bytes | memoryview, bytes]:
        """A chunk sealed for the part that ended, sealed again for the new part (the associated
        data binds the part)."""
        header, item, digests = pending
        if self.seal is None or self.part is None:
            return pending
        stored = memoryview(item)[len(item) - header.stored_len :]
        cipher = self.seal.cipher(old.run_uuid)
        new_header, hb, new_stored = fmt.reseal_chunk(old, self.part.header, header, stored, cipher)
        return new_header, hb + bytes(new_stored), digests

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
