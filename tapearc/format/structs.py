"""construct declarations of every on-media structure of format version 1.

This module is the single declaration of the byte layout; the codec
(:mod:`tapearc.format.codec`) uses these declarations for both writing and reading, and
formats/SPEC.md describes the same layout in prose. All integers are little-endian.

Every header is declared twice over the *same* field list:

* ``XxxFields``: the header fields before the header CRC;
* ``XxxHeader``: ``RawCopy(XxxFields)`` followed by ``header_crc``, a construct ``Checksum``
  computing CRC-32C over the raw bytes of the fields.

and, where the codec needs the length of the fixed part, ``XxxFixed`` (the fields up to the
variable-length tail). Nothing here validates the *meaning* of fields; the codec does that.

Construct parsers never see untrusted lengths: the codec checks magic, lengths and the header
CRC explicitly before handing bytes to a parser (compiled parsers skip some checks).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from construct import (
    Adapter,
    Array,
    Bytes,
    Check,
    Checksum,
    Const,
    Construct,
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

from .constants import (
    CHUNK_MAGIC,
    GENERATION_MAGIC,
    HEADER_CRC_LEN,
    LABEL_MAGIC,
    MAX_RUNS,
    PREFIX_LEN,
    TRAILER_END_MAGIC,
    TRAILER_MAGIC,
)
from .crc import crc32c

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
    "GenerationFieldsSource",
    "GenerationFixed",
    "GenerationHeaderSourceStruct",
    "GenerationHeaderStruct",
    "HeaderStartStruct",
    "ItemPrefixStruct",
    "LabelFields",
    "LabelFixed",
    "LabelHeader",
    "RunStruct",
    "TrailerBodyCompiled",
    "TrailerBodyStruct",
    "TrailerEndFields",
    "TrailerEndHeaderStruct",
    "TrailerFields",
    "TrailerHeaderStruct",
]


class _UUIDAdapter(Adapter):  # type: ignore[misc]
    """16 bytes in RFC 4122 order (``uuid.UUID.bytes``) <-> :class:`uuid.UUID`."""

    def _decode(self, obj: bytes, context: Any, path: Any) -> UUID:
        return UUID(bytes=obj)

    def _encode(self, obj: UUID, context: Any, path: Any) -> bytes:
        return obj.bytes


#: A UUID as 16 bytes in RFC 4122 (big-endian, ``uuid.UUID.bytes``) order.
UUID16: Construct = _UUIDAdapter(Bytes(16))


def _crc_of(data: bytes) -> int:
    return crc32c(data)


def _with_crc(fields: Construct) -> Construct:
    """``fields`` followed by ``header_crc``: CRC-32C of the raw bytes of ``fields``."""
    return Struct(
        "fields" / RawCopy(fields),
        "header_crc" / Checksum(Int32ul, _crc_of, this.fields.data),
    )


# --------------------------------------------------------------------------- item prefix

#: The 16-byte prefix every item starts with, whatever its kind or version.
ItemPrefixStruct = Struct(
    "magic" / Bytes(8),  # 7 ASCII letters + the format version as an ASCII digit
    "header_len" / Int32ul,  # bytes of the header, including its trailing header CRC
    "body_len" / Int32ul,  # bytes after the header (payload or trailer body)
)

#: The prefix plus ``format_version``, which is at offset 16 in every header.
HeaderStartStruct = Struct(*ItemPrefixStruct.subcons, "format_version" / Int16ul)


def _prefix(magic: bytes) -> tuple[Construct, ...]:
    """The prefix and format_version of a header whose magic is ``magic``."""
    return (
        "magic" / Const(magic),
        "header_len" / Int32ul,
        "body_len" / Int32ul,
        "format_version" / Int16ul,
    )


#: One run of blocks: ``count`` consecutive block ids from ``first``; kind 0 data, 1 zero.
RunStruct = Struct(
    "first" / Int64ul,
    "count" / Int32ul,
    "kind" / Int8ul,
)

# --------------------------------------------------------------------------- label

_LABEL_FIXED = (
    *_prefix(LABEL_MAGIC),
    "flags" / Int16ul,
    "medium_uuid" / UUID16,
    "media_set_uuid" / UUID16,
    "sequence" / Int32ul,
    "record_size" / Int32ul,
    "created" / Int64ul,
)
LabelFixed = Struct(*_LABEL_FIXED)
LabelFields = Struct(*_LABEL_FIXED, "text" / PascalString(Int8ul, "utf8"))
LabelHeader = _with_crc(LabelFields)

# --------------------------------------------------------------------------- generation header

_GENERATION_FIXED = (
    *_prefix(GENERATION_MAGIC),
    "kind" / Int8ul,
    "compression" / Int8ul,
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
)
GenerationFixed = Struct(*_GENERATION_FIXED)
GenerationFields = Struct(*_GENERATION_FIXED, "volume_name" / PascalString(Int16ul, "utf8"))
GenerationHeaderStruct = _with_crc(GenerationFields)
#: Layout 2 (format_version 2): the same fields, then the volume's source (SPEC section 7.1).
GenerationFieldsSource = Struct(
    *_GENERATION_FIXED,
    "volume_name" / PascalString(Int16ul, "utf8"),
    "source_path" / Prefixed(Int16ul, GreedyBytes),  # absolute path as given (OS bytes)
    "source_real" / Prefixed(Int16ul, GreedyBytes),  # the path with symlinks resolved
    "source_dev" / Int64ul,
    "source_ino" / Int64ul,
)
GenerationHeaderSourceStruct = _with_crc(GenerationFieldsSource)

# --------------------------------------------------------------------------- chunk header

_CHUNK_FIXED = (
    *_prefix(CHUNK_MAGIC),
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
ChunkFields = Struct(*_CHUNK_FIXED, "runs" / Array(this.run_count, RunStruct))
ChunkHeaderStruct = _with_crc(ChunkFields)
#: Compiled ChunkFields for the hot path (building; parsing only after the codec's checks).
ChunkFieldsCompiled = ChunkFields.compile()

# --------------------------------------------------------------------------- trailer

TrailerFields = Struct(
    *_prefix(TRAILER_MAGIC),
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
    "digest_alg" / Int8ul,  # 0 no digests, 1 BLAKE3-128 (16 bytes per data block)
    "reserved" / Bytes(3),  # 0; keeps header_crc (and the body) 4-byte aligned
)
TrailerHeaderStruct = _with_crc(TrailerFields)

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
ChunkIndexEntryStruct = Struct(
    *_INDEX_ENTRY_FIXED,
    Check(this.run_count <= MAX_RUNS),
    "runs" / Array(this.run_count, RunStruct),
)
#: The trailer body: ``chunk_count`` index entries (pass ``chunk_count=`` to parse), then the
#: digest table: everything after the entries, which must be exactly ``data_blocks * 16`` bytes
#: for digest_alg 1 and empty for digest_alg 0 (the codec checks the length).
TrailerBodyStruct = Struct(
    "entries" / Array(this._.chunk_count, ChunkIndexEntryStruct),
    "digests" / GreedyBytes,
    Terminated,
)
#: Compiled TrailerBodyStruct (parsing only after the codec checked the body CRC and size).
TrailerBodyCompiled = TrailerBodyStruct.compile()

# --------------------------------------------------------------------------- generation end record

#: The last record of a complete generation file: where the trailer is. body_len is 0.
TrailerEndFields = Struct(
    *_prefix(TRAILER_END_MAGIC),
    "flags" / Int16ul,  # none defined: 0
    "run_uuid" / UUID16,
    "generation" / Int32ul,
    "trailer_record" / Int32ul,  # index within the tape file of the trailer's first record
    "trailer_records" / Int32ul,  # records the trailer occupies
    "trailer_len" / Int32ul,  # the trailer item's total bytes (header + body)
    "trailer_crc" / Int32ul,  # the trailer's header_crc
)
TrailerEndHeaderStruct = _with_crc(TrailerEndFields)

# --------------------------------------------------------------------------- sizes

RUN_LEN: int = RunStruct.sizeof()
LABEL_FIXED_LEN: int = LabelFixed.sizeof()
GENERATION_FIXED_LEN: int = GenerationFixed.sizeof()
CHUNK_FIXED_LEN: int = ChunkFixed.sizeof()
TRAILER_HEADER_LEN: int = TrailerFields.sizeof() + HEADER_CRC_LEN
TRAILER_END_LEN: int = TrailerEndFields.sizeof() + HEADER_CRC_LEN
INDEX_ENTRY_FIXED_LEN: int = ChunkIndexEntryFixed.sizeof()

#: Smallest header_len a valid header of each magic can declare.
MIN_HEADER_LEN: dict[bytes, int] = {
    LABEL_MAGIC: LABEL_FIXED_LEN + 1 + HEADER_CRC_LEN,
    GENERATION_MAGIC: GENERATION_FIXED_LEN + 2 + HEADER_CRC_LEN,
    CHUNK_MAGIC: CHUNK_FIXED_LEN + HEADER_CRC_LEN,
    TRAILER_MAGIC: TRAILER_HEADER_LEN,
    TRAILER_END_MAGIC: TRAILER_END_LEN,
}

assert ItemPrefixStruct.sizeof() == PREFIX_LEN
assert (RUN_LEN, LABEL_FIXED_LEN, GENERATION_FIXED_LEN, CHUNK_FIXED_LEN) == (13, 68, 124, 68)
assert (TRAILER_HEADER_LEN, INDEX_ENTRY_FIXED_LEN, TRAILER_END_LEN) == (100, 30, 60)
