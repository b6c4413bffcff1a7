"""What a medium holds, read from the medium itself (no catalog)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from tapearc import format as fmt
from tapearc.catalog.db import path_text
from tapearc.crypto.keys import fingerprint_text
from tapearc.engine.keymedia import key_record_fingerprint
from tapearc.engine.layout import (
    MAGIC_CHUNK,
    MAGIC_GENHDR,
    MAGIC_TRAILER,
    Item,
    misplaced,
)
from tapearc.engine.tapefiles import Damage, FileItems, FileRecords, walk_tape_files
from tapearc.errors import TapearcError, TempFileError
from tapearc.media.base import Mark, TapeDrive


@dataclass(slots=True)
class ChunkListing:
    seq: int
    record: int
    record_count: int
    compressed: bool
    encrypted: bool
    stored_bytes: int
    raw_bytes: int
    runs: list[tuple[int, int, str]]  # (first block, count, "data"|"zero")


@dataclass(slots=True)
class TapeFileListing:
    tape_file: int
    records: int = 0
    bytes: int = 0
    record_sizes: list[tuple[int, int]] = field(default_factory=list)  # (size, count) runs, in order
    closed: bool = True
    kind: str = "unknown"  # as engine.tapefiles: label, generation, interrupted, damaged, foreign, empty
    volume: str | None = None
    generation: int | None = None
    generation_kind: str | None = None
    base_generation: int | None = None
    volume_size: int | None = None
    block_size: int | None = None
    record_size: int | None = None
    compression: str | None = None
    encrypted: bool = False  # a generation encrypted with the key of ``key_fingerprint``
    key_fingerprint: str | None = None
    created: int | None = None
    volume_uuid: str | None = None
    source_path: str | None = None  # the volume's source as recorded in the generation header (layout 2)
    source_real: str | None = None
    chunks: list[ChunkListing] = field(default_factory=list)
    data_blocks: int = 0
    zero_blocks: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    trailer: bool = False
    complete: bool = False
    problem: str | None = None

    def add_record_size(self, n: int) -> None:
        self.records += 1
        self.bytes += n
        if self.record_sizes and self.record_sizes[-1][0] == n:
            self.record_sizes[-1] = (n, self.record_sizes[-1][1] + 1)
        else:
            self.record_sizes.append((n, 1))


@dataclass(slots=True)
class MediumListing:
    medium: str
    label: fmt.Label
    files: list[TapeFileListing]
    key_fingerprint: str | None = None  # the key record's after the label: an encrypted media set
    key_record_problem: str | None = None  # a key record that does not decode

    def to_json(self, with_chunks: bool = True) -> dict[str, object]:
        lab = self.label
        files = []
        for f in self.files:
            d = {k: getattr(f, k) for k in f.__slots__ if k != "chunks"}
            d["record_sizes"] = [list(x) for x in f.record_sizes]
            if with_chunks and f.kind == "generation":
                d["chunks"] = [
                    {
                        "seq": c.seq,
                        "record": c.record,
                        "record_count": c.record_count,
                        "compressed": c.compressed,
                        "encrypted": c.encrypted,
                        "stored_bytes": c.stored_bytes,
                        "raw_bytes": c.raw_bytes,
                        "runs": [list(r) for r in c.runs],
                    }
                    for c in f.chunks
                ]
            files.append(d)
        return {
            "medium": self.medium,
            "label": {
                "format_version": fmt.FORMAT_VERSION,
                "medium_uuid": str(lab.medium_uuid),
                "media_set_uuid": str(lab.media_set_uuid),
                "sequence": lab.sequence,
                "record_size": lab.record_size,
                "created": lab.created,
                "label": lab.text,
            },
            "encrypted": self.encrypted,
            "key_fingerprint": self.key_fingerprint,
            "key_record_problem": self.key_record_problem,
            "tape_files": files,
            "generations": [
                {
                    "tape_file": f.tape_file,
                    "volume": f.volume,
                    "generation": f.generation,
                    "kind": f.generation_kind,
                    "base_generation": f.base_generation,
                    "volume_size": f.volume_size,
                    "changed_blocks": f.data_blocks + f.zero_blocks,
                    "stored_bytes": f.stored_bytes,
                    "created": f.created,
                    "complete": f.complete,
                    "encrypted": f.encrypted,
                    "key_fingerprint": f.key_fingerprint,
                    "volume_uuid": f.volume_uuid,
                    "source_path": f.source_path,
                    "source_real": f.source_real,
                }
                for f in self.files
                if f.kind == "generation"
            ],
            "volumes": self.chains(),
        }

    @property
    def encrypted(self) -> bool:
        """An encrypted media set: a key record after the label (even a damaged one), or an
        encrypted generation."""
        return (
            self.key_fingerprint is not None
            or self.key_record_problem is not None
            or any(f.encrypted for f in self.files)
        )

    def chains(self) -> dict[str, list[dict[str, object]]]:
        """Each volume's generations in order: the chain a restore follows."""
        out: dict[str, list[dict[str, object]]] = {}
        for f in self.files:
            if f.kind != "generation" or f.volume is None:
                continue
            out.setdefault(f.volume, []).append(
                {
                    "generation": f.generation,
                    "kind": f.generation_kind,
                    "base": f.base_generation,
                    "volume_size": f.volume_size,
                    "changed_blocks": f.data_blocks + f.zero_blocks,
                    "data_blocks": f.data_blocks,
                    "zero_blocks": f.zero_blocks,
                    "stored_bytes": f.stored_bytes,
                    "created": f.created,
                    "tape_file": f.tape_file,
                    "complete": f.complete,
                    "encrypted": f.encrypted,
                    "key_fingerprint": f.key_fingerprint,
                    "volume_uuid": f.volume_uuid,
                    "source_path": f.source_path,
                }
            )
        for v in out.values():
            v.sort(key=lambda d: int(d["generation"] or 0))  # type: ignore[call-overload]
        return out


