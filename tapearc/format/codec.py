"""Encode and decode the items of format version 1; the one entry point to the byte layout.

Encoders take the model objects of :mod:`tapearc.format.model` and return bytes. Decoders take
bytes / bytearray / memoryview of a whole item (or header) and return model objects; on bad
input they raise only :mod:`tapearc.errors` classes, never a construct or struct exception:

* BadMagicError: not the item expected here;
* UnsupportedVersionError: a magic with another version digit, or format_version != 1;
* CRCError: header CRC, chunk payload CRC or trailer body CRC mismatch (expected = stored
  value, found = computed value, both in hex in the message and as ``details``);
* TruncatedError: the buffer is shorter than the lengths it declares;
* MalformedError: fields out of range or contradicting each other, trailing bytes, a digest
  table of the wrong length.

Decoding order: prefix (magic, lengths), buffer length, header CRC, format_version, fields,
field validation, then payload/body CRC. Compiled construct parsers are only used on bytes
whose lengths and CRC have been checked.

Encoders validate with the same rules as decoders and raise MalformedError for a model that
could not be decoded back.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import zstandard
from construct import ConstructError

from tapearc.errors import (
    CRCError,
    KeyRequiredError,
    MalformedError,
    TapearcError,
    TruncatedError,
    UnsupportedVersionError,
)

from .constants import (
    CHUNK_FIXED_LEN,
    CHUNK_FLAG_ENCRYPTED,
    CHUNK_FLAG_ZSTD,
    CHUNK_FLAGS_KNOWN,
    CHUNK_MAGIC,
    DIGEST_ALGS,
    DIGEST_ALGS_WITH_TABLE,
    DIGEST_BLAKE3_128,
    DIGEST_BLAKE3_128_KEYED,
    DIGEST_LEN,
    FORMAT_VERSION,
    GENERATION_FORMAT_VERSION_ENCRYPTED,
    GENERATION_FORMAT_VERSION_SOURCE,
    GENERATION_FORMAT_VERSIONS,
    GENERATION_MAGIC,
    HEADER_CRC_LEN,
    INDEX_ENTRY_FIXED_LEN,
    KEY_FINGERPRINT_LEN,
    LABEL_FLAGS_KNOWN,
    LABEL_MAGIC,
    MAX_BLOCK_SIZE,
    MAX_BODY_LEN,
    MAX_LABEL_TEXT,
    MAX_RECORD_SIZE,
    MAX_RUNS,
    MAX_SOURCE_PATH,
    MAX_TRAILER_LEN,
    MAX_VOLUME_NAME,
    MIN_RECORD_SIZE,
    RUN_LEN,
    SEAL_OVERHEAD,
    TRAILER_END_FLAGS_KNOWN,
    TRAILER_END_LEN,
    TRAILER_END_MAGIC,
    TRAILER_FLAG_COMPLETE,
    TRAILER_FLAG_CONTINUES,
    TRAILER_FLAGS_KNOWN,
    TRAILER_HEADER_LEN,
    TRAILER_MAGIC,
    ZSTD_LEVEL,
)
from .crc import crc32c
from .framing import ITEM_NAMES, read_prefix
from .model import (
    ChunkHeader,
    ChunkIndexEntry,
    Cipher,
    Compression,
    GenerationHeader,
    GenerationKind,
    ItemPrefix,
    Label,
    Run,
    RunKind,
    Trailer,
    TrailerEnd,
    TrailerSummary,
    VolumeSource,
)
from .structs import (
    ChunkFieldsCompiled,
    ChunkFixed,
    ChunkIndexEntryStruct,
    GenerationHeaderEncryptedStruct,
    GenerationHeaderSourceStruct,
    GenerationHeaderStruct,
    HeaderStartStruct,
    LabelHeader,
    TrailerBodyCompiled,
    TrailerEndHeaderStruct,
    TrailerHeaderStruct,
    TrailerMap,
    TrailerSummaryMap,
)

__all__ = [
    "TrailerSummary",
    "build_chunk",
    "check_digest_table",
    "check_index_entry",
    "check_payload",
    "check_same_generation",
    "check_trailer_digest_alg",
    "check_trailer_end",
    "check_trailer_fields",
    "check_trailer_len",
    "check_trailer_totals",
    "chunk_header_len",
    "crc_error",
    "decode_chunk",
    "decode_chunk_header",
    "decode_generation_header",
    "decode_label",
    "decode_trailer",
    "decode_trailer_end",
    "decode_trailer_head",
    "decode_trailer_header",
    "encode_chunk_header",
    "encode_generation_header",
    "encode_index_entries",
    "encode_label",
    "encode_trailer",
    "encode_trailer_end",
    "encode_trailer_header",
    "pack_payload",
    "parse_index_entry",
    "trailer_end_for",
    "trailer_end_from_header",
    "unpack_payload",
]

Buf = bytes | bytearray | memoryview

_HEADER_START_C = HeaderStartStruct.compile()
_CHUNK_FIXED_C = ChunkFixed.compile()


# =========================================================================== helpers


def _mv(buf: Buf) -> memoryview:
    mv = memoryview(buf)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn construct / codec-level exceptions into MalformedError."""
    try:
        yield
    except TapearcError:
        raise
    except (ConstructError, UnicodeError, ValueError, OverflowError, KeyError, TypeError,
            AttributeError, IndexError, struct.error) as e:  # fmt: skip
        detail = " ".join(str(e).split())  # construct messages span several lines
        raise MalformedError(f"{what}: {type(e).__name__}: {detail}".rstrip(": ")) from e


