"""Encrypted chunks in the format layer (formats/SPEC.md, "Encryption"): the chunk flag and its
length rules, the associated data, sealing and opening, layout-3 generation headers and keyed
digests."""

from __future__ import annotations

import dataclasses
import io
from uuid import UUID

import blake3
import pytest
from fmt_strategies import chunk_headers, sealed_chunk_inputs, trailers
from hypothesis import given, settings
from hypothesis import strategies as st

import tapearc.format as F
from tapearc.crypto import aead
from tapearc.crypto.aead import ChunkCipher
from tapearc.crypto.keys import Key, fingerprint_text
from tapearc.errors import ChunkAuthError, KeyRequiredError, MalformedError, WrongKeyError
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

KEY = Key(bytes(range(32)))  # the golden vectors' test key
FP = KEY.fingerprint


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


# --------------------------------------------------------------------------- associated data, seal, open

NONCE = bytes(range(100, 112))
RAW = b"tapearc encrypted chunk test data " * 240  # 8160 bytes, compressible


def _sealed(
    gen: F.GenerationHeader | None = None, compress: bool = True
) -> tuple[F.GenerationHeader, F.ChunkHeader, bytes]:
    g = gen or _gen(volume_size=4096 * 20)
    cipher = F.chunk_cipher(g, KEY)
    raw = RAW + bytes(8192 - len(RAW))
    h, hb, stored = F.build_sealed_chunk(
        g, seq=3, runs=(F.Run(5, 2), F.Run(8, 2, F.RunKind.ZERO)), raw_payload=raw, cipher=cipher,
        compress=compress, nonce=NONCE,
    )  # fmt: skip
    return g, h, hb + stored


def test_aad_layout() -> None:
    g, h, _ = _sealed()
    aad = F.chunk_aad(g, h)
    head = F.encode_chunk_header(dataclasses.replace(h, payload_crc=0))[:-4]
    assert aad == (
        b"TAAAD001" + g.media_set_uuid.bytes + g.volume_uuid.bytes + g.run_uuid.bytes
        + (2).to_bytes(4, "little") + (0).to_bytes(4, "little") + FP + head
    )  # fmt: skip
    assert len(aad) == 80 + h.run_count * 13 + 68
    # SPEC 15.3's table: the chunk header from offset 80, its payload_crc (zeroed) at 140
    assert aad[80:88] == b"TACHUNK1" and aad[140:144] == bytes(4) and h.payload_crc != 0
    assert aad[56:64] == (2).to_bytes(4, "little") + (0).to_bytes(4, "little") and aad[64:80] == FP
    assert F.chunk_aad(g, h) == F.chunk_aad(g, dataclasses.replace(h, payload_crc=12345))
    with pytest.raises(MalformedError, match="not"):
        F.chunk_aad(_gen(cipher=F.Cipher.NONE, key_fingerprint=None), h)


@pytest.mark.parametrize("compress", [True, False])
def test_seal_then_decode_then_open(compress: bool) -> None:
    g, h, item = _sealed(compress=compress)
    assert h.encrypted and h.compressed == compress
    assert h.stored_len == (len(item) - F.chunk_header_len(2))
    dh, payload = F.decode_chunk(item)  # CRC of the stored bytes: checked without a key
    assert dh == h and bytes(payload[:12]) == NONCE
    F.check_same_generation(g, dh, seq=3)
    cipher = F.chunk_cipher(g, KEY)
    inner = F.open_chunk_payload(g, dh, payload, cipher)
    assert len(inner) == h.stored_len - 28
    raw = F.raw_payload(g, dh, payload, cipher)
    assert bytes(raw) == RAW + bytes(8192 - len(RAW))
    if not compress:
        assert h.stored_len == h.raw_len + 28