def list_medium(drive: TapeDrive) -> MediumListing:
    """Read the whole medium: label, and every tape file's items (headers decoded, payloads not
    checked: that is verify's job). Damage in a tape file is reported in its ``problem`` (the
    first found) and the listing goes on past it, resynchronising as verify does. The tape files are those of
    :func:`~tapearc.engine.tapefiles.walk_tape_files`, as for verify and scan."""
    files: list[TapeFileListing] = []
    label: fmt.Label | None = None
    keys: tuple[str | None, str | None] = (None, None)
    seen: dict[tuple[uuid.UUID, int], int] = {}  # layout.misplaced: (run, part) -> tape file
    for walked in walk_tape_files(drive):
        if walked.kind == "label":
            label = walked.label
            assert label is not None
            lab = TapeFileListing(tape_file=0, kind="label")
            # the label file: the label record (and an encrypted set's key record), then a
            # filemark, already read by read_label
            lab.add_record_size(len(fmt.encode_label(label)))
            for rec in walked.key_records:
                lab.add_record_size(len(rec))
            keys = key_record_fingerprint(walked.key_records)
            files.append(lab)
            continue
        tf = TapeFileListing(tape_file=walked.tape_file, kind=walked.kind)
        if walked.kind == "generation" and walked.header is not None and label is not None:
            wrong = misplaced(label, walked.header, walked.tape_file, seen)
            tf.problem = None if wrong is None else f"{wrong[0]} tape file: {wrong[1]}"
        assert walked.records is not None
        end = _list_tape_file(drive, walked.records, tf, walked.logical)
        walked.finish(end)
        tf.closed = walked.closed
        if walked.kind != "generation":
            tf.problem = walked.problem if tf.problem is None else tf.problem
        elif not walked.closed and tf.problem is None:
            tf.problem = "the medium ends inside this tape file (no filemark): an interrupted backup"
        files.append(tf)
    assert label is not None
    return MediumListing(
        medium=drive.name, label=label, files=files, key_fingerprint=keys[0], key_record_problem=keys[1]
    )


