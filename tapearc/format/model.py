"""Python-side model of the on-media structures (format version 1).

These frozen dataclasses are what the codec (:mod:`tapearc.format.codec`) encodes and decodes.
They hold the *meaning* of a structure; lengths, magic numbers, the format version and CRCs of
the header itself are computed by the codec. Byte layout: formats/SPEC.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from uuid import UUID

from .constants import (
    CHUNK_FLAG_ENCRYPTED,
    CHUNK_FLAG_ZSTD,
    DIGEST_BLAKE3_128,
    TRAILER_FLAG_COMPLETE,
    TRAILER_FLAG_CONTINUES,
)

__all__ = [
    "ChunkHeader",
    "ChunkIndexEntry",
    "Cipher",
    "Compression",
    "GenerationHeader",
    "GenerationKind",
    "ItemPrefix",
    "Label",
    "Run",
    "RunKind",
    "Trailer",
    "TrailerEnd",
    "TrailerSummary",
    "VolumeSource",
]


class RunKind(IntEnum):
    """What a run of blocks is."""

    DATA = 0  #: the blocks are stored in the chunk payload, in run order
    ZERO = 1  #: the blocks are all zero bytes and are not stored


class GenerationKind(IntEnum):
    """Kind of backup a generation holds."""

    FULL = 0
    INCREMENTAL = 1


class Compression(IntEnum):
    """Compression a generation's writer was asked to use (chunks say what they actually are)."""

    NONE = 0
    ZSTD = 1


class Cipher(IntEnum):
    """How a generation's chunks are encrypted (generation header layout 3)."""

    NONE = 0  #: not encrypted (layouts 1 and 2; invalid in layout 3)
    AES_256_GCM = 1  #: AES-256-GCM per chunk, under a per-run key (SPEC section 15)


@dataclass(frozen=True, slots=True)
class Run:
    """``count`` consecutive volume blocks starting at block id ``first``, all of one ``kind``."""

    first: int
    count: int
    kind: RunKind = RunKind.DATA

    @property
    def last(self) -> int:
        """Id of the last block of the run (inclusive)."""
        return self.first + self.count - 1

    @property
    def is_zero(self) -> bool:
        return self.kind == RunKind.ZERO