def _crc_error(what: str, expected: int, found: int) -> CRCError:
    return CRCError(
        f"{what} CRC mismatch: expected 0x{expected:08x}, found 0x{found:08x}",
        expected=f"0x{expected:08x}",
        found=f"0x{found:08x}",
    )


def crc_error(what: str, expected: int, found: int) -> CRCError:
    """The CRCError of ``what`` (its expected and found CRC in the message and details)."""
    return _crc_error(what, expected, found)


def _u32le(b: memoryview) -> int:
    return int.from_bytes(b, "little")


def _open_item(
    buf: Buf, magic: bytes, *, whole: bool, versions: tuple[int, ...] = (FORMAT_VERSION,)
) -> tuple[memoryview, ItemPrefix]:
    """Common first steps of every decoder; returns the buffer as a memoryview and the prefix.

    Checks the prefix, that the buffer holds the whole header (``whole=False``) or exactly the
    whole item (``whole=True``), the header CRC and the format version (one of ``versions``).
    """
    mv = _mv(buf)
    prefix = read_prefix(mv, (magic,))
    name = ITEM_NAMES[magic]
    need = prefix.total_len if whole else prefix.header_len
    if len(mv) < need:
        raise TruncatedError(f"{name} of {len(mv)} bytes is shorter than its declared length of {need} bytes")
    if whole and len(mv) > need:
        raise MalformedError(f"{name}: {len(mv) - need} bytes after the end of the item ({need} bytes)")
    hl = prefix.header_len
    expected = _u32le(mv[hl - HEADER_CRC_LEN : hl])
    found = crc32c(mv[: hl - HEADER_CRC_LEN])
    if expected != found:
        raise _crc_error(f"{name} header", expected, found)
    version = _HEADER_START_C.parse(bytes(mv[:18])).format_version
    if version not in versions:
        known = " and ".join(map(str, versions))
        raise UnsupportedVersionError(
            f"{name} of format version {version}; this tapearc reads version {known}",
            hint="use a newer tapearc" if version > max(versions) else None,
        )
    return mv, prefix


def _malformed(name: str, msg: str) -> MalformedError:
    return MalformedError(f"{name}: {msg}")


def _check_utf8_len(name: str, field: str, text: str, limit: int) -> None:
    try:
        n = len(text.encode("utf-8"))
    except (UnicodeError, AttributeError) as e:
        raise _malformed(name, f"{field} is not valid text: {e}") from e
    if n > limit:
        raise _malformed(name, f"{field} is {n} bytes of UTF-8, more than {limit}")


