"""The generation writer: packs classified blocks into chunks and writes them as the parts of one
generation -- one tape file per medium, spanning to the next medium of the set when one fills
up -- and keeps the catalog's rows for the generation, its tape files and chunks in step.

A chunk is written when it holds ``chunk_blocks`` data blocks or its mapping reaches
``RUNS_PER_CHUNK_HEADER`` runs, so memory stays at a few chunk sizes whatever the volume's size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from tapearc import format as fmt
from tapearc import interrupts, settings
from tapearc.catalog.db import Catalog
from tapearc.engine.backup_result import BackupResult
from tapearc.engine.encryption import ChunkSealer
from tapearc.engine.genplan import HEADER_RESERVE
from tapearc.engine.labeling import label_next_medium
from tapearc.engine.layout import write_item, write_stream
from tapearc.engine.mediasource import MediaSource, PendingGeneration
from tapearc.engine.packers import ChunkJob, Packers, SealFn, identity_seal, seal_chunk, worker_count
from tapearc.engine.spool import SpoolStore
from tapearc.errors import DamagedDataError, MediumFullError
from tapearc.format.constants import RUN_LEN
from tapearc.format.mapping import MAX_RUN_COUNT
from tapearc.media.base import TapeDrive, WriteStatus

#: Runs one chunk header takes: what fits in the header reserve after the header's fixed part.
RUNS_PER_CHUNK_HEADER = (HEADER_RESERVE - 256) // RUN_LEN


log = logging.getLogger(__name__)


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
        seal: SealFn = identity_seal,
        workers: int | None = None,
        key_record: fmt.WrappedKey | None = None,
        digest_alg: int = fmt.DIGEST_BLAKE3_128,
    ) -> None:
        """``seal``: the seal hook (engine.packers.SealFn) every chunk's inner payload goes
        through (engine.encryption.ChunkSealer for an encrypted generation); ``workers``:
        packing threads (default: one per CPU, at most 4; none with ``TAPEARC_PIPELINE=0``: each
        chunk is packed in the caller's thread); ``key_record``: the set's key record, written
        after the label of each next medium (encrypted); ``digest_alg``: the trailers' digest
        algorithm (2: keyed, encrypted)."""
        self.genhdr = genhdr
        self.seal = seal
        self.key_record = key_record
        self.digest_alg = digest_alg
        self.record_size = genhdr.record_size
        self.chunk_blocks = genhdr.chunk_blocks
        if workers is None:
            workers = worker_count() if settings.pipeline() else 0
        self.packers = Packers(
            compress=genhdr.compression == fmt.Compression.ZSTD,
            seal=seal,
            buffer_size=HEADER_RESERVE + self.chunk_blocks * genhdr.block_size,
            workers=workers,
        )
        self.result = result
        self.catalog = catalog
        self.media = media
        self.clock = clock
        self.gen_id = 0  # the catalog row of the generation, once the first part is open
        self.part: _Part | None = None
        self.seq = 0  # chunks written
        self.next_seq = 0  # chunks handed to the packers
        self.stopped = False  # the medium is full and there is no next one
        self.verify = verify
        self.pending_span = False  # early warning seen: the next chunk goes on the next medium
        self.buf = self.packers.buffer()
        self.dropped_from: int | None = None  # first block of a chunk that could not be written
        self.recorded = False  # close_part wrote the generation's final catalog state
        self.eager = False  # write the next packed chunk at once: the drive's buffer is empty
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
            self.packers.close()
            return
        try:
            self._drain()  # the chunks already read go on the medium, as on the plain path
        finally:
            self.packers.close()
        if self.stopped:
            return
        self.verify = False
        self.close_part(complete=False, continues=False)
        self.stopped = True

    def open_part(self, drive: TapeDrive, label: fmt.Label, number: int) -> WriteStatus:
        self.media.writing(label)  # its lease (docs/leases.md), before anything is written
        self.eager = True  # a part starts after a filemark or a medium change: nothing in the drive's buffer
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
        if not continues:
            self.packers.close()  # the generation ends here: no chunk is written after this
        p = self.part
        assert p is not None
        pos = p.drive.position()
        header, total, pieces = p.builder.finish_pieces(complete=complete, continues=continues)
        _, nrec = write_stream(p.drive, header, pieces, self.record_size)
        p.builder.close()
        end = fmt.trailer_end_from_header(header, total, trailer_record=pos.record, record_size=self.record_size)

        gen_id = self.gen_id

        def record() -> None:
            self.catalog.finish_generation(
                gen_id,
                state="auto" if complete else ("writing" if continues else "incomplete"),
                final=complete,
                continues=continues,
                medium_uuid=p.label.medium_uuid,
                tape_file=p.tape_file,
                closed=True,
                has_trailer=True,
            )
            self.recorded = not continues

        self._end_part(p, fmt.encode_trailer_end(end), nrec, record, complete)
        if self.verify:
            try:
                self._verify_part(p)
            except KeyboardInterrupt:
                with interrupts.deferred():
                    record()  # the medium holds it whole; only the read-back check was cut short
                interrupts.note("its read-back check (--verify) did not finish")
                raise
            record()

    def _end_part(self, p: _Part, end: bytes, nrec: int, record: Callable[[], None], complete: bool) -> None:
        """The part's end record and filemark, then its catalog row (not yet with --verify).

        Ctrl-C waits while they are written: once the end record is on the medium the generation
        is complete there, and the catalog must say so (a Ctrl-C then ends the command with a
        message saying it is complete). A job's generation (``media.defer_sync``) ends with an
        immediate filemark and is recorded complete once the drive has written it out
        (MediaSource.settle): the drive streams on into the job's next volume instead of
        stopping at every generation to empty its buffer."""
        defer = complete and self.media.defer_sync and not self.verify
        what = f"generation {self.genhdr.generation} of volume {self.genhdr.volume_name!r}"
        where = f"medium {p.drive.name} (tape file {p.tape_file})"
        note = f"{what} is written to {where}; it is recorded complete once the drive has written it out"
        log.info(
            "%s ends on %s: %d records%s",
            what,
            where,
            self.result.records + nrec + 1,
            "" if complete else " (incomplete)" if not defer else "; complete once the drive has written it out",
        )
        with interrupts.deferred():
            p.drive.write_record(end)
            if defer:
                interrupts.note(note)
            elif complete:
                interrupts.note(f"{what} is complete on {where}")
            if defer:
                p.drive.write_filemark(immediate=True)
            else:
                p.drive.write_filemark()
            self.result.records += nrec + 1
            if defer:
                g = self.genhdr
                pending = PendingGeneration(
                    self.gen_id, g.volume_name, g.generation, f"{what} on {where}", record, self._abandon(p), note
                )
                self.media.pending.append(pending)
                self.recorded = True
            elif not self.verify:
                record()

    def _abandon(self, p: _Part) -> Callable[[], None]:
        """A deferred generation whose sync failed: incomplete in the catalog (closed, with its
        trailer: a scan of the medium finds whether it is whole there)."""
        gen_id = self.gen_id

        def abandon() -> None:
            self.catalog.finish_generation(
                gen_id,
                state="incomplete",
                medium_uuid=p.label.medium_uuid,
                tape_file=p.tape_file,
                closed=True,
                has_trailer=True,
            )

        return abandon

    def record_unfinished(self, label: fmt.Label, tape_file: int) -> None:
        """The backup ended without closing its part (an error on the way): the catalog row says
        incomplete, on the part's medium (or ``label``'s, at ``tape_file``, before any part)."""
        self.packers.close()
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
        from tapearc.engine.verify import verify_tape_file  # (--verify only: not imported by every backup)

        p.drive.locate(p.logical)
        key = self.seal.key if isinstance(self.seal, ChunkSealer) else None  # encrypted: tags and keyed digests
        rep, _ = verify_tape_file(p.drive, p.label, key=key)
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

    def _span(self, pending: ChunkJob | None) -> bool:
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
            self._seal_for_part(pending)
            if not self._write_chunk(pending):
                raise MediumFullError(
                    f"chunk {pending.seq} ({len(pending.item)} bytes) does not fit even on a fresh medium: the media "
                    "are too small"
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
            self._submit()

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
                self._submit()
                runs = self.runs

    def flush(self) -> None:
        """Pack and write the chunk being filled and every chunk still in flight."""
        self._submit()
        self._drain()

    def _submit(self) -> None:
        """Hand the chunk being filled to the packers (its payload sits in self.buf after
        HEADER_RESERVE bytes) and write the chunks packed by now, in order; waits for the oldest
        when ``depth`` chunks are in flight. Memory: the packers' buffers, reused."""
        if not self.runs or self.stopped:
            return
        job = ChunkJob(
            buf=self.buf,
            plen=self.plen,
            runs=tuple(fmt.Run(r[0], r[1], fmt.RunKind.ZERO if r[2] else fmt.RunKind.DATA) for r in self.runs),
            digests=bytes(self.digests),
            seq=self.next_seq,
            first_block=self.runs[0][0],
        )
        self.next_seq += 1
        self._reset()
        pk = self.packers
        try:
            pk.submit(job, self._part_header())
            # a part's first chunk goes to the drive as soon as it is packed, not when the next
            # one is submitted: the drive's buffer is empty at a part's start (a synchronous
            # filemark drained it), and every millisecond until the first record is a stop
            while pk.pending() and (pk.full() or pk.ready() or self.eager):
                self.eager = False
                self._write_job(pk.take())
        except BaseException:
            pk.close()
            raise
        self.buf = pk.buffer()

    def _drain(self) -> None:
        """Write every chunk in flight, in order."""
        pk = self.packers
        try:
            while pk.pending():
                self._write_job(pk.take())
        except BaseException:
            pk.close()
            raise

    def _part_header(self) -> fmt.GenerationHeader:
        return self.part.header if self.part is not None else self.genhdr

    def _seal_for_part(self, job: ChunkJob) -> None:
        """A chunk sealed for another part than the one it goes into is sealed again (the
        associated data binds the part), from the inner payload it kept."""
        gen = self._part_header()
        if job.gen is not gen:
            seal_chunk(job, gen, self.seal)

    def _write_job(self, job: ChunkJob) -> None:
        """Write one packed chunk (spanning media when needed); its buffer is free afterwards."""
        try:
            if self.stopped:
                return
            if self.pending_span and not self._span(None):
                self.dropped_from = job.first_block
                return
            self._seal_for_part(job)
            # False: the physical end inside the chunk; the part was rewound to the chunk's start
            if not self._write_chunk(job) and not self._span(job):
                self.dropped_from = job.first_block
        finally:
            self.packers.release(job)

    def _write_chunk(self, job: ChunkJob) -> bool:
        """Write one chunk into the current part; False if the medium ended inside it (then the
        medium is positioned back at the chunk's start). Spans media after an early warning."""
        self.media.check_leases()  # a lost lease stops the writer before the next chunk
        p = self.part
        assert p is not None and job.header is not None
        header, item, digests = job.header, job.item, job.digests
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
        log.debug(
            "chunk %d: %d data and %d zero blocks, %d bytes stored, records %d-%d of tape file %d",
            header.seq,
            header.data_blocks,
            header.zero_blocks,
            header.stored_len,
            pos.record,
            pos.record + nrec - 1,
            p.tape_file,
        )
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
