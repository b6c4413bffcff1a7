"""Encrypted chunks in the format layer (formats/SPEC.md, "Encryption"): the chunk flag and its
length rules, the associated data, sealing and opening, layout-3 generation headers and keyed
digests."""

from __future__ import annotations

import dataclasses
from uuid import UUID

import pytest
from fmt_strategies import chunk_headers
from hypothesis import given, settings

import tapearc.format as F
from tapearc.crypto import aead
from tapearc.errors import KeyRequiredError, MalformedError
from tapearc.format.codec import check_index_entry

RUN = UUID("deadbeef-cafe-4bab-8e00-123456789abc")


def _header(*, flags: int, raw_len: int = 8192, stored_len: int) -> F.ChunkHeader:
    return F.ChunkHeader(
        run_uuid=RUN,
        generation=2,
        seq=3,
        block_size=4096,
        volume_size=41960,
        runs=(F.Run(5, 2), F.Run(8, 2, F.RunKind.ZERO)),
        raw_len=raw_len,
        stored_len=stored_len,
        payload_crc=0,
        flags=flags,
    )


def test_seal_overhead_is_the_ciphers() -> None:
    assert F.SEAL_OVERHEAD == aead.OVERHEAD == aead.NONCE_LEN + aead.TAG_LEN == 28
    assert F.CHUNK_FLAG_ENCRYPTED == 0x0002
    assert F.MAX_CHUNK_BODY_LEN == F.MAX_BODY_LEN + 28


@settings(max_examples=200)
@given(chunk_headers(encrypted=True))
def test_encrypted_chunk_header_roundtrip(h: F.ChunkHeader) -> None:
    assert h.encrypted and not (h.flags & ~0x0003)
    enc = F.encode_chunk_header(h)
    assert F.decode_chunk_header(enc + bytes(h.stored_len)) == (h, len(enc))
    entry = F.ChunkIndexEntry.from_chunk(h, record=1, record_count=1)
    assert entry.encrypted and entry.compressed == h.compressed


@pytest.mark.parametrize(
    ("flags", "stored_len", "ok"),
    [
        (0x0002, 8192 + 28, True),  # encrypted, not compressed: raw_len + 28 exactly
        (0x0002, 8192 + 27, False),
        (0x0002, 8192 + 29, False),
        (0x0002, 8192, False),  # the flag on an unencrypted payload
        (0x0003, 8192 + 27, True),  # encrypted and compressed: < raw_len + 28
        (0x0003, 29, True),
        (0x0003, 28, True),  # an empty inner frame passes the length rules (as unencrypted 0 < raw_len)
        (0x0003, 27, False),  # shorter than nonce and tag
        (0x0003, 8192 + 28, False),  # not smaller
        (0x0004, 8192, False),  # unknown flag
        (0x0006, 8192 + 28, False),
    ],
)
def test_encrypted_length_rules(flags: int, stored_len: int, ok: bool) -> None:
    h = _header(flags=flags, stored_len=stored_len)
    if ok:
        assert F.decode_chunk_header(F.encode_chunk_header(h))[0] == h
        return
    with pytest.raises(MalformedError):
        F.encode_chunk_header(h)
    # the decoder refuses the same bytes (encoded with the flags cleared, then patched)
    plain = F.encode_chunk_header(_header(flags=0, stored_len=8192))
    x = bytearray(plain)
    x[12:16] = stored_len.to_bytes(4, "little")
    x[18:20] = flags.to_bytes(2, "little")
    with pytest.raises(MalformedError):
        F.decode_chunk_header(_fix_header_crc(bytes(x)))
    entry = F.ChunkIndexEntry.from_chunk(_header(flags=0, stored_len=8192), record=1, record_count=1)
    with pytest.raises(MalformedError):
        check_index_entry(0, dataclasses.replace(entry, flags=flags, stored_len=stored_len),
                            seq=0, next_record=1, block_size=4096, volume_size=41960)  # fmt: skip


def test_zero_only_encrypted_chunk_is_28_bytes() -> None:
    """A chunk of zero runs only (raw_len 0) is sealed too: nonce and tag of an empty payload."""
    h = dataclasses.replace(_header(flags=0x0002, raw_len=0, stored_len=28), runs=(F.Run(8, 2, F.RunKind.ZERO),))
    assert F.decode_chunk_header(F.encode_chunk_header(h))[0] == h
    with pytest.raises(MalformedError):
        F.encode_chunk_header(dataclasses.replace(h, stored_len=0))
    with pytest.raises(MalformedError):
        F.encode_chunk_header(dataclasses.replace(h, flags=0x0003))


def test_chunk_body_limit_allows_a_sealed_gib() -> None:
    x = bytearray(F.encode_chunk_header(_header(flags=0, stored_len=8192)))
    x[12:16] = (F.MAX_BODY_LEN + 28).to_bytes(4, "little")
    assert F.peek_item(bytes(x)).body_len == F.MAX_BODY_LEN + 28
    x[12:16] = (F.MAX_BODY_LEN + 29).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        F.peek_item(bytes(x))