def _check_range(name: str, field: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise _malformed(name, f"{field} {value} is out of range ({lo}..{hi})")


def _check_runs(name: str, runs: Sequence[Run], block_size: int, volume_size: int) -> tuple[int, int, int]:
    """Validate runs against the volume; return (data bytes, data blocks, zero blocks)."""
    if not 1 <= len(runs) <= MAX_RUNS:
        raise _malformed(name, f"run count {len(runs)} is out of range (1..{MAX_RUNS})")
    data_len = data_blocks = zero_blocks = 0
    for r in runs:
        first, count, kind = r.first, r.count, r.kind
        if count <= 0 or first < 0:
            raise _malformed(name, f"run {first}+{count}: count must be > 0")
        last_start = (first + count - 1) * block_size
        if last_start >= volume_size:
            raise _malformed(
                name,
                f"run of blocks {first}-{first + count - 1} ends outside the volume "
                f"({volume_size} bytes in blocks of {block_size})",
            )
        if kind == RunKind.DATA:
            data_len += min(last_start + block_size, volume_size) - first * block_size
            data_blocks += count
        elif kind == RunKind.ZERO:
            zero_blocks += count
        else:
            raise _malformed(name, f"run {first}+{count} has unknown kind {kind}")
    return data_len, data_blocks, zero_blocks


def _check_payload_lens(name: str, flags: int, known: int, raw_len: int, stored_len: int, data_len: int) -> None:
    if flags & ~known:
        raise _malformed(name, f"unknown flags 0x{flags & ~known:04x}")
    if raw_len != data_len:
        raise _malformed(name, f"raw_len {raw_len} != {data_len} bytes of data blocks in its runs")
    if raw_len > MAX_BODY_LEN:
        raise _malformed(name, f"raw_len {raw_len} is larger than {MAX_BODY_LEN}")
    inner_len, sealed = stored_len, ""
    if flags & CHUNK_FLAG_ENCRYPTED:  # the inner payload is sealed: 28 bytes more
        if stored_len < SEAL_OVERHEAD:
            raise _malformed(name, f"encrypted payload of {stored_len} bytes is shorter than {SEAL_OVERHEAD}")
        inner_len, sealed = stored_len - SEAL_OVERHEAD, f" (encrypted: {stored_len} - {SEAL_OVERHEAD} bytes)"
    if flags & CHUNK_FLAG_ZSTD:
        if inner_len >= raw_len:
            raise _malformed(
                name, f"compressed payload of {inner_len} bytes{sealed} is not smaller than raw_len {raw_len}"
            )
    elif inner_len != raw_len:
        raise _malformed(name, f"uncompressed payload of {inner_len} bytes{sealed} != raw_len {raw_len}")


def _build(what: str, build: Callable[[], Any]) -> bytes:
    """``build()``'s bytes; its errors as MalformedError naming ``what``."""
    with _translated(f"cannot encode {what}"):
        built: bytes = build()
    return built


# =========================================================================== label


def _validate_label(lb: Label) -> None:
    name = "volume label"
    if lb.flags & ~LABEL_FLAGS_KNOWN:
        raise _malformed(name, f"unknown flags 0x{lb.flags:04x}")
    if lb.sequence < 1:
        raise _malformed(name, f"sequence {lb.sequence} must be >= 1")
    _check_range(name, "record_size", lb.record_size, MIN_RECORD_SIZE, MAX_RECORD_SIZE)
    _check_utf8_len(name, "text", lb.text, MAX_LABEL_TEXT)


def encode_label(label: Label) -> bytes:
    """The volume label item (one record)."""
    _validate_label(label)
    return _build("volume label", lambda: LabelHeader.build({"fields": {"value": label}}))


def decode_label(buf: Buf) -> Label:
    """Decode a volume label item (the whole record)."""
    mv, prefix = _open_item(buf, LABEL_MAGIC, whole=True)
    with _translated("volume label"):
        c = LabelHeader.parse(bytes(mv[: prefix.header_len]))
        f = c.fields
        if f.length + HEADER_CRC_LEN != prefix.header_len:
            raise MalformedError(
                f"volume label: header_len {prefix.header_len} != {f.length + HEADER_CRC_LEN} bytes of fields and CRC"
            )
        label: Label = f.value
    _validate_label(label)
    return label


# =========================================================================== generation header


def _validate_generation(g: GenerationHeader) -> None:
    name = "generation header"
    try:
        kind = GenerationKind(g.kind)
    except ValueError:
        raise _malformed(name, f"unknown kind {g.kind}") from None
    try:
        Compression(g.compression)
    except ValueError:
        raise _malformed(name, f"unknown compression {g.compression}") from None
    if g.generation < 1:
        raise _malformed(name, f"generation {g.generation} must be >= 1")
    if kind == GenerationKind.FULL and g.base_generation != 0:
        raise _malformed(name, f"full backup with base_generation {g.base_generation} (must be 0)")
    if kind == GenerationKind.INCREMENTAL and not 1 <= g.base_generation < g.generation:
        raise _malformed(
            name,
            f"incremental generation {g.generation} based on generation {g.base_generation}",
        )
    _check_range(name, "block_size", g.block_size, 1, MAX_BLOCK_SIZE)
    _check_range(name, "record_size", g.record_size, MIN_RECORD_SIZE, MAX_RECORD_SIZE)
    _check_range(name, "chunk_blocks", g.chunk_blocks, 1, MAX_BODY_LEN // g.block_size)
    if g.volume_size < 0:
        raise _malformed(name, f"volume_size {g.volume_size} is negative")
    _check_utf8_len(name, "volume_name", g.volume_name, MAX_VOLUME_NAME)
    if g.source is not None:
        for field, text in (("source path", g.source.path), ("source real path", g.source.real_path)):
            n = len(_path_bytes(name, field, text))
            if n > MAX_SOURCE_PATH:
                raise _malformed(name, f"{field} is {n} bytes, more than {MAX_SOURCE_PATH}")
        _check_range(name, "source dev", g.source.dev, 0, 2**64 - 1)
        _check_range(name, "source ino", g.source.ino, 0, 2**64 - 1)
    _validate_cipher(name, g)


def _path_bytes(name: str, field: str, text: str) -> bytes:
    """A source path as the OS bytes it stands for (SPEC 7.1: stored as bytes, not text)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except (UnicodeError, AttributeError) as e:
        raise _malformed(name, f"{field} is not a path: {e}") from e


#: The source a layout-3 header holds when its writer did not know it (SPEC 7.2).
_NO_SOURCE = VolumeSource(path="", real_path="", dev=0, ino=0)


def _validate_cipher(name: str, g: GenerationHeader) -> None:
    fp = g.key_fingerprint
    if fp is None:
        if g.cipher != Cipher.NONE:
            raise _malformed(name, f"cipher {g.cipher} without a key fingerprint")
        return
    if not isinstance(fp, bytes) or len(fp) != KEY_FINGERPRINT_LEN:
        raise _malformed(name, f"key fingerprint must be {KEY_FINGERPRINT_LEN} bytes")
    if g.cipher != Cipher.AES_256_GCM:
        raise _malformed(name, f"unknown cipher {g.cipher} (1: AES-256-GCM)")


def encode_generation_header(header: GenerationHeader) -> bytes:
    """The generation header item (first item of a generation file): layout 3 (format_version
    3) when the generation is encrypted (``key_fingerprint`` set; an unknown source is written
    as empty paths and zeros), else layout 2 (format_version 2) when the header carries its
    volume's source, else layout 1."""
    _validate_generation(header)
    if header.key_fingerprint is not None:
        if header.source is None:
            header = dataclasses.replace(header, source=_NO_SOURCE)
        struct_ = GenerationHeaderEncryptedStruct
    else:
        struct_ = GenerationHeaderStruct if header.source is None else GenerationHeaderSourceStruct
    value = header
    return _build("generation header", lambda: struct_.build({"fields": {"value": value}}))


_GENERATION_STRUCTS = {
    FORMAT_VERSION: GenerationHeaderStruct,
    GENERATION_FORMAT_VERSION_SOURCE: GenerationHeaderSourceStruct,
    GENERATION_FORMAT_VERSION_ENCRYPTED: GenerationHeaderEncryptedStruct,
}


def decode_generation_header(buf: Buf) -> GenerationHeader:
    """Decode a generation header item (layout 1, 2 or 3)."""
    mv, prefix = _open_item(buf, GENERATION_MAGIC, whole=True, versions=GENERATION_FORMAT_VERSIONS)
    version = _HEADER_START_C.parse(bytes(mv[:18])).format_version
    with _translated("generation header"):
        struct_ = _GENERATION_STRUCTS[version]
        c = struct_.parse(bytes(mv[: prefix.header_len]))
        f = c.fields
        if f.length + HEADER_CRC_LEN != prefix.header_len:
            raise MalformedError(
                f"generation header: header_len {prefix.header_len} != "
                f"{f.length + HEADER_CRC_LEN} bytes of fields and CRC"
            )
        g: GenerationHeader = f.value
    if version == GENERATION_FORMAT_VERSION_ENCRYPTED:
        if g.cipher == Cipher.NONE:
            raise _malformed("generation header", "layout 3 (encrypted) with cipher 0")
        if g.source == _NO_SOURCE:
            g = dataclasses.replace(g, source=None)
    _validate_generation(g)
    return g


# =========================================================================== chunk


def chunk_header_len(run_count: int) -> int:
    """Bytes of a chunk header with ``run_count`` runs."""
    return CHUNK_FIXED_LEN + RUN_LEN * run_count + HEADER_CRC_LEN


def _validate_chunk(h: ChunkHeader) -> None:
    name = f"chunk {h.seq}"
    if h.generation < 1:
        raise _malformed(name, f"generation {h.generation} must be >= 1")
    _check_range(name, "block_size", h.block_size, 1, MAX_BLOCK_SIZE)
    if h.volume_size < 1:
        raise _malformed(name, f"volume_size {h.volume_size} must be >= 1")
    data_len, _, _ = _check_runs(name, h.runs, h.block_size, h.volume_size)
    _check_payload_lens(name, h.flags, CHUNK_FLAGS_KNOWN, h.raw_len, h.stored_len, data_len)


def encode_chunk_header(header: ChunkHeader) -> bytes:
    """The header of a chunk item; the caller appends the ``stored_len`` bytes of payload.

    Hot path: one compiled construct build of the fields plus one CRC-32C.
    """
    _validate_chunk(header)
    raw = _build(f"chunk {header.seq}", lambda: ChunkFieldsCompiled.build(header))
    return raw + crc32c(raw).to_bytes(HEADER_CRC_LEN, "little")


def _decode_chunk_header(mv: memoryview, prefix: ItemPrefix) -> ChunkHeader:
    hl = prefix.header_len
    with _translated("chunk"):
        fixed = _CHUNK_FIXED_C.parse(bytes(mv[:CHUNK_FIXED_LEN]))
        name = f"chunk {fixed.seq}"
        run_count = fixed.run_count
        if not 1 <= run_count <= MAX_RUNS:
            raise _malformed(name, f"run_count {run_count} is out of range (1..{MAX_RUNS})")
        if hl != chunk_header_len(run_count):
            raise _malformed(
                name, f"header_len {hl} does not fit run_count {run_count} (expected {chunk_header_len(run_count)})"
            )
        h: ChunkHeader = ChunkFieldsCompiled.parse(bytes(mv[: hl - HEADER_CRC_LEN]))
    _validate_chunk(h)
    return h


def decode_chunk_header(buf: Buf) -> tuple[ChunkHeader, int]:
    """Decode the header of a chunk item; returns ``(header, header_len)``.

    ``buf`` must hold at least the header; bytes after it (the payload) are not looked at.
    The payload starts at offset ``header_len`` and is ``header.stored_len`` bytes long.
    """
    mv, prefix = _open_item(buf, CHUNK_MAGIC, whole=False)
    return _decode_chunk_header(mv, prefix), prefix.header_len


def check_payload(header: ChunkHeader, payload: Buf) -> None:
    """Check a chunk's stored payload: its length and its CRC-32C (``header.payload_crc``)."""
    n = len(_mv(payload))
    name = f"chunk {header.seq}"
    if n < header.stored_len:
        raise TruncatedError(f"{name}: payload of {n} bytes, expected {header.stored_len}")
    if n > header.stored_len:
        raise _malformed(name, f"payload of {n} bytes, expected {header.stored_len}")
    found = crc32c(payload)
    if found != header.payload_crc:
        raise _crc_error(f"{name} payload", header.payload_crc, found)


def decode_chunk(buf: Buf) -> tuple[ChunkHeader, memoryview]:
    """Decode a whole chunk item; returns the header and the stored payload (a view of ``buf``).

    Checks the header CRC, then the payload CRC. The payload is still compressed if
    ``header.compressed``; see :func:`unpack_payload`.
    """
    mv, prefix = _open_item(buf, CHUNK_MAGIC, whole=True)
    header = _decode_chunk_header(mv, prefix)
    payload = mv[prefix.header_len :]
    check_payload(header, payload)
    return header, payload


_tls = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_tls, "cctx", None)
    if cache is None:
        cache = _tls.cctx = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_tls, "dctx", None)
    if d is None:
        d = _tls.dctx = zstandard.ZstdDecompressor()
    return d


