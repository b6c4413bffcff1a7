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
from typing import TYPE_CHECKING

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine.layout import (
    MAGIC_CHUNK,
    MAGIC_TRAILER,
    GenerationFile,
    read_item,
    read_label,
    scan_generation_files,
)
from tapearc.engine.progress import NoProgress, Progress
from tapearc.errors import TapearcError
from tapearc.media.base import Mark, TapeDrive

if TYPE_CHECKING:
    from tapearc.engine.mediasource import MediaSource

DIGEST_LEN = fmt.DIGEST_LEN


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

    def to_json(self) -> dict[str, object]:
        return {
            "medium": self.medium,
            "medium_uuid": self.medium_uuid,
            "media_set": self.media_set,
            "sequence": self.sequence,
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


def scan_medium(drive: TapeDrive, catalog: Catalog, *, deep: bool = False, progress: Progress | None = None) -> ScanResult:
    """Forget what the catalog knew of this medium's tape files and learn them anew from it."""
    progress = progress or NoProgress()
    label = read_label(drive)
    catalog.record_medium(label, drive.name)
    catalog.forget_medium_files(label.medium_uuid)
    gens = scan_generation_files(drive)
    result = ScanResult(drive.name, str(label.medium_uuid), str(label.media_set_uuid), label.sequence)
    progress.start(f"scan {drive.name}", len(gens))
    try:
        for gf in gens:
            result.files.append(import_generation_file(drive, catalog, label, gf, deep=deep))
            progress.advance(1)
    finally:
        progress.finish()
    catalog.mark_stale_writing(label.media_set_uuid)
    return result


def import_generation_file(
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gf: GenerationFile, *, deep: bool = False
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
    return _deep_file(drive, catalog, label, gf, problem)


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
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gf: GenerationFile, note: str | None
) -> FileScan:
    hdr = gf.header
    drive.locate(gf.logical)
    read_item(drive)  # the generation header, known already
    gen_id = catalog.begin_generation(
        hdr, medium_uuid=label.medium_uuid, tape_file=gf.tape_file, logical=gf.logical, source="deep"
    )
    expect: int | None = 0 if hdr.part == 0 else None  # a later part starts where the last one stopped
    trailer: fmt.Trailer | None = None
    closed = True
    nchunks = 0
    problem: str | None = None  # damage found while reading
    while True:
        try:
            item = read_item(drive)
        except TapearcError as e:
            problem = _join(problem, str(e))
            closed = _skip_to_filemark(drive)
            break
        if isinstance(item, Mark):
            closed = item is Mark.FILEMARK
            if not closed:
                problem = _join(problem, "the medium ends inside this tape file (interrupted backup)")
            break
        if item.magic == MAGIC_TRAILER:
            try:
                trailer = fmt.decode_trailer(item.data)
            except TapearcError as e:
                problem = _join(problem, f"trailer damaged: {e}")
            continue
        if item.magic == fmt.TRAILER_END_MAGIC:
            continue
        if item.magic != MAGIC_CHUNK:
            problem = _join(problem, f"unexpected item {item.magic!r} at record {item.record}")
            continue
        try:
            ch, payload = fmt.decode_chunk(item.data)
            fmt.check_same_generation(hdr, ch, seq=expect)
            raw = fmt.unpack_payload(ch, payload)
        except TapearcError as e:
            problem = _join(problem, f"chunk at record {item.record} skipped: {e}")
            expect = None if expect is None else expect + 1
            continue
        entry = fmt.ChunkIndexEntry.from_chunk(ch, record=item.record, record_count=item.record_count)
        catalog.add_chunks(gen_id, label.medium_uuid, gf.tape_file, gf.logical, [(entry, fmt.payload_digests(ch.runs, raw, ch.block_size, ch.volume_size))])
        expect = ch.seq + 1
        nchunks += 1
    complete = (
        trailer is not None
        and trailer.complete
        and trailer.run_uuid == hdr.run_uuid
        and trailer.chunk_count == nchunks
        and problem is None
    )
    if trailer is not None and not complete and problem is None:
        problem = "trailer does not match the chunks read"
    catalog.finish_generation(
        gen_id,
        state="auto",
        final=complete,
        continues=trailer is not None and trailer.continues,
        medium_uuid=label.medium_uuid,
        tape_file=gf.tape_file,
        closed=closed,
        has_trailer=trailer is not None,
    )
    if note is not None:
        problem = note if problem is None else f"{note}; {problem}"
    cont = trailer is not None and trailer.continues and problem is None
    return FileScan(gf.tape_file, hdr.volume_name, hdr.generation, _state_word(complete, cont), "deep", nchunks, problem)


def _skip_to_filemark(drive: TapeDrive) -> bool:
    errors = 0
    while True:
        try:
            rec = drive.read_record()
        except TapearcError:
            errors += 1
            if errors > 16:
                return False
            continue
        errors = 0
        if isinstance(rec, Mark):
            return rec is Mark.FILEMARK


def _state_word(complete: bool, continues: bool) -> str:
    """What a tape file says about its generation: complete, continues (on the next medium), or incomplete."""
    return "complete" if complete else ("continues" if continues else "incomplete")


def _join(a: str | None, b: str) -> str:
    return b if a is None else f"{a}; {b}"


def sync_catalog(drive: TapeDrive, catalog: Catalog, label: fmt.Label, gens: list[GenerationFile]) -> int:
    """Make the catalog know every generation tape file found on the medium, learning unknown ones
    from their trailers (or chunks). Returns how many were learnt. The position is left anywhere."""
    catalog.record_medium(label, drive.name)
    catalog.mark_stale_writing(label.media_set_uuid)
    known = {(t.file_number, t.generation) for t in catalog.tape_files(label.medium_uuid) if t.generation is not None}
    learnt = 0
    for gf in gens:
        row = catalog.generation_by_run(gf.header.run_uuid)
        if (gf.tape_file, gf.header.generation) in known and row is not None:
            continue
        import_generation_file(drive, catalog, label, gf)
        learnt += 1
    return learnt


def sync_medium(drive: TapeDrive, catalog: Catalog) -> fmt.Label:
    """Read the label and the generation headers of a medium and bring the catalog up to date."""
    label = read_label(drive)
    gens = scan_generation_files(drive)
    sync_catalog(drive, catalog, label, gens)
    return label


def follow_set(media: "MediaSource", catalog: Catalog, label: fmt.Label, *, deep: bool = False, rescan: bool = False) -> list[ScanResult]:
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
