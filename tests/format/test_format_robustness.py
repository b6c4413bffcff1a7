"""Decoders raise nothing but tapearc.errors.FormatError subclasses, whatever the input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fmt_strategies import chunk_headers, fix_crcs, generation_headers, labels, trailer_ends, trailers
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tapearc.errors import CRCError, FormatError, MalformedError, TruncatedError
from tapearc.format import (
    ChunkHeader,
    Run,
    check_trailer_end,
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
    iter_trailer_digests,
    peek_item,
    unpack_payload,
)

VECTORS = Path(__file__).resolve().parents[2] / "formats" / "vectors"
DECODERS: list[Callable[[Any], Any]] = [
    peek_item,
    decode_label,
    decode_generation_header,
    decode_chunk,
    decode_chunk_header,
    decode_trailer,
    decode_trailer_end,
]
VALID_ITEMS = {
    n: (VECTORS / f"{n}.bin").read_bytes()
    for n in ("label", "generation-header", "chunk-plain", "chunk-zstd", "trailer", "trailer-end")
}
MAGICS = [b"TALABEL1", b"TAGENHD1", b"TACHUNK1", b"TATRAIL1", b"TATREND1"]
DECODER_OF = {b"TALABEL1": decode_label, b"TAGENHD1": decode_generation_header,
              b"TACHUNK1": decode_chunk, b"TATRAIL1": decode_trailer,
              b"TATREND1": decode_trailer_end}  # fmt: skip


def only_format_errors(data: bytes | bytearray | memoryview) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except FormatError:
            pass
        # anything else (construct, struct, Unicode, zstd errors...) fails the test


def items() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(list(VALID_ITEMS.values())),
        labels.map(encode_label),
        generation_headers().map(encode_generation_header),
        chunk_headers()
        .filter(lambda h: h.stored_len < 4096)
        .map(lambda h: encode_chunk_header(h) + b"\xa5" * h.stored_len),
        trailers().map(encode_trailer),
        trailer_ends().map(encode_trailer_end),
    )


@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    only_format_errors(data)
    only_format_errors(memoryview(data))


@given(st.sampled_from(MAGICS), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.binary(max_size=400))  # fmt: skip
def test_arbitrary_after_magic(magic: bytes, hl: int, bl: int, rest: bytes) -> None:
    data = magic + hl.to_bytes(4, "little") + bl.to_bytes(4, "little") + rest
    only_format_errors(data)
    only_format_errors(fix_crcs(data))
    # plausible lengths, CRCs fixed: reaches the field parsers and validators
    n = 16 + len(rest)
    data = magic + min(hl % 300 + 16, n).to_bytes(4, "little") + (bl % 64).to_bytes(4, "little") + rest
    only_format_errors(fix_crcs(data))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items(), st.data())
def test_flipped_byte(item: bytes, d: st.DataObject) -> None:
    i = d.draw(st.integers(0, len(item) - 1))
    mask = d.draw(st.integers(1, 255))
    x = bytearray(item)
    x[i] ^= mask
    only_format_errors(x)
    # the same change with CRCs made to match: field validation must catch or accept it
    only_format_errors(fix_crcs(x))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items(), st.data())
def test_flipped_byte_detected(item: bytes, d: st.DataObject) -> None:
    """Any single flipped byte of a whole item is reported (CRC or otherwise)."""
    i = d.draw(st.integers(0, len(item) - 1))
    x = bytearray(item)
    x[i] ^= d.draw(st.integers(1, 255))
    decoder = DECODER_OF[item[:8]]
    with pytest.raises(FormatError):
        decoder(x)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items(), st.data())
def test_truncated(item: bytes, d: st.DataObject) -> None:
    n = d.draw(st.integers(0, len(item) - 1))
    only_format_errors(item[:n])
    decoder = DECODER_OF[item[:8]]
    with pytest.raises(TruncatedError):
        decoder(item[:n])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items(), st.binary(min_size=1, max_size=20))
def test_trailing_bytes(item: bytes, extra: bytes) -> None:
    decoder = DECODER_OF[item[:8]]
    with pytest.raises(MalformedError):
        decoder(item + extra)


@given(st.binary(max_size=200), st.integers(1, 5000))
def test_unpack_garbage_payload(payload: bytes, raw_len: int) -> None:
    assume(len(payload) < raw_len)
    import uuid

    h = ChunkHeader(run_uuid=uuid.UUID(int=0), generation=1, seq=0, block_size=raw_len,
                    volume_size=raw_len, runs=(Run(0, 1),), raw_len=raw_len,
                    stored_len=len(payload), payload_crc=0, flags=1)  # fmt: skip
    try:
        out = unpack_payload(h, payload)
    except FormatError:
        return
    assert len(out) == raw_len


def test_zstd_frame_with_wrong_content_size() -> None:
    import uuid

    import zstandard

    raw = b"a" * 1000
    frame = zstandard.ZstdCompressor(level=3).compress(raw)
    for raw_len in (999, 1001):
        h = ChunkHeader(run_uuid=uuid.UUID(int=0), generation=1, seq=0, block_size=raw_len,
                        volume_size=raw_len, runs=(Run(0, 1),), raw_len=raw_len,
                        stored_len=len(frame), payload_crc=0, flags=1)  # fmt: skip
        with pytest.raises(MalformedError):
            unpack_payload(h, frame)
    frame2 = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(raw)
    h = ChunkHeader(run_uuid=uuid.UUID(int=0), generation=1, seq=0, block_size=999,
                    volume_size=999, runs=(Run(0, 1),), raw_len=999,
                    stored_len=len(frame2), payload_crc=0, flags=1)  # fmt: skip
    with pytest.raises(MalformedError):
        unpack_payload(h, frame2)


def test_crc_error_details() -> None:
    x = bytearray(VALID_ITEMS["label"])
    x[30] ^= 0x40
    with pytest.raises(CRCError) as info:
        decode_label(x)
    err = info.value
    assert err.details["expected"].startswith("0x") and err.details["found"].startswith("0x")
    assert err.details["expected"] in str(err) and err.details["found"] in str(err)
    assert err.to_json()["error"] == "crc"


def test_huge_run_count_is_rejected_before_parsing() -> None:
    chunk = bytearray(VALID_ITEMS["chunk-plain"])
    chunk[64:68] = (2_000_000).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        decode_chunk_header(fix_crcs(chunk))
    tr = bytearray(VALID_ITEMS["trailer"])
    tr[100 + 26 : 100 + 30] = (2_000_000).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        decode_trailer(fix_crcs(tr))
    tr = bytearray(VALID_ITEMS["trailer"])
    tr[52:56] = (2**32 - 1).to_bytes(4, "little")  # chunk_count
    with pytest.raises(MalformedError):
        decode_trailer(fix_crcs(tr))


def test_huge_data_blocks_is_rejected_before_allocating() -> None:
    """data_blocks (u64) sizes the digest table: an absurd value fails before any allocation."""
    for data_blocks in (2**64 - 1, 2**40, 7):
        tr = bytearray(VALID_ITEMS["trailer"])
        tr[56:64] = data_blocks.to_bytes(8, "little")
        with pytest.raises(MalformedError):
            decode_trailer(fix_crcs(tr))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(-48, 48).filter(lambda n: n != 0), st.binary(min_size=48, max_size=48))
def test_digest_table_length_mismatch(delta: int, filler: bytes) -> None:
    """A digest table longer or shorter than data_blocks * 16, everything else consistent."""
    tr = VALID_ITEMS["trailer"]
    x = bytearray(tr[:delta] if delta < 0 else tr + filler[:delta])
    x[12:16] = (len(x) - 100).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        decode_trailer(fix_crcs(x))


def test_digest_alg_and_reserved_bytes() -> None:
    tr = VALID_ITEMS["trailer"]
    for off, val in ((92, 3), (92, 255), (93, 1), (95, 0x80)):
        x = bytearray(tr)
        x[off] = val
        with pytest.raises(MalformedError):
            decode_trailer(fix_crcs(x))
    # digest_alg 2 (keyed): the same table
    x = bytearray(tr)
    x[92] = 2
    assert decode_trailer(fix_crcs(x)).digest_alg == 2
    # digest_alg 0 with the table still there: the table must be empty
    x = bytearray(tr)
    x[92] = 0
    with pytest.raises(MalformedError):
        decode_trailer(fix_crcs(x))
    # digest_alg 0 with the table removed: valid, no digests
    n = 16 * int.from_bytes(tr[56:64], "little")
    x = bytearray(tr[:-n])
    x[92] = 0
    x[12:16] = (len(x) - 100).to_bytes(4, "little")
    t = decode_trailer(fix_crcs(x))
    assert t.digest_alg == 0 and t.digests == b"" and list(iter_trailer_digests(t)) == []


def test_trailer_length_limit_in_prefix() -> None:
    """A trailer's total length must fit a u32 (the end record's trailer_len): checked on the prefix."""
    tr = bytearray(VALID_ITEMS["trailer"][:16])
    tr[12:16] = (2**32 - 1 - 100).to_bytes(4, "little")
    assert peek_item(tr).total_len == 2**32 - 1
    tr[12:16] = (2**32 - 100).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        peek_item(tr)
    # chunks keep the 1 GiB body limit, plus the 28 bytes of nonce and tag of an encrypted one
    ch = bytearray(VALID_ITEMS["chunk-plain"][:16])
    ch[12:16] = (2**30 + 28).to_bytes(4, "little")
    assert peek_item(ch).body_len == 2**30 + 28
    ch[12:16] = (2**30 + 29).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        peek_item(ch)


def test_end_record_has_no_body() -> None:
    end = bytearray(VALID_ITEMS["trailer-end"])
    end[12:16] = (4).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        peek_item(end + b"\0" * 4)
    with pytest.raises(MalformedError):
        decode_trailer_end(fix_crcs(end + b"\0" * 4))


@pytest.mark.parametrize(
    "offset,value",
    [
        (18, 1),  # flags
        (36, 0),  # generation 0
        (40, 0),  # trailer_record 0
        (44, 0),  # trailer_records 0
        (44, 2**32 - 1),  # more records than bytes / 512
        (48, 99),  # trailer_len below a trailer header
        (8, 64),  # header_len != 60
    ],
)
def test_end_record_field_validation(offset: int, value: int) -> None:
    end = bytearray(VALID_ITEMS["trailer-end"])
    if offset == 8:
        end += bytes(value - len(end))  # a longer header, whole and with a matching CRC
    size = 2 if offset == 18 else 4
    end[offset : offset + size] = value.to_bytes(size, "little")
    with pytest.raises(MalformedError):
        decode_trailer_end(fix_crcs(end))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(0, 2**32 - 1), st.data())
def test_check_trailer_end_only_format_errors(data: bytes, crc: int, d: st.DataObject) -> None:
    end = decode_trailer_end(VALID_ITEMS["trailer-end"])
    import dataclasses

    tr = VALID_ITEMS["trailer"]
    check_trailer_end(end, tr)
    e2 = dataclasses.replace(end, trailer_crc=crc, trailer_len=d.draw(st.integers(100, 1000)))
    for buf in (data, tr[: d.draw(st.integers(0, len(tr)))], tr + data):
        try:
            check_trailer_end(e2, buf)
        except FormatError:
            pass
    if crc != end.trailer_crc:
        with pytest.raises(MalformedError):
            check_trailer_end(dataclasses.replace(end, trailer_crc=crc), tr)
