"""Verify media: read forward, check everything, and say exactly what is damaged.

For every tape file of a medium (or only a generation's), reading forward at drive speed:

- every item's header CRC, every chunk's payload CRC, that its zstd payload unpacks to the
  declared length, and the BLAKE3-128 digest of every block against the trailer's digest table;
- that each chunk belongs to the tape file's backup run (a record from another medium or run is
  named as such), that chunk numbers are consecutive, that block ids are inside the volume and no
  block is mapped twice (a full generation must account for every block exactly once);
- that the trailer's index agrees with the chunks read (record positions, lengths, CRCs, runs),
  the end record with the trailer, the record sizes with the label, and the catalog with the
  medium;
- encrypted media (SPEC section 15): the key record after the label decodes (its CRC); every
  generation of the set is encrypted under the key record's key. Without a key, every CRC is
  checked (an encrypted chunk's covers its sealed bytes) and the chunks whose tags were not
  checked are counted (``tags_unchecked``, with the key they need); with the key, each chunk is
  opened (its AES-256-GCM tag: a failure is damage, kind ``auth``) and its blocks' keyed digests
  are checked against the trailer's. A key other than the set's is WrongKeyError before any
  chunk is read.

Damage never stops the verify: the tape file's items are read by tapefiles.FileItems, which
names every record span that makes no item and resynchronises after a broken one (the records of
an item whose framing cannot be trusted are read again as possible item starts). Each damaged chunk is reported with the volume block ranges it
holds (from its own header when that is intact, else from the trailer's index, else from the
catalog) and the generations the damage affects (those whose restore needs a block from it).
"""

from __future__ import annotations

import bisect
import errno
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.catalog.states import GenerationState
from tapearc.crypto.aead import ChunkCipher
from tapearc.crypto.keys import Key, fingerprint_text, parse_fingerprint
from tapearc.engine.keymedia import read_key_records
from tapearc.engine.layout import misplaced, read_label
from tapearc.engine.manifest import MappedDigests
from tapearc.engine.plan import chain_map, check_generation, load_chain
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.tapefiles import (
    SHORT,
    Damage,
    FileItems,
    FileRecords,
    Item,
    TapeFile,
    spool_error,
    spool_read_error,
    walk_tape_files,
)
from tapearc.errors import (
    KeyRequiredError,
    MalformedError,
    NoSuchGenerationError,
    TapearcError,
    TempFileError,
    WrongKeyError,
)
from tapearc.media.base import Mark, TapeDrive
from tapearc.nbdclient import check_source_name
from tapearc.sources.base import Source
from tapearc.sources.opener import open_source

MAGICS = (fmt.LABEL_MAGIC, fmt.GENERATION_MAGIC, fmt.CHUNK_MAGIC, fmt.TRAILER_MAGIC, fmt.TRAILER_END_MAGIC)


@dataclass(slots=True)
class Problem:
    record: int  # index within the tape file of the first record concerned
    what: str  # kind: crc, truncated, malformed, foreign, duplicate, order, missing, index, catalog, io, digest
    message: str
    chunk: int | None = None  # chunk seq, when known
    blocks: list[tuple[int, int]] = field(default_factory=list)  # inclusive (first, last) ranges

    def to_json(self) -> dict[str, object]:
        return {
            "record": self.record,
            "kind": self.what,
            "message": self.message,
            "chunk": self.chunk,
            "blocks": [list(b) for b in self.blocks],
        }


@dataclass(slots=True)
class FileReport:
    tape_file: int
    kind: str = "generation"  # as engine.tapefiles: generation, interrupted, damaged, foreign, empty
    volume: str | None = None
    generation: int | None = None
    part: int | None = None
    run_uuid: uuid.UUID | None = None
    chunks_ok: int = 0
    chunks_damaged: int = 0
    records: int = 0
    bytes: int = 0
    complete: bool | None = None  # the trailer says the generation ends here
    problems: list[Problem] = field(default_factory=list)
    key_fingerprint: str | None = None  # an encrypted generation's key (fingerprint text)
    tags_checked: int = 0  # encrypted chunks opened with the key (their tags and digests checked)
    tags_unchecked: int = 0  # encrypted chunks whose tags were not checked (no key given)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "tape_file": self.tape_file,
            "kind": self.kind,
            "volume": self.volume,
            "generation": self.generation,
            "part": self.part,
            "status": "ok" if self.ok else "damaged",
            "chunks_ok": self.chunks_ok,
            "chunks_damaged": self.chunks_damaged,
            "records": self.records,
            "bytes": self.bytes,
            "complete": self.complete,
            "encrypted": self.key_fingerprint is not None,
            "key_fingerprint": self.key_fingerprint,
            "tags_checked": self.tags_checked,
            "tags_unchecked": self.tags_unchecked,
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass(slots=True)
class MediumReport:
    medium: str
    medium_uuid: str | None = None
    media_set: str | None = None
    sequence: int | None = None
    files: list[FileReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the label, stray data after the end
    others: list[tuple[int, str | None, int | None]] = field(
        default_factory=list
    )  # (tape file, volume, generation) not asked for
    key_fingerprint: str | None = None  # the key record's (tape file 0): the media set is encrypted

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.ok for f in self.files)


