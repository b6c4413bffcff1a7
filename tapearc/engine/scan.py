"""Rebuild the catalog from the media alone.

Default (trailer scan): for each generation tape file, read its generation header, space over
the filemark, read the end record just before it, LOCATE to the trailer and read it: the trailer
holds the generation's complete mapping and block digests. The chunks' data is never read.

Deep scan (``--deep``, and the fallback for a tape file whose trailer or end record is missing
or damaged): read every chunk of the tape file, check its CRCs and compute the digests of its
blocks. A generation without a trailer (an interrupted backup) is recorded ``incomplete`` with
the chunks that were complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine.layout import (
    MAGIC_CHUNK,
    MAGIC_TRAILER,
    GenerationFile,
    read_item,
    read_label,
)
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.tapefiles import (
    FileRecords,
    TapeFile,
    read_file_item,
    walk_tape_files,
)
from tapearc.errors import FormatError, TapearcError
from tapearc.media.base import Mark, TapeDrive

if TYPE_CHECKING:
    from tapearc.engine.mediasource import MediaSource

DIGEST_LEN = fmt.DIGEST_LEN
MAX_READ_ERRORS = 16


@dataclass(slots=True)
class FileScan:
    tape_file: int
    volume: str
    generation: int
    state: str  # complete | incomplete
    method: str  # trailer | deep
    chunks: int
    problem: str | None = None


@dataclass(slots=True)
class ScanResult:
    medium: str
    medium_uuid: str
    media_set: str
    sequence: int
    files: list[FileScan] = field(default_factory=list)
    tape_files: list[dict[str, object]] = field(default_factory=list)  # every tape file after the label

    @property
    def warnings(self) -> list[str]:
        """One line per tape file that is interrupted, damaged or foreign, or whose generation
        could not be read as it was written."""
        out = []
        for d in self.tape_files:
            if d["kind"] != "generation" or not d["closed"]:
                what = "interrupted" if d["interrupted"] else str(d["kind"])
                out.append(
                    f"medium {self.medium}, tape file {d['tape_file']}: {what} tape file"
                    + (f" ({d['problem']})" if d["problem"] else "")
                )
        for f in self.files:
            if f.problem is not None and f.state != "incomplete":
                out.append(
                    f"medium {self.medium}, tape file {f.tape_file}: volume {f.volume!r} generation {f.generation} is {f.state}: {f.problem}"
                )
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "medium": self.medium,
            "medium_uuid": self.medium_uuid,
            "media_set": self.media_set,
            "sequence": self.sequence,
            "tape_files": self.tape_files,
            "warnings": self.warnings,
            "generations": [
                {
                    "tape_file": f.tape_file,
                    "volume": f.volume,
                    "generation": f.generation,
                    "state": f.state,
                    "method": f.method,
                    "chunks": f.chunks,
                    "problem": f.problem,
                }
                for f in self.files
            ],
        }


def scan_medium(
    drive: TapeDrive, catalog: Catalog, *, deep: bool = False, progress: Progress | None = None
) -> ScanResult:
    """Forget what the catalog knew of this medium's tape files and learn them anew from it."""
    progress = progress or NoProgress()
    label = read_label(drive)
    catalog.record_medium(label, drive.name)
    catalog.forget_medium_files(label.medium_uuid)
    walked = list(walk_tape_files(drive, label=False))
    gens = _generation_files(walked)
    result = ScanResult(drive.name, str(label.medium_uuid), str(label.media_set_uuid), label.sequence)
    result.tape_files = [tf.to_json() for tf in walked]
    progress.start(f"scan {drive.name}", len(gens))
    try:
        for gf in gens:
            fs = import_generation_file(drive, catalog, label, gf, deep=deep, last=gf is gens[-1])
            result.files.append(fs)
            for d in result.tape_files:
                if d["tape_file"] == gf.tape_file:
                    d["state"] = fs.state
            progress.advance(1)
    finally:
        progress.finish()
    catalog.mark_stale_writing(label.media_set_uuid)
    return result