@dataclass(frozen=True, slots=True)
class ItemPrefix:
    """The 16-byte prefix common to every item, plus the item's total length."""

    magic: bytes
    header_len: int
    body_len: int
    total_len: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    """The volume label: the only record of tape file 0."""

    medium_uuid: UUID
    media_set_uuid: UUID
    sequence: int  #: 1-based number of this medium within its media set
    record_size: int  #: largest data record written on this medium
    created: int  #: unix seconds, UTC
    text: str = ""  #: barcode or name, at most 64 bytes of UTF-8
    flags: int = 0  #: reserved, 0 in version 1


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeSource:
    """Where a generation's volume was read from (generation header layout 2).

    Paths are the operating system's bytes, held here decoded as UTF-8 with ``surrogateescape``
    (so any byte string round-trips)."""

    path: str  #: absolute path as the backup was given it (symlinks not resolved), at most 4096 bytes
    real_path: str  #: the same path with every symlink resolved, at most 4096 bytes
    dev: int = 0  #: a block device's device number; for a file, the device of its file system
    ino: int = 0  #: a file's inode number; 0 for a block device


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationHeader:
    """First item of a generation file (one backup run)."""

    run_uuid: UUID  #: random per backup run; repeated in every chunk and the trailer
    media_set_uuid: UUID
    medium_uuid: UUID
    volume_uuid: UUID
    volume_name: str  #: at most 1024 bytes of UTF-8
    generation: int  #: 1-based
    base_generation: int  #: 0 for a full backup, else the generation this one is based on
    kind: GenerationKind
    compression: Compression
    block_size: int
    record_size: int
    chunk_blocks: int  #: maximum number of data blocks per chunk
    volume_size: int  #: bytes
    created: int  #: unix seconds, UTC
    part: int = 0  #: 0-based part number when a generation spans media
    #: the volume's source; None: not recorded (layout 1, written by tapearc before the source was)
    source: VolumeSource | None = None
    #: the cipher of an encrypted generation (layout 3); NONE for a plain one
    cipher: Cipher = Cipher.NONE
    #: fingerprint (16 bytes) of the data key the generation is encrypted with; None: plain
    key_fingerprint: bytes | None = None

    @property
    def encrypted(self) -> bool:
        """The generation's chunks are encrypted (layout 3: a key fingerprint is set)."""
        return self.key_fingerprint is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHeader:
    """Header of a chunk item; the stored payload (``stored_len`` bytes) follows it."""

    run_uuid: UUID
    generation: int
    seq: int  #: 0-based chunk number within the generation
    block_size: int
    volume_size: int
    runs: tuple[Run, ...]  #: in payload order
    raw_len: int  #: payload length before compression (sum of the data blocks' lengths)
    stored_len: int  #: payload length as stored (= body_len of the item)
    payload_crc: int  #: CRC-32C of the stored payload
    flags: int = 0  #: bit 0: payload is zstd-compressed; bit 1: payload is encrypted (sealed)

    @property
    def compressed(self) -> bool:
        """The inner payload is a zstd frame."""
        return bool(self.flags & CHUNK_FLAG_ZSTD)

    @property
    def encrypted(self) -> bool:
        """The stored payload is the inner payload sealed with AES-256-GCM (nonce, ciphertext,
        tag): it must be opened with the generation's key before it is unpacked."""
        return bool(self.flags & CHUNK_FLAG_ENCRYPTED)

    @property
    def run_count(self) -> int:
        return len(self.runs)

    @property
    def data_blocks(self) -> int:
        return sum(r.count for r in self.runs if r.kind == RunKind.DATA)

    @property
    def zero_blocks(self) -> int:
        return sum(r.count for r in self.runs if r.kind == RunKind.ZERO)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkIndexEntry:
    """One chunk as listed in the trailer body: where it is and what it holds."""

    seq: int
    record: int  #: index within the tape file of the chunk's first record (header = record 0)
    record_count: int  #: number of records the chunk item occupies
    stored_len: int
    raw_len: int
    payload_crc: int
    runs: tuple[Run, ...]
    flags: int = 0  #: the chunk's flags

    @property
    def compressed(self) -> bool:
        return bool(self.flags & CHUNK_FLAG_ZSTD)

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & CHUNK_FLAG_ENCRYPTED)

    @classmethod
    def from_chunk(cls, header: ChunkHeader, *, record: int, record_count: int) -> ChunkIndexEntry:
        """The index entry of a chunk written at ``record`` over ``record_count`` records."""
        return cls(
            seq=header.seq,
            record=record,
            record_count=record_count,
            flags=header.flags,
            stored_len=header.stored_len,
            raw_len=header.raw_len,
            payload_crc=header.payload_crc,
            runs=header.runs,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Trailer:
    """Trailer of a generation file: totals, the complete chunk index and the block digests.

    ``digests`` is the digest table: for every entry in order, for every data block of its
    runs in run order, ``DIGEST_LEN`` (16) bytes of BLAKE3-128 of the block
    (``data_blocks * 16`` bytes for ``digest_alg`` 1 and 2, empty for ``digest_alg`` 0). See
    :func:`tapearc.format.digest.iter_trailer_digests`.
    """

    run_uuid: UUID
    generation: int
    volume_size: int
    block_size: int
    entries: tuple[ChunkIndexEntry, ...]
    data_blocks: int
    zero_blocks: int
    raw_bytes: int
    stored_bytes: int
    flags: int = TRAILER_FLAG_COMPLETE  #: bit 0: the generation is complete (ends here)
    digest_alg: int = DIGEST_BLAKE3_128  #: 1: BLAKE3-128 digests; 2: keyed BLAKE3-128; 0: no digests
    digests: bytes = field(default=b"", repr=False)  #: the digest table (data_blocks * 16 bytes)

    @property
    def chunk_count(self) -> int:
        return len(self.entries)

    @property
    def complete(self) -> bool:
        return bool(self.flags & TRAILER_FLAG_COMPLETE)

    @property
    def continues(self) -> bool:
        """The generation goes on in a next part, on the next medium of the set."""
        return bool(self.flags & TRAILER_FLAG_CONTINUES)

    @classmethod
    def from_entries(
        cls,
        *,
        run_uuid: UUID,
        generation: int,
        volume_size: int,
        block_size: int,
        entries: tuple[ChunkIndexEntry, ...] | list[ChunkIndexEntry],
        digests: bytes | bytearray | memoryview = b"",
        digest_alg: int = DIGEST_BLAKE3_128,
        complete: bool = True,
    ) -> Trailer:
        """A trailer whose totals are computed from ``entries``; ``digests`` is the digest table
        (the concatenated digests of every entry's data blocks, in order)."""
        entries = tuple(entries)
        data_blocks = zero_blocks = 0
        for e in entries:
            for r in e.runs:
                if r.kind == RunKind.ZERO:
                    zero_blocks += r.count
                else:
                    data_blocks += r.count
        return cls(
            run_uuid=run_uuid,
            generation=generation,
            volume_size=volume_size,
            block_size=block_size,
            entries=entries,
            data_blocks=data_blocks,
            zero_blocks=zero_blocks,
            raw_bytes=sum(e.raw_len for e in entries),
            stored_bytes=sum(e.stored_len for e in entries),
            flags=TRAILER_FLAG_COMPLETE if complete else 0,
            digest_alg=digest_alg,
            digests=bytes(digests),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailerEnd:
    """The generation end record: last record of a complete generation file, right before its
    filemark; says where the trailer is so a reader can find it from the end of the file."""

    run_uuid: UUID  #: the generation's run_uuid
    generation: int
    trailer_record: int  #: index within the tape file of the trailer's first record
    trailer_records: int  #: number of records the trailer occupies
    trailer_len: int  #: the trailer item's total length in bytes (header + body)
    trailer_crc: int  #: the trailer's header_crc
    flags: int = 0  #: reserved, 0 in version 1

    @property
    def record(self) -> int:
        """Index within the tape file of the end record itself (right after the trailer)."""
        return self.trailer_record + self.trailer_records


@dataclass(frozen=True, slots=True)
class TrailerSummary:
    """A trailer's header fields alone (its totals and flags), for a trailer whose body is
    damaged: the generation's index can then be rebuilt from its chunks' headers and checked
    against these totals."""

    flags: int
    run_uuid: UUID
    generation: int
    volume_size: int
    block_size: int
    chunk_count: int
    data_blocks: int
    zero_blocks: int
    raw_bytes: int
    stored_bytes: int

    @property
    def complete(self) -> bool:
        return bool(self.flags & TRAILER_FLAG_COMPLETE)

    @property
    def continues(self) -> bool:
        return bool(self.flags & TRAILER_FLAG_CONTINUES)