def test_no_key_and_wrong_key() -> None:
    g, _h, item = _sealed()
    dh, payload = F.decode_chunk(item)
    with pytest.raises(KeyRequiredError) as info:
        F.open_chunk_payload(g, dh, payload, None)
    fp_text = fingerprint_text(FP)
    assert fp_text in str(info.value) and info.value.exit_code == 29
    assert info.value.details["fingerprint"] == fp_text
    with pytest.raises(KeyRequiredError, match=fp_text):
        F.raw_payload(g, dh, payload)
    with pytest.raises(KeyRequiredError, match=fp_text):
        F.chunk_cipher(g, None)
    other = Key(bytes(32))
    with pytest.raises(WrongKeyError) as winfo:
        F.chunk_cipher(g, other)
    assert fp_text in str(winfo.value) and other.fingerprint_text in str(winfo.value)
    assert winfo.value.exit_code == 30
    with pytest.raises(WrongKeyError):
        F.open_chunk_payload(g, dh, payload, ChunkCipher(other, g.run_uuid))
    # a key of the right fingerprint whose generation says otherwise: the header's fingerprint rules
    g2 = dataclasses.replace(g, key_fingerprint=other.fingerprint)
    with pytest.raises(WrongKeyError):
        F.open_chunk_payload(g2, dh, payload, F.chunk_cipher(g, KEY))


def test_plain_generation_has_no_cipher() -> None:
    with pytest.raises(MalformedError):
        F.chunk_cipher(_gen(cipher=F.Cipher.NONE, key_fingerprint=None), KEY)


def test_unencrypted_chunk_in_encrypted_generation_fails_auth() -> None:
    g, _h, _item = _sealed()
    plain = _header(flags=0, stored_len=8192)
    with pytest.raises(ChunkAuthError, match="not encrypted"):
        F.open_chunk_payload(g, plain, bytes(8192), F.chunk_cipher(g, KEY))
    pg = _gen(cipher=F.Cipher.NONE, key_fingerprint=None)
    assert F.open_chunk_payload(pg, plain, b"x", None) == b"x"


_GEN_CHANGES = {
    "media_set_uuid": {"media_set_uuid": UUID(int=99)},
    "volume_uuid": {"volume_uuid": UUID(int=98)},
    "run_uuid": {"run_uuid": UUID(int=97)},
    "generation": {"generation": 3},
    "part": {"part": 1},
}
_CHUNK_CHANGES = {
    "seq": {"seq": 4},
    "flags": {"flags": 0x0002},  # compression bit cleared
    "run first": {"runs": (F.Run(6, 2), F.Run(8, 2, F.RunKind.ZERO))},
    "run count": {"runs": (F.Run(5, 2), F.Run(8, 3, F.RunKind.ZERO))},
    "run kind": {"runs": (F.Run(5, 2), F.Run(8, 2, F.RunKind.DATA))},
    "run order": {"runs": (F.Run(8, 2, F.RunKind.ZERO), F.Run(5, 2))},
    "raw_len": {"raw_len": 8191},
    "block_size": {"block_size": 2048},
    "volume_size": {"volume_size": 4096 * 20 + 1},
    "chunk run_uuid": {"run_uuid": UUID(int=96)},
    "chunk generation": {"generation": 5},
}


@pytest.mark.parametrize("field", sorted(_GEN_CHANGES))
def test_moved_chunk_fails_its_tag(field: str) -> None:
    """A chunk read in another generation, part, volume or media set (a swapped or replayed
    chunk) fails its tag even with the right key."""
    g, _h, item = _sealed()
    dh, payload = F.decode_chunk(item)
    moved = dataclasses.replace(g, **_GEN_CHANGES[field])  # type: ignore[arg-type]
    with pytest.raises(ChunkAuthError) as info:
        F.open_chunk_payload(moved, dh, payload, F.chunk_cipher(g, KEY))
    assert "chunk 3" in str(info.value) and info.value.exit_code == 20
    err = info.value.at(medium="sim:t.tap", tape_file=1, record=4, blocks=(5, 9))
    assert str(err).startswith("medium sim:t.tap, tape file 1, record 4, blocks 5-9: chunk 3 payload authentication")


@pytest.mark.parametrize("field", sorted(_CHUNK_CHANGES))
def test_changed_header_fails_its_tag(field: str) -> None:
    """A header whose mapping or any other field was changed (its CRC fixed) fails the tag."""
    g, _h, item = _sealed()
    dh, payload = F.decode_chunk(item)
    changed = dataclasses.replace(dh, **_CHUNK_CHANGES[field])  # type: ignore[arg-type]
    with pytest.raises(ChunkAuthError):
        F.open_chunk_payload(g, changed, payload, F.chunk_cipher(g, KEY))


