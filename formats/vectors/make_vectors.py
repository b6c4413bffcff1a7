#!/usr/bin/env python3
"""Write the golden vectors of tapearc format version 1 (with generation header layouts 2 and 3).

Usage: python formats/vectors/make_vectors.py [OUTDIR]   (default: this script's folder)

Deterministic: fixed UUIDs, fixed times, fixed data (no randomness, no clock). The committed
.bin files are the reference; tests/format/test_format_vectors.py checks that this script still
reproduces them byte for byte (with the pinned zstandard / libzstd; the compressed chunk is
the only vector that depends on the compressor's output).

All valid vectors describe one consistent generation: the generation header (twice: layout 1,
as tapearc wrote it before it recorded the volume's source, and layout 2 with the source, as it
writes it now), its two chunks, its trailer (with the real BLAKE3-128 digests of the chunks'
data blocks) and its generation end record (the label is the label of the medium it is on).
The same generation written encrypted with the test key ``00 01 .. 1f`` and fixed nonces
(formats/SPEC.md, section 15): its header (layout 3), its two chunks sealed, its trailer with
keyed digests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from tapearc.crypto.keys import Key
from tapearc.format import (
    ChunkHeader,
    ChunkIndexEntry,
    Cipher,
    Compression,
    GenerationHeader,
    GenerationKind,
    Label,
    Trailer,
    VolumeSource,
    build_chunk,
    build_sealed_chunk,
    chunk_aad,
    chunk_cipher,
    crc32c,
    encode_generation_header,
    encode_key_record,
    encode_label,
    encode_trailer,
    encode_trailer_end,
    iter_trailer_digests,
    open_chunk_payload,
    payload_digests,
    peek_item,
    raw_payload,
    record_count,
    runs_from_ids,
    to_jsonable,
    trailer_end_for,
    unpack_payload,
)
from tapearc.format.structs import (
    TRAILER_HEADER_LEN,
    ChunkFixed,
    GenerationFixed,
    LabelFixed,
    TrailerEndFields,
    TrailerFields,
    field_offset,
)

# offsets of the fields the damaged vectors change, from the declarations (tapearc.format.structs)
CHUNK_SEQ = field_offset(ChunkFixed, "seq")
CHUNK_FLAGS = field_offset(ChunkFixed, "flags")
CHUNK_RAW_LEN = field_offset(ChunkFixed, "raw_len")
CHUNK_PAYLOAD_CRC = field_offset(ChunkFixed, "payload_crc")
HEADER_LEN = field_offset(LabelFixed, "header_len")  # the same in every item's prefix
BODY_LEN = field_offset(LabelFixed, "body_len")
FORMAT_VERSION_AT = field_offset(LabelFixed, "format_version")
GENERATION_KIND = field_offset(GenerationFixed, "kind")
TRAILER_DATA_BLOCKS = field_offset(TrailerFields, "data_blocks")
TRAILER_BODY_CRC = field_offset(TrailerFields, "body_crc")
TRAILER_DIGEST_ALG = field_offset(TrailerFields, "digest_alg")
TRAILER_CRC_AT = TRAILER_HEADER_LEN - 4
END_TRAILER_RECORD = field_offset(TrailerEndFields, "trailer_record")

MEDIUM_UUID = UUID("11111111-2222-4333-8444-555555555555")
MEDIA_SET_UUID = UUID("66666666-7777-4888-9999-aaaaaaaaaaaa")
VOLUME_UUID = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
RUN_UUID = UUID("deadbeef-cafe-4bab-8e00-123456789abc")
CREATED = 1735689600  # 2025-01-01T00:00:00Z

#: The encrypted vectors' data key (32 bytes 00 01 .. 1f) and the nonces of their two chunks.
TEST_KEY = Key(bytes(range(32)))
TEST_NONCES = (bytes(range(0xA0, 0xAC)), bytes(range(0xB0, 0xBC)))

BLOCK_SIZE = 4096
VOLUME_SIZE = 10 * BLOCK_SIZE + 1000  # 11 blocks, block 10 is partial (1000 bytes)
RECORD_SIZE = 262144


def pseudo_random(n: int, seed: bytes) -> bytes:
    """n incompressible but reproducible bytes: SHA-256(seed || counter) concatenated."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