def pack_payload(raw: Buf, *, compress: bool = True, level: int = ZSTD_LEVEL) -> tuple[int, Buf]:
    """Apply the compression rule to a raw payload; returns ``(chunk flags, stored payload)``.

    With ``compress`` the payload is compressed as one zstd frame (content size included, no
    zstd checksum) and kept only if strictly smaller; otherwise the raw payload is stored.
    """
    if compress and len(raw):
        packed = _compressor(level).compress(raw)
        if len(packed) < len(raw):
            return CHUNK_FLAG_ZSTD, packed
    return 0, raw


def unpack_payload(header: ChunkHeader, payload: Buf, *, opened: bool = False) -> bytes | memoryview:
    """The raw payload (``header.raw_len`` bytes) of a chunk whose payload was checked: the
    stored payload itself (not copied) when it is not compressed.

    An encrypted chunk's stored payload is refused (KeyRequiredError): open it first
    (:func:`open_chunk_payload`) and pass the inner payload with ``opened=True``, or call
    :func:`raw_payload`, which does both.

    Decompresses a zstd payload with an output limit of raw_len; raises MalformedError if the
    payload does not decompress to exactly raw_len bytes.
    """
    name = f"chunk {header.seq}"
    if header.encrypted and not opened:
        raise KeyRequiredError(f"{name} is encrypted: it must be opened with the key before it is unpacked")
    if not header.compressed:
        if len(payload) != header.raw_len:
            raise _malformed(name, f"payload of {len(payload)} bytes != raw_len {header.raw_len}")
        return payload if isinstance(payload, (bytes, memoryview)) else memoryview(payload)
    try:
        params = zstandard.get_frame_parameters(payload)
        size = params.content_size
        if size != zstandard.CONTENTSIZE_UNKNOWN and size != header.raw_len:
            raise _malformed(name, f"zstd frame of {size} bytes != raw_len {header.raw_len}")
        raw = _decompressor().decompress(payload, max_output_size=header.raw_len, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise _malformed(name, f"payload does not decompress: {e}") from e
    if len(raw) != header.raw_len:
        raise _malformed(name, f"payload decompresses to {len(raw)} bytes != raw_len {header.raw_len}")
    return raw


def build_chunk(
    *,
    run_uuid: UUID,
    generation: int,
    seq: int,
    block_size: int,
    volume_size: int,
    runs: Sequence[Run],
    raw_payload: Buf,
    compress: bool = True,
    level: int = ZSTD_LEVEL,
) -> tuple[ChunkHeader, bytes, Buf]:
    """Make a chunk: returns ``(header, encoded header, stored payload)``.

    ``raw_payload`` is the data blocks of ``runs`` in run order. The item is the encoded
    header followed by the stored payload.
    """
    flags, stored = pack_payload(raw_payload, compress=compress, level=level)
    header = ChunkHeader(
        flags=flags,
        run_uuid=run_uuid,
        generation=generation,
        seq=seq,
        block_size=block_size,
        volume_size=volume_size,
        runs=tuple(runs),
        raw_len=len(raw_payload),
        stored_len=len(stored),
        payload_crc=crc32c(stored),
    )
    return header, encode_chunk_header(header), stored


# =========================================================================== trailer


def _trailer_too_large(total: int, chunks: int, data_blocks: int) -> MalformedError:
    return MalformedError(
        f"trailer of {total} bytes ({chunks} chunks, {data_blocks} data blocks) is larger than "
        f"the {MAX_TRAILER_LEN} bytes a trailer can hold: its length is a u32, and with 16 bytes "
        "of digest per data block a generation holds at most about 268 million data blocks "
        "(volumes up to ~15 TiB at 64 KiB blocks)",
        hint="use a larger block size",
    )


def _check_digest_table(name: str, digest_alg: int, table_len: int, data_blocks: int) -> None:
    if digest_alg not in DIGEST_ALGS:
        raise _malformed(name, f"unknown digest_alg {digest_alg}")
    expected = data_blocks * DIGEST_LEN if digest_alg in DIGEST_ALGS_WITH_TABLE else 0
    if table_len != expected:
        raise _malformed(
            name,
            f"digest table of {table_len} bytes, expected {expected} "
            f"({data_blocks} data blocks, digest_alg {digest_alg})",
        )


def check_trailer_fields(t: Trailer | TrailerSummary, digest_alg: int) -> None:
    """The checks of a trailer's header fields alone (flags, generation, block_size,
    volume_size, digest_alg), as :func:`decode_trailer` makes them (MalformedError)."""
    name = "trailer"
    if t.flags & ~TRAILER_FLAGS_KNOWN:
        raise _malformed(name, f"unknown flags 0x{t.flags & ~TRAILER_FLAGS_KNOWN:04x}")
    if t.flags & TRAILER_FLAG_COMPLETE and t.flags & TRAILER_FLAG_CONTINUES:
        raise _malformed(name, "flags say both complete and continues on the next medium")
    if t.generation < 1:
        raise _malformed(name, f"generation {t.generation} must be >= 1")
    _check_range(name, "block_size", t.block_size, 1, MAX_BLOCK_SIZE)
    if t.volume_size < 0:
        raise _malformed(name, f"volume_size {t.volume_size} is negative")
    if digest_alg not in DIGEST_ALGS:
        raise _malformed(name, f"unknown digest_alg {digest_alg}")


def check_trailer_totals(t: Trailer | TrailerSummary, totals: dict[str, int]) -> None:
    """The header's totals (data_blocks, zero_blocks, raw_bytes, stored_bytes) against
    ``totals`` summed over the chunk index (MalformedError naming the first that differs)."""
    for field, total in totals.items():
        if getattr(t, field) != total:
            raise _malformed("trailer", f"{field} {getattr(t, field)} != {total} summed over its chunks")


def _validate_trailer(t: Trailer) -> None:
    name = "trailer"
    check_trailer_fields(t, t.digest_alg)
    data_blocks = zero_blocks = raw_bytes = stored_bytes = 0
    body_len = len(t.digests)
    next_record = 1
    for i, e in enumerate(t.entries):
        # a part of a spanning generation starts where the last one stopped
        d, z = check_index_entry(
            i, e, seq=t.entries[0].seq + i, next_record=next_record, block_size=t.block_size, volume_size=t.volume_size
        )
        next_record = e.record + e.record_count
        data_blocks += d
        zero_blocks += z
        raw_bytes += e.raw_len
        stored_bytes += e.stored_len
        body_len += INDEX_ENTRY_FIXED_LEN + RUN_LEN * len(e.runs)
    check_trailer_totals(
        t,
        {"data_blocks": data_blocks, "zero_blocks": zero_blocks, "raw_bytes": raw_bytes, "stored_bytes": stored_bytes},
    )
    _check_digest_table(name, t.digest_alg, len(t.digests), data_blocks)
    check_trailer_len(TRAILER_HEADER_LEN + body_len, len(t.entries), data_blocks)


def check_trailer_len(total: int, chunks: int, data_blocks: int) -> None:
    """Raise MalformedError (explaining the limit) when a trailer of ``total`` bytes, holding
    ``chunks`` chunks and ``data_blocks`` data blocks, is larger than a trailer can be."""
    if total > MAX_TRAILER_LEN:
        raise _trailer_too_large(total, chunks, data_blocks)


def check_index_entry(
    index: int, e: ChunkIndexEntry, *, seq: int, next_record: int, block_size: int, volume_size: int
) -> tuple[int, int]:
    """Check entry number ``index`` of a trailer's chunk index: its ``seq`` (expected ``seq``),
    its records (from ``next_record`` on), its runs and payload lengths. Returns its
    ``(data blocks, zero blocks)``; raises MalformedError naming the entry."""
    ename = f"trailer entry {index}"
    if e.seq != seq:
        raise _malformed(ename, f"seq {e.seq}, expected {seq}")
    if e.record < next_record:
        raise _malformed(ename, f"record {e.record} overlaps the item before (from {next_record})")
    if e.record_count < 1:
        raise _malformed(ename, f"record_count {e.record_count} must be >= 1")
    data_len, d, z = _check_runs(ename, e.runs, block_size, volume_size)
    _check_payload_lens(ename, e.flags, CHUNK_FLAGS_KNOWN, e.raw_len, e.stored_len, data_len)
    return d, z


def check_digest_table(name: str, digest_alg: int, table_len: int, data_blocks: int) -> None:
    """Check that a digest table of ``table_len`` bytes fits ``data_blocks`` data blocks under
    ``digest_alg`` (MalformedError naming ``name`` if not)."""
    _check_digest_table(name, digest_alg, table_len, data_blocks)


def encode_index_entries(entries: Sequence[ChunkIndexEntry]) -> bytes:
    """The chunk index entries of a trailer body, encoded (no digest table)."""
    n = len(entries)
    return _build(
        "trailer body", lambda: TrailerBodyCompiled.build({"entries": entries, "digests": b""}, chunk_count=n)
    )


def encode_trailer_header(*, body_len: int, body_crc: int, **fields: Any) -> bytes:
    """The trailer's header (its fields as TrailerHeaderStruct declares them, then its CRC)."""
    value = {
        "header_len": TRAILER_HEADER_LEN,
        "body_len": body_len,
        "format_version": FORMAT_VERSION,
        **fields,
        "body_crc": body_crc,
        "reserved": bytes(3),
    }
    return _build("trailer", lambda: TrailerHeaderStruct.build({"fields": {"value": value}}))


def encode_trailer(trailer: Trailer) -> bytes:
    """The trailer item: header, then the body: the chunk index followed by the digest table."""
    _validate_trailer(trailer)
    n = len(trailer.entries)
    body = _build(
        "trailer body",
        lambda: TrailerBodyCompiled.build({"entries": trailer.entries, "digests": trailer.digests}, chunk_count=n),
    )
    fields = TrailerMap.from_model(trailer)
    del fields["entries"], fields["digests"]
    header = encode_trailer_header(chunk_count=n, body_len=len(body), body_crc=crc32c(body), **fields)
    return header + body


def decode_trailer_head(head: Buf, length: int) -> tuple[TrailerSummary, int, int]:
    """The checks :func:`decode_trailer` makes on a trailer item of ``length`` bytes before its
    body, for a reader that holds only its start (``head``: at least the 100-byte header, or
    the whole item when shorter): the prefix and the item's length, the header CRC, the
    version, header_len, reserved bytes and digest algorithm, then the header fields
    (:func:`check_trailer_fields`). Returns the header's fields, the digest algorithm and the
    body CRC the header declares; the caller checks the body (:class:`TrailerFile`)."""
    mv = _mv(head)
    prefix = read_prefix(mv, (TRAILER_MAGIC,))
    if length < prefix.total_len:
        raise TruncatedError(
            f"trailer of {length} bytes is shorter than its declared length of {prefix.total_len} bytes"
        )
    if length > prefix.total_len:
        raise MalformedError(
            f"trailer: {length - prefix.total_len} bytes after the end of the item ({prefix.total_len} bytes)"
        )
    if prefix.header_len != TRAILER_HEADER_LEN:
        raise MalformedError(f"trailer: header_len {prefix.header_len} != {TRAILER_HEADER_LEN}")
    mv, prefix = _open_item(mv, TRAILER_MAGIC, whole=False)
    v = _trailer_header(mv, prefix.header_len)
    summary: TrailerSummary = TrailerSummaryMap.to_model(v)
    check_trailer_fields(summary, v.digest_alg)
    return summary, int(v.digest_alg), int(v.body_crc)


def _trailer_header(mv: memoryview, hl: int) -> Any:
    """A trailer's header fields (construct's container) with its reserved bytes and digest
    algorithm checked: the checks every trailer reader makes."""
    with _translated("trailer"):
        v = TrailerHeaderStruct.parse(bytes(mv[:hl])).fields.value
    if v.reserved != bytes(3):
        raise MalformedError(f"trailer: reserved bytes {v.reserved.hex()} are not 0")
    if v.digest_alg not in DIGEST_ALGS:
        raise MalformedError(f"trailer: unknown digest_alg {v.digest_alg}")
    return v


def parse_index_entry(buf: Buf) -> ChunkIndexEntry:
    """One chunk index entry of a trailer body (its 30 fixed bytes and its runs, exactly)."""
    with _translated("trailer body"):
        e: ChunkIndexEntry = ChunkIndexEntryStruct.parse(bytes(buf))
    return e


def decode_trailer(buf: Buf) -> Trailer:
    """Decode a whole trailer item; checks the header CRC, then the body CRC, then the chunk
    index and the length of the digest table."""
    mv, prefix = _open_item(buf, TRAILER_MAGIC, whole=True)
    hl = prefix.header_len
    if hl != TRAILER_HEADER_LEN:
        raise MalformedError(f"trailer: header_len {hl} != {TRAILER_HEADER_LEN}")
    v = _trailer_header(mv, hl)
    body = mv[hl:]
    found = crc32c(body)
    if found != v.body_crc:
        raise _crc_error("trailer body", v.body_crc, found)
    n = v.chunk_count
    if n * INDEX_ENTRY_FIXED_LEN > len(body):
        raise MalformedError(f"trailer: {n} chunks do not fit a body of {len(body)} bytes")
    with _translated("trailer body"):
        parsed = TrailerBodyCompiled.parse(bytes(body), chunk_count=n)
        t: Trailer = TrailerMap.to_model({**v, "entries": parsed.entries, "digests": parsed.digests})
    _validate_trailer(t)
    return t


def decode_trailer_header(buf: Buf) -> TrailerSummary:
    """Decode only a trailer's header (``buf`` holds at least its 100 bytes; the body is not
    read): prefix, header CRC, version, flags, reserved bytes and digest algorithm."""
    mv, prefix = _open_item(buf, TRAILER_MAGIC, whole=False)
    hl = prefix.header_len
    if hl != TRAILER_HEADER_LEN:
        raise MalformedError(f"trailer: header_len {hl} != {TRAILER_HEADER_LEN}")
    with _translated("trailer"):
        v = TrailerHeaderStruct.parse(bytes(mv[:hl])).fields.value
    if v.reserved != bytes(3):
        raise MalformedError(f"trailer: reserved bytes {v.reserved.hex()} are not 0")
    if v.digest_alg not in DIGEST_ALGS:
        raise MalformedError(f"trailer: unknown digest_alg {v.digest_alg}")
    if v.flags & ~TRAILER_FLAGS_KNOWN or v.flags & TRAILER_FLAGS_KNOWN == TRAILER_FLAGS_KNOWN:
        raise MalformedError(f"trailer: invalid flags 0x{v.flags:04x}")
    if v.generation < 1:
        raise MalformedError("trailer: generation must be >= 1")
    summary: TrailerSummary = TrailerSummaryMap.to_model(v)
    return summary


# =========================================================================== generation end record


def _validate_trailer_end(t: TrailerEnd) -> None:
    name = "generation end record"
    if t.flags & ~TRAILER_END_FLAGS_KNOWN:
        raise _malformed(name, f"unknown flags 0x{t.flags & ~TRAILER_END_FLAGS_KNOWN:04x}")
    if t.generation < 1:
        raise _malformed(name, f"generation {t.generation} must be >= 1")
    if t.trailer_record < 1:
        raise _malformed(name, f"trailer_record {t.trailer_record} must be >= 1")
    _check_range(name, "trailer_len", t.trailer_len, TRAILER_HEADER_LEN, MAX_TRAILER_LEN)
    # every record but the last is record_size bytes, record_size in MIN..MAX_RECORD_SIZE
    lo = -(-t.trailer_len // MAX_RECORD_SIZE)
    hi = -(-t.trailer_len // MIN_RECORD_SIZE)
    _check_range(name, "trailer_records", t.trailer_records, lo, hi)


def encode_trailer_end(end: TrailerEnd) -> bytes:
    """The generation end record (one record; written right after the trailer)."""
    _validate_trailer_end(end)
    return _build("generation end record", lambda: TrailerEndHeaderStruct.build({"fields": {"value": end}}))


def decode_trailer_end(buf: Buf) -> TrailerEnd:
    """Decode a generation end record (the whole record)."""
    mv, prefix = _open_item(buf, TRAILER_END_MAGIC, whole=True)
    hl = prefix.header_len
    if hl != TRAILER_END_LEN:
        raise MalformedError(f"generation end record: header_len {hl} != {TRAILER_END_LEN}")
    with _translated("generation end record"):
        end: TrailerEnd = TrailerEndHeaderStruct.parse(bytes(mv[:hl])).fields.value
    _validate_trailer_end(end)
    return end


def trailer_end_for(trailer_item: Buf, *, trailer_record: int, record_size: int) -> TrailerEnd:
    """The end record for ``trailer_item`` (an encoded trailer) written from record
    ``trailer_record`` of its tape file in records of ``record_size`` bytes."""
    mv = _mv(trailer_item)
    prefix = read_prefix(mv, (TRAILER_MAGIC,))
    hl = prefix.header_len
    if len(mv) != prefix.total_len or hl != TRAILER_HEADER_LEN:
        raise MalformedError(f"trailer_end_for: not a whole trailer ({len(mv)} bytes, declares {prefix.total_len})")
    return trailer_end_from_header(mv[:hl], len(mv), trailer_record=trailer_record, record_size=record_size)


def trailer_end_from_header(header: Buf, total_len: int, *, trailer_record: int, record_size: int) -> TrailerEnd:
    """The end record for a trailer given only its header and total length (a trailer written
    as a stream: :meth:`TrailerBuilder.finish_pieces`). Same result as :func:`trailer_end_for`."""
    mv = _mv(header)
    hl = TRAILER_HEADER_LEN
    if len(mv) < hl:
        raise MalformedError(f"trailer_end_from_header: a header of {len(mv)} bytes, expected {hl}")
    with _translated("trailer"):
        v = TrailerHeaderStruct.parse(bytes(mv[:hl])).fields.value
    return TrailerEnd(
        run_uuid=v.run_uuid,
        generation=v.generation,
        trailer_record=trailer_record,
        trailer_records=-(-total_len // record_size),
        trailer_len=total_len,
        trailer_crc=_u32le(mv[hl - HEADER_CRC_LEN : hl]),
    )


def check_trailer_end(end: TrailerEnd, trailer_item: Buf, *, length: int | None = None) -> None:
    """Check that ``trailer_item`` (the bytes read from ``end.trailer_record`` on) is the trailer
    ``end`` points to: same total length, the trailer's header_crc equals ``end.trailer_crc``,
    same run_uuid and generation. Raises MalformedError on a mismatch (TruncatedError when
    fewer bytes than ``trailer_len`` are given). ``length``: the item is that long and
    ``trailer_item`` holds its start (at least its header: a trailer read into a file).
    Decode the trailer itself with :func:`decode_trailer` or :class:`TrailerFile`."""
    name = "generation end record"
    mv = _mv(trailer_item)
    have = len(mv) if length is None else length
    if have < end.trailer_len:
        raise TruncatedError(f"trailer of {have} bytes, the end record says {end.trailer_len}")
    if have > end.trailer_len:
        raise _malformed(name, f"trailer of {have} bytes, the end record says {end.trailer_len}")
    if len(mv) < TRAILER_HEADER_LEN:
        raise TruncatedError(f"trailer start of {len(mv)} bytes, shorter than its header")
    prefix = read_prefix(mv, (TRAILER_MAGIC,))
    if prefix.total_len != end.trailer_len or prefix.header_len != TRAILER_HEADER_LEN:
        raise _malformed(name, f"the trailer declares {prefix.total_len} bytes, the end record says {end.trailer_len}")
    hl = prefix.header_len
    crc = _u32le(mv[hl - HEADER_CRC_LEN : hl])
    if crc != end.trailer_crc:
        raise _malformed(
            name,
            f"trailer header_crc 0x{crc:08x} != 0x{end.trailer_crc:08x} in the end record: "
            "not the trailer this end record points to",
        )
    run_uuid = UUID(bytes=bytes(mv[20:36]))
    generation = _u32le(mv[36:40])
    if (run_uuid, generation) != (end.run_uuid, end.generation):
        raise _malformed(
            name,
            f"trailer of run {run_uuid} generation {generation}, the end record says run "
            f"{end.run_uuid} generation {end.generation}",
        )


# =========================================================================== cross-item checks


def check_same_generation(
    gen: GenerationHeader, item: ChunkHeader | Trailer | TrailerSummary | TrailerEnd, *, seq: int | None = None
) -> None:
    """Check that a chunk header, trailer or generation end record belongs to ``gen``.

    Same ``run_uuid`` (else the record comes from another run or medium), ``generation``,
    ``block_size`` and ``volume_size`` (the end record has only the first two); for a chunk also at most ``chunk_blocks`` data blocks,
    no compression unless the generation asked for it, encrypted exactly when the generation is,
    and ``seq`` if given. Raises
    MalformedError naming the first mismatch.
    """
    if isinstance(item, ChunkHeader):
        name = f"chunk {item.seq}"
    else:
        name = "trailer" if isinstance(item, Trailer | TrailerSummary) else "generation end record"
    if item.run_uuid != gen.run_uuid:
        raise _malformed(name, f"belongs to run {item.run_uuid}, not to this generation's run {gen.run_uuid}")
    fields = ("generation",) if isinstance(item, TrailerEnd) else ("generation", "block_size", "volume_size")
    for field in fields:
        mine, theirs = getattr(item, field), getattr(gen, field)
        if mine != theirs:
            raise _malformed(name, f"{field} {mine} != {theirs} in the generation header")
    if isinstance(item, Trailer):
        _check_digest_alg(gen, item.digest_alg)
    if isinstance(item, ChunkHeader):
        if seq is not None and item.seq != seq:
            raise _malformed(name, f"out of order: expected chunk {seq}")
        if item.data_blocks > gen.chunk_blocks:
            raise _malformed(name, f"{item.data_blocks} data blocks, more than chunk_blocks {gen.chunk_blocks}")
        if item.compressed and gen.compression != Compression.ZSTD:
            raise _malformed(name, "compressed, but the generation is not")
        if item.encrypted != gen.encrypted:  # no plain chunk slipped into an encrypted generation
            raise _malformed(name, "encrypted, but the generation is not" if item.encrypted else
                             "not encrypted, but the generation is")  # fmt: skip


def check_trailer_digest_alg(gen: GenerationHeader, digest_alg: int) -> None:
    """Check a trailer's ``digest_alg`` against its generation (for a reader holding only the
    trailer's header, e.g. :class:`TrailerFile`): an encrypted generation's digests are keyed
    (2) or absent (0), a plain one's are not keyed (MalformedError)."""
    _check_digest_alg(gen, digest_alg)


def _check_digest_alg(gen: GenerationHeader, digest_alg: int) -> None:
    """An encrypted generation's digests are keyed (or absent); a plain one's are not keyed."""
    if gen.encrypted and digest_alg == DIGEST_BLAKE3_128:
        raise _malformed("trailer", "unkeyed digests (digest_alg 1) in an encrypted generation")
    if not gen.encrypted and digest_alg == DIGEST_BLAKE3_128_KEYED:
        raise _malformed("trailer", "keyed digests (digest_alg 2) in a generation that is not encrypted")