def test_changed_payload_byte_fails_its_tag() -> None:
    g, _h, item = _sealed()
    dh, payload = F.decode_chunk(item)
    cipher = F.chunk_cipher(g, KEY)
    for i in (0, 11, 12, len(payload) - 17, len(payload) - 1):  # nonce, ciphertext, tag
        x = bytearray(payload)
        x[i] ^= 0x40
        with pytest.raises(ChunkAuthError):
            F.open_chunk_payload(g, dh, bytes(x), cipher)


def test_reseal_for_the_next_part() -> None:
    g, _h, item = _sealed()
    dh, payload = F.decode_chunk(item)
    cipher = F.chunk_cipher(g, KEY)
    g1 = dataclasses.replace(g, part=1, medium_uuid=UUID(int=77))
    h1, hb1, stored1 = F.reseal_chunk(g, g1, dh, payload, cipher)
    assert (h1.flags, h1.stored_len, h1.raw_len, h1.runs) == (dh.flags, dh.stored_len, dh.raw_len, dh.runs)
    assert bytes(stored1[:12]) != NONCE  # a fresh nonce
    d1, p1 = F.decode_chunk(hb1 + stored1)
    assert F.raw_payload(g1, d1, p1, cipher) == F.raw_payload(g, dh, payload, cipher)
    with pytest.raises(ChunkAuthError):
        F.open_chunk_payload(g, d1, p1, cipher)
    # the medium is not bound: a copy of the medium opens as it is
    assert F.open_chunk_payload(dataclasses.replace(g, medium_uuid=UUID(int=5)), dh, payload, cipher)


def test_seal_chunk_payload_checks_its_header() -> None:
    g, h, _ = _sealed()
    cipher = F.chunk_cipher(g, KEY)
    with pytest.raises(MalformedError):
        F.seal_chunk_payload(g, h, b"x" * (h.stored_len - 27), cipher)
    with pytest.raises(MalformedError):
        F.seal_chunk_payload(g, dataclasses.replace(h, flags=1), b"x" * (h.stored_len - 28), cipher)
    stored = F.seal_chunk_payload(g, h, b"x" * (h.stored_len - 28), cipher, nonce=NONCE)
    assert stored == F.seal_chunk_payload(g, dataclasses.replace(h, payload_crc=7), b"x" * (h.stored_len - 28),
                                          cipher, nonce=NONCE)  # fmt: skip
    with pytest.raises(ValueError):
        cipher.seal(b"", b"", nonce=bytes(11))


def test_zero_only_chunk_is_sealed() -> None:
    g = _gen(volume_size=4096 * 20)
    cipher = F.chunk_cipher(g, KEY)
    h, hb, stored = F.build_sealed_chunk(g, seq=0, runs=(F.Run(0, 4, F.RunKind.ZERO),), raw_payload=b"", cipher=cipher)
    assert (h.flags, h.stored_len, h.raw_len) == (0x0002, 28, 0)
    dh, payload = F.decode_chunk(hb + stored)
    assert F.raw_payload(g, dh, payload, cipher) == b""
    with pytest.raises(ChunkAuthError):
        F.open_chunk_payload(g, dataclasses.replace(dh, runs=(F.Run(0, 3, F.RunKind.ZERO),)), payload, cipher)


# --------------------------------------------------------------------------- keyed digests (digest_alg 2)


def test_keyed_digest_known_answer() -> None:
    """BLAKE3's official keyed-hash test value (input of length 0), truncated to 16 bytes."""
    f = F.digest_function(b"whats the Elvish word for friend")
    assert f(b"").hex() == "92b2b75604ed3c761f9d6f62392c8a92"
    assert F.digest_function(None) is F.block_digest
    assert (F.digest_alg_for(None), F.digest_alg_for(KEY.digest_key())) == (1, 2) == (
        F.DIGEST_BLAKE3_128, F.DIGEST_BLAKE3_128_KEYED)  # fmt: skip
    with pytest.raises(ValueError):
        F.digest_function(bytes(16))


