"""tapearc's on-media format, version 1 (normative description: formats/SPEC.md).

construct declarations of every structure (:mod:`.structs`), the Python-side model
(:mod:`.model`), one codec that turns bytes into model objects and back and construct errors
into :mod:`tapearc.errors` (:mod:`.codec`), record framing (:mod:`.framing`), CRC-32C
(:mod:`.crc`), block digests (:mod:`.digest`) and block-run helpers (:mod:`.mapping`). No I/O,
no policy.
"""

from __future__ import annotations

from .codec import (
    TrailerBuilder,
    build_chunk,
    check_payload,
    check_same_generation,
    check_trailer_end,
    chunk_header_len,
    decode_chunk,
    decode_chunk_header,
    decode_generation_header,
    decode_label,
    decode_trailer,
    decode_trailer_end,
    encode_chunk_header,
    encode_generation_header,
    encode_label,
    encode_trailer,
    encode_trailer_end,
    pack_payload,
    trailer_end_for,
    unpack_payload,
)
from .constants import (
    CHUNK_FLAG_ZSTD,
    CHUNK_MAGIC,
    DIGEST_ALGS,
    DIGEST_BLAKE3_128,
    DIGEST_LEN,
    DIGEST_NONE,
    FORMAT_VERSION,
    GENERATION_MAGIC,
    LABEL_MAGIC,
    MAX_BODY_LEN,
    MAX_HEADER_LEN,
    MAX_LABEL_TEXT,
    MAX_RECORD_SIZE,
    MAX_RUNS,
    MAX_TRAILER_LEN,
    MAX_VOLUME_NAME,
    MIN_RECORD_SIZE,
    PREFIX_LEN,
    TRAILER_END_MAGIC,
    TRAILER_FLAG_COMPLETE,
    TRAILER_FLAG_CONTINUES,
    TRAILER_MAGIC,
    ZSTD_LEVEL,
)
from .crc import CRC32C_CHECK, crc32c
from .digest import ZERO_DIGEST, block_digest, is_zero, iter_trailer_digests, payload_digests
from .framing import peek_item, record_count, split_records
from .jsonio import from_jsonable, to_jsonable
from .mapping import (
    block_count,
    block_len,
    iter_blocks,
    iter_run_payload,
    run_data_len,
    runs_data_len,
    runs_from_ids,
)
from .model import (
    ChunkHeader,
    ChunkIndexEntry,
    Compression,
    GenerationHeader,
    GenerationKind,
    ItemPrefix,
    Label,
    Run,
    RunKind,
    Trailer,
    TrailerEnd,
)

__all__ = [
    "TrailerBuilder",
    # model
    "ChunkHeader",
    "ChunkIndexEntry",
    "Compression",
    "GenerationHeader",
    "GenerationKind",
    "ItemPrefix",
    "Label",
    "Run",
    "RunKind",
    "Trailer",
    "TrailerEnd",
    # codec
    "encode_label",
    "decode_label",
    "encode_generation_header",
    "decode_generation_header",
    "encode_chunk_header",
    "decode_chunk_header",
    "decode_chunk",
    "check_payload",
    "pack_payload",
    "unpack_payload",
    "build_chunk",
    "chunk_header_len",
    "check_same_generation",
    "encode_trailer",
    "decode_trailer",
    "encode_trailer_end",
    "decode_trailer_end",
    "trailer_end_for",
    "check_trailer_end",
    # digests
    "DIGEST_LEN",
    "DIGEST_NONE",
    "DIGEST_BLAKE3_128",
    "DIGEST_ALGS",
    "ZERO_DIGEST",
    "block_digest",
    "is_zero",
    "payload_digests",
    "iter_trailer_digests",
    # framing
    "peek_item",
    "split_records",
    "record_count",
    # crc
    "crc32c",
    "CRC32C_CHECK",
    # mapping
    "block_count",
    "block_len",
    "run_data_len",
    "runs_data_len",
    "runs_from_ids",
    "iter_blocks",
    "iter_run_payload",
    # json
    "to_jsonable",
    "from_jsonable",
    # constants
    "FORMAT_VERSION",
    "LABEL_MAGIC",
    "GENERATION_MAGIC",
    "CHUNK_MAGIC",
    "TRAILER_MAGIC",
    "TRAILER_END_MAGIC",
    "PREFIX_LEN",
    "MAX_HEADER_LEN",
    "MAX_BODY_LEN",
    "MAX_TRAILER_LEN",
    "MAX_RUNS",
    "MAX_LABEL_TEXT",
    "MAX_VOLUME_NAME",
    "MIN_RECORD_SIZE",
    "MAX_RECORD_SIZE",
    "CHUNK_FLAG_ZSTD",
    "TRAILER_FLAG_COMPLETE",
    "TRAILER_FLAG_CONTINUES",
    "ZSTD_LEVEL",
]
