"""Constants of tapearc format version 1: magic numbers, sizes and limits.

The normative description is formats/SPEC.md; keep the two in step.
"""

from __future__ import annotations

from typing import Final

#: The format version of every item; the generation header alone also has layouts 2 and 3
#: (GENERATION_FORMAT_VERSION_SOURCE: the version-1 fields plus the volume's source), which this
#: code writes whenever it knows the source. It reads generation headers of all three.
FORMAT_VERSION: Final = 1
GENERATION_FORMAT_VERSION_SOURCE: Final = 2
#: Layout 3: layout 2 plus the cipher and the key fingerprint, written for encrypted generations
#: only (plain generations stay layout 1 or 2).
GENERATION_FORMAT_VERSION_ENCRYPTED: Final = 3
GENERATION_FORMAT_VERSIONS: Final = (
    FORMAT_VERSION,
    GENERATION_FORMAT_VERSION_SOURCE,
    GENERATION_FORMAT_VERSION_ENCRYPTED,
)

#: Magic numbers: 7 ASCII letters naming the item, then the format version as an ASCII digit.
LABEL_MAGIC: Final = b"TALABEL1"
GENERATION_MAGIC: Final = b"TAGENHD1"
CHUNK_MAGIC: Final = b"TACHUNK1"
TRAILER_MAGIC: Final = b"TATRAIL1"
TRAILER_END_MAGIC: Final = b"TATREND1"
MAGICS: Final = (LABEL_MAGIC, GENERATION_MAGIC, CHUNK_MAGIC, TRAILER_MAGIC, TRAILER_END_MAGIC)
MAGIC_LEN: Final = 8

#: Bytes of the common item prefix: magic (8), header_len (u32), body_len (u32).
PREFIX_LEN: Final = 16
#: Bytes of the header CRC at the end of every header.
HEADER_CRC_LEN: Final = 4

#: Sizes of the fixed parts (structs.py declares the fields and checks these sums).
#: One run of a chunk header or index entry: first (u64), count (u32), kind (u8).
RUN_LEN: Final = 13
#: Label fields before the text; generation header fields before the volume name.
LABEL_FIXED_LEN: Final = 68
GENERATION_FIXED_LEN: Final = 124
#: Chunk header fields before the runs (a chunk header is this + 13 per run + the header CRC).
CHUNK_FIXED_LEN: Final = 68
#: The trailer's header, CRC included; a trailer index entry before its runs.
TRAILER_HEADER_LEN: Final = 100
INDEX_ENTRY_FIXED_LEN: Final = 30
#: The generation end record, CRC included.
TRAILER_END_LEN: Final = 60

#: Sanity limits applied before anything is allocated or parsed.
MAX_HEADER_LEN: Final = 64 * 1024 * 1024
#: Largest chunk body (stored payload) and raw payload: 1 GiB.
MAX_BODY_LEN: Final = 1024 * 1024 * 1024
#: Largest trailer item, header included: its length must fit the u32 ``trailer_len`` of the
#: generation end record (and the trailer's u32 ``body_len``). With 16 bytes of digest per data
#: block this bounds a generation to about 268 million data blocks (~15 TiB at 64 KiB blocks).
MAX_TRAILER_LEN: Final = 0xFFFFFFFF
MAX_RUNS: Final = 1_000_000
MAX_LABEL_TEXT: Final = 64
MAX_VOLUME_NAME: Final = 1024
#: Longest source path (each of the two paths of a generation header of layout 2), in bytes.
MAX_SOURCE_PATH: Final = 4096
MIN_RECORD_SIZE: Final = 512
MAX_RECORD_SIZE: Final = 64 * 1024 * 1024
MAX_BLOCK_SIZE: Final = 64 * 1024 * 1024

#: Chunk flags. Bit 0: the inner payload is a zstd frame. Bit 1: the stored payload is the inner
#: payload sealed with AES-256-GCM: ``nonce (12) || ciphertext || tag (16)`` (SPEC "Encryption").
CHUNK_FLAG_ZSTD: Final = 0x0001
CHUNK_FLAG_ENCRYPTED: Final = 0x0002
CHUNK_FLAGS_KNOWN: Final = CHUNK_FLAG_ZSTD | CHUNK_FLAG_ENCRYPTED
#: Bytes a sealed (encrypted) payload has beyond its inner payload: the nonce (12) and the GCM
#: tag (16); the same as tapearc.crypto.aead.OVERHEAD.
SEAL_NONCE_LEN: Final = 12
SEAL_TAG_LEN: Final = 16
SEAL_OVERHEAD: Final = SEAL_NONCE_LEN + SEAL_TAG_LEN
#: Cipher of an encrypted generation (generation header layout 3) and its key fingerprint length.
CIPHER_NONE: Final = 0
CIPHER_AES_256_GCM: Final = 1
KEY_FINGERPRINT_LEN: Final = 16
#: Largest chunk body: the largest raw payload, sealed (an encrypted chunk of 1 GiB raw stored
#: uncompressed is 1 GiB + 28 bytes).
MAX_CHUNK_BODY_LEN: Final = MAX_BODY_LEN + SEAL_OVERHEAD

#: Trailer flags.
TRAILER_FLAG_COMPLETE: Final = 0x0001  # the generation ends in this tape file
TRAILER_FLAG_CONTINUES: Final = 0x0002  # the generation continues on the next medium of the set
TRAILER_FLAGS_KNOWN: Final = TRAILER_FLAG_COMPLETE | TRAILER_FLAG_CONTINUES

#: Block digest algorithms (trailer ``digest_alg``) and the length of one digest.
DIGEST_NONE: Final = 0
DIGEST_BLAKE3_128: Final = 1
#: BLAKE3-128 keyed with the data key's digest key: the digests of encrypted generations.
DIGEST_BLAKE3_128_KEYED: Final = 2
DIGEST_ALGS: Final = (DIGEST_NONE, DIGEST_BLAKE3_128, DIGEST_BLAKE3_128_KEYED)
#: The algorithms with a digest table of DIGEST_LEN bytes per data block.
DIGEST_ALGS_WITH_TABLE: Final = (DIGEST_BLAKE3_128, DIGEST_BLAKE3_128_KEYED)
DIGEST_LEN: Final = 16

#: Generation end record flags: none defined in version 1 (all must be 0).
TRAILER_END_FLAGS_KNOWN: Final = 0x0000

#: Label flags: none defined in version 1 (all must be 0).
LABEL_FLAGS_KNOWN: Final = 0x0000

#: zstd level used by writers (readers accept any level).
ZSTD_LEVEL: Final = 3

#: Key record (SPEC section "Key record"): the passphrase-wrapped data key of an encrypted media
#: set; on tape file 0 after the label, in a key file, on a paper key.
KEY_RECORD_MAGIC: Final = b"TAKEYWR1"
KEY_RECORD_FIXED_LEN: Final = 130  # prefix .. wrapped_key, before the comment
MAX_KEY_COMMENT: Final = 64  # bytes of UTF-8
