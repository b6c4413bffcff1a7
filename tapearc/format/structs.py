"""construct declarations of every on-media structure of format version 1.

This module is the single declaration of the byte layout; the codec
(:mod:`tapearc.format.codec`) uses these declarations for both writing and reading, and
formats/SPEC.md describes the same layout in prose. All integers are little-endian.

Each field is declared once, under the name of the model field it holds
(:mod:`tapearc.format.model`): the ``XxxFields`` structs are :class:`~.adapters.ModelAdapter`
s that parse into the model dataclass and build from it, so a field added here and in the model
is parsed, built and mapped with no other code. Fields the model does not hold are computed
when building (``header_len``, ``body_len``, ``format_version``, ``run_count``: ``Rebuild``).

* ``XxxFields``: the header fields before the header CRC, as the model;
* ``XxxHeader``/``XxxHeaderStruct``: ``RawCopy(XxxFields)`` followed by ``header_crc``, a
  construct ``Checksum`` computing CRC-32C over the raw bytes of the fields;
* ``XxxFixed``, where the codec needs the fixed part alone (the fields up to the
  variable-length tail), as plain construct containers.

The trailer header stays a plain Struct (its CRC and digest fields are checked by the codec
before anything is built from it); :data:`TrailerSummaryMap` and :data:`TrailerMap` map it to
the models by name. Nothing here validates the *meaning* of fields; the codec does that.

Construct parsers never see untrusted lengths: the codec checks magic, lengths and the header
CRC explicitly before handing bytes to a parser (compiled parsers skip some checks).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from construct import (
    Array,
    Bytes,
    Check,
    Checksum,
    Const,
    Construct,
    Default,
    GreedyBytes,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    PascalString,
    Prefixed,
    RawCopy,
    Rebuild,
    Struct,
    Terminated,
    len_,
    this,
)

from .adapters import EnumAdapter, FieldMap, ModelAdapter, PathAdapter, ValueAdapter, struct_names
from .constants import (
    CHUNK_FIXED_LEN,
    CHUNK_MAGIC,
    FORMAT_VERSION,
    GENERATION_FIXED_LEN,
    GENERATION_FORMAT_VERSION_ENCRYPTED,
    GENERATION_FORMAT_VERSION_SOURCE,
    GENERATION_MAGIC,
    HEADER_CRC_LEN,
    INDEX_ENTRY_FIXED_LEN,
    KEY_FINGERPRINT_LEN,
    KEY_RECORD_FIXED_LEN,
    KEY_RECORD_MAGIC,
    LABEL_FIXED_LEN,
    LABEL_MAGIC,
    MAX_RUNS,
    PREFIX_LEN,
    RUN_LEN,
    TRAILER_END_LEN,
    TRAILER_END_MAGIC,
    TRAILER_HEADER_LEN,
    TRAILER_MAGIC,
)
from .crc import crc32c
from .model import (
    ChunkHeader,
    ChunkIndexEntry,
    Cipher,
    Compression,
    GenerationHeader,
    GenerationKind,
    Label,
    Run,
    RunKind,
    Trailer,
    TrailerEnd,
    TrailerSummary,
    VolumeSource,
)

__all__ = [
    "CHUNK_FIXED_LEN",
    "GENERATION_FIXED_LEN",
    "INDEX_ENTRY_FIXED_LEN",
    "LABEL_FIXED_LEN",
    "MIN_HEADER_LEN",
    "RUN_LEN",
    "TRAILER_END_LEN",
    "TRAILER_HEADER_LEN",
    "UUID16",
    "ChunkFields",
    "ChunkFieldsCompiled",
    "ChunkFixed",
    "ChunkHeaderStruct",
    "ChunkIndexEntryFixed",
    "ChunkIndexEntryStruct",
    "GenerationFields",
    "GenerationFieldsEncrypted",
    "GenerationFieldsSource",
    "GenerationFixed",
    "GenerationHeaderEncryptedStruct",
    "GenerationHeaderSourceStruct",
    "GenerationHeaderStruct",
    "HeaderStartStruct",
    "ItemPrefixStruct",
    "LabelFields",
    "LabelFixed",
    "LabelHeader",
    "RunModel",
    "RunStruct",
    "TrailerBodyCompiled",
    "TrailerBodyStruct",
    "TrailerEndFields",
    "TrailerEndHeaderStruct",
    "TrailerFields",
    "TrailerHeaderStruct",
    "TrailerMap",
    "TrailerSummaryMap",
    "VolumeSourceStruct",
    "field_offset",
]


def _uuid(raw: bytes) -> UUID:
    return UUID(bytes=raw)


def _uuid_bytes(u: UUID) -> bytes:
    return u.bytes


#: A UUID as 16 bytes in RFC 4122 (big-endian, ``uuid.UUID.bytes``) order.
UUID16: Construct = ValueAdapter(Bytes(16), _uuid, _uuid_bytes)


def _crc_of(data: bytes) -> int:
    return crc32c(data)


def _with_crc(fields: Construct) -> Construct:
    """``fields`` followed by ``header_crc``: CRC-32C of the raw bytes of ``fields``."""
    return Struct(
        "fields" / RawCopy(fields),
        "header_crc" / Checksum(Int32ul, _crc_of, this.fields.data),
    )


def _tuple_of(subcon: Construct) -> Construct:
    """``subcon`` (an Array) parsed into a tuple, as the model holds sequences."""
    return ValueAdapter(subcon, tuple, None)


def _source_len(src: VolumeSource) -> int:
    """Bytes of a generation header's source fields (layout 2)."""
    path, real = (p.encode("utf-8", "surrogateescape") for p in (src.path, src.real_path))
    return 2 + len(path) + 2 + len(real) + 8 + 8