def test_keyed_payload_digests() -> None:
    dk = KEY.digest_key()
    f = F.digest_function(dk)
    blocks = [bytes([i]) * 4096 for i in range(1, 4)]
    runs = (F.Run(0, 2), F.Run(3, 1, F.RunKind.ZERO), F.Run(5, 1))
    raw = b"".join(blocks)
    keyed = F.payload_digests(runs, raw, 4096, 4096 * 8, digest_key=dk)
    assert keyed == b"".join(f(b) for b in blocks)
    assert keyed == b"".join(blake3.blake3(b, key=dk).digest(16) for b in blocks)
    plain = F.payload_digests(runs, raw, 4096, 4096 * 8)
    assert plain == b"".join(F.block_digest(b) for b in blocks) and plain[:16] != keyed[:16]
    assert f(memoryview(raw)[:4096]) == f(bytearray(blocks[0]))


@settings(max_examples=50)
@given(trailers(digest_algs=(2,)))
def test_keyed_trailer_roundtrip(t: F.Trailer) -> None:
    enc = F.encode_trailer(t)
    assert enc[92] == 2
    assert F.decode_trailer(enc) == t
    assert F.TrailerFile(io.BytesIO(enc), len(enc)).to_trailer() == t
    b = F.TrailerBuilder(
        run_uuid=t.run_uuid, generation=t.generation, volume_size=t.volume_size, block_size=t.block_size, digest_alg=2
    )
    pos = 0
    for e in t.entries:
        n = 16 * sum(r.count for r in e.runs if r.kind == F.RunKind.DATA)
        b.add(e, t.digests[pos : pos + n])
        pos += n
    assert b.finish(complete=t.complete) == enc


def test_trailer_digest_alg_must_fit_the_generation() -> None:
    t = F.Trailer.from_entries(run_uuid=RUN, generation=2, volume_size=41960, block_size=4096, entries=(),
                               digest_alg=2)  # fmt: skip
    F.check_same_generation(_gen(), t)
    F.check_same_generation(_gen(), dataclasses.replace(t, digest_alg=0))
    with pytest.raises(MalformedError, match="unkeyed"):
        F.check_same_generation(_gen(), dataclasses.replace(t, digest_alg=1))
    plain = _gen(cipher=F.Cipher.NONE, key_fingerprint=None)
    F.check_same_generation(plain, dataclasses.replace(t, digest_alg=1))
    with pytest.raises(MalformedError, match="keyed"):
        F.check_same_generation(plain, t)
    with pytest.raises(MalformedError):
        F.encode_trailer(dataclasses.replace(t, digest_alg=3))
    F.check_trailer_digest_alg(_gen(), 2)
    F.check_trailer_digest_alg(plain, 1)
    for gen, alg in ((_gen(), 1), (plain, 2)):
        with pytest.raises(MalformedError):
            F.check_trailer_digest_alg(gen, alg)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(sealed_chunk_inputs(), st.booleans(), st.binary(min_size=32, max_size=32))
def test_sealed_chunk_roundtrip(inputs: tuple[F.GenerationHeader, tuple[F.Run, ...], bytes], compress: bool,
                                secret: bytes) -> None:  # fmt: skip
    """Any payload, any runs, any generation: seal, encode, decode, open gives the raw payload
    back; the stored payload follows the length rules; the chunk fits its generation."""
    gen, runs, raw = inputs
    key = Key(secret)
    gen = dataclasses.replace(gen, key_fingerprint=key.fingerprint, compression=F.Compression(int(compress)))
    assert F.decode_generation_header(F.encode_generation_header(gen)) == gen
    cipher = F.chunk_cipher(gen, key)
    h, hb, stored = F.build_sealed_chunk(gen, seq=7, runs=runs, raw_payload=raw, cipher=cipher, compress=compress)
    dh, payload = F.decode_chunk(hb + stored)
    assert dh == h and h.encrypted
    F.check_same_generation(gen, dh, seq=7)
    if h.compressed:
        assert 28 <= h.stored_len < h.raw_len + 28
    else:
        assert h.stored_len == h.raw_len + 28
    assert bytes(F.raw_payload(gen, dh, payload, cipher)) == raw
    moved = dataclasses.replace(gen, part=gen.part ^ 1)
    with pytest.raises(ChunkAuthError):
        F.open_chunk_payload(moved, dh, payload, cipher)