def _list_tape_file(drive: TapeDrive, recs: FileRecords, tf: TapeFileListing, logical: int) -> Mark:
    """List the items of one tape file (its records counted), on past damage as verify reads
    them (tapefiles.FileItems); ``tf.problem`` is the first damage found. Returns the mark that
    ends the tape file."""
    items = FileItems(recs, tape_file=tf.tape_file, logical=logical, medium=drive.name, on_record=tf.add_record_size)
    first = True
    for got in items:
        if tf.kind != "generation":
            continue  # an interrupted, damaged or foreign tape file: its records are counted
        if isinstance(got, Damage):
            _problem(tf, str(got.error))
        elif first and got.magic != MAGIC_GENHDR:
            _problem(tf, f"tape file starts with {got.magic!r}, not a generation header")
        else:
            try:
                _list_item(tf, got, first)
            except TempFileError:  # our temporary file, not the medium: never taken for damage
                raise
            except TapearcError as e:
                _problem(tf, str(e.at(medium=drive.name, tape_file=tf.tape_file, record=got.record)))
                items.damaged(got, e)
        first = False
    return items.ended or Mark.END_OF_DATA


def _problem(tf: TapeFileListing, text: str) -> None:
    if tf.problem is None:
        tf.problem = text


def _list_item(tf: TapeFileListing, item: Item, first: bool) -> None:
    """Decode one item of a generation tape file into its listing (raises its damage)."""
    if first:
        _list_header(tf, fmt.decode_generation_header(item.data))
    elif item.magic == MAGIC_CHUNK:
        _list_chunk(tf, item)
    elif item.magic == MAGIC_TRAILER:
        t = item.trailer()  # checked as decode_trailer checks it; a large one read from its spool
        tf.trailer = True
        tf.complete = t.complete
    elif item.magic == fmt.TRAILER_END_MAGIC:
        fmt.decode_trailer_end(item.data)
    else:
        _problem(tf, f"unexpected item {item.magic!r} at record {item.record}")


def _list_header(tf: TapeFileListing, h: fmt.GenerationHeader) -> None:
    tf.volume = h.volume_name
    tf.generation = h.generation
    tf.generation_kind = "full" if h.kind == fmt.GenerationKind.FULL else "incremental"
    tf.base_generation = h.base_generation
    tf.volume_size = h.volume_size
    tf.block_size = h.block_size
    tf.record_size = h.record_size
    tf.compression = "zstd" if h.compression == fmt.Compression.ZSTD else "none"
    tf.encrypted = h.encrypted
    tf.key_fingerprint = fingerprint_text(h.key_fingerprint) if h.key_fingerprint is not None else None
    tf.created = h.created
    tf.volume_uuid = str(h.volume_uuid)
    if h.source is not None:
        tf.source_path = path_text(h.source.path) or None
        tf.source_real = path_text(h.source.real_path) or None


def _list_chunk(tf: TapeFileListing, item: Item) -> None:
    c, _ = fmt.decode_chunk_header(item.data)
    runs = [(r.first, r.count, "zero" if r.is_zero else "data") for r in c.runs]
    tf.chunks.append(
        ChunkListing(
            seq=c.seq,
            record=item.record,
            record_count=item.record_count,
            compressed=bool(c.flags & fmt.CHUNK_FLAG_ZSTD),
            encrypted=c.encrypted,
            stored_bytes=c.stored_len,
            raw_bytes=c.raw_len,
            runs=runs,
        )
    )
    tf.data_blocks += sum(r.count for r in c.runs if not r.is_zero)
    tf.zero_blocks += sum(r.count for r in c.runs if r.is_zero)
    tf.raw_bytes += c.raw_len
    tf.stored_bytes += c.stored_len
