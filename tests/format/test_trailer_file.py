"""TrailerFile (a trailer read from a file piece by piece) against decode_trailer (the whole
item in memory): the same trailer for every valid item, an error of the same class for every
damaged one, and nothing of the digest table kept in memory."""

from __future__ import annotations

import io
from pathlib import Path
from uuid import UUID

import pytest
from fmt_strategies import fix_crcs, trailers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapearc.errors import CRCError, FormatError, MalformedError, TapearcError, TruncatedError
from tapearc.format import (
    ChunkIndexEntry,
    Run,
    Trailer,
    TrailerFile,
    decode_trailer,
    encode_trailer,
    iter_trailer_digests,
)
from tapearc.format.trailerfile import PIECE

VECTOR = (Path(__file__).resolve().parents[2] / "formats" / "vectors" / "trailer.bin").read_bytes()


def both(item: bytes) -> tuple[Trailer | TapearcError, Trailer | TapearcError]:
    """decode_trailer's answer and TrailerFile's, for the same bytes (an error is an answer)."""
    out: list[Trailer | TapearcError] = []
    for decode in (decode_trailer, lambda b: TrailerFile(io.BytesIO(b), len(b)).to_trailer()):
        try:
            out.append(decode(item))
        except TapearcError as e:
            out.append(e)
    return out[0], out[1]


def test_golden_vector_reads_the_same() -> None:
    a, b = both(VECTOR)
    assert isinstance(a, Trailer) and a == b
    tf = TrailerFile(io.BytesIO(VECTOR), len(VECTOR))
    assert b"".join(d for _, d in tf.with_digests()) == a.digests
    assert tf.complete == a.complete and tf.chunk_count == a.chunk_count


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(trailers())
def test_valid_trailers_read_the_same(t: Trailer) -> None:
    item = encode_trailer(t)
    tf = TrailerFile(io.BytesIO(b"xx" + item), len(item), start=2)  # an item inside a larger file
    assert tf.to_trailer() == t
    flat = [d for _, d in tf.with_digests() if d]
    assert b"".join(flat) == b"".join(d for _, d in iter_trailer_digests(t))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VECTOR) - 1), st.integers(0, 255), st.booleans())
def test_damaged_trailers_fail_alike(offset: int, value: int, crcs: bool) -> None:
    """One byte changed (CRCs recomputed or not): both readers refuse it with the same error
    class, or both read the same trailer."""
    x = bytearray(VECTOR)
    x[offset] = value
    item = fix_crcs(x) if crcs else bytes(x)
    a, b = both(item)
    if isinstance(a, Trailer):
        assert a == b
    else:
        assert isinstance(b, FormatError), b
        assert type(a) is type(b) or {type(a), type(b)} <= {MalformedError, TruncatedError}, (a, b)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(-200, 200).filter(lambda n: n != 0))
def test_cut_or_extended_trailers_fail_alike(delta: int) -> None:
    item = VECTOR[:delta] if delta < 0 else VECTOR + bytes(delta)
    for fixed in (item, fix_crcs(item)):
        a, b = both(fixed)
        assert isinstance(a, FormatError) and isinstance(b, FormatError), (a, b)


def test_body_crc_is_checked_over_the_stream() -> None:
    x = bytearray(VECTOR)
    x[-1] ^= 1  # the last digest byte: only a CRC over the whole body sees it
    with pytest.raises(CRCError):
        TrailerFile(io.BytesIO(bytes(x)), len(x))


def test_a_file_shorter_than_the_item_is_refused() -> None:
    with pytest.raises(FormatError):
        TrailerFile(io.BytesIO(VECTOR[:-5]), len(VECTOR))


class CountingFile(io.BytesIO):
    """A file that remembers the largest read asked of it."""

    largest = 0

    def read(self, size: int | None = -1) -> bytes:
        got = super().read(size)
        self.largest = max(self.largest, len(got))
        return got


def test_large_digest_table_is_never_read_whole() -> None:
    """A trailer with a 32 MiB digest table is checked reading at most PIECE bytes at a time,
    and one entry's digests are read alone."""
    per = 8192  # data blocks per chunk
    entries = [
        ChunkIndexEntry(
            seq=k,
            record=1 + 2 * k,
            record_count=2,
            stored_len=per * 512,
            raw_len=per * 512,
            payload_crc=0,
            runs=(Run(k * per, per),),
        )
        for k in range(256)
    ]
    t = Trailer.from_entries(
        run_uuid=UUID(int=7),
        generation=1,
        volume_size=256 * per * 512,
        block_size=512,
        entries=entries,
        digests=bytes(range(256)) * (256 * per // 16),
    )
    item = encode_trailer(t)
    f = CountingFile(item)
    tf = TrailerFile(f, len(item))
    assert f.largest <= PIECE
    assert tf.digests(3) == t.digests[3 * per * 16 : 4 * per * 16]
    assert f.largest <= PIECE