def import_generation_file(
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gf: GenerationFile, *, deep: bool = False, last: bool = False
) -> FileScan:
    """Record one generation tape file in the catalog, from its trailer or (deep) its chunks."""
    problem = None
    if not deep and gf.closed:
        try:
            got = _read_trailer_from_end(drive, gf)
        except TapearcError as e:
            got = None
            problem = f"trailer unreadable ({e}); read the chunks instead"
        if got is not None:
            trailer, _ = got
            _record_from_trailer(catalog, label, gf, trailer)
            return FileScan(
                gf.tape_file,
                gf.header.volume_name,
                gf.header.generation,
                _state_word(trailer.complete, trailer.continues),
                "trailer",
                trailer.chunk_count,
                problem,
            )
        if problem is None:
            problem = "no trailer end record; read the chunks instead"
    return _deep_file(drive, catalog, label, gf, problem, last=last)


def _read_trailer_from_end(drive: TapeDrive, gf: GenerationFile) -> tuple[fmt.Trailer, int] | None:
    """Space to the end of the tape file, read the end record and then the trailer."""
    drive.locate(gf.logical)
    if drive.space_files(1) != 1:
        return None
    after_fm = drive.position().logical
    end_pos = after_fm - 2
    if end_pos <= gf.logical:
        return None
    drive.locate(end_pos)
    item = read_item(drive)
    if isinstance(item, Mark) or item.magic != fmt.TRAILER_END_MAGIC:
        return None
    end = fmt.decode_trailer_end(item.data)
    fmt.check_same_generation(gf.header, end)
    drive.locate(gf.logical + end.trailer_record)
    titem = read_item(drive)
    if isinstance(titem, Mark) or titem.magic != MAGIC_TRAILER:
        return None
    fmt.check_trailer_end(end, titem.data)
    trailer = fmt.decode_trailer(titem.data)
    fmt.check_same_generation(gf.header, trailer)
    return trailer, end.trailer_record


def _record_from_trailer(catalog: Catalog, label: fmt.Label, gf: GenerationFile, trailer: fmt.Trailer) -> None:
    gen_id = catalog.begin_generation(
        gf.header, medium_uuid=label.medium_uuid, tape_file=gf.tape_file, logical=gf.logical, source="trailer"
    )
    entries = []
    off = 0
    for e in trailer.entries:
        nd = sum(r.count for r in e.runs if not r.is_zero) * DIGEST_LEN
        entries.append((e, trailer.digests[off : off + nd]))
        off += nd
    catalog.add_chunks(gen_id, label.medium_uuid, gf.tape_file, gf.logical, entries)
    catalog.finish_generation(
        gen_id,
        state="auto",
        final=trailer.complete,
        continues=trailer.continues,
        medium_uuid=label.medium_uuid,
        tape_file=gf.tape_file,
        closed=True,
        has_trailer=True,
    )