# --------------------------------------------------------------------------- item prefix

#: The 16-byte prefix every item starts with, whatever its kind or version.
ItemPrefixStruct = Struct(
    "magic" / Bytes(8),  # 7 ASCII letters + the format version as an ASCII digit
    "header_len" / Int32ul,  # bytes of the header, including its trailing header CRC
    "body_len" / Int32ul,  # bytes after the header (payload or trailer body)
)

#: The prefix plus ``format_version``, which is at offset 16 in every header.
HeaderStartStruct = Struct(*ItemPrefixStruct.subcons, "format_version" / Int16ul)


def _prefix(
    magic: bytes, header_len: Any, *, body_len: Any = 0, version: int = FORMAT_VERSION
) -> tuple[Construct, ...]:
    """The prefix and format_version of a header whose magic is ``magic``: built from
    ``header_len`` (a value or a function of the fields), ``body_len`` (None: a field of the
    model) and ``version``."""
    return (
        "magic" / Const(magic),
        "header_len" / Rebuild(Int32ul, header_len),
        "body_len" / (Int32ul if body_len is None else Rebuild(Int32ul, body_len)),
        "format_version" / Rebuild(Int16ul, version),
    )


#: One run of blocks: ``count`` consecutive block ids from ``first``; kind 0 data, 1 zero.
RunStruct = Struct(
    "first" / Int64ul,
    "count" / Int32ul,
    "kind" / EnumAdapter(Int8ul, RunKind),
)
RunModel = ModelAdapter(RunStruct, Run)

# --------------------------------------------------------------------------- label

_LABEL_FIXED = (
    *_prefix(LABEL_MAGIC, lambda this: LABEL_FIXED_LEN + 1 + len(this.text.encode("utf-8")) + HEADER_CRC_LEN),
    "flags" / Int16ul,
    "medium_uuid" / UUID16,
    "media_set_uuid" / UUID16,
    "sequence" / Int32ul,
    "record_size" / Int32ul,
    "created" / Int64ul,
)
LabelFixed = Struct(*_LABEL_FIXED)
LabelFields = ModelAdapter(Struct(*_LABEL_FIXED, "text" / PascalString(Int8ul, "utf8")), Label)
LabelHeader = _with_crc(LabelFields)

# --------------------------------------------------------------------------- generation header


def _generation_fixed(header_len: Any, version: int) -> tuple[Construct, ...]:
    return (
        *_prefix(GENERATION_MAGIC, header_len, version=version),
        "kind" / EnumAdapter(Int8ul, GenerationKind),
        "compression" / EnumAdapter(Int8ul, Compression),
        "run_uuid" / UUID16,
        "media_set_uuid" / UUID16,
        "medium_uuid" / UUID16,
        "volume_uuid" / UUID16,
        "generation" / Int32ul,
        "base_generation" / Int32ul,
        "part" / Int32ul,
        "block_size" / Int32ul,
        "record_size" / Int32ul,
        "chunk_blocks" / Int32ul,
        "volume_size" / Int64ul,
        "created" / Int64ul,
        "volume_name" / PascalString(Int16ul, "utf8"),
    )


def _generation_len(this: Any) -> int:
    return GENERATION_FIXED_LEN + 2 + len(this.volume_name.encode("utf-8")) + HEADER_CRC_LEN