@dataclass(slots=True)
class VerifyReport:
    media: list[MediumReport] = field(default_factory=list)
    affected: dict[str, list[int]] = field(default_factory=dict)  # volume -> generations affected
    against: dict[str, object] | None = None
    image: dict[str, object] | None = None
    seconds: float = 0.0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return (
            all(m.ok for m in self.media)
            and (self.against is None or bool(self.against.get("equal")))
            and (self.image is None or bool(self.image.get("identical")))
        )

    @property
    def keys_not_given(self) -> list[str]:
        """The fingerprints of the keys of encrypted chunks whose tags were not checked (no key)."""
        return sorted(
            {f.key_fingerprint for m in self.media for f in m.files if f.tags_unchecked and f.key_fingerprint}
        )

    @property
    def source_differs(self) -> bool:
        """The media are intact (and equal the --image) but the --against source differs."""
        return (
            self.against is not None
            and not self.against.get("equal")
            and all(m.ok for m in self.media)
            and (self.image is None or bool(self.image.get("identical")))
        )

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "status": "ok" if self.ok else ("source-differs" if self.source_differs else "damaged"),
            "media": [
                {
                    "medium": m.medium,
                    "medium_uuid": m.medium_uuid,
                    "media_set": m.media_set,
                    "sequence": m.sequence,
                    "status": "ok" if m.ok else "damaged",
                    "key_fingerprint": m.key_fingerprint,
                    "problems": [p.to_json() for p in m.problems],
                    "tape_files": [f.to_json() for f in m.files],
                }
                for m in self.media
            ],
            "tape_files_checked": sum(len(m.files) for m in self.media),
            "affected_generations": self.affected,
            "tags_checked": sum(f.tags_checked for m in self.media for f in m.files),
            "tags_unchecked": sum(f.tags_unchecked for m in self.media for f in m.files),
            "keys_not_given": self.keys_not_given,
            "against": self.against,
            "image": self.image,
            "seconds": round(self.seconds, 3),
            "bytes_read": self.bytes_read,
            "mb_per_s": round(self.bytes_read / self.seconds / 1e6, 2) if self.seconds > 0 else None,
        }


def _ranges(runs: tuple[fmt.Run, ...] | list[fmt.Run]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for r in sorted(runs, key=lambda r: r.first):
        a, b = r.first, r.first + r.count - 1
        if out and out[-1][1] + 1 >= a:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@dataclass(slots=True)
class _Seen:
    seq: int
    record: int
    record_count: int
    header: fmt.ChunkHeader
    digests: tuple[int, int]  # where its block digests are in the _DigestSpool: offset, length


class _DigestSpool:
    """The block digests of the chunks read, until the trailer (after them) is checked: in
    memory up to SPOOL_DIGESTS_OVER bytes, then in a temporary file (16 bytes per data block:
    verify's memory does not grow with the data)."""

    def __init__(self) -> None:
        # closed by close(); in $TMPDIR past SPOOL_DIGESTS_OVER bytes
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_DIGESTS_OVER, prefix="tapearc-verify-")  # noqa: SIM115
        self.end = 0

    def put(self, digests: bytes) -> tuple[int, int]:
        try:
            self.file.seek(self.end)
            self.file.write(digests)
        except OSError as e:
            raise spool_error("the digests of the chunks read", e) from None
        at = self.end
        self.end += len(digests)
        return at, len(digests)

    def get(self, where: tuple[int, int]) -> bytes:
        try:
            self.file.seek(where[0])
            got = self.file.read(where[1])
        except OSError as e:
            raise spool_read_error("the digests of the chunks read", e) from None
        if len(got) != where[1]:
            raise spool_read_error("the digests of the chunks read", OSError(errno.EIO, SHORT))
        return got

    def close(self) -> None:
        self.file.close()


#: Bytes of chunk digests verify keeps in memory before spooling them to a temporary file.
SPOOL_DIGESTS_OVER = 1 << 20


class _BlockSet:
    """The blocks of a volume of ``nblocks`` mapped so far, as merged ranges: memory follows the
    number of runs, not the volume size a (maybe damaged) header claims."""

    def __init__(self, nblocks: int = 0) -> None:
        self.nblocks = nblocks
        self.starts: list[int] = []
        self.ends: list[int] = []  # exclusive
        self.covered = 0

    def __len__(self) -> int:
        return self.nblocks

    def overlaps(self, first: int, count: int) -> bool:
        k = bisect.bisect_right(self.starts, first + count - 1)
        return k > 0 and self.ends[k - 1] > first

    def add(self, first: int, count: int) -> None:
        """Mark ``count`` blocks from ``first`` (not overlapping any marked already)."""
        end = first + count
        k = bisect.bisect_left(self.starts, first)
        if k > 0 and self.ends[k - 1] == first:  # joins the range before
            k -= 1
            first = self.starts[k]
            del self.starts[k], self.ends[k]
        if k < len(self.starts) and self.starts[k] == end:  # joins the range after
            end = self.ends[k]
            del self.starts[k], self.ends[k]
        self.starts.insert(k, first)
        self.ends.insert(k, end)
        self.covered += count

    def full(self) -> bool:
        return self.covered == self.nblocks

    def first_gap(self) -> int:
        return 0 if not self.starts or self.starts[0] > 0 else self.ends[0]


