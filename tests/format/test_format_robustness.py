"""Decoders raise nothing but tapearc.errors.FormatError subclasses, whatever the input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tapearc.errors import CRCError, FormatError, MalformedError, TruncatedError
from tapearc.format import (
    ChunkHeader,
    Run,
    decode_chunk,
    decode_chunk_header,
    decode_generation_header,
    decode_label,
    decode_trailer,
    encode_chunk_header,
    encode_generation_header,
    encode_label,
    encode_trailer,
    peek_item,
    unpack_payload,
)

from fmt_strategies import chunk_headers, fix_crcs, generation_headers, labels, trailers

VECTORS = Path(__file__).resolve().parents[2] / "formats" / "vectors"
DECODERS: list[Callable[[Any], Any]] = [
    peek_item,
    decode_label,
    decode_generation_header,
    decode_chunk,
    decode_chunk_header,
    decode_trailer,
]
VALID_ITEMS = {
    n: (VECTORS / f"{n}.bin").read_bytes()
    for n in ("label", "generation-header", "chunk-plain", "chunk-zstd", "trailer")
}
MAGICS = [b"TALABEL1", b"TAGENHD1", b"TACHUNK1", b"TATRAIL1"]


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
        chunk_headers().filter(lambda h: h.stored_len < 4096).map(
            lambda h: encode_chunk_header(h) + b"\xa5" * h.stored_len
        ),
        trailers().map(encode_trailer),
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
    decoder = {b"TALABEL1": decode_label, b"TAGENHD1": decode_generation_header,
               b"TACHUNK1": decode_chunk, b"TATRAIL1": decode_trailer}[item[:8]]  # fmt: skip
    with pytest.raises(FormatError):
        decoder(x)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items(), st.data())
def test_truncated(item: bytes, d: st.DataObject) -> None:
    n = d.draw(st.integers(0, len(item) - 1))
    only_format_errors(item[:n])
    decoder = {b"TALABEL1": decode_label, b"TAGENHD1": decode_generation_header,
               b"TACHUNK1": decode_chunk, b"TATRAIL1": decode_trailer}[item[:8]]  # fmt: skip
    with pytest.raises(TruncatedError):
        decoder(item[:n])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items(), st.binary(min_size=1, max_size=20))
def test_trailing_bytes(item: bytes, extra: bytes) -> None:
    decoder = {b"TALABEL1": decode_label, b"TAGENHD1": decode_generation_header,
               b"TACHUNK1": decode_chunk, b"TATRAIL1": decode_trailer}[item[:8]]  # fmt: skip
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
    tr[96 + 26 : 96 + 30] = (2_000_000).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        decode_trailer(fix_crcs(tr))
    tr = bytearray(VALID_ITEMS["trailer"])
    tr[52:56] = (2**32 - 1).to_bytes(4, "little")  # chunk_count
    with pytest.raises(MalformedError):
        decode_trailer(fix_crcs(tr))