#: The volume's source (generation header layout 2, SPEC section 7.1).
VolumeSourceStruct = ModelAdapter(
    Struct(
        "path" / PathAdapter(Prefixed(Int16ul, GreedyBytes)),  # absolute path as given (OS bytes)
        "real_path" / PathAdapter(Prefixed(Int16ul, GreedyBytes)),  # the path with symlinks resolved
        "dev" / Int64ul,
        "ino" / Int64ul,
    ),
    VolumeSource,
)
GenerationFixed = Struct(*_generation_fixed(_generation_len, FORMAT_VERSION)[:-1])
GenerationFields = ModelAdapter(Struct(*_generation_fixed(_generation_len, FORMAT_VERSION)), GenerationHeader)
GenerationHeaderStruct = _with_crc(GenerationFields)
#: Layout 2 (format_version 2): the same fields, then the volume's source (SPEC section 7.1).
GenerationFieldsSource = ModelAdapter(
    Struct(
        *_generation_fixed(
            lambda this: _generation_len(this) + _source_len(this.source), GENERATION_FORMAT_VERSION_SOURCE
        ),
        "source" / VolumeSourceStruct,
    ),
    GenerationHeader,
)
GenerationHeaderSourceStruct = _with_crc(GenerationFieldsSource)
#: Layout 3 (format_version 3): layout 2, then the cipher and the key fingerprint (SPEC 7.2).
GenerationFieldsEncrypted = ModelAdapter(
    Struct(
        *_generation_fixed(
            lambda this: _generation_len(this) + _source_len(this.source) + 1 + KEY_FINGERPRINT_LEN,
            GENERATION_FORMAT_VERSION_ENCRYPTED,
        ),
        "source" / VolumeSourceStruct,
        "cipher" / EnumAdapter(Int8ul, Cipher),  # 1 AES-256-GCM; 0 is invalid in layout 3
        "key_fingerprint" / Bytes(KEY_FINGERPRINT_LEN),  # the data key's fingerprint
    ),
    GenerationHeader,
)
GenerationHeaderEncryptedStruct = _with_crc(GenerationFieldsEncrypted)

# --------------------------------------------------------------------------- chunk header

_CHUNK_FIXED = (
    *_prefix(CHUNK_MAGIC, CHUNK_FIXED_LEN + RUN_LEN * len_(this.runs) + HEADER_CRC_LEN, body_len=None),
    "flags" / Int16ul,
    "run_uuid" / UUID16,
    "generation" / Int32ul,
    "seq" / Int32ul,
    "block_size" / Int32ul,
    "volume_size" / Int64ul,
    "raw_len" / Int32ul,
    "payload_crc" / Int32ul,
    "run_count" / Rebuild(Int32ul, len_(this.runs)),
)
ChunkFixed = Struct(*_CHUNK_FIXED)
#: The chunk header's fields as a ChunkHeader (its ``stored_len`` is the item's body_len).
ChunkFields = ModelAdapter(
    Struct(*_CHUNK_FIXED, "runs" / _tuple_of(Array(this.run_count, RunModel))),
    ChunkHeader,
    aliases={"stored_len": "body_len"},
)
ChunkHeaderStruct = _with_crc(ChunkFields)
#: Compiled ChunkFields for the hot path (building; parsing only after the codec's checks).
ChunkFieldsCompiled = ChunkFields.compile()

# --------------------------------------------------------------------------- trailer

TrailerFields = Struct(
    *_prefix(TRAILER_MAGIC, TRAILER_HEADER_LEN, body_len=None),
    "flags" / Int16ul,
    "run_uuid" / UUID16,
    "generation" / Int32ul,
    "volume_size" / Int64ul,
    "block_size" / Int32ul,
    "chunk_count" / Int32ul,
    "data_blocks" / Int64ul,
    "zero_blocks" / Int64ul,
    "raw_bytes" / Int64ul,
    "stored_bytes" / Int64ul,
    "body_crc" / Int32ul,  # CRC-32C of the whole body: index entries and digest table
    "digest_alg" / Int8ul,  # 0 no digests, 1 BLAKE3-128, 2 keyed BLAKE3-128 (16 bytes per data block)
    "reserved" / Default(Bytes(3), bytes(3)),  # 0; keeps header_crc (and the body) 4-byte aligned
)
TrailerHeaderStruct = _with_crc(TrailerFields)
#: The trailer header's fields as a TrailerSummary (the header alone, no body).
TrailerSummaryMap = FieldMap(TrailerSummary, struct_names(TrailerFields))
#: The trailer header's fields plus its body (``entries``, ``digests``) as a Trailer.
TrailerMap = FieldMap(Trailer, (*struct_names(TrailerFields), "entries", "digests"))