def test_unpack_refuses_an_encrypted_payload() -> None:
    h = _header(flags=0x0002, stored_len=8192 + 28)
    with pytest.raises(KeyRequiredError, match="chunk 3 is encrypted"):
        F.unpack_payload(h, bytes(8192 + 28))
    assert F.unpack_payload(h, bytes(8192), opened=True) == bytes(8192)
    with pytest.raises(MalformedError):
        F.unpack_payload(h, bytes(8192 + 28), opened=True)


def _fix_header_crc(item: bytes) -> bytes:
    x = bytearray(item)
    hl = int.from_bytes(x[8:12], "little")
    x[hl - 4 : hl] = F.crc32c(bytes(x[: hl - 4])).to_bytes(4, "little")
    return bytes(x)


# --------------------------------------------------------------------------- generation header layout 3

FP = bytes(range(16))


def _gen(**kw: object) -> F.GenerationHeader:
    base: dict[str, object] = {
        "run_uuid": RUN,
        "media_set_uuid": UUID(int=1),
        "medium_uuid": UUID(int=2),
        "volume_uuid": UUID(int=3),
        "volume_name": "vg0/data",
        "generation": 2,
        "base_generation": 1,
        "kind": F.GenerationKind.INCREMENTAL,
        "compression": F.Compression.ZSTD,
        "block_size": 4096,
        "record_size": 262144,
        "chunk_blocks": 256,
        "volume_size": 41960,
        "created": 1735689660,
        "source": F.VolumeSource(path="/dev/vg0/data", real_path="/dev/dm-3", dev=0xFD03),
        "cipher": F.Cipher.AES_256_GCM,
        "key_fingerprint": FP,
    }
    base.update(kw)
    return F.GenerationHeader(**base)  # type: ignore[arg-type]


def test_layout3_is_layout2_plus_cipher_and_fingerprint() -> None:
    g = _gen()
    enc = F.encode_generation_header(g)
    plain = F.encode_generation_header(_gen(cipher=F.Cipher.NONE, key_fingerprint=None))
    assert int.from_bytes(enc[16:18], "little") == 3 and int.from_bytes(plain[16:18], "little") == 2
    assert len(enc) == len(plain) + 17
    assert enc[18 : len(plain) - 4] == plain[18 : len(plain) - 4]
    assert enc[len(plain) - 4 : -4] == b"\x01" + FP
    assert F.decode_generation_header(enc) == g and g.encrypted
    assert not F.decode_generation_header(plain).encrypted


def test_layout3_without_source() -> None:
    g = _gen(source=None)
    enc = F.encode_generation_header(g)
    assert int.from_bytes(enc[16:18], "little") == 3
    assert len(enc) == 167 + len(b"vg0/data")
    assert F.decode_generation_header(enc) == g


@pytest.mark.parametrize(
    "kw",
    [
        {"cipher": F.Cipher.NONE},  # a fingerprint needs a cipher
        {"cipher": 2},
        {"key_fingerprint": bytes(15)},
        {"key_fingerprint": None},  # a cipher needs a fingerprint
    ],
)
def test_layout3_invalid_models(kw: dict[str, object]) -> None:
    with pytest.raises(MalformedError):
        F.encode_generation_header(_gen(**kw))


@pytest.mark.parametrize("cipher", [0, 2, 255])
def test_layout3_bad_cipher_byte(cipher: int) -> None:
    enc = bytearray(F.encode_generation_header(_gen()))
    enc[-21] = cipher
    with pytest.raises(MalformedError, match="cipher"):
        F.decode_generation_header(_fix_header_crc(bytes(enc)))


def test_plain_chunk_in_encrypted_generation_and_back() -> None:
    g = _gen()
    sealed = _header(flags=0x0003, stored_len=100)
    plain = _header(flags=0x0001, stored_len=100)
    F.check_same_generation(g, sealed)
    with pytest.raises(MalformedError, match="not encrypted, but the generation is"):
        F.check_same_generation(g, plain)
    pg = _gen(cipher=F.Cipher.NONE, key_fingerprint=None)
    F.check_same_generation(pg, plain)
    with pytest.raises(MalformedError, match="encrypted, but the generation is not"):
        F.check_same_generation(pg, sealed)


def test_layout3_json_roundtrip() -> None:
    g = _gen()
    j = F.to_jsonable(g)
    assert j["cipher"] == "aes_256_gcm" and j["key_fingerprint"] == FP.hex()
    assert F.from_jsonable(F.GenerationHeader, j) == g
    p = _gen(cipher=F.Cipher.NONE, key_fingerprint=None)
    assert F.from_jsonable(F.GenerationHeader, F.to_jsonable(p)) == p
