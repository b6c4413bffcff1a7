"""Golden vectors (formats/vectors): decode == json, encode(json) == bin, generator == bin,
payload CRC per crcmod, trailer digests recomputed from the chunk vectors; damaged vectors
raise their expected error."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import blake3
import crcmod.predefined
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import tapearc.errors
import tapearc.format as F
from tapearc.crypto.aead import AuthenticationFailed, ChunkCipher
from tapearc.crypto.keys import Key
from tapearc.format import model

VECTORS = Path(__file__).resolve().parents[2] / "formats" / "vectors"
VALID = [
    "label",
    "generation-header",
    "generation-header-source",
    "chunk-plain",
    "chunk-zstd",
    "trailer",
    "trailer-end",
    "generation-header-encrypted",
    "chunk-encrypted",
    "chunk-encrypted-zstd",
    "trailer-encrypted",
]
ENCODERS = {
    "Label": F.encode_label,
    "GenerationHeader": F.encode_generation_header,
    "ChunkHeader": F.encode_chunk_header,
    "Trailer": F.encode_trailer,
    "TrailerEnd": F.encode_trailer_end,
}
crcmod_crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def load(name: str) -> tuple[bytes, dict[str, Any]]:
    return (VECTORS / f"{name}.bin").read_bytes(), json.loads((VECTORS / f"{name}.json").read_text())


def decoded(name: str, data: bytes, desc: dict[str, Any]) -> Any:
    obj = getattr(F, desc["decoder"])(data)
    return obj[0] if desc["decoder"] == "decode_chunk" else obj


@pytest.mark.parametrize("name", VALID)
def test_decode_matches_json(name: str) -> None:
    data, desc = load(name)
    assert hashlib.sha256(data).hexdigest() == desc["sha256"]
    obj = decoded(name, data, desc)
    assert type(obj).__name__ == desc["item"]
    assert F.to_jsonable(obj) == desc["fields"]
    p = F.peek_item(data)
    assert p.magic.decode() == desc["magic"]
    assert (p.header_len, p.body_len, p.total_len) == (
        desc["header_len"], desc["body_len"], desc["total_len"],
    )  # fmt: skip
    hl = p.header_len
    assert f"0x{int.from_bytes(data[hl - 4 : hl], 'little'):08x}" == desc["header_crc"]
    assert crcmod_crc32c(data[: hl - 4]) == int(desc["header_crc"], 16)
    # every item is format_version 1 but the generation headers of layout 2 (with the source)
    # and 3 (encrypted)
    want = {"generation-header-source": 2, "generation-header-encrypted": 3}.get(name, 1)
    assert int.from_bytes(data[16:18], "little") == desc["format_version"] == want


@pytest.mark.parametrize("name", VALID)
def test_encode_json_gives_bin(name: str) -> None:
    data, desc = load(name)
    obj = F.from_jsonable(getattr(model, desc["item"]), desc["fields"])
    encoded = ENCODERS[desc["item"]](obj)
    if desc["item"] == "ChunkHeader":
        payload = data[desc["header_len"] :]
        assert hashlib.sha256(payload).hexdigest() == desc["payload"]["sha256"]
        encoded += payload
    assert encoded == data


@pytest.mark.parametrize("name", ["chunk-plain", "chunk-zstd"])
def test_chunk_payload(name: str) -> None:
    data, desc = load(name)
    header, payload = F.decode_chunk(data)
    assert len(payload) == desc["payload"]["stored_len"] == header.stored_len
    ref = crcmod_crc32c(bytes(payload))
    assert ref == header.payload_crc == int(desc["payload"]["crc32c"], 16)
    raw = F.unpack_payload(header, payload)
    assert len(raw) == desc["raw_payload"]["raw_len"] == header.raw_len
    assert hashlib.sha256(raw).hexdigest() == desc["raw_payload"]["sha256"]
    assert header.compressed == (name == "chunk-zstd")


def test_vectors_form_one_generation() -> None:
    gen = F.decode_generation_header(load("generation-header")[0])
    trailer = F.decode_trailer(load("trailer")[0])
    chunks = [F.decode_chunk(load(n)[0])[0] for n in ("chunk-plain", "chunk-zstd")]
    assert [e.seq for e in trailer.entries] == [c.seq for c in chunks] == [0, 1]
    for c, e in zip(chunks, trailer.entries, strict=True):
        assert (c.run_uuid, c.generation, c.block_size, c.volume_size) == (
            gen.run_uuid, gen.generation, gen.block_size, gen.volume_size,
        )  # fmt: skip
        assert e == F.ChunkIndexEntry.from_chunk(c, record=e.record, record_count=e.record_count)
    assert trailer.run_uuid == gen.run_uuid and trailer.complete
    # the partial last block is in chunk 0
    assert chunks[0].runs[-1] == F.Run(10, 1, F.RunKind.DATA)
    assert gen.volume_size - 10 * gen.block_size == 1000
    # the end record points at the trailer, which starts right after the last chunk
    tbytes = load("trailer")[0]
    end = F.decode_trailer_end(load("trailer-end")[0])
    F.check_same_generation(gen, end)
    F.check_trailer_end(end, tbytes)
    last = trailer.entries[-1]
    assert end.trailer_record == last.record + last.record_count == 3
    assert end.trailer_records == F.record_count(len(tbytes), gen.record_size) == 1
    assert end.record == 4 == load("trailer-end")[1]["record"]
    assert end.trailer_len == len(tbytes) and end.trailer_crc == int.from_bytes(tbytes[96:100], "little")


def test_trailer_digests_are_blake3_of_the_chunk_vectors() -> None:
    """Recompute the digest table from the chunk vectors' blocks, one block at a time."""
    trailer = F.decode_trailer(load("trailer")[0])
    assert trailer.digest_alg == F.DIGEST_BLAKE3_128 == 1
    expected = []
    for name in ("chunk-plain", "chunk-zstd"):
        header, payload = F.decode_chunk(load(name)[0])
        raw = F.unpack_payload(header, payload)
        for run, view in F.iter_run_payload(header.runs, raw, header.block_size, header.volume_size):
            if view is None:
                continue
            for i, block_id in enumerate(range(run.first, run.first + run.count)):
                blk = bytes(view[i * header.block_size : (i + 1) * header.block_size])
                assert len(blk) == F.block_len(block_id, header.block_size, header.volume_size)
                expected.append((block_id, blake3.blake3(blk).digest()[:16]))
    assert [b for b, _ in expected] == [0, 1, 7, 10, 5, 6]  # table order: chunk, run, block
    assert list(F.iter_trailer_digests(trailer)) == expected
    assert trailer.digests == b"".join(d for _, d in expected)
    assert len(trailer.digests) == 16 * trailer.data_blocks
    # the partial last block (block 10, 1000 bytes) is hashed at its actual length
    assert dict(expected)[10] == F.block_digest(F.unpack_payload(*F.decode_chunk(load("chunk-plain")[0]))[-1000:])
    desc = load("trailer")[1]
    assert desc["digest_table"] == [{"block": b, "blake3_128": d.hex()} for b, d in expected]
    tbytes = load("trailer")[0]
    off, n = desc["body"]["digest_table_offset"], desc["body"]["digest_table_len"]
    assert tbytes[off : off + n] == trailer.digests and off + n == len(tbytes)


