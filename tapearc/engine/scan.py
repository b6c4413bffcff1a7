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

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.catalog.states import GenerationState
from tapearc.crypto.keys import fingerprint_text, parse_fingerprint
from tapearc.engine.keymedia import key_record_fingerprint
from tapearc.engine.layout import (
    MAGIC_CHUNK,
    MAGIC_TRAILER,
    GenerationFile,
    Item,
    misplaced,
    read_item,
    read_label,
)
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.tapefiles import (
    MAX_READ_ERRORS,
    Damage,
    FileItems,
    FileRecords,
    TapeFile,
    read_file_item,
    walk_tape_files,
)
from tapearc.errors import TapearcError, TempFileError, TruncatedError
from tapearc.media.base import Mark, TapeDrive

if TYPE_CHECKING:
    from tapearc.engine.mediasource import MediaSource

DIGEST_LEN = fmt.DIGEST_LEN
log = logging.getLogger(__name__)


@dataclass(slots=True)
class FileScan:
    tape_file: int
    volume: str
    generation: int
    state: str  # complete | incomplete | damaged | foreign | duplicate (not learnt: layout.misplaced)
    method: str  # trailer | deep
    chunks: int
    problem: str | None = None
    key_fingerprint: str | None = None  # an encrypted generation's key


@dataclass(slots=True)
class ScanResult:
    medium: str
    medium_uuid: str
    media_set: str
    sequence: int
    files: list[FileScan] = field(default_factory=list)
    tape_files: list[dict[str, object]] = field(default_factory=list)  # every tape file after the label
    key_fingerprint: str | None = None  # the key record's after the label: an encrypted media set
    key_record_problem: str | None = None  # a key record after the label that does not decode

    @property
    def warnings(self) -> list[str]:
        """One line per tape file that is interrupted, damaged or foreign, or whose generation
        could not be read as it was written."""
        out = [f"medium {self.medium}, {self.key_record_problem}"] if self.key_record_problem else []
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

    @property
    def findings(self) -> list[str]:
        """The warnings that are not the trace of an interrupted backup: tape files damaged,
        foreign (another medium's or media set's) or duplicated, generations found damaged, a
        key record that does not decode. A scan that has any ends in exit 20, as verify does."""
        out = [f"medium {self.medium}, {self.key_record_problem}"] if self.key_record_problem else []
        out += [
            f"medium {self.medium}, tape file {d['tape_file']}: {d['kind']} tape file"
            for d in self.tape_files
            if d["kind"] in ("damaged", "foreign") and not d["interrupted"]
        ]
        out += [
            f"medium {self.medium}, tape file {f.tape_file}: volume {f.volume!r} generation {f.generation} is {f.state}"
            for f in self.files
            if f.state in ("damaged", "foreign", "duplicate")
        ]
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "medium": self.medium,
            "medium_uuid": self.medium_uuid,
            "media_set": self.media_set,
            "sequence": self.sequence,
            "encrypted": self.key_fingerprint is not None
            or self.key_record_problem is not None
            or any(f.key_fingerprint is not None for f in self.files),
            "key_fingerprint": self.key_fingerprint,
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
                    "encrypted": f.key_fingerprint is not None,
                    "key_fingerprint": f.key_fingerprint,
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
    keys: list[bytes] = []
    label = read_label(drive, keys)
    catalog.record_medium(label, drive.name)
    catalog.forget_medium_files(label.medium_uuid)
    walked = list(walk_tape_files(drive, label=False))
    gens = _generation_files(walked)
    result = ScanResult(drive.name, str(label.medium_uuid), str(label.media_set_uuid), label.sequence)
    result.key_fingerprint, result.key_record_problem = key_record_fingerprint(keys)
    _record_set_key(catalog, label, result.key_fingerprint)
    result.tape_files = [tf.to_json() for tf in walked]
    progress.start(f"scan {drive.name}", len(gens))
    wrong = _misplaced_files(label, gens)
    try:
        for gf in gens:
            if gf.tape_file in wrong:  # not what this medium holds: never learnt as if it were
                kind, why = wrong[gf.tape_file]
                fs = FileScan(gf.tape_file, gf.header.volume_name, gf.header.generation, kind, "header", 0, why)
            else:
                fs = import_generation_file(drive, catalog, label, gf, deep=deep, last=gf is gens[-1])
            result.files.append(fs)
            for d in result.tape_files:
                if d["tape_file"] == gf.tape_file:
                    d["state"] = fs.state
            progress.advance(1)
    finally:
        progress.finish()
    catalog.mark_stale_writing(label.media_set_uuid, label.medium_uuid)
    return result


