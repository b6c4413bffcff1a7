"""tapearc's on-media format, version 1 (normative description: formats/SPEC.md).

construct declarations of every structure (:mod:`.structs`), the Python-side model
(:mod:`.model`), one codec that turns bytes into model objects and back and construct errors
into :mod:`tapearc.errors` (:mod:`.codec`), record framing (:mod:`.framing`), CRC-32C
(:mod:`.crc`) and block-run helpers (:mod:`.mapping`). No I/O, no policy.
"""

from __future__ import annotations

from .codec import (
    TrailerBuilder,
    build_chunk,
    check_payload,
    check_same_generation,
    chunk_header_len,
    decode_chunk,
    decode_chunk_header,
    decode_generation_header,
    decode_label,
    decode_trailer,
    encode_chunk_header,
    encode_generation_header,
    encode_label,
    encode_trailer,
    pack_payload,
    unpack_payload,
)
from .constants import (
    CHUNK_FLAG_ZSTD,
    CHUNK_MAGIC,
    FORMAT_VERSION,
    GENERATION_MAGIC,
    LABEL_MAGIC,
    MAX_BODY_LEN,
    MAX_HEADER_LEN,
    MAX_LABEL_TEXT,
    MAX_RECORD_SIZE,
    MAX_RUNS,
    MAX_VOLUME_NAME,
    MIN_RECORD_SIZE,
    PREFIX_LEN,
    TRAILER_FLAG_COMPLETE,
    TRAILER_MAGIC,
    ZSTD_LEVEL,
)
from .crc import CRC32C_CHECK, crc32c
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
    "PREFIX_LEN",
    "MAX_HEADER_LEN",
    "MAX_BODY_LEN",
    "MAX_RUNS",
    "MAX_LABEL_TEXT",
    "MAX_VOLUME_NAME",
    "MIN_RECORD_SIZE",
    "MAX_RECORD_SIZE",
    "CHUNK_FLAG_ZSTD",
    "TRAILER_FLAG_COMPLETE",
    "ZSTD_LEVEL",
]
