"""Constants of tapearc format version 1: magic numbers, sizes and limits.

The normative description is formats/SPEC.md; keep the two in step.
"""

from __future__ import annotations

from typing import Final

#: The format version this code writes and the only one it reads.
FORMAT_VERSION: Final = 1

#: Magic numbers: 7 ASCII letters naming the item, then the format version as an ASCII digit.
LABEL_MAGIC: Final = b"TALABEL1"
GENERATION_MAGIC: Final = b"TAGENHD1"
CHUNK_MAGIC: Final = b"TACHUNK1"
TRAILER_MAGIC: Final = b"TATRAIL1"
MAGICS: Final = (LABEL_MAGIC, GENERATION_MAGIC, CHUNK_MAGIC, TRAILER_MAGIC)
MAGIC_LEN: Final = 8

#: Bytes of the common item prefix: magic (8), header_len (u32), body_len (u32).
PREFIX_LEN: Final = 16
#: Bytes of the header CRC at the end of every header.
HEADER_CRC_LEN: Final = 4

#: Sanity limits applied before anything is allocated or parsed.
MAX_HEADER_LEN: Final = 64 * 1024 * 1024
MAX_BODY_LEN: Final = 1024 * 1024 * 1024
MAX_RUNS: Final = 1_000_000
MAX_LABEL_TEXT: Final = 64
MAX_VOLUME_NAME: Final = 1024
MIN_RECORD_SIZE: Final = 512
MAX_RECORD_SIZE: Final = 64 * 1024 * 1024
MAX_BLOCK_SIZE: Final = 64 * 1024 * 1024

#: Chunk flags.
CHUNK_FLAG_ZSTD: Final = 0x0001
CHUNK_FLAGS_KNOWN: Final = CHUNK_FLAG_ZSTD

#: Trailer flags.
TRAILER_FLAG_COMPLETE: Final = 0x0001
TRAILER_FLAGS_KNOWN: Final = TRAILER_FLAG_COMPLETE

#: Label flags: none defined in version 1 (all must be 0).
LABEL_FLAGS_KNOWN: Final = 0x0000

#: zstd level used by writers (readers accept any level).
ZSTD_LEVEL: Final = 3