def _misplaced_files(label: fmt.Label, gens: list[GenerationFile]) -> dict[int, tuple[str, str]]:
    """The generation tape files that do not belong on the medium of ``label`` (layout.misplaced):
    tape file -> (``foreign`` or ``duplicate``, why)."""
    seen: dict[tuple[uuid.UUID, int], int] = {}
    out: dict[int, tuple[str, str]] = {}
    for gf in gens:
        wrong = misplaced(label, gf.header, gf.tape_file, seen)
        if wrong is not None:
            out[gf.tape_file] = wrong
    return out


def _record_set_key(catalog: Catalog, label: fmt.Label, fingerprint: str | None) -> None:
    """The catalog learns the set's key from the key record (a set with no generation yet too),
    when it records media sets' keys (schema 4: ``set_media_set_key``); an encrypted
    generation's header gives it too (``begin_generation``)."""
    record = getattr(catalog, "set_media_set_key", None)
    if fingerprint is not None and callable(record):
        record(label.media_set_uuid, parse_fingerprint(fingerprint))


def import_generation_file(
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gf: GenerationFile, *, deep: bool = False, last: bool = False
) -> FileScan:
    """Record one generation tape file in the catalog, from its trailer or (deep) its chunks."""
    fs = _import_generation_file(drive, catalog, label, gf, deep=deep, last=last)
    if gf.header.key_fingerprint is not None:
        fs.key_fingerprint = fingerprint_text(gf.header.key_fingerprint)
    return fs


def _import_generation_file(
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gf: GenerationFile, *, deep: bool, last: bool
) -> FileScan:
    problem = None
    if not deep and gf.closed:
        try:
            got = _read_trailer_from_end(drive, gf)
        except TempFileError:  # our temporary file, not the medium: never taken for damage
            raise
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


def _read_trailer_from_end(drive: TapeDrive, gf: GenerationFile) -> tuple[fmt.TrailerFile, int] | None:
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
    fmt.check_trailer_end(end, titem.data, length=titem.length)
    trailer = titem.trailer()  # a large trailer is read from its spool, never whole in memory
    fmt.check_same_generation(gf.header, trailer.summary)
    return trailer, end.trailer_record


#: Chunks recorded in the catalog at a time from a trailer (their digests in memory together).
ADD_BATCH = 64


def _add_chunks(
    catalog: Catalog,
    gen_id: int,
    label: fmt.Label,
    gf: GenerationFile,
    entries: Iterable[tuple[fmt.ChunkIndexEntry, bytes]],
) -> None:
    """Record ``entries`` in the catalog ADD_BATCH at a time (memory: a batch's digests)."""
    batch: list[tuple[fmt.ChunkIndexEntry, bytes]] = []
    for pair in entries:
        batch.append(pair)
        if len(batch) >= ADD_BATCH:
            catalog.add_chunks(gen_id, label.medium_uuid, gf.tape_file, gf.logical, batch)
            batch = []
    catalog.add_chunks(gen_id, label.medium_uuid, gf.tape_file, gf.logical, batch)