_INDEX_ENTRY_FIXED = (
    "seq" / Int32ul,
    "record" / Int32ul,
    "record_count" / Int32ul,
    "flags" / Int16ul,
    "stored_len" / Int32ul,
    "raw_len" / Int32ul,
    "payload_crc" / Int32ul,
    "run_count" / Rebuild(Int32ul, len_(this.runs)),
)
ChunkIndexEntryFixed = Struct(*_INDEX_ENTRY_FIXED)
ChunkIndexEntryStruct = ModelAdapter(
    Struct(
        *_INDEX_ENTRY_FIXED,
        Check(this.run_count <= MAX_RUNS),
        "runs" / _tuple_of(Array(this.run_count, RunModel)),
    ),
    ChunkIndexEntry,
)
#: The trailer body: ``chunk_count`` index entries (pass ``chunk_count=`` to parse), then the
#: digest table: everything after the entries, which must be exactly ``data_blocks * 16`` bytes
#: for digest_alg 1 and 2 and empty for digest_alg 0 (the codec checks the length).
TrailerBodyStruct = Struct(
    "entries" / _tuple_of(Array(this._.chunk_count, ChunkIndexEntryStruct)),
    "digests" / GreedyBytes,
    Terminated,
)
#: Compiled TrailerBodyStruct (parsing only after the codec checked the body CRC and size).
TrailerBodyCompiled = TrailerBodyStruct.compile()

# --------------------------------------------------------------------------- generation end record

#: The last record of a complete generation file: where the trailer is. body_len is 0.
TrailerEndFields = ModelAdapter(
    Struct(
        *_prefix(TRAILER_END_MAGIC, TRAILER_END_LEN),
        "flags" / Int16ul,  # none defined: 0
        "run_uuid" / UUID16,
        "generation" / Int32ul,
        "trailer_record" / Int32ul,  # index within the tape file of the trailer's first record
        "trailer_records" / Int32ul,  # records the trailer occupies
        "trailer_len" / Int32ul,  # the trailer item's total bytes (header + body)
        "trailer_crc" / Int32ul,  # the trailer's header_crc
    ),
    TrailerEnd,
)
TrailerEndHeaderStruct = _with_crc(TrailerEndFields)

# --------------------------------------------------------------------------- sizes


def field_offset(struct: Construct, name: str) -> int:
    """Byte offset of field ``name`` within ``struct`` (a Struct or a ModelAdapter over one),
    whose fields before it have fixed sizes."""
    inner = struct.subcon if isinstance(struct, ModelAdapter) else struct
    offset = 0
    for sc in inner.subcons:
        if sc.name == name:
            return offset
        offset += sc.sizeof()
    raise KeyError(f"no field {name!r}")


#: Smallest header_len a valid header of each magic can declare.
MIN_HEADER_LEN: dict[bytes, int] = {
    LABEL_MAGIC: LABEL_FIXED_LEN + 1 + HEADER_CRC_LEN,
    GENERATION_MAGIC: GENERATION_FIXED_LEN + 2 + HEADER_CRC_LEN,
    CHUNK_MAGIC: CHUNK_FIXED_LEN + HEADER_CRC_LEN,
    TRAILER_MAGIC: TRAILER_HEADER_LEN,
    TRAILER_END_MAGIC: TRAILER_END_LEN,
    KEY_RECORD_MAGIC: KEY_RECORD_FIXED_LEN + 1 + HEADER_CRC_LEN,
}

# the format facts of constants.py are what the declarations above add up to
assert ItemPrefixStruct.sizeof() == PREFIX_LEN
assert (RunStruct.sizeof(), LabelFixed.sizeof(), GenerationFixed.sizeof()) == (
    RUN_LEN,
    LABEL_FIXED_LEN,
    GENERATION_FIXED_LEN,
)
assert (ChunkFixed.sizeof(), ChunkIndexEntryFixed.sizeof()) == (CHUNK_FIXED_LEN, INDEX_ENTRY_FIXED_LEN)
assert TrailerFields.sizeof() + HEADER_CRC_LEN == TRAILER_HEADER_LEN
assert TrailerEndFields.sizeof() + HEADER_CRC_LEN == TRAILER_END_LEN