def test_blake3_known_answers() -> None:
    """BLAKE3-128 is the first 16 bytes of the standard BLAKE3 hash (official test values)."""
    assert F.block_digest(b"").hex() == "af1349b9f5f9a1a6a0404dea36dcc949"
    assert F.block_digest(b"abc").hex() == "6437b3ac38465133ffb63b75273a8db5"
    assert F.block_digest(memoryview(b"xabc")[1:]) == F.block_digest(bytearray(b"abc"))
    assert bytes(16) == F.ZERO_DIGEST and F.DIGEST_LEN == 16


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generator_reproduces_vectors(tmp_path: Path) -> None:
    written = _generator().write_all(tmp_path)
    assert written
    for p in written:
        rel = p.relative_to(tmp_path)
        assert (VECTORS / rel).read_bytes() == p.read_bytes(), f"{rel} differs"
    committed = {p.relative_to(VECTORS) for p in VECTORS.rglob("*") if p.suffix in (".bin", ".json")}
    assert committed == {p.relative_to(tmp_path) for p in written}


EXPECTED = json.loads((VECTORS / "damaged" / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_damaged_vectors(name: str) -> None:
    exp = EXPECTED[name]
    cls = getattr(tapearc.errors, exp["error"])
    data = (VECTORS / "damaged" / name).read_bytes()
    with pytest.raises(tapearc.errors.TapearcError) as info:
        getattr(F, exp["decoder"])(data)
    assert type(info.value) is cls, f"{name}: {type(info.value).__name__}: {info.value}"
    if cls is tapearc.errors.CRCError:
        assert "expected 0x" in str(info.value) and "found 0x" in str(info.value)


def test_required_damaged_vectors_present() -> None:
    for name in ("chunk-bad-header-crc.bin", "chunk-bad-payload-crc.bin", "chunk-truncated.bin",
                 "label-bad-magic.bin", "label-future-version.bin", "trailer-bad-body-crc.bin",
                 "trailer-end-bad-crc.bin", "trailer-end-future-magic.bin",
                 "trailer-short-digest-table.bin"):  # fmt: skip
        assert name in EXPECTED


def test_spec_offsets() -> None:
    """Spot-check the offsets of SPEC.md's tables against the vectors."""
    u32 = lambda b, o: int.from_bytes(b[o : o + 4], "little")  # noqa: E731
    u64 = lambda b, o: int.from_bytes(b[o : o + 8], "little")  # noqa: E731
    label, d = load("label")
    f = d["fields"]
    assert label[20:36].hex() == f["medium_uuid"].replace("-", "")
    assert (u32(label, 52), u32(label, 56), u64(label, 60)) == (f["sequence"], f["record_size"], f["created"])
    assert label[69 : 69 + label[68]].decode() == f["text"]
    gen, d = load("generation-header")
    f = d["fields"]
    assert gen[68:84].hex() == f["volume_uuid"].replace("-", "")
    assert (u32(gen, 84), u32(gen, 88), u32(gen, 96), u32(gen, 104)) == (
        f["generation"], f["base_generation"], f["block_size"], f["chunk_blocks"])  # fmt: skip
    assert (u64(gen, 108), u64(gen, 116)) == (f["volume_size"], f["created"])
    chunk, d = load("chunk-plain")
    f = d["fields"]
    assert (u32(chunk, 40), u32(chunk, 44), u64(chunk, 48), u32(chunk, 56), u32(chunk, 60), u32(chunk, 64)) == (
        f["seq"], f["block_size"], f["volume_size"], f["raw_len"], f["payload_crc"], len(f["runs"]))  # fmt: skip
    tr, d = load("trailer")
    f = d["fields"]
    assert (u64(tr, 40), u32(tr, 48), u32(tr, 52), u64(tr, 56), u64(tr, 80)) == (
        f["volume_size"], f["block_size"], len(f["entries"]), f["data_blocks"], f["stored_bytes"])  # fmt: skip
    assert (u32(tr, 12), u32(tr, 88), tr[92], tr[93:96], u32(tr, 8)) == (
        d["body_len"], int(d["body"]["crc32c"], 16), f["digest_alg"], bytes(3), 100)  # fmt: skip
    e0 = f["entries"][0]
    assert (u32(tr, 100), u32(tr, 104), u32(tr, 108), u32(tr, 100 + 26)) == (
        e0["seq"], e0["record"], e0["record_count"], len(e0["runs"]))  # fmt: skip
    # digest table: after the entries, data_blocks * 16 bytes, to the end of the item
    assert tr[len(tr) - 16 * f["data_blocks"] :].hex() == f["digests"]
    end, d = load("trailer-end")
    f = d["fields"]
    assert (u32(end, 8), u32(end, 12), u32(end, 16) & 0xFFFF, u32(end, 18) & 0xFFFF) == (60, 0, 1, f["flags"])
    assert end[20:36].hex() == f["run_uuid"].replace("-", "")
    assert (u32(end, 36), u32(end, 40), u32(end, 44), u32(end, 48), u32(end, 52), u32(end, 56)) == (
        f["generation"], f["trailer_record"], f["trailer_records"], f["trailer_len"],
        f["trailer_crc"], int(d["header_crc"], 16))  # fmt: skip
    assert f["trailer_crc"] == u32(tr, 96)


def test_check_same_generation() -> None:
    import dataclasses
    import uuid

    gen = F.decode_generation_header(load("generation-header")[0])
    chunk = F.decode_chunk(load("chunk-zstd")[0])[0]
    trailer = F.decode_trailer(load("trailer")[0])
    end = F.decode_trailer_end(load("trailer-end")[0])
    F.check_same_generation(gen, chunk, seq=1)
    F.check_same_generation(gen, trailer)
    F.check_same_generation(gen, end)
    for bad_end in (dataclasses.replace(end, run_uuid=uuid.UUID(int=1)), dataclasses.replace(end, generation=1)):
        with pytest.raises(tapearc.errors.MalformedError):
            F.check_same_generation(gen, bad_end)
    for bad in (
        dataclasses.replace(chunk, run_uuid=uuid.UUID(int=1)),
        dataclasses.replace(chunk, generation=3),
        dataclasses.replace(chunk, block_size=512),
    ):
        with pytest.raises(tapearc.errors.MalformedError):
            F.check_same_generation(gen, bad)
    with pytest.raises(tapearc.errors.MalformedError):
        F.check_same_generation(gen, chunk, seq=0)
    with pytest.raises(tapearc.errors.MalformedError):
        F.check_same_generation(dataclasses.replace(gen, compression=F.Compression.NONE), chunk)
    with pytest.raises(tapearc.errors.MalformedError):
        F.check_same_generation(dataclasses.replace(gen, chunk_blocks=1), chunk)


def test_generation_header_layouts() -> None:
    """Layout 1 (the old media's header, still read) has no source; layout 2 is the same header
    plus the source fields right after the volume name (SPEC 7.1), byte for byte."""
    old = F.decode_generation_header(load("generation-header")[0])
    assert old.source is None
    data, desc = load("generation-header-source")
    new = F.decode_generation_header(data)
    assert new.source == F.VolumeSource(path="/dev/vg0/data", real_path="/dev/dm-3", dev=0xFD03, ino=0)
    assert new == dataclasses.replace(old, source=new.source)
    v1 = load("generation-header")[0]
    n = int.from_bytes(v1[124:126], "little")
    assert data[18 : 126 + n] == v1[18 : 126 + n]  # the layout-1 fields are unchanged
    tail = data[126 + n : desc["header_len"] - 4]
    path, real = b"/dev/vg0/data", b"/dev/dm-3"
    assert tail == (
        len(path).to_bytes(2, "little") + path + len(real).to_bytes(2, "little") + real
        + (0xFD03).to_bytes(8, "little") + (0).to_bytes(8, "little")
    )  # fmt: skip
    assert desc["header_len"] == 130 + n + 2 + len(path) + 2 + len(real) + 16


# --------------------------------------------------------------------------- encrypted vectors (SPEC 15)

TEST_KEY = Key(bytes(range(32)))


def test_plain_vectors_unchanged() -> None:
    """Encryption left plain media byte for byte as they were: the plain vectors' SHA-256 as
    committed before encryption existed."""
    want = {
        "label": "74570fc2ef98466365fbaf1a94481fd0d2d650057a20560b5740096e530c046d",
        "generation-header": "99a12f6e742bf0a4f0ef6473ee6456b9298cf9c159359189ffb52f7b94f98fa4",
        "chunk-plain": "ce10a08e84daf985b41d5b1c551cbcb9d704e5aa7b746b873abcf9285497adbe",
        "trailer-end": "2cfbc6dc2b18ef4fe7f5466ae065732be2019145188aa626c32234f524854e14",
        "generation-header-source": "f3dcca8e8ce079204049cb294834743968a748b830e0edbaacf783e6ed63336f",
        "chunk-zstd": "d12853ac8d09ca9c7e0b9fdecd95fb2e6b2673b39276fde7cefb1e521dead809",
        "trailer": "f61b96723fdb3609bd889eef80fbdf5d645fa13ccb00f27cd5dde6b21dff2182",
    }
    for name, digest in want.items():
        data, desc = load(name)
        assert hashlib.sha256(data).hexdigest() == desc["sha256"] == digest, name
        assert desc["fields"].get("key_fingerprint") is None


def test_encrypted_generation_header_vector() -> None:
    data, desc = load("generation-header-encrypted")
    gen = F.decode_generation_header(data)
    plain = F.decode_generation_header(load("generation-header-source")[0])
    assert gen == dataclasses.replace(plain, cipher=F.Cipher.AES_256_GCM, key_fingerprint=TEST_KEY.fingerprint)
    src = load("generation-header-source")[0]
    assert len(data) == len(src) + 17 and data[18 : len(src) - 4] == src[18 : len(src) - 4]
    assert data[len(src) - 4 : -4] == b"\x01" + TEST_KEY.fingerprint
    assert desc["key"] == {"secret": TEST_KEY.secret.hex(), "fingerprint": TEST_KEY.fingerprint_text}


@pytest.mark.parametrize(
    ("name", "plain_name"), [("chunk-encrypted", "chunk-plain"), ("chunk-encrypted-zstd", "chunk-zstd")]
)
def test_encrypted_chunk_vector_opens_with_the_test_key(name: str, plain_name: str) -> None:
    data, desc = load(name)
    gen = F.decode_generation_header(load("generation-header-encrypted")[0])
    header, payload = F.decode_chunk(data)  # CRCs: checked without the key
    assert crcmod_crc32c(bytes(payload)) == header.payload_crc == int(desc["payload"]["crc32c"], 16)
    F.check_same_generation(gen, header, seq=header.seq)
    plain_header, plain_payload = F.decode_chunk(load(plain_name)[0])
    assert header.runs == plain_header.runs and header.raw_len == plain_header.raw_len
    assert header.flags == plain_header.flags | F.CHUNK_FLAG_ENCRYPTED
    assert (
        bytes(payload[:12]).hex() == desc["payload"]["nonce"] and bytes(payload[-16:]).hex() == desc["payload"]["tag"]
    )
    assert F.chunk_aad(gen, header).hex() == desc["aad"]
    cipher = F.chunk_cipher(gen, TEST_KEY)
    inner = F.open_chunk_payload(gen, header, payload, cipher)
    assert len(inner) == header.stored_len - 28 == desc["inner_payload"]["inner_len"]
    assert hashlib.sha256(inner).hexdigest() == desc["inner_payload"]["sha256"]
    # the inner payload is what the plain chunk stores (same zstd frame, same raw bytes)
    assert bytes(inner) == bytes(plain_payload)
    raw = F.raw_payload(gen, header, payload, cipher)
    assert (
        hashlib.sha256(raw).hexdigest() == desc["raw_payload"]["sha256"] == load(plain_name)[1]["raw_payload"]["sha256"]
    )
    # by hand, with the cryptography library alone: AES-256-GCM, chunk key from the test key
    aes = AESGCM(
        blake3.blake3(TEST_KEY.secret + gen.run_uuid.bytes, derive_key_context="tapearc 2026-12 chunk key v1").digest(
            32
        )
    )
    assert aes.decrypt(bytes(payload[:12]), bytes(payload[12:]), bytes.fromhex(desc["aad"])) == bytes(inner)
    # another key: refused by fingerprint, and its cipher does not open the payload either
    other = Key(bytes(range(1, 33)))
    with pytest.raises(tapearc.errors.WrongKeyError):
        F.chunk_cipher(gen, other)
    with pytest.raises(AuthenticationFailed):
        ChunkCipher(other, gen.run_uuid).open(payload, bytes.fromhex(desc["aad"]))
    with pytest.raises(tapearc.errors.KeyRequiredError, match=TEST_KEY.fingerprint_text):
        F.raw_payload(gen, header, payload)


def test_encrypted_trailer_vector() -> None:
    data, desc = load("trailer-encrypted")
    trailer = F.decode_trailer(data)
    gen = F.decode_generation_header(load("generation-header-encrypted")[0])
    F.check_same_generation(gen, trailer)
    assert trailer.digest_alg == F.DIGEST_BLAKE3_128_KEYED == 2 and data[92] == 2
    dk = TEST_KEY.digest_key()
    assert desc["digest_key"] == dk.hex()
    expected = []
    for name in ("chunk-encrypted", "chunk-encrypted-zstd"):
        header, payload = F.decode_chunk(load(name)[0])
        raw = F.raw_payload(gen, header, payload, F.chunk_cipher(gen, TEST_KEY))
        expected.append(F.payload_digests(header.runs, raw, header.block_size, header.volume_size, digest_key=dk))
    assert trailer.digests == b"".join(expected)
    plain = F.decode_trailer(load("trailer")[0])
    assert trailer.digests != plain.digests and len(trailer.digests) == len(plain.digests)
    assert [(e.seq, e.record, e.raw_len, e.runs) for e in trailer.entries] == [
        (e.seq, e.record, e.raw_len, e.runs) for e in plain.entries
    ]
    assert all(
        e.encrypted and e.stored_len == p.stored_len + 28 for e, p in zip(trailer.entries, plain.entries, strict=True)
    )
    first = desc["digest_table"][0]
    assert (
        first["block"] == 0
        and first["blake3_128_keyed"]
        == blake3.blake3(
            F.raw_payload(gen, *F.decode_chunk(load("chunk-encrypted")[0]), F.chunk_cipher(gen, TEST_KEY))[:4096],
            key=dk,
        )
        .digest(16)
        .hex()
    )