def _record_from_trailer(catalog: Catalog, label: fmt.Label, gf: GenerationFile, trailer: fmt.TrailerFile) -> None:
    gen_id = catalog.begin_generation(
        gf.header, medium_uuid=label.medium_uuid, tape_file=gf.tape_file, logical=gf.logical, source="trailer"
    )
    _add_chunks(catalog, gen_id, label, gf, trailer.with_digests())
    catalog.finish_generation(
        gen_id,
        state=GenerationState.AUTO,
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
    deep = _DeepRead(drive, catalog, label, gf)
    closed = deep.read_items()
    if closed and deep.end is None:
        deep.end_from_filemark()
    verdict = deep.conclude(closed, last)
    return deep.record(closed, verdict, note)


@dataclass(slots=True)
class _Verdict:
    """What the chunks, trailer and end record read show about the generation."""

    complete: bool = False
    continues: bool = False
    problem: str | None = None
    how: str = ""


class _DeepRead:
    """One generation tape file read chunk by chunk (:func:`_deep_file`), and what was found."""

    def __init__(self, drive: TapeDrive, catalog: Catalog, label: fmt.Label, gf: GenerationFile) -> None:
        self.drive, self.catalog, self.label, self.gf = drive, catalog, label, gf
        self.hdr = gf.header
        self.gen_id = 0
        self.expect: int | None = 0 if self.hdr.part == 0 else None  # a later part starts where the last one stopped
        self.trailer: fmt.TrailerFile | None = None
        self.summary: fmt.TrailerSummary | None = None  # the trailer's header, when only its body is damaged
        self.trailer_seen = False  # a trailer item (maybe damaged) was found: the backup got to its end
        self.trailer_record: int | None = None
        self.trailer_cut = False  # the tape file ends inside the trailer item
        self.end: fmt.TrailerEnd | None = None
        self.after_chunks = 0  # the record after the last chunk read intact
        self.added: set[int] = set()
        self.runs: list[tuple[int, int]] = []  # (first, count) of every run of the chunks read
        self.totals = [0, 0, 0, 0]  # data blocks, zero blocks, raw bytes, stored bytes
        self.chunk_problem: str | None = None  # a chunk could not be read: damage in the data
        self.other: str | None = None  # damage outside the chunks (trailer, end record, stray items)
        self.items: FileItems | None = None  # the reader, while reading the items
        # encrypted chunks read intact (CRCs): their digests are keyed, so taken from the
        # trailer's table when it lists the chunk alike (a scan has no key to compute them)
        self.sealed: list[fmt.ChunkIndexEntry] = []
        self.read = _ReadChunks()  # what each chunk read intact holds, to compare with the trailer

    def read_items(self) -> bool:
        """Read the tape file from its start, recording each chunk read intact; returns whether
        it ended with a filemark."""
        gf = self.gf
        self.drive.locate(gf.logical)
        recs = FileRecords(self.drive)
        _, n = read_file_item(recs, tape_file=gf.tape_file, record=0, logical=gf.logical, medium=self.drive.name)
        self.after_chunks = n  # the generation header, known already
        self.gen_id = self.catalog.begin_generation(
            self.hdr, medium_uuid=self.label.medium_uuid, tape_file=gf.tape_file, logical=gf.logical, source="deep"
        )
        items = self.items = FileItems(
            recs,
            tape_file=gf.tape_file,
            logical=gf.logical,
            medium=self.drive.name,
            start=n,
            max_errors=MAX_READ_ERRORS,
        )
        in_damage = False  # inside a run of records that make no item
        for got in items:
            if isinstance(got, Damage):
                self.damage(got, in_damage)
                in_damage = True
            else:
                before = items.record
                self.item(got, before)
                in_damage = items.record != before  # its records are read again: strays, already named
        return items.ended is Mark.FILEMARK

    def damage(self, d: Damage, in_damage: bool) -> None:
        """Go on with the next record: the records left of a damaged item are strays until the
        next item (and the trailer may be intact)."""
        m7 = d.magic[:7]
        if m7 in (MAGIC_TRAILER[:7], fmt.TRAILER_END_MAGIC[:7]):  # its framing is damaged
            self.trailer_seen = True
            if self.trailer_record is None and m7 == MAGIC_TRAILER[:7]:
                self.trailer_record = d.record
            self.trailer_cut = self.trailer_cut or (m7 == MAGIC_TRAILER[:7] and isinstance(d.error, TruncatedError))
            self.other = _join(self.other, f"trailer or end record damaged ({d.error})")
        else:
            if not in_damage:
                self.chunk_problem = _join(self.chunk_problem, str(d.error))
            self.expect = None  # a chunk was lost here: the next one read says where we are

    def item(self, item: Item, after: int) -> None:
        """One item read whole; ``after``: the index of the record after it."""
        if item.magic == MAGIC_TRAILER:
            self.on_trailer(item)
        elif item.magic == fmt.TRAILER_END_MAGIC:
            self.trailer_seen = True
            try:
                self.end = fmt.decode_trailer_end(item.data)
                fmt.check_same_generation(self.hdr, self.end)
            except TapearcError as e:
                self.end = None
                self.other = _join(self.other, f"end record damaged ({e})")
        elif item.magic != MAGIC_CHUNK:
            self.other = _join(self.other, f"unexpected item {item.magic!r} at record {item.record}")
        elif self.on_chunk(item):
            self.after_chunks = after

    def on_trailer(self, item: Item) -> None:
        self.trailer_seen = True
        self.trailer_record = item.record
        try:
            self.trailer = item.trailer()  # a large one from its spool: never whole in memory
            fmt.check_same_generation(self.hdr, self.trailer.summary)
        except TempFileError:  # our temporary file, not the medium: never taken for damage
            raise
        except TapearcError as e:
            self.trailer = None
            self.other = _join(self.other, f"trailer damaged ({e})")
            try:
                self.summary = fmt.decode_trailer_header(item.data)
                if (self.summary.run_uuid, self.summary.generation) != (self.hdr.run_uuid, self.hdr.generation):
                    self.summary = None
            except TapearcError:
                self.summary = None

    def on_chunk(self, item: Item) -> bool:
        """Record a chunk in the catalog; False when it could not be read."""
        try:
            ch, payload = fmt.decode_chunk(item.data)
            fmt.check_same_generation(self.hdr, ch, seq=self.expect)
            raw = None if ch.encrypted else fmt.unpack_payload(ch, payload)
        except TapearcError as e:
            self.chunk_problem = _join(self.chunk_problem, f"chunk at record {item.record} skipped: {e}")
            self.expect = None if self.expect is None else self.expect + 1
            if self.items is not None and self.items.damaged(item, e):
                self.expect = None  # its records are read again: the next chunk read says where we are
            return False
        entry = fmt.ChunkIndexEntry.from_chunk(ch, record=item.record, record_count=item.record_count)
        if raw is None:
            self.sealed.append(entry)
            self.read.put(entry, None)
        else:
            digests = fmt.payload_digests(ch.runs, raw, ch.block_size, ch.volume_size)
            self.read.put(entry, digests)
            self.catalog.add_chunks(
                self.gen_id, self.label.medium_uuid, self.gf.tape_file, self.gf.logical, [(entry, digests)]
            )
        self.added.add(ch.seq)
        self.runs.extend((r.first, r.count) for r in ch.runs)
        self.totals[0] += sum(r.count for r in ch.runs if not r.is_zero)
        self.totals[1] += sum(r.count for r in ch.runs if r.is_zero)
        self.totals[2] += ch.raw_len
        self.totals[3] += ch.stored_len
        self.expect = ch.seq + 1
        return True

    def end_from_filemark(self) -> None:
        """The forward read found no end record: read the record before the filemark as one."""
        self.end, why = _end_record_before_filemark(self.drive, self.gf)
        if self.end is not None:
            self.trailer_seen = True
        elif why is not None and self.trailer_seen:
            self.other = _join(self.other, why)

    def conclude(self, closed: bool, last: bool) -> _Verdict:
        trailer = self.trailer
        if not closed:
            every = trailer is not None and trailer.complete and len(self.added) == trailer.chunk_count
            if every and self.chunk_problem is None:
                return self.ends_after_trailer()
            return _Verdict(problem="the medium ends inside this tape file (interrupted backup)")
        if trailer is not None:
            return self.from_trailer(trailer)
        if self.trailer_seen and self.chunk_problem is None:
            return self.from_summary(self.summary) if self.summary is not None else self.from_chunks(last)
        return _Verdict()

    def ends_after_trailer(self) -> _Verdict:
        """The medium ends after the whole trailer (in or after the end record: a backup killed
        while closing the tape file, or a cut image); every chunk is there: the generation is
        complete, and said to be so (never quietly replaced by the previous one)."""
        return _Verdict(
            complete=True,
            problem="the medium ends after this tape file's trailer"
            + (" without an end record" if self.end is None else " without a filemark")
            + " (a backup interrupted while closing it, or a cut image); every chunk is there",
        )

    def from_trailer(self, trailer: fmt.TrailerFile) -> _Verdict:
        """The trailer's index is the generation's: chunks that could not be read are known from
        it (a restore finds their damage and says so)."""
        v = _Verdict(complete=trailer.complete, continues=trailer.continues)
        missing = [k for k, e in enumerate(trailer.entries) if e.seq not in self.added]
        pairs = ((trailer.entries[k], trailer.digests(k)) for k in missing)
        _add_chunks(self.catalog, self.gen_id, self.label, self.gf, pairs)
        if len(self.added) + len(missing) != trailer.chunk_count:
            v.complete = False
            v.problem = "trailer does not match the chunks read"
        differ = self.unlike(trailer)
        if differ:
            v.complete = False
            v.problem = _join(
                v.problem,
                f"chunk{'s' if len(differ) > 1 else ''} {', '.join(map(str, differ))} read "
                f"{'differ' if len(differ) > 1 else 'differs'} from the trailer's index (payload CRC, records, block map or block digests): not the data backed up, or a damaged trailer",
            )
        return v

    def unlike(self, trailer: fmt.TrailerFile) -> list[int]:
        """The chunks read (by seq) that the trailer lists otherwise: another entry, or other
        block digests (a chunk in another's place, every CRC valid, or a damaged trailer)."""
        out = []
        for k, e in enumerate(trailer.entries):
            got = self.read.get(e.seq)
            if got is None:
                continue  # not read intact: the trailer's entry is the generation's (from_trailer)
            want = _fingerprint(e, trailer.digests(k) if trailer.digest_alg else None)
            if got[:8] != want[:8] or (_UNKNOWN not in (got[8:], want[8:]) and got[8:] != want[8:]):
                out.append(e.seq)
        return out

    def from_summary(self, summary: fmt.TrailerSummary) -> _Verdict:
        """Only the trailer's body is damaged: its header's totals say whether every chunk was read."""
        match = summary.chunk_count == len(self.added) and tuple(self.totals) == (
            summary.data_blocks,
            summary.zero_blocks,
            summary.raw_bytes,
            summary.stored_bytes,
        )
        if match:
            return _Verdict(
                complete=summary.complete,
                continues=summary.continues,
                how="its index was rebuilt from the chunk headers (they match the trailer's totals)",
            )
        return _Verdict(
            problem=f"the chunks read ({len(self.added)}) do not match the trailer's totals ({summary.chunk_count} chunks)"
        )

    def from_chunks(self, last: bool) -> _Verdict:
        """The trailer is unreadable: the chunks alone, when every record up to the trailer is a
        chunk read intact."""
        end, hdr = self.end, self.hdr
        if not (
            end is not None
            and self.trailer_record is not None
            and end.trailer_record == self.after_chunks == self.trailer_record
        ):
            return _Verdict(problem="the chunks read cannot be shown to be all of the generation's")
        if hdr.kind == fmt.GenerationKind.FULL and hdr.part == 0:
            if _covers(self.runs, -(-hdr.volume_size // hdr.block_size)):
                return _Verdict(
                    complete=True,
                    how="its index was rebuilt from the chunk headers (they map every block of the volume)",
                )
            return _Verdict(
                how="its index was rebuilt from the chunk headers (they map every block of the volume)",
                problem="the chunks read do not map every block of the volume",
            )
        if not last:  # a part that continues on another medium is the last tape file of its medium
            return _Verdict(
                complete=True,
                how="its index was rebuilt from the chunk headers (every record up to the trailer is a chunk)",
            )
        return _Verdict(problem="whether the generation ends here or continues on another medium is unknown")

    def add_sealed(self) -> None:
        """Record the encrypted chunks read, with the trailer's digests of each one it lists
        alike (none otherwise: the catalog then knows no digest of their blocks)."""
        trailer = self.trailer
        listed = {e.seq: k for k, e in enumerate(trailer.entries)} if trailer is not None else {}
        pairs = []
        for entry in self.sealed:
            k = listed.get(entry.seq)
            digests = b""
            if trailer is not None and k is not None and trailer.entries[k] == entry:
                digests = trailer.digests(k)
            pairs.append((entry, digests))
        _add_chunks(self.catalog, self.gen_id, self.label, self.gf, pairs)
        self.sealed = []

    def record(self, closed: bool, v: _Verdict, note: str | None) -> FileScan:
        """Finish the generation in the catalog and say what it is."""
        self.add_sealed()
        hdr, trailer = self.hdr, self.trailer
        # the backup got to closing the generation, but the trailer that would say what it holds
        # is unreadable (or disagrees with the chunks): damage, not an interrupted backup -- unless
        # the tape file ends inside the trailer and no end record follows: a backup killed while
        # writing it (the next append, or a drive's close, wrote the filemark), as a cut chunk
        killed = trailer is None and self.trailer_cut and self.end is None
        damaged = (
            closed
            and not v.complete
            and not v.continues
            and not killed
            and ((trailer is None and self.trailer_seen) or (trailer is not None and trailer.complete))
        )
        self.catalog.finish_generation(
            self.gen_id,
            state=GenerationState.DAMAGED if damaged else GenerationState.AUTO,
            final=v.complete,
            continues=v.continues,
            medium_uuid=self.label.medium_uuid,
            tape_file=self.gf.tape_file,
            closed=closed,
            has_trailer=trailer is not None or self.summary is not None,
        )
        text = None
        for part in (note, self.other, self.chunk_problem, v.problem, v.how or None):
            if part is not None:
                text = part if text is None else f"{text}; {part}"
        word = "damaged" if damaged else _state_word(v.complete, v.continues and self.chunk_problem is None)
        if damaged and text is not None:
            text = (
                f"{text}; generation {hdr.generation} of volume {hdr.volume_name!r} cannot be restored from this medium"
            )
        return FileScan(self.gf.tape_file, hdr.volume_name, hdr.generation, word, "deep", len(self.added), text)


_UNKNOWN = bytes(8)  # a sealed chunk's digests (keyed: a scan has no key to compute them)


def _fingerprint(entry: fmt.ChunkIndexEntry, digests: bytes | None) -> bytes:
    """16 bytes standing for a chunk's index entry (8) and its blocks' digests (8, or _UNKNOWN)."""
    runs = tuple((r.first, r.count, int(r.kind)) for r in entry.runs)
    fields = (entry.seq, entry.record, entry.record_count, entry.stored_len, entry.raw_len, entry.payload_crc, runs)
    e = hashlib.blake2b(repr((fields, entry.flags)).encode(), digest_size=8).digest()
    return e + (_UNKNOWN if digests is None else hashlib.blake2b(digests, digest_size=8).digest())


class _ReadChunks:
    """What each chunk a deep scan read intact holds (:func:`_fingerprint`), by seq: 16 bytes a
    chunk (memory: a deep scan of millions of chunks keeps no entry or digest of each)."""

    def __init__(self) -> None:
        self.base: int | None = None  # the first seq read: the slots run from it
        self.slots = bytearray()
        self.others: dict[int, bytes] = {}  # a seq below the first one read (out of order)

    def put(self, entry: fmt.ChunkIndexEntry, digests: bytes | None) -> None:
        fp, seq = _fingerprint(entry, digests), entry.seq
        if self.base is None:
            self.base = seq
        if seq < self.base:
            self.others[seq] = fp
            return
        at = (seq - self.base) * 16
        if len(self.slots) < at + 16:
            self.slots.extend(bytes(at + 16 - len(self.slots)))
        self.slots[at : at + 16] = fp

    def get(self, seq: int) -> bytes | None:
        if self.base is None or seq < self.base:
            return self.others.get(seq)
        at = (seq - self.base) * 16
        got = bytes(self.slots[at : at + 16])
        return got if len(got) == 16 and got != bytes(16) else None


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
    drive: TapeDrive,
    catalog: Catalog,
    label: fmt.Label,
    gens: list[GenerationFile],
    notes: list[str] | None = None,
    last_file: int | None = None,
) -> int:
    """Make the catalog know every generation tape file found on the medium, learning unknown ones
    from their trailers (or chunks), and those whose generation the catalog still says is
    ``writing`` (:func:`_writing_files`). Returns how many were learnt. The position is left anywhere.
    ``notes`` gets a line for each generation learnt that is damaged or was rebuilt.
    ``last_file``: the medium's last tape file, given by a backup about to append there (the whole
    medium was walked, ``gens`` are all its generation tape files): tape files the catalog knows
    past it, or holding another backup run there, are gone (:func:`forget_gone`). Reading commands
    do not forget them: a restore of such a generation says what is missing (exit 23/24) and
    another copy of the medium may still hold it."""
    catalog.record_medium(label, drive.name)
    if last_file is not None:
        forget_gone(drive, catalog, label, gens, last_file, notes)
    cut = _writing_files(catalog, label)
    catalog.mark_stale_writing(label.media_set_uuid, label.medium_uuid)
    known = {(t.file_number, t.generation) for t in catalog.tape_files(label.medium_uuid) if t.generation is not None}
    known -= {(gf.tape_file, gf.header.generation) for gf in gens if gf.tape_file in cut and gf.closed}
    learnt = 0
    wrong = _misplaced_files(label, gens)
    for gf in gens:
        if gf.tape_file in wrong:  # not what this medium holds: never learnt as if it were
            if notes is not None:
                notes.append(f"medium {drive.name}, tape file {gf.tape_file}: {wrong[gf.tape_file][1]}")
            continue
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


def forget_gone(
    drive: TapeDrive,
    catalog: Catalog,
    label: fmt.Label,
    gens: list[GenerationFile],
    last_file: int,
    notes: list[str] | None = None,
) -> None:
    """The catalog forgets this medium's tape files from the first one the medium no longer holds
    as the catalog knows it -- past its last tape file (an older image or dump of the medium put
    back, a tape written over by another program from there on), or holding another backup run
    -- and the generations that lived only there: no restore or incremental counts on data that
    is gone (before, an incremental appended there took a vanished generation as its base, and
    its restore read older data for the blocks that generation had changed, exit 0). A warning
    names them; the medium's tape files are learnt again from the medium; the generations are
    marked recycled (their numbers stay taken)."""
    runs = {gf.tape_file: gf.header.run_uuid for gf in gens}
    gone = []
    for t in catalog.tape_files(label.medium_uuid):
        if t.generation is None:
            continue
        if t.file_number > last_file or (
            t.file_number in runs
            and (row := catalog.generation_of_tape_file(label.medium_uuid, t.file_number)) is not None
            and row.run_uuid != runs[t.file_number]
        ):
            gone.append((t.file_number, t.volume, t.generation))
    if not gone:
        return
    first = min(f for f, _, _ in gone)
    what = ", ".join(f"tape file {f} (volume {v!r} generation {g})" for f, v, g in sorted(gone))
    line = (
        f"medium {drive.name} no longer holds what the catalog knew there: {what}; the catalog forgets the "
        f"medium's tape files from {first} on (those generations: recycled) and learns them again from the medium"
    )
    log.warning("%s", line)
    if notes is not None:
        notes.append(line)
    catalog.forget_gone_files(label.medium_uuid, first, int(time.time()))


def _writing_files(catalog: Catalog, label: fmt.Label) -> set[int]:
    """This medium's tape files whose generation the catalog still says is ``writing``: its backup
    died, maybe after the generation reached the medium whole (a job killed between a generation's
    immediate filemark and the drive's sync). A sync learns those from the medium again rather
    than calling them incomplete on the catalog's word."""
    out = set()
    for t in catalog.tape_files(label.medium_uuid):
        g = catalog.generation_of_tape_file(label.medium_uuid, t.file_number) if t.generation is not None else None
        if g is not None and g.state == GenerationState.WRITING:
            out.add(t.file_number)
    return out


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
        if g is None or g.state == GenerationState.COMPLETE:
            continue
        part, continues = catalog.part_info(label.medium_uuid, t.file_number)
        if part > 0:
            out.add(label.sequence - 1)
        if continues:
            out.add(label.sequence + 1)
    return out