def _deep_file(
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gf: GenerationFile, note: str | None, *, last: bool = False
) -> FileScan:
    """Read the tape file's chunks and record them (their mapping and digests, from the chunks
    themselves). The generation is complete when its trailer says so and every chunk it lists
    is known; when the trailer is damaged, from the chunks alone (rebuilt index) when the
    trailer's header totals, or the end record and the volume's block count, show that every
    chunk was read. A generation whose backup got to its trailer or end record but cannot be
    shown complete is ``damaged`` (a plain restore then names it instead of silently restoring
    an older one); one without either is ``incomplete`` (an interrupted backup). ``last``: no
    tape file follows this one on the medium."""
    hdr = gf.header
    drive.locate(gf.logical)
    recs = FileRecords(drive)
    where: dict[str, Any] = {"medium": drive.name, "tape_file": gf.tape_file}
    record = 0
    _, n = read_file_item(recs, record=0, logical=gf.logical, **where)  # the generation header, known already
    record += n
    gen_id = catalog.begin_generation(
        hdr, medium_uuid=label.medium_uuid, tape_file=gf.tape_file, logical=gf.logical, source="deep"
    )
    expect: int | None = 0 if hdr.part == 0 else None  # a later part starts where the last one stopped
    trailer: fmt.Trailer | None = None
    summary: fmt.TrailerSummary | None = None  # the trailer's header, when only its body is damaged
    trailer_seen = False  # a trailer item (maybe damaged) was found: the backup got to its end
    trailer_record: int | None = None
    end: fmt.TrailerEnd | None = None
    after_chunks = record  # the record after the last chunk read intact
    added: set[int] = set()
    runs: list[tuple[int, int]] = []  # (first, count) of every run of the chunks read
    totals = [0, 0, 0, 0]  # data blocks, zero blocks, raw bytes, stored bytes
    chunk_problem: str | None = None  # a chunk could not be read: damage in the data
    other: str | None = None  # damage outside the chunks (trailer, end record, stray items)
    ended: Mark | None = None
    in_damage = False  # inside a run of records that make no item
    errors = 0  # read errors in a row
    while True:
        try:
            got, n = read_file_item(recs, record=record, logical=gf.logical, **where)
        except TapearcError as e:
            # go on with the next record: items start on record boundaries, so the records left
            # of a damaged item are strays until the next item (and the trailer may be intact)
            sizes = e.details.get("sizes")
            magic = e.details.get("magic")
            m7 = magic[:7] if isinstance(magic, bytes) else b""
            if m7 in (MAGIC_TRAILER[:7], fmt.TRAILER_END_MAGIC[:7]):  # its framing is damaged
                trailer_seen = True
                if trailer_record is None and m7 == MAGIC_TRAILER[:7]:
                    trailer_record = record
                other = _join(other, f"trailer or end record damaged ({e})")
            else:
                if not in_damage:
                    chunk_problem = _join(chunk_problem, str(e))
                expect = None  # a chunk was lost here: the next one read says where we are
            in_damage = True
            if recs.mark is not None:
                ended = recs.mark
                break
            read_error = not isinstance(e, FormatError)
            errors = errors + 1 if read_error else 0
            if errors > MAX_READ_ERRORS:  # a device that keeps failing: give up on this tape file
                ended = Mark.END_OF_DATA
                break
            record += max(1, (len(sizes) if isinstance(sizes, list) else 0) + read_error)
            continue
        in_damage = False
        errors = 0
        if isinstance(got, Mark):
            ended = got
            break
        item = got
        record += n
        if item.magic == MAGIC_TRAILER:
            trailer_seen = True
            trailer_record = item.record
            try:
                trailer = fmt.decode_trailer(item.data)
                fmt.check_same_generation(hdr, trailer)
            except TapearcError as e:
                trailer = None
                other = _join(other, f"trailer damaged ({e})")
                try:
                    summary = fmt.decode_trailer_header(item.data)
                    if (summary.run_uuid, summary.generation) != (hdr.run_uuid, hdr.generation):
                        summary = None
                except TapearcError:
                    summary = None
            continue
        if item.magic == fmt.TRAILER_END_MAGIC:
            trailer_seen = True
            try:
                end = fmt.decode_trailer_end(item.data)
                fmt.check_same_generation(hdr, end)
            except TapearcError as e:
                end = None
                other = _join(other, f"end record damaged ({e})")
            continue
        if item.magic != MAGIC_CHUNK:
            other = _join(other, f"unexpected item {item.magic!r} at record {item.record}")
            continue
        try:
            ch, payload = fmt.decode_chunk(item.data)
            fmt.check_same_generation(hdr, ch, seq=expect)
            raw = fmt.unpack_payload(ch, payload)
        except TapearcError as e:
            chunk_problem = _join(chunk_problem, f"chunk at record {item.record} skipped: {e}")
            expect = None if expect is None else expect + 1
            continue
        entry = fmt.ChunkIndexEntry.from_chunk(ch, record=item.record, record_count=item.record_count)
        catalog.add_chunks(
            gen_id,
            label.medium_uuid,
            gf.tape_file,
            gf.logical,
            [(entry, fmt.payload_digests(ch.runs, raw, ch.block_size, ch.volume_size))],
        )
        added.add(ch.seq)
        runs.extend((r.first, r.count) for r in ch.runs)
        totals[0] += sum(r.count for r in ch.runs if not r.is_zero)
        totals[1] += sum(r.count for r in ch.runs if r.is_zero)
        totals[2] += ch.raw_len
        totals[3] += ch.stored_len
        after_chunks = record
        expect = ch.seq + 1
    closed = ended is Mark.FILEMARK
    if closed and end is None:
        end, why = _end_record_before_filemark(drive, gf)
        if end is not None:
            trailer_seen = True
        elif why is not None and trailer_seen:
            other = _join(other, why)
    problem: str | None = None
    complete = False
    continues = False
    how = ""
    if not closed and not (
        trailer is not None and trailer.complete and chunk_problem is None and len(added) == trailer.chunk_count
    ):
        problem = "the medium ends inside this tape file (interrupted backup)"
    elif not closed:
        # the medium ends after the whole trailer (in or after the end record: a backup killed
        # while closing the tape file, or a cut image); every chunk is there: the generation is
        # complete, and said to be so (never quietly replaced by the previous one)
        assert trailer is not None
        complete = True
        problem = (
            "the medium ends after this tape file's trailer"
            + (" without an end record" if end is None else " without a filemark")
            + " (a backup interrupted while closing it, or a cut image); every chunk is there"
        )
    elif trailer is not None:
        # the trailer's index is the generation's: chunks that could not be read are known from it
        # (a restore finds their damage and says so)
        complete, continues = trailer.complete, trailer.continues
        missing = [e for e in _trailer_entries(trailer) if e[0].seq not in added]
        if missing:
            catalog.add_chunks(gen_id, label.medium_uuid, gf.tape_file, gf.logical, missing)
        if len(added) + len(missing) != trailer.chunk_count:
            complete = False
            problem = "trailer does not match the chunks read"
    elif trailer_seen and chunk_problem is None:
        if summary is not None:
            match = summary.chunk_count == len(added) and tuple(totals) == (
                summary.data_blocks,
                summary.zero_blocks,
                summary.raw_bytes,
                summary.stored_bytes,
            )
            if match:
                complete, continues = summary.complete, summary.continues
                how = "its index was rebuilt from the chunk headers (they match the trailer's totals)"
            else:
                problem = (
                    f"the chunks read ({len(added)}) do not match the trailer's totals ({summary.chunk_count} chunks)"
                )
        elif end is not None and trailer_record is not None and end.trailer_record == after_chunks == trailer_record:
            # every record up to the trailer is a chunk read intact
            if hdr.kind == fmt.GenerationKind.FULL and hdr.part == 0:
                complete = _covers(runs, -(-hdr.volume_size // hdr.block_size))
                how = "its index was rebuilt from the chunk headers (they map every block of the volume)"
                if not complete:
                    problem = "the chunks read do not map every block of the volume"
            elif not last:  # a part that continues on another medium is the last tape file of its medium
                complete = True
                how = "its index was rebuilt from the chunk headers (every record up to the trailer is a chunk)"
            else:
                problem = "whether the generation ends here or continues on another medium is unknown"
        else:
            problem = "the chunks read cannot be shown to be all of the generation's"
    # the backup got to closing the generation, but the trailer that would say what it holds is
    # unreadable (or disagrees with the chunks): damage, not an interrupted backup
    damaged = (
        closed
        and not complete
        and not continues
        and ((trailer is None and trailer_seen) or (trailer is not None and trailer.complete))
    )
    state = "damaged" if damaged else "auto"
    catalog.finish_generation(
        gen_id,
        state=state,
        final=complete,
        continues=continues,
        medium_uuid=label.medium_uuid,
        tape_file=gf.tape_file,
        closed=closed,
        has_trailer=trailer is not None or summary is not None,
    )
    text = None
    for part in (note, other, chunk_problem, problem, how or None):
        if part is not None:
            text = part if text is None else f"{text}; {part}"
    word = "damaged" if damaged else _state_word(complete, continues and chunk_problem is None)
    if damaged and text is not None:
        text = f"{text}; generation {hdr.generation} of volume {hdr.volume_name!r} cannot be restored from this medium"
    return FileScan(gf.tape_file, hdr.volume_name, hdr.generation, word, "deep", len(added), text)


def _trailer_entries(trailer: fmt.Trailer) -> list[tuple[fmt.ChunkIndexEntry, bytes]]:
    out = []
    off = 0
    for e in trailer.entries:
        nd = sum(r.count for r in e.runs if not r.is_zero) * DIGEST_LEN
        out.append((e, trailer.digests[off : off + nd]))
        off += nd
    return out


def _covers(runs: list[tuple[int, int]], nblocks: int) -> bool:
    """Do the runs map blocks 0 .. nblocks-1 each exactly once?"""
    at = 0
    for first, count in sorted(runs):
        if first != at:
            return False
        at += count
    return at == nblocks


def _end_record_before_filemark(drive: TapeDrive, gf: GenerationFile) -> tuple[fmt.TrailerEnd | None, str | None]:
    """The medium is just after the tape file's filemark: read the record before the filemark as
    the end record (when the forward read lost the framing before it)."""
    try:
        after_fm = drive.position().logical
        if after_fm - 2 <= gf.logical:
            return None, None
        drive.locate(after_fm - 2)
        rec = drive.read_record()
        if isinstance(rec, Mark) or bytes(rec[:8]) != fmt.TRAILER_END_MAGIC:
            return None, None
        end = fmt.decode_trailer_end(rec)
        fmt.check_same_generation(gf.header, end)
        return end, None
    except TapearcError as e:
        return None, f"end record damaged ({e})"


def _state_word(complete: bool, continues: bool) -> str:
    """What a tape file says about its generation: complete, continues (on the next medium), or incomplete."""
    return "complete" if complete else ("continues" if continues else "incomplete")


def _join(a: str | None, b: str) -> str:
    return b if a is None else f"{a}; {b}"


def _generation_files(walked: list[TapeFile]) -> list[GenerationFile]:
    return [
        GenerationFile(tape_file=tf.tape_file, logical=tf.logical, header=tf.header, closed=tf.closed)
        for tf in walked
        if tf.kind == "generation" and tf.header is not None
    ]


def sync_catalog(
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gens: list[GenerationFile], notes: list[str] | None = None
) -> int:
    """Make the catalog know every generation tape file found on the medium, learning unknown ones
    from their trailers (or chunks). Returns how many were learnt. The position is left anywhere.
    ``notes`` gets a line for each generation learnt that is damaged or was rebuilt."""
    catalog.record_medium(label, drive.name)
    catalog.mark_stale_writing(label.media_set_uuid)
    known = {(t.file_number, t.generation) for t in catalog.tape_files(label.medium_uuid) if t.generation is not None}
    learnt = 0
    for gf in gens:
        row = catalog.generation_by_run(gf.header.run_uuid)
        if (gf.tape_file, gf.header.generation) in known and row is not None:
            continue
        fs = import_generation_file(drive, catalog, label, gf, last=gf is gens[-1])
        if notes is not None and fs.problem is not None and fs.state != "incomplete":
            notes.append(
                f"medium {drive.name}, tape file {fs.tape_file}: volume {fs.volume!r} generation {fs.generation} is {fs.state}: {fs.problem}"
            )
        learnt += 1
    return learnt


def sync_medium(drive: TapeDrive, catalog: Catalog, notes: list[str] | None = None) -> fmt.Label:
    """Read the label and the generation headers of a medium and bring the catalog up to date
    (``notes``: as for :func:`sync_catalog`)."""
    label = read_label(drive)
    gens = _generation_files([tf for tf in walk_tape_files(drive) if tf.kind != "label"])
    sync_catalog(drive, catalog, label, gens, notes)
    return label


def follow_set(
    media: MediaSource, catalog: Catalog, label: fmt.Label, *, deep: bool = False, rescan: bool = False
) -> list[ScanResult]:
    """Learn the other media of ``label``'s set that a generation spanning media needs.

    Starting from the medium in the drive, asks the media source (changer or operator) for the
    previous sequence while a generation here began on an earlier medium, and for the next one
    while a generation continues on a later medium. ``rescan`` re-reads media the catalog knows.
    """
    results: list[ScanResult] = []
    seen = {label.sequence}
    todo = _neighbours(catalog, label)
    while todo:
        seq = todo.pop()
        if seq in seen or seq < 1:
            continue
        seen.add(seq)
        known = {m.sequence: m for m in catalog.media_of_set(label.media_set_uuid)}
        if seq in known and not rescan and catalog.tape_files(known[seq].uuid):
            lab = fmt.Label(
                medium_uuid=known[seq].uuid,
                media_set_uuid=label.media_set_uuid,
                sequence=seq,
                record_size=known[seq].record_size,
                created=0,
                text=known[seq].label,
            )
        else:
            media.release()
            drive = media.medium_by_sequence(label.media_set_uuid, seq)
            if rescan:
                res = scan_medium(drive, catalog, deep=deep)
                results.append(res)
                lab = read_label(drive)
            else:
                lab = sync_medium(drive, catalog)
        todo |= _neighbours(catalog, lab) - seen
    return results


def _neighbours(catalog: Catalog, label: fmt.Label) -> set[int]:
    """Sequences next to this medium that hold parts of generations found on it."""
    out: set[int] = set()
    files = [t for t in catalog.tape_files(label.medium_uuid) if t.generation is not None]
    if not files:
        return out
    for t in files:
        g = catalog.generation_of_tape_file(label.medium_uuid, t.file_number)
        if g is None or g.state == "complete":
            continue
        part, continues = catalog.part_info(label.medium_uuid, t.file_number)
        if part > 0:
            out.add(label.sequence - 1)
        if continues:
            out.add(label.sequence + 1)
    return out