def verify_tape_file(
    drive: TapeDrive,
    label: fmt.Label,
    *,
    check_digests: bool = True,
    walked: TapeFile | None = None,
    key: Key | None = None,
    set_fingerprint: bytes | None = None,
    seen: dict[tuple[uuid.UUID, int], int] | None = None,
) -> tuple[FileReport, Mark]:
    """Verify the tape file the medium is positioned at (its first record), or the one
    ``walked`` (from walk_tape_files) gives. Returns the report and how it ended (FILEMARK, or
    END_OF_DATA when the medium ends inside it or right here).

    An encrypted generation's chunks are opened with ``key`` (every tag and keyed digest
    checked); without one their CRCs are checked and they are counted as ``tags_unchecked``.
    A key that is not the generation's is WrongKeyError, raised at its generation header
    (before any chunk is read). ``set_fingerprint``: the key record's of the medium (an
    encrypted set), against which each generation header's is checked. ``seen``: the runs' parts
    found in the medium's earlier tape files (layout.misplaced), updated."""
    if walked is not None and walked.records is not None:
        rep = FileReport(tape_file=walked.tape_file, kind=walked.kind)
        records, logical = walked.records, walked.logical
    else:
        pos = drive.position()
        rep = FileReport(tape_file=pos.file)
        records, logical = FileRecords(drive), pos.logical
    # a thread reads the records ahead (up to the tape file's filemark) while they are checked
    items = FileItems(records, tape_file=rep.tape_file, logical=logical, medium=drive.name, ahead=True)
    try:
        check = _FileCheck(rep, label, check_digests, key, set_fingerprint)
        check.placed = {} if seen is None else seen
        return _verify_items(items, check)
    finally:
        items.close()


def _verify_items(items: FileItems, check: _FileCheck) -> tuple[FileReport, Mark]:
    """Check every item of the tape file; the reader resynchronises after damage."""
    rep = check.rep
    for got in items:
        if isinstance(got, Damage):
            check.unreadable(got)
        else:
            check.read(items, got)
        del got  # memory: not this item and the next one being read
    ended = items.ended or Mark.END_OF_DATA
    rep.records, rep.bytes = items.records_read, items.bytes_read
    check.finish(items.record, ended)
    return rep, ended


_ITEM_NAMES = {
    fmt.CHUNK_MAGIC: "chunk",
    fmt.TRAILER_MAGIC: "trailer",
    fmt.GENERATION_MAGIC: "generation header",
    fmt.TRAILER_END_MAGIC: "end record",
}