def text_block(block_id: int, n: int) -> bytes:
    """n compressible bytes: a repeated line naming the block."""
    line = f"tapearc golden vector, block {block_id:04d}, all work and no play.\n".encode()
    return (line * (n // len(line) + 1))[:n]


def hexcrc(v: int) -> str:
    return f"0x{v:08x}"


def describe(item: bytes, obj: Any, *, decoder: str, cls: str, **extra: Any) -> dict[str, Any]:
    p = peek_item(item)
    hl = p.header_len
    return {
        "item": cls,
        "decoder": decoder,
        "magic": p.magic.decode("ascii"),
        "format_version": int.from_bytes(item[FORMAT_VERSION_AT : FORMAT_VERSION_AT + 2], "little"),
        "header_len": hl,
        "body_len": p.body_len,
        "total_len": p.total_len,
        "header_crc": hexcrc(int.from_bytes(item[hl - 4 : hl], "little")),
        "sha256": hashlib.sha256(item).hexdigest(),
        "fields": to_jsonable(obj),
        **extra,
    }


def make_valid() -> dict[str, tuple[bytes, dict[str, Any]]]:
    out: dict[str, tuple[bytes, dict[str, Any]]] = {}
    _label_vector(out)
    gen_src = _generation_header_vectors(out)
    entries, digests, next_record = _chunk_vectors(out)
    b = _trailer_vector(out, entries, digests)
    _trailer_end_vector(out, b, next_record)
    _encrypted_vectors(out, gen_src)
    _key_record_vector(out)
    return out


def _label_vector(out: dict[str, tuple[bytes, dict[str, Any]]]) -> None:
    label = Label(
        medium_uuid=MEDIUM_UUID,
        media_set_uuid=MEDIA_SET_UUID,
        sequence=1,
        record_size=RECORD_SIZE,
        created=CREATED,
        text="TA0001L8",
    )
    b = encode_label(label)
    out["label"] = (b, describe(b, label, decoder="decode_label", cls="Label"))


def _generation_header_vectors(out: dict[str, tuple[bytes, dict[str, Any]]]) -> GenerationHeader:
    gen = GenerationHeader(
        run_uuid=RUN_UUID,
        media_set_uuid=MEDIA_SET_UUID,
        medium_uuid=MEDIUM_UUID,
        volume_uuid=VOLUME_UUID,
        volume_name="vg0/data",
        generation=2,
        base_generation=1,
        kind=GenerationKind.INCREMENTAL,
        compression=Compression.ZSTD,
        block_size=BLOCK_SIZE,
        record_size=RECORD_SIZE,
        chunk_blocks=256,
        volume_size=VOLUME_SIZE,
        part=0,
        created=CREATED + 60,
    )
    b = encode_generation_header(gen)
    out["generation-header"] = (
        b,
        describe(b, gen, decoder="decode_generation_header", cls="GenerationHeader"),
    )
    # the same header with the volume's source (layout 2, format_version 2): an LV named by its
    # symlink, which resolves to device-mapper node 253:3; a block device has inode 0
    gen_src = dataclasses.replace(
        gen, source=VolumeSource(path="/dev/vg0/data", real_path="/dev/dm-3", dev=0xFD03, ino=0)
    )
    b = encode_generation_header(gen_src)
    out["generation-header-source"] = (
        b,
        describe(b, gen_src, decoder="decode_generation_header", cls="GenerationHeader"),
    )
    return gen_src


ChunkData = tuple[str, list[tuple[int, bool]], bytes, bool, str]


def _chunk_data() -> list[ChunkData]:
    """(name, block ids with their zero flag, raw payload, compress, recipe) of the two chunks."""
    # chunk 0, uncompressed: data 0-1, zero 2-4, data 7, data 10 (partial: 1000 bytes)
    ids0 = [(0, False), (1, False), (2, True), (3, True), (4, True), (7, False), (10, False)]
    raw0 = pseudo_random(2 * BLOCK_SIZE, b"block0-1") + pseudo_random(BLOCK_SIZE, b"block7")
    raw0 += pseudo_random(1000, b"block10")
    # chunk 1, zstd: data 5-6 (compressible text), zero 8-9
    ids1 = [(5, False), (6, False), (8, True), (9, True)]
    raw1 = text_block(5, BLOCK_SIZE) + text_block(6, BLOCK_SIZE)
    return [
        ("chunk-plain", ids0, raw0, False,
         "blocks 0-1: pseudo_random(8192, b'block0-1'); block 7: pseudo_random(4096, "
         "b'block7'); block 10: pseudo_random(1000, b'block10') (see make_vectors.py)"),
        ("chunk-zstd", ids1, raw1, True,
         "blocks 5, 6: text_block(5, 4096) + text_block(6, 4096) (see make_vectors.py)"),
    ]  # fmt: skip


def _chunk_vectors(out: dict[str, tuple[bytes, dict[str, Any]]]) -> tuple[list[ChunkIndexEntry], bytes, int]:
    """The two chunks; returns their index entries, the digest table and the next record."""
    entries = []
    digests = b""  # the digest table: BLAKE3-128 of every data block, chunk by chunk
    next_record = 1  # the generation header is record 0 of the generation file
    for seq, (name, ids, raw, compress, recipe) in enumerate(_chunk_data()):
        header, item = _chunk_vector(out, seq, name, ids, raw, compress, recipe)
        n = record_count(len(item), RECORD_SIZE)
        entries.append(ChunkIndexEntry.from_chunk(header, record=next_record, record_count=n))
        digests += payload_digests(header.runs, raw, BLOCK_SIZE, VOLUME_SIZE)
        next_record += n
    return entries, digests, next_record


def _chunk_vector(
    out: dict[str, tuple[bytes, dict[str, Any]]],
    seq: int,
    name: str,
    ids: list[tuple[int, bool]],
    raw: bytes,
    compress: bool,
    recipe: str,
) -> tuple[ChunkHeader, bytes]:
    header, hbytes, stored = build_chunk(
        run_uuid=RUN_UUID,
        generation=2,
        seq=seq,
        block_size=BLOCK_SIZE,
        volume_size=VOLUME_SIZE,
        runs=runs_from_ids(ids),
        raw_payload=raw,
        compress=compress,
    )
    assert header.compressed == compress
    item = hbytes + bytes(stored)
    assert unpack_payload(header, stored) == raw
    out[name] = (
        item,
        describe(
            item,
            header,
            decoder="decode_chunk",
            cls="ChunkHeader",
            payload={
                "stored_len": len(stored),
                "sha256": hashlib.sha256(stored).hexdigest(),
                "crc32c": hexcrc(crc32c(stored)),
            },
            raw_payload={
                "raw_len": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
                "recipe": recipe,
            },
        ),
    )
    return header, item


def _trailer_vector(
    out: dict[str, tuple[bytes, dict[str, Any]]], entries: list[ChunkIndexEntry], digests: bytes
) -> bytes:
    trailer = Trailer.from_entries(
        run_uuid=RUN_UUID,
        generation=2,
        volume_size=VOLUME_SIZE,
        block_size=BLOCK_SIZE,
        entries=entries,
        digests=digests,
        complete=True,
    )
    b = encode_trailer(trailer)
    index_len = len(b) - TRAILER_HEADER_LEN - len(digests)
    out["trailer"] = (
        b,
        describe(
            b,
            trailer,
            decoder="decode_trailer",
            cls="Trailer",
            body={
                "body_len": len(b) - TRAILER_HEADER_LEN,
                "crc32c": hexcrc(crc32c(b[TRAILER_HEADER_LEN:])),
                "index_len": index_len,
                "digest_table_offset": TRAILER_HEADER_LEN + index_len,
                "digest_table_len": len(digests),
            },
            # the digest table block by block, in table order (BLAKE3-128 of each data block)
            digest_table=[{"block": block_id, "blake3_128": d.hex()} for block_id, d in iter_trailer_digests(trailer)],
        ),
    )
    return b


def _trailer_end_vector(out: dict[str, tuple[bytes, dict[str, Any]]], b: bytes, next_record: int) -> None:
    # the end record: the trailer is written from the record after the last chunk
    trailer_record = next_record
    end = trailer_end_for(b, trailer_record=trailer_record, record_size=RECORD_SIZE)
    eb = encode_trailer_end(end)
    out["trailer-end"] = (
        eb,
        describe(
            eb,
            end,
            decoder="decode_trailer_end",
            cls="TrailerEnd",
            record=end.record,  # its own record index within the generation file
        ),
    )


def _encrypted_vectors(out: dict[str, tuple[bytes, dict[str, Any]]], gen_src: GenerationHeader) -> None:
    """The same generation written encrypted with the test key: its generation header (layout
    3), its two chunks sealed with fixed nonces, its trailer (keyed digests, digest_alg 2)."""
    gen = dataclasses.replace(gen_src, cipher=Cipher.AES_256_GCM, key_fingerprint=TEST_KEY.fingerprint)
    b = encode_generation_header(gen)
    out["generation-header-encrypted"] = (
        b,
        describe(b, gen, decoder="decode_generation_header", cls="GenerationHeader",
                 key={"secret": TEST_KEY.secret.hex(), "fingerprint": TEST_KEY.fingerprint_text}),
    )  # fmt: skip
    cipher = chunk_cipher(gen, TEST_KEY)
    digest_key = TEST_KEY.digest_key()
    entries, digests, next_record = [], b"", 1
    for seq, (plain_name, ids, raw, compress, recipe) in enumerate(_chunk_data()):
        name = plain_name.replace("plain", "encrypted").replace("chunk-zstd", "chunk-encrypted-zstd")
        header, hbytes, stored = build_sealed_chunk(
            gen, seq=seq, runs=runs_from_ids(ids), raw_payload=raw, cipher=cipher, compress=compress,
            nonce=TEST_NONCES[seq],
        )  # fmt: skip
        assert header.encrypted and header.compressed == compress
        item = hbytes + stored
        out[name] = (item, _describe_sealed(item, gen, header, stored, raw, recipe, cipher))
        n = record_count(len(item), RECORD_SIZE)
        entries.append(ChunkIndexEntry.from_chunk(header, record=next_record, record_count=n))
        digests += payload_digests(header.runs, raw, BLOCK_SIZE, VOLUME_SIZE, digest_key=digest_key)
        next_record += n
    trailer = Trailer.from_entries(run_uuid=RUN_UUID, generation=2, volume_size=VOLUME_SIZE, block_size=BLOCK_SIZE,
                                   entries=entries, digests=digests, digest_alg=2, complete=True)  # fmt: skip
    tb = encode_trailer(trailer)
    out["trailer-encrypted"] = (
        tb,
        describe(tb, trailer, decoder="decode_trailer", cls="Trailer",
                 digest_key=digest_key.hex(),
                 digest_table=[{"block": i, "blake3_128_keyed": d.hex()} for i, d in iter_trailer_digests(trailer)]),
    )  # fmt: skip


def _describe_sealed(
    item: bytes, gen: GenerationHeader, header: ChunkHeader, stored: bytes, raw: bytes, recipe: str, cipher: Any
) -> dict[str, Any]:
    inner = bytes(open_chunk_payload(gen, header, stored, cipher))
    assert raw_payload(gen, header, stored, cipher) == raw
    return describe(
        item,
        header,
        decoder="decode_chunk",
        cls="ChunkHeader",
        payload={
            "stored_len": len(stored),
            "sha256": hashlib.sha256(stored).hexdigest(),
            "crc32c": hexcrc(crc32c(stored)),
            "nonce": stored[:12].hex(),
            "tag": stored[-16:].hex(),
        },
        inner_payload={
            "inner_len": len(inner),
            "sha256": hashlib.sha256(inner).hexdigest(),
            "what": "zstd frame" if header.compressed else "raw payload",
        },
        aad=chunk_aad(gen, header).hex(),
        key={"secret": TEST_KEY.secret.hex(), "fingerprint": TEST_KEY.fingerprint_text},
        raw_payload={"raw_len": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "recipe": recipe},
    )


def _flip(b: bytes, offset: int, mask: int = 0x01) -> bytes:
    x = bytearray(b)
    x[offset] ^= mask
    return bytes(x)


def _patch(b: bytes, offset: int, new: bytes, *, fix_crc: bool) -> bytes:
    """Overwrite bytes at offset; with fix_crc, recompute the header CRC so it still matches."""
    x = bytearray(b)
    x[offset : offset + len(new)] = new
    if fix_crc:
        hl = int.from_bytes(x[HEADER_LEN : HEADER_LEN + 4], "little")
        x[hl - 4 : hl] = crc32c(bytes(x[: hl - 4])).to_bytes(4, "little")
    return bytes(x)


def _fix_trailer(b: bytes | bytearray) -> bytes:
    """Make a modified trailer consistent again: body_len, body CRC and header CRC."""
    x = bytearray(b)
    x[BODY_LEN : BODY_LEN + 4] = (len(x) - TRAILER_HEADER_LEN).to_bytes(4, "little")
    x[TRAILER_BODY_CRC : TRAILER_BODY_CRC + 4] = crc32c(bytes(x[TRAILER_HEADER_LEN:])).to_bytes(4, "little")
    x[TRAILER_CRC_AT:TRAILER_HEADER_LEN] = crc32c(bytes(x[:TRAILER_CRC_AT])).to_bytes(4, "little")
    return bytes(x)


def make_damaged(valid: dict[str, tuple[bytes, dict[str, Any]]]) -> dict[str, tuple[bytes, dict[str, str]]]:
    def item(name: str) -> bytes:
        return valid[name][0]

    return {
        **_damaged_chunks(item("chunk-plain"), item("chunk-zstd")),
        **_damaged_encrypted(item("chunk-encrypted"), item("generation-header-encrypted"), item("trailer-encrypted")),
        **_damaged_labels(item("label")),
        **_damaged_generation_headers(item("generation-header"), item("generation-header-source")),
        **_damaged_trailers(item("trailer"), item("trailer-end")),
        **_damaged_key_records(item("key-record")),
    }


def _expect(decoder: str, error: str, why: str) -> dict[str, str]:
    return {"decoder": decoder, "error": error, "why": why}


def _damaged_chunks(chunk: bytes, zchunk: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Chunks with one thing wrong each."""
    chl = int.from_bytes(chunk[HEADER_LEN : HEADER_LEN + 4], "little")
    return {
        "chunk-bad-header-crc": (
            _flip(chunk, CHUNK_SEQ),
            _expect("decode_chunk", "CRCError", "bit 0 of seq (offset 40) flipped, header CRC not fixed"),
        ),
        "chunk-bad-payload-crc": (
            _flip(chunk, chl + 100),
            _expect("decode_chunk", "CRCError", "bit 0 of payload byte 100 flipped"),
        ),
        "chunk-truncated": (
            chunk[:-100],
            _expect("decode_chunk", "TruncatedError", "last 100 bytes of the payload cut off"),
        ),
        "chunk-truncated-header": (
            chunk[:50],
            _expect("decode_chunk", "TruncatedError", "only the first 50 bytes of the item"),
        ),
        "chunk-trailing-bytes": (
            chunk + b"\0" * 7,
            _expect("decode_chunk", "MalformedError", "7 bytes after the end of the item"),
        ),
        "chunk-future-magic": (
            _patch(chunk, 0, b"TACHUNK2", fix_crc=True),
            _expect("decode_chunk", "UnsupportedVersionError", "magic TACHUNK2 (version 2), CRC fixed"),
        ),
        "chunk-bad-raw-len": (
            _patch(zchunk, CHUNK_RAW_LEN, (8191).to_bytes(4, "little"), fix_crc=True),
            _expect(
                "decode_chunk",
                "MalformedError",
                "raw_len 8191 != 8192 bytes of data blocks in the runs, header CRC fixed",
            ),
        ),
        "chunk-unknown-flag": (
            _patch(chunk, CHUNK_FLAGS, (0x0004).to_bytes(2, "little"), fix_crc=True),
            _expect("decode_chunk", "MalformedError", "flags bit 2 set (reserved), header CRC fixed"),
        ),
        "chunk-encrypted-flag-on-plain": (
            _patch(chunk, CHUNK_FLAGS, (0x0002).to_bytes(2, "little"), fix_crc=True),
            _expect(
                "decode_chunk",
                "MalformedError",
                "flags bit 1 (encrypted) set on an unencrypted chunk: body_len == raw_len, not raw_len + 28; "
                "header CRC fixed",
            ),
        ),
    }


def _damaged_encrypted(chunk: bytes, gen: bytes, trailer: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Encrypted items with one thing wrong each (what decodes without a key)."""
    chl = int.from_bytes(chunk[HEADER_LEN : HEADER_LEN + 4], "little")
    ghl = len(gen)
    return {
        "chunk-encrypted-bad-payload-crc": (
            _flip(chunk, chl + 20),
            _expect("decode_chunk", "CRCError", "bit 0 of ciphertext byte 8 flipped: the CRC catches it without a key"),
        ),
        "chunk-encrypted-flag-cleared": (
            _patch(chunk, CHUNK_FLAGS, (0x0000).to_bytes(2, "little"), fix_crc=True),
            _expect(
                "decode_chunk",
                "MalformedError",
                "flags bit 1 (encrypted) cleared: body_len raw_len + 28 != raw_len; header CRC fixed",
            ),
        ),
        "chunk-encrypted-short-body": (
            _fix_chunk_crc(_patch(chunk[: chl + 20], BODY_LEN, (20).to_bytes(4, "little"), fix_crc=True)),
            _expect(
                "decode_chunk",
                "MalformedError",
                "encrypted chunk with a body of 20 bytes (shorter than nonce and tag), header and payload CRC fixed",
            ),
        ),
        "generation-header-encrypted-cipher-0": (
            _patch(gen, ghl - 21, b"\x00", fix_crc=True),
            _expect("decode_generation_header", "MalformedError", "layout 3 with cipher 0, header CRC fixed"),
        ),
        "generation-header-encrypted-cipher-2": (
            _patch(gen, ghl - 21, b"\x02", fix_crc=True),
            _expect("decode_generation_header", "MalformedError", "layout 3 with cipher 2 (unknown), header CRC fixed"),
        ),
        "generation-header-encrypted-as-v2": (
            _patch(gen, FORMAT_VERSION_AT, (2).to_bytes(2, "little"), fix_crc=True),
            _expect(
                "decode_generation_header",
                "MalformedError",
                "layout-3 header with format_version 2 (17 bytes after the source fields), header CRC fixed",
            ),
        ),
        "trailer-encrypted-short-digest-table": (
            _fix_trailer(trailer[:-16]),
            _expect(
                "decode_trailer",
                "MalformedError",
                "digest_alg 2 with its last digest cut off; body_len, body CRC and header CRC fixed",
            ),
        ),
    }


def _fix_chunk_crc(b: bytes) -> bytes:
    """Recompute a chunk's payload CRC (then its header CRC)."""
    x = bytearray(b)
    hl = int.from_bytes(x[HEADER_LEN : HEADER_LEN + 4], "little")
    x[CHUNK_PAYLOAD_CRC : CHUNK_PAYLOAD_CRC + 4] = crc32c(bytes(x[hl:])).to_bytes(4, "little")
    return _patch(bytes(x), 0, b"", fix_crc=True)


def _damaged_labels(label: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Volume labels with one thing wrong each."""
    return {
        "label-bad-magic": (
            _patch(label, 0, b"XALABEL1", fix_crc=False),
            _expect("decode_label", "BadMagicError", "magic XALABEL1"),
        ),
        "label-future-version": (
            _patch(label, FORMAT_VERSION_AT, (2).to_bytes(2, "little"), fix_crc=True),
            _expect("decode_label", "UnsupportedVersionError", "format_version 2, header CRC fixed"),
        ),
        "label-empty": (
            b"",
            _expect("decode_label", "TruncatedError", "zero bytes"),
        ),
        "label-huge-header-len": (
            _patch(label, HEADER_LEN, (0x7FFFFFFF).to_bytes(4, "little"), fix_crc=False),
            _expect("decode_label", "MalformedError", "header_len 0x7fffffff (> 64 MiB)"),
        ),
    }


def _damaged_generation_headers(gen: bytes, gen_src: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Generation headers (layout 1 and 2) with one thing wrong each."""
    return {
        "generation-header-bad-kind": (
            _patch(gen, GENERATION_KIND, b"\x07", fix_crc=True),
            _expect("decode_generation_header", "MalformedError", "kind 7, header CRC fixed"),
        ),
        "generation-header-future-version": (
            _patch(gen_src, FORMAT_VERSION_AT, (4).to_bytes(2, "little"), fix_crc=True),
            _expect(
                "decode_generation_header",
                "UnsupportedVersionError",
                "layout-2 header with format_version 4, header CRC fixed",
            ),
        ),
        "generation-header-source-as-v3": (
            _patch(gen_src, FORMAT_VERSION_AT, (3).to_bytes(2, "little"), fix_crc=True),
            _expect(
                "decode_generation_header",
                "MalformedError",
                "layout-2 header with format_version 3 (too short for the cipher and key fingerprint), "
                "header CRC fixed",
            ),
        ),
        "generation-header-source-as-v1": (
            _patch(gen_src, FORMAT_VERSION_AT, (1).to_bytes(2, "little"), fix_crc=True),
            _expect(
                "decode_generation_header",
                "MalformedError",
                "layout-2 header with format_version 1 (its source fields are bytes after the "
                "layout-1 fields), header CRC fixed",
            ),
        ),
        "generation-header-v1-as-source": (
            _patch(gen, FORMAT_VERSION_AT, (2).to_bytes(2, "little"), fix_crc=True),
            _expect(
                "decode_generation_header",
                "MalformedError",
                "layout-1 header with format_version 2 (too short for the source fields), header CRC fixed",
            ),
        ),
    }


def _damaged_trailers(trailer: bytes, end: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Trailers and end records with one thing wrong each."""
    return {
        "trailer-bad-body-crc": (
            _flip(trailer, TRAILER_HEADER_LEN + 4),
            _expect("decode_trailer", "CRCError", "bit 0 of body byte 4 flipped"),
        ),
        "trailer-short-digest-table": (
            _fix_trailer(trailer[:-16]),
            _expect(
                "decode_trailer",
                "MalformedError",
                "last digest (16 bytes) of the digest table cut off; body_len, body CRC and header CRC fixed",
            ),
        ),
        "trailer-bad-digest-alg": (
            _patch(trailer, TRAILER_DIGEST_ALG, b"\x03", fix_crc=True),
            _expect("decode_trailer", "MalformedError", "digest_alg 3 (unknown), header CRC fixed"),
        ),
        "trailer-end-bad-crc": (
            _flip(end, END_TRAILER_RECORD),
            _expect(
                "decode_trailer_end", "CRCError", "bit 0 of trailer_record (offset 40) flipped, header CRC not fixed"
            ),
        ),
        "trailer-end-future-magic": (
            _patch(end, 0, b"TATREND2", fix_crc=True),
            _expect("decode_trailer_end", "UnsupportedVersionError", "magic TATREND2 (version 2), CRC fixed"),
        ),
        "trailer-bad-totals": (
            _patch(trailer, TRAILER_DATA_BLOCKS, (999).to_bytes(8, "little"), fix_crc=True),
            _expect("decode_trailer", "MalformedError", "data_blocks 999, header CRC fixed"),
        ),
    }


# --------------------------------------------------------------------------- key record (SPEC 16)

KEY_SECRET = bytes(range(32))  # the fixed test key of the vectors: 00 01 02 .. 1f
KEY_PASSPHRASE = "correct horse battery staple"
KEY_SALT = bytes(range(0x40, 0x50))
KEY_NONCE = bytes(range(0x60, 0x6C))
KEY_LOG2_N = 10  # small so the check is quick; writers use 17


def _key_record_vector(out: dict[str, tuple[bytes, dict[str, Any]]]) -> None:
    from tapearc.crypto.keys import Key
    from tapearc.crypto.wrap import wrap_key

    key = Key(KEY_SECRET)
    w = wrap_key(
        key, KEY_PASSPHRASE, comment="golden vector", created=CREATED, log2_n=KEY_LOG2_N, salt=KEY_SALT, nonce=KEY_NONCE
    )
    b = encode_key_record(w)
    hl = len(b)
    out["key-record"] = (
        b,
        {
            "item": "WrappedKey",
            "decoder": "decode_key_record",
            "magic": b[:8].decode("ascii"),
            "format_version": int.from_bytes(b[16:18], "little"),
            "header_len": hl,
            "body_len": 0,
            "total_len": hl,
            "header_crc": hexcrc(int.from_bytes(b[hl - 4 : hl], "little")),
            "sha256": hashlib.sha256(b).hexdigest(),
            "fields": w.to_json(),
            "key": KEY_SECRET.hex(),
            "key_fingerprint_text": key.fingerprint_text,
            "passphrase": KEY_PASSPHRASE,
        },
    )


def _damaged_key_records(rec: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    return {
        "key-record-bad-crc": (_flip(rec, 100), _expect("decode_key_record", "CRCError", "wrapped_key bit flipped")),
        "key-record-future-magic": (
            rec[:7] + b"2" + rec[8:],
            _expect("decode_key_record", "UnsupportedVersionError", "magic TAKEYWR2"),
        ),
        "key-record-huge-kdf": (
            _patch(rec, 37, bytes([30]), fix_crc=True),
            _expect("decode_key_record", "MalformedError", "kdf_log2_n 30, header CRC fixed"),
        ),
    }


def write_all(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "damaged").mkdir(exist_ok=True)
    written = []
    valid = make_valid()
    for name, (data, desc) in valid.items():
        (outdir / f"{name}.bin").write_bytes(data)
        (outdir / f"{name}.json").write_text(json.dumps(desc, indent=2) + "\n")
        written += [outdir / f"{name}.bin", outdir / f"{name}.json"]
    expected = {}
    for name, (data, exp) in make_damaged(valid).items():
        (outdir / "damaged" / f"{name}.bin").write_bytes(data)
        expected[f"{name}.bin"] = exp
        written.append(outdir / "damaged" / f"{name}.bin")
    (outdir / "damaged" / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    written.append(outdir / "damaged" / "expected.json")
    return written


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    for p in write_all(outdir):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