class _FileCheck:
    """The verify of one tape file as it goes: what was read so far, and the problems found."""

    def __init__(
        self,
        rep: FileReport,
        label: fmt.Label,
        check_digests: bool,
        key: Key | None = None,
        set_fingerprint: bytes | None = None,
    ) -> None:
        self.rep, self.label, self.check_digests = rep, label, check_digests
        self.key, self.set_fingerprint = key, set_fingerprint
        self.cipher: ChunkCipher | None = None  # the generation's, when it is encrypted and the key given
        self.digest_key: bytes | None = None  # the keyed digests' key (encrypted generation, key given)
        self.hdr: fmt.GenerationHeader | None = None
        self.seen: list[_Seen] = []
        self.spool = _DigestSpool()
        self.trailer: fmt.TrailerFile | None = None
        self.trailer_record = -1
        self.end: fmt.TrailerEnd | None = None
        self.damaged: list[Problem] = []
        self.mapped = _BlockSet()
        self.expect_seq: int | None = None
        self.first = True  # the next record is the tape file's first
        self.placed: dict[tuple[uuid.UUID, int], int] = {}  # (run, part) -> tape file (layout.misplaced)

    def size(self, i: int, size: int) -> None:
        """A record larger than the label's record size."""
        if size > self.label.record_size:
            self.rep.problems.append(
                Problem(
                    i,
                    "malformed",
                    f"record of {size} bytes is larger than the label's record size {self.label.record_size}",
                )
            )

    def read(self, items: FileItems, item: Item) -> None:
        """An item whose records add up: check it; when it is damaged, name the damage, and let
        the reader resynchronise when its framing cannot be trusted (FileItems.damaged)."""
        i = item.record
        self.size(i, item.record_sizes[0])
        try:
            self.item(i, item)
        except (TempFileError, WrongKeyError):  # our temporary file, the key given: not damage
            raise
        except TapearcError as e:
            self.damage(i, item.magic, item.data, e)
            items.damaged(item, e)
        self.first = False

    def unreadable(self, d: Damage) -> None:
        """Records that make no item: an unreadable record (and the item it cut short), a record
        that starts no item (a stray: data of a damaged item, or foreign), an item whose records
        do not add up or are cut short by the tape file's end."""
        i = d.record
        if d.unreadable is not None:
            self.rep.problems.append(Problem(d.unreadable, "io", f"record unreadable: {d.error.message}"))
            if not d.parts:
                return  # no record read: the next readable one is still the tape file's first
        self.size(i, len(d.parts[0]))
        if d.unreadable is not None:
            self.damage(i, d.magic, d.data, d.error, f"cut short by unreadable record {d.unreadable}", "io")
        elif d.total is not None:
            self.damage(i, d.magic, d.data, d.error)
        elif d.magic in MAGICS:
            self.damaged.append(Problem(i, d.error.kind, d.error.message))
        elif self.first:
            self.rep.problems.append(Problem(i, "malformed", "tape file does not start with a tapearc item"))
        else:
            self.damaged.append(
                Problem(i, "stray", "a record that belongs to no item (data of a damaged item, or foreign)")
            )
        self.first = False

    def item(self, i: int, item: Item) -> None:
        """One item whose records add up: decode and check it (raises its damage)."""
        kind, data, nrecords = item.magic, item.data, item.record_count
        if self.first:
            if kind != fmt.GENERATION_MAGIC:
                raise fmt_malformed(f"tape file starts with {kind!r}, not a generation header")
            self.header(i, fmt.decode_generation_header(data))
        elif kind == fmt.CHUNK_MAGIC:
            self.chunk(i, data, nrecords)
        elif kind == fmt.TRAILER_MAGIC:
            self.trailer = item.trailer()  # read from the item's spool: never whole in memory
            self.trailer_record = i
            if self.hdr is not None:
                fmt.check_same_generation(self.hdr, self.trailer.summary)
        elif kind == fmt.TRAILER_END_MAGIC:
            self.end = fmt.decode_trailer_end(data)
        else:
            raise fmt_malformed(f"unexpected item {kind!r} inside a tape file")

    def header(self, i: int, hdr: fmt.GenerationHeader) -> None:
        rep = self.rep
        self.hdr = hdr
        rep.volume, rep.generation, rep.part, rep.run_uuid = hdr.volume_name, hdr.generation, hdr.part, hdr.run_uuid
        self.expect_seq = 0 if hdr.part == 0 else None
        self.mapped = _BlockSet(-(-hdr.volume_size // hdr.block_size))
        self.keys(i, hdr)
        wrong = misplaced(self.label, hdr, rep.tape_file, self.placed)
        if wrong is not None:
            rep.problems.append(Problem(i, *wrong))
        if hdr.record_size != self.label.record_size:
            rep.problems.append(
                Problem(
                    i,
                    "malformed",
                    f"generation header's record size {hdr.record_size} differs from the label's {self.label.record_size}",
                )
            )

    def keys(self, i: int, hdr: fmt.GenerationHeader) -> None:
        """An encrypted generation: its key (WrongKeyError for another key given), its cipher;
        the generation's key against the medium's key record."""
        fp, set_fp = hdr.key_fingerprint, self.set_fingerprint
        if fp is None:
            if set_fp is not None:
                self.rep.problems.append(
                    Problem(
                        i,
                        "malformed",
                        "a generation that is not encrypted on a medium of an encrypted media set "
                        f"(key {fingerprint_text(set_fp)}): its chunks are not authenticated",
                    )
                )
            return
        self.rep.key_fingerprint = fingerprint_text(fp)
        if set_fp is not None and set_fp != fp:
            self.rep.problems.append(
                Problem(
                    i,
                    "malformed",
                    f"generation encrypted with key {fingerprint_text(fp)}, but the medium's key record is of key "
                    f"{fingerprint_text(set_fp)} (a media set has one key)",
                )
            )
            return  # the set's key (the key given) cannot open it: its CRCs are checked
        if self.key is not None:
            self.cipher = fmt.chunk_cipher(hdr, self.key)  # WrongKeyError: before any chunk is read
            self.digest_key = self.key.digest_key()

    def chunk(self, i: int, data: bytes, nrecords: int) -> None:
        rep, hdr = self.rep, self.hdr
        ch, payload = fmt.decode_chunk(data)
        if hdr is None:  # the tape file's generation header is missing or damaged
            raise fmt_malformed("a chunk with no readable generation header before it")
        if ch.run_uuid != hdr.run_uuid or ch.generation != hdr.generation:
            rep.chunks_damaged += 1
            self.damaged.append(
                Problem(
                    i,
                    "foreign",
                    f"a chunk of another backup run (generation {ch.generation}, run {ch.run_uuid}): a record from another medium or tape file",
                    ch.seq,
                    _ranges(ch.runs),
                )
            )
            return
        self.order(i, ch)
        fmt.check_same_generation(hdr, ch)
        if ch.encrypted and self.cipher is None:  # no key: its CRCs are checked, not its tag
            digests = b""
            rep.tags_unchecked += 1
        else:
            raw = fmt.raw_payload(hdr, ch, payload, self.cipher)  # ChunkAuthError: a tag that fails
            rep.tags_checked += ch.encrypted
            digests = (
                fmt.payload_digests(ch.runs, raw, ch.block_size, ch.volume_size, digest_key=self.digest_key)
                if self.check_digests
                else b""
            )
        self.map_runs(i, ch)
        self.seen.append(_Seen(ch.seq, i, nrecords, ch, self.spool.put(digests)))
        rep.chunks_ok += 1

    def order(self, i: int, ch: fmt.ChunkHeader) -> None:
        """Chunk numbers count up (a chunk whose tag then fails still says where the next one is)."""
        rep = self.rep
        if self.expect_seq is not None and ch.seq != self.expect_seq:
            rep.problems.append(
                Problem(
                    i,
                    "order",
                    f"chunk {ch.seq} found where chunk {self.expect_seq} was expected",
                    ch.seq,
                    _ranges(ch.runs),
                )
            )
        self.expect_seq = ch.seq + 1

    def map_runs(self, i: int, ch: fmt.ChunkHeader) -> None:
        """Each block is inside the volume and mapped once in the generation."""
        mapped = self.mapped
        for r in ch.runs:
            if r.first + r.count > len(mapped):
                self.rep.problems.append(
                    Problem(i, "malformed", "chunk maps blocks past the end of the volume", ch.seq, _ranges((r,)))
                )
            elif r.count and mapped.overlaps(r.first, r.count):
                self.rep.problems.append(
                    Problem(i, "malformed", "blocks mapped twice in one generation", ch.seq, _ranges((r,)))
                )
            elif r.count:
                mapped.add(r.first, r.count)

    def damage(
        self, i: int, kind: bytes, data: bytes, e: TapearcError, message: str | None = None, what: str | None = None
    ) -> None:
        """An item that cannot be read: name it (a chunk with its sequence number and blocks when
        its header is intact)."""
        seq, blocks = _chunk_of(data) if kind == fmt.CHUNK_MAGIC else (None, [])
        text = f"{_ITEM_NAMES.get(kind, 'item')}: {message or e.message}"
        self.damaged.append(Problem(i, what or e.kind, text, seq, blocks))
        if kind == fmt.CHUNK_MAGIC:
            self.rep.chunks_damaged += 1

    def finish(self, index: int, ended: Mark) -> None:
        """The tape file was read to ``ended`` (``index``: the records read): check the trailer
        and the end record against what was read, and sort the problems."""
        rep = self.rep
        rep.complete = self.trailer.complete if self.trailer is not None else None
        if self.hdr is not None:
            self.check_trailer(self.hdr)
        self.spool.close()
        rep.problems.extend(_group_strays(self.damaged))
        if ended is Mark.END_OF_DATA and (rep.records or rep.problems):
            rep.problems.append(
                Problem(
                    index,
                    "truncated",
                    "the medium ends inside this tape file (no filemark): an interrupted backup or a cut image",
                )
            )
        rep.problems.sort(key=lambda p: p.record)

    def check_trailer(self, hdr: fmt.GenerationHeader) -> None:
        rep, trailer = self.rep, self.trailer
        if trailer is None:
            rep.problems.append(
                Problem(
                    rep.records,
                    "missing",
                    "no readable trailer: the generation's backup was interrupted, or its trailer is damaged",
                )
            )
            return
        _check_index(rep, trailer, self.seen, self.damaged, self.spool)
        if self.end is None:
            rep.problems.append(Problem(self.trailer_record, "missing", "no end record after the trailer"))
        elif self.end.trailer_record != self.trailer_record:
            rep.problems.append(
                Problem(
                    self.trailer_record,
                    "index",
                    f"end record points at record {self.end.trailer_record}, the trailer is at {self.trailer_record}",
                )
            )
        mapped = self.mapped
        full = trailer.complete and hdr.kind == fmt.GenerationKind.FULL and hdr.part == 0
        if full and mapped and not mapped.full() and not self.damaged:
            gap = mapped.first_gap()
            rep.problems.append(
                Problem(
                    self.trailer_record,
                    "malformed",
                    "the full generation does not account for every block",
                    None,
                    [(gap, gap)],
                )
            )


def _group_strays(problems: list[Problem]) -> list[Problem]:
    """Consecutive records that belong to no item become one problem."""
    out: list[Problem] = []
    last_end = -2
    for p in sorted(problems, key=lambda p: p.record):
        if (
            p.what == "stray"
            and out
            and out[-1].what == "stray"
            and p.record == last_end + 1
            and p.chunk == out[-1].chunk
        ):
            first = out[-1].record
            out[-1].message = f"records {first}-{p.record} belong to no item (data of a damaged item, or foreign)"
            last_end = p.record
            continue
        out.append(p)
        last_end = p.record
    return out


def fmt_malformed(msg: str) -> TapearcError:
    from tapearc.errors import MalformedError

    return MalformedError(msg)


def _chunk_of(data: bytes) -> tuple[int | None, list[tuple[int, int]]]:
    try:
        ch, _ = fmt.decode_chunk_header(data)
    except TapearcError:
        return None, []
    return ch.seq, _ranges(ch.runs)


def _check_index(
    rep: FileReport, trailer: fmt.TrailerFile, seen: list[_Seen], damaged: list[Problem], spool: _DigestSpool
) -> None:
    """The trailer's index against the chunks read: each entry is a chunk read (same records,
    lengths, CRCs, runs and block digests) or names the damage where it was; each chunk read is
    in the index."""
    by_seq = {s.seq: s for s in seen}
    entries = {e.seq: e for e in trailer.entries}
    for k, e in enumerate(trailer.entries):
        s = by_seq.get(e.seq)
        if s is None:
            _name_damage(rep, e, damaged)
        else:  # one chunk's digests at a time, from the trailer's spool and verify's
            _check_entry(rep, e, s, spool.get(s.digests), trailer.digests(k), bool(trailer.digest_alg))
    for s in seen:
        if s.seq not in entries:
            rep.problems.append(
                Problem(
                    s.record, "index", f"chunk {s.seq} is not in the trailer's index", s.seq, _ranges(s.header.runs)
                )
            )


def _name_damage(rep: FileReport, e: fmt.ChunkIndexEntry, damaged: list[Problem]) -> None:
    """The chunk was not read intact: name it with the trailer's mapping."""
    covered = [p for p in damaged if p.chunk is None and e.record <= p.record < e.record + e.record_count]
    covered += [p for p in damaged if p.chunk == e.seq]
    if covered:
        for p in covered:
            p.chunk = e.seq
            if not p.blocks:
                p.blocks = _ranges(e.runs)
        return
    damaged.append(
        Problem(e.record, "missing", f"chunk {e.seq} listed in the trailer was not found", e.seq, _ranges(e.runs))
    )
    rep.chunks_damaged += 1


def _check_entry(
    rep: FileReport, e: fmt.ChunkIndexEntry, s: _Seen, sdig: bytes, tdig: bytes, has_digests: bool
) -> None:
    """A chunk read intact against its index entry and the trailer's block digests."""
    h = s.header
    if (s.record, s.record_count, h.stored_len, h.raw_len, h.payload_crc, h.runs) != (
        e.record,
        e.record_count,
        e.stored_len,
        e.raw_len,
        e.payload_crc,
        e.runs,
    ):
        rep.problems.append(
            Problem(
                s.record,
                "index",
                f"chunk {e.seq} differs from the trailer's index entry: {_unlike(e, s)}",
                e.seq,
                _ranges(e.runs),
            )
        )
    elif sdig and has_digests and sdig != tdig:
        bad = [b for b, (x, y) in enumerate(zip(_chunks16(sdig), _chunks16(tdig), strict=False)) if x != y]
        ids = [bid for bid, z in fmt.iter_blocks(e.runs) if not z]
        rep.problems.append(
            Problem(
                s.record,
                "digest",
                f"chunk {e.seq}: {len(bad)} block(s) do not match their digests",
                e.seq,
                _ranges([fmt.Run(ids[k], 1) for k in bad]),
            )
        )


def _unlike(e: fmt.ChunkIndexEntry, s: _Seen) -> str:
    """What of chunk ``s`` read differs from its index entry ``e``."""
    h = s.header
    out = []
    if (s.record, s.record_count) != (e.record, e.record_count):
        out.append(f"records {e.record}+{e.record_count} there, {s.record}+{s.record_count} here")
    if h.payload_crc != e.payload_crc:
        out.append("another payload CRC (not the data backed up)")
    if (h.stored_len, h.raw_len) != (e.stored_len, e.raw_len):
        out.append(f"{e.stored_len}/{e.raw_len} bytes stored/raw there, {h.stored_len}/{h.raw_len} here")
    if h.runs != e.runs:
        out.append("another block map")
    return "; ".join(out)


def _chunks16(b: bytes) -> Iterator[bytes]:
    for o in range(0, len(b), 16):
        yield b[o : o + 16]


def verify_medium(
    drive: TapeDrive,
    catalog: Catalog | None = None,
    *,
    generation: int | None = None,
    volume: str | None = None,
    check_digests: bool = True,
    progress: Progress | None = None,
    key: Key | None = None,
) -> MediumReport:
    """Verify the medium in ``drive`` (every tape file, or only ``generation``'s). ``key``: the
    data key of an encrypted set (every chunk's tag and keyed digests are checked with it);
    WrongKeyError before any tape file is read when the medium's key record is of another key."""
    progress = progress or NoProgress()
    rep = MediumReport(medium=drive.name)
    try:
        keys: list[bytes] = []
        label = read_label(drive, keys)
        set_fp = _key_record(drive, rep, key, keys)
    except WrongKeyError:
        raise
    except TapearcError as e:
        rep.problems.append(Problem(0, e.kind, e.message))
        return rep
    rep.medium_uuid, rep.media_set, rep.sequence = str(label.medium_uuid), str(label.media_set_uuid), label.sequence
    progress.start(f"verify {drive.name}", bytes_to_read(drive))
    seen: dict[tuple[uuid.UUID, int], int] = {}
    try:
        for walked in walk_tape_files(drive, label=False):
            fr, ended = verify_tape_file(
                drive, label, check_digests=check_digests, walked=walked, key=key, set_fingerprint=set_fp, seen=seen
            )
            walked.finish(ended)
            if walked.torn and walked.problem:
                fr.problems.append(Problem(0, "truncated", walked.problem))
            progress.advance(fr.bytes)
            wanted = (generation is None or fr.generation == generation) and (volume is None or fr.volume == volume)
            if wanted:
                rep.files.append(fr)
            else:
                rep.others.append((fr.tape_file, fr.volume, fr.generation))
    finally:
        progress.finish()
    try:
        cut = bool(drive.status().details.get("image_truncated"))
    except TapearcError:
        cut = False
    if cut and not (rep.files and rep.files[-1].kind == "interrupted"):
        last = rep.files[-1].tape_file if rep.files else 0
        rep.problems.append(
            Problem(
                0,
                "truncated",
                f"the medium ends with a cut or damaged record after tape file {last}: an interrupted write or a truncated image",
            )
        )
    if catalog is not None:
        _check_catalog(rep, catalog, label)
        _check_chains(rep, catalog)
    return rep


def _key_record(drive: TapeDrive, rep: MediumReport, key: Key | None, records: list[bytes]) -> bytes | None:
    """Tape file 0's key records (``records``, as read after the label): an encrypted set's.
    Each must decode (CRC, fields: a damaged one is a problem of the medium); the first one's
    fingerprint is the set's; WrongKeyError when ``key`` is of another key."""
    fps: list[bytes] = []
    for k, rec in enumerate(records, start=1):
        try:
            fps.append(fmt.decode_key_record(rec).key_fingerprint)
        except TapearcError as e:
            rep.problems.append(
                Problem(
                    k,
                    "key-record",
                    f"the key record (tape file 0, record {k}) is damaged: {e.message} (the key file, a paper key "
                    "or another medium of the set still hold the key)",
                )
            )
    if not fps:
        return None
    fp = fps[0]
    rep.key_fingerprint = fingerprint_text(fp)
    if key is not None and key.fingerprint not in fps:
        raise WrongKeyError(
            f"medium {drive.name} belongs to a media set encrypted with key {fingerprint_text(fp)}, not with the "
            f"key given ({key.fingerprint_text})",
            hint=f"give the key whose fingerprint is {fingerprint_text(fp)}",
            fingerprint=fingerprint_text(fp),
            given=key.fingerprint_text,
        ).at(medium=drive.name)
    return fp


def bytes_to_read(drive: TapeDrive) -> int | None:
    """About how many bytes reading the whole medium takes, for a progress total: a ``sim:`` or
    ``dir:`` medium's used bytes (its image or record files up to the end of data, the label
    and framing included); None when the medium does not say (a tape drive, a stream)."""
    try:
        st = drive.status()
    except TapearcError:
        return None
    if st.details.get("backend") == "stream" or not st.used:
        return None
    return st.used


def _check_chains(rep: MediumReport, catalog: Catalog) -> None:
    """What each generation claims must be possible: an incremental has its base's block size,
    the chunks account for the volume size the header claims (the check restore makes before
    writing anything; plan.check_generation)."""
    for fr in rep.files:
        if fr.run_uuid is None or fr.part not in (0, None):
            continue
        g = catalog.generation_by_run(fr.run_uuid)
        if g is None or g.state != GenerationState.COMPLETE:
            continue
        try:
            check_generation(catalog, g)
        except MalformedError as e:
            fr.problems.append(Problem(0, "malformed", e.message, None, [e.blocks] if e.blocks else []))
        except TapearcError:
            pass  # an incomplete or unknown base: reported where that generation is verified


def check_selection_found(media: list[MediumReport], generation: int | None, volume: str | None) -> None:
    """``--generation``/``--volume`` chose tape files; when none of the media read holds one, that
    is NoSuchGenerationError (exit 6, as for restore), never an OK that verified nothing. Tape
    files whose generation header could not be read may be the one asked for: then it is damage
    (a problem in the report), not 'no such generation'."""
    if generation is None and volume is None:
        return
    read = [m for m in media if m.medium_uuid is not None]  # the label was readable
    if not read or any(m.files for m in media):
        return
    unknown = [tf for m in read for tf, _, g in m.others if g is None]
    what = " of ".join(
        x
        for x in (f"generation {generation}" if generation is not None else "", f"volume {volume!r}" if volume else "")
        if x
    )
    if unknown:
        read[0].problems.append(
            Problem(
                0,
                "missing",
                f"{what} was not found; tape files {', '.join(map(str, unknown))} could not be identified (damaged)",
            )
        )
        return
    have = sorted({g for m in read for _, v, g in m.others if g is not None and (volume is None or v == volume)})
    vols = sorted({v for m in read for _, v, _ in m.others if v is not None})
    if volume is not None and volume not in vols:
        held = f"it holds volumes {', '.join(map(repr, vols))}" if vols else "it holds no generation"
    else:
        held = f"it holds generations {', '.join(map(str, have))}" if have else "it holds no generation"
    raise NoSuchGenerationError(
        f"no {what} on {'this medium' if len(read) == 1 else 'these media'} ({held})",
        hint="tapearc list shows what the medium holds",
    ).at(medium=read[0].medium if len(read) == 1 else None)


def _check_catalog(rep: MediumReport, catalog: Catalog, label: fmt.Label) -> None:
    """The catalog must agree with the medium (chunks, positions, CRCs)."""
    known = catalog.medium(label.medium_uuid)
    if known is None:
        return
    for fr in rep.files:
        if fr.run_uuid is None:
            continue
        g = catalog.generation_by_run(fr.run_uuid)
        if g is None:
            fr.problems.append(
                Problem(0, "catalog", "the catalog does not know this generation (tapearc scan learns it)")
            )
            continue
        if fr.ok and fr.complete and fr.part == 0 and g.state == GenerationState.INCOMPLETE:
            fr.problems.append(
                Problem(
                    0,
                    "catalog",
                    f"the catalog records generation {g.number} incomplete, but the medium holds it whole (its "
                    "trailer says complete, every chunk intact): tapearc scan learns it",
                )
            )
        rows = [c for c in catalog.chunks(g.id) if c.medium_uuid == label.medium_uuid and c.tape_file == fr.tape_file]
        if fr.ok and len(rows) != fr.chunks_ok:
            fr.problems.append(
                Problem(
                    0,
                    "catalog",
                    f"the catalog lists {len(rows)} chunks in this tape file, the medium holds {fr.chunks_ok}",
                )
            )


def affected_generations(catalog: Catalog, reports: list[MediumReport]) -> dict[str, list[int]]:
    """For each damaged chunk, the generations of its volume whose restore needs a block from it."""
    out: dict[str, set[int]] = {}
    for m in reports:
        for fr in m.files:
            if fr.ok or fr.run_uuid is None or fr.volume is None:
                continue
            g = catalog.generation_by_run(fr.run_uuid)
            bad_seqs = {p.chunk for p in fr.problems if p.chunk is not None}
            whole = any(p.chunk is None and p.what not in ("catalog",) for p in fr.problems)
            if g is None:
                out.setdefault(fr.volume, set()).add(fr.generation or 0)
                continue
            out.setdefault(fr.volume, set()).add(g.number)
            for later in catalog.generations(g.set_uuid, g.volume):
                if later.number <= g.number or later.state != GenerationState.COMPLETE:
                    continue
                try:
                    chain = load_chain(catalog, g.set_uuid, g.volume, later.number)
                except TapearcError:
                    continue
                if g.number not in [c.number for c in chain]:
                    continue
                if whole:
                    out[fr.volume].add(later.number)
                    continue
                cm = chain_map(catalog, chain, set())
                ids = {i for i, c in enumerate(cm.chunks) if c.generation == g.number and c.seq in bad_seqs}
                if ids and any(x in ids for x in set(cm.map.vals)):
                    out[fr.volume].add(later.number)
    return {k: sorted(v) for k, v in out.items()}


def verify_against(
    catalog: Catalog,
    set_uuid: uuid.UUID,
    volume: str,
    generation: int | None,
    source: str,
    *,
    digest: fmt.DigestFunction = fmt.block_digest,
) -> dict[str, object]:
    """Does generation N, as it would be restored, equal the volume ``source``? (block digests:
    ``digest`` is the keyed digest function of an encrypted set)"""
    chain = load_chain(catalog, set_uuid, volume, generation)
    g = chain[-1]
    # memory: the map's intervals and a few digest tables read from the catalog as the walk
    # reaches them, not every table of the chain (nor anything per claimed block)
    man = _WindowDigests(MappedDigests.of_chain(catalog, chain), g.nblocks)
    bs = g.block_size
    diff: list[tuple[int, int]] = []
    with open_source(source) as src:
        size = src.size
        n = -(-max(size, g.volume_size) // bs)
        b = _compare_source(src, man, bs, diff, digest)
        if b < n:  # past the end of the source
            _add(diff, b)
            diff[-1] = (diff[-1][0], n - 1)
    return {
        "source": source,
        "volume": volume,
        "generation": g.number,
        "volume_size": g.volume_size,
        "source_size": size,
        "equal": not diff and size == g.volume_size,
        "differing_blocks": sum(b - a + 1 for a, b in diff),
        "differing_ranges": [list(r) for r in diff],
        "block_size": bs,
    }


def _compare_source(
    src: Source, man: _WindowDigests, bs: int, diff: list[tuple[int, int]], digest: fmt.DigestFunction
) -> int:
    """Compare the source's blocks with the generation's digests, window by window, into
    ``diff``; a window the source reports as a hole is not read (its blocks are zero). Returns
    the number of blocks of the source compared."""
    size = src.size
    buf = bytearray(bs * 256)
    view = memoryview(buf)
    zd = bytes(fmt.DIGEST_LEN)
    b = 0
    off = 0
    while off < size:
        want = min(len(buf), size - off)
        if not any(e.data for e in src.extents(off, want)):  # a hole: zeros, not read
            got = want
            man.window(b, -(-got // bs))
            for _ in range(0, got, bs):
                if man.digest(b) != zd:
                    _add(diff, b)
                b += 1
            off += got
            continue
        got = src.readinto_at(view[:want], off)
        man.window(b, -(-got // bs))
        for o in range(0, got, bs):
            blk = view[o : min(o + bs, got)]
            d = zd if fmt.is_zero(buf, o, len(blk)) else digest(blk)
            if man.digest(b) != d:
                _add(diff, b)
            b += 1
        off += got
        if got < want:
            break
    return b


class _WindowDigests:
    """The block digests of a chain's last generation, a window of blocks at a time (read from
    the catalog by :class:`MappedDigests`). A block past the generation's end, or of a chunk
    whose digests the catalog lacks, has no digest (None: it differs from any block)."""

    def __init__(self, md: MappedDigests, nblocks: int) -> None:
        self.md, self.nblocks = md, min(nblocks, md.nblocks)
        self.first = 0
        self.table: bytes | bytearray | None = b""
        self.count = 0

    def window(self, first: int, count: int) -> None:
        self.first = first
        self.count = max(0, min(count, self.nblocks - first))
        self.table = self.md.digests(first, self.count) if self.count else b""

    def digest(self, b: int) -> bytes | None:
        k = b - self.first
        if not 0 <= k < self.count:
            return None
        if self.table is None:  # some chunk of the window has no digests: look block by block
            one = self.md.digests(b, 1)
            return None if one is None else bytes(one)
        return bytes(self.table[k * fmt.DIGEST_LEN : (k + 1) * fmt.DIGEST_LEN])


def _add(ranges: list[tuple[int, int]], b: int) -> None:
    if ranges and ranges[-1][1] + 1 == b:
        ranges[-1] = (ranges[-1][0], b)
    else:
        ranges.append((b, b))


def run_verify(
    drive: TapeDrive,
    catalog: Catalog | None,
    *,
    generation: int | None = None,
    volume: str | None = None,
    against: str | None = None,
    progress: Progress | None = None,
    key: Key | None = None,
) -> VerifyReport:
    """Verify the medium in ``drive``, and compare a generation with ``against`` (its keyed
    digests need the key of an encrypted set: KeyRequiredError / WrongKeyError before the
    medium is read)."""
    started = time.monotonic()
    report = VerifyReport()
    if against is not None:
        check_source_name(against)  # a name that is no source: refused before the medium is read
    if against is not None and not _is_stream(drive):  # a stream is read once: checked after the verify
        _against_key(drive, key, _set_key_fingerprint(drive))
    m = verify_medium(drive, catalog, generation=generation, volume=volume, progress=progress, key=key)
    report.media.append(m)
    report.bytes_read = sum(f.bytes for f in m.files)
    if catalog is not None:
        report.affected = affected_generations(catalog, report.media)
    if against is not None and catalog is not None:
        lab = read_label(drive)
        vols = catalog.volumes(lab.media_set_uuid)
        vol = volume or (vols[0] if len(vols) == 1 else None)
        if vol is None:
            from tapearc.errors import UsageError

            raise UsageError(f"the media set holds several volumes ({', '.join(vols)}); choose one with --volume")
        fps = {f.key_fingerprint for f in m.files if f.volume == vol and f.key_fingerprint is not None}
        want = parse_fingerprint(sorted(fps)[0]) if fps else None
        _against_key(drive, key, want)
        dkey = key.digest_key() if want is not None and key is not None else None
        report.against = verify_against(
            catalog, lab.media_set_uuid, vol, generation, against, digest=fmt.digest_function(dkey)
        )
    report.seconds = time.monotonic() - started
    return report


def _is_stream(drive: TapeDrive) -> bool:
    try:
        return drive.status().details.get("backend") == "stream"
    except TapearcError:
        return True


def _set_key_fingerprint(drive: TapeDrive) -> bytes | None:
    """The fingerprint of the medium's key record (None: a plain set, or no readable record).
    Reads tape file 0 again (not on a stream)."""
    try:
        records = read_key_records(drive)
    except TapearcError:
        return None
    return records[0].key_fingerprint if records else None


def _against_key(drive: TapeDrive, key: Key | None, want: bytes | None) -> None:
    """--against of an encrypted set compares keyed digests: the key must be given, and be
    the set's."""
    if want is None:
        return
    what = f"medium {drive.name} belongs to a media set encrypted with key {fingerprint_text(want)}"
    if key is None:
        raise KeyRequiredError(
            f"{what}; comparing it with a source (--against) needs its key; no key was given",
            hint="give the key file with --key FILE",
            fingerprint=fingerprint_text(want),
        )
    if key.fingerprint != want:
        raise WrongKeyError(
            f"{what}, not with the key given ({key.fingerprint_text})",
            hint=f"give the key whose fingerprint is {fingerprint_text(want)}",
            fingerprint=fingerprint_text(want),
            given=key.fingerprint_text,
        )
