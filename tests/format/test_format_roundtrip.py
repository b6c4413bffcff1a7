"""Property-based round trips of every structure, and record framing."""

from __future__ import annotations

import uuid

import pytest
from fmt_strategies import (
    chunk_headers,
    digest_table,
    generation_headers,
    geometries,
    labels,
    runs_in,
    trailer_ends,
    trailers,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tapearc.errors import MalformedError
from tapearc.format import (
    DIGEST_LEN,
    ChunkHeader,
    ChunkIndexEntry,
    Label,
    Run,
    RunKind,
    TrailerEnd,
    block_digest,
    block_len,
    build_chunk,
    check_payload,
    check_trailer_end,
    crc32c,
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
    from_jsonable,
    iter_blocks,
    iter_trailer_digests,
    payload_digests,
    peek_item,
    record_count,
    runs_data_len,
    split_records,
    to_jsonable,
    trailer_end_for,
    unpack_payload,
)
from tapearc.format.structs import ChunkHeaderStruct


@given(labels)
def test_label_round_trip(label: Label) -> None:
    b = encode_label(label)
    assert decode_label(b) == label
    p = peek_item(b)
    assert p.magic == b"TALABEL1" and p.total_len == len(b) == p.header_len and p.body_len == 0
    assert len(b) <= 137
    assert from_jsonable(Label, to_jsonable(label)) == label


@given(generation_headers())
def test_generation_header_round_trip(g) -> None:  # type: ignore[no-untyped-def]
    b = encode_generation_header(g)
    assert decode_generation_header(b) == g
    assert peek_item(b).total_len == len(b) <= 1154
    assert from_jsonable(type(g), to_jsonable(g)) == g


@given(chunk_headers())
def test_chunk_header_round_trip(h: ChunkHeader) -> None:
    b = encode_chunk_header(h)
    got, hl = decode_chunk_header(b)
    assert got == h and hl == len(b)
    p = peek_item(b)
    assert p.header_len == len(b) and p.body_len == h.stored_len
    # the hot path (compiled fields + crc) equals the declared RawCopy+Checksum struct
    parsed = ChunkHeaderStruct.parse(b)
    assert ChunkHeaderStruct.build({"fields": {"value": parsed.fields.value}}) == b
    assert from_jsonable(ChunkHeader, to_jsonable(h)) == h


@settings(max_examples=60)
@given(geometries(max_blocks=40, max_block_size=2048), st.data(), st.booleans())
def test_chunk_item_round_trip(geo: tuple[int, int], d: st.DataObject, compress: bool) -> None:
    bs, vs = geo
    runs = d.draw(runs_in(bs, vs))
    n = runs_data_len(runs, bs, vs)
    pattern = d.draw(st.binary(min_size=1, max_size=64))
    raw = (pattern * (n // len(pattern) + 1))[:n]
    run_uuid = d.draw(st.uuids())
    header, hbytes, stored = build_chunk(
        run_uuid=run_uuid, generation=3, seq=7, block_size=bs, volume_size=vs,
        runs=runs, raw_payload=raw, compress=compress,
    )  # fmt: skip
    if not compress:
        assert not header.compressed and bytes(stored) == raw
    if header.compressed:
        assert len(stored) < len(raw)
    item = hbytes + bytes(stored)
    got, payload = decode_chunk(item)
    assert got == header
    assert header.payload_crc == crc32c(stored)
    check_payload(got, payload)
    assert unpack_payload(got, payload) == raw
    # framing
    rs = d.draw(st.integers(1, 600))
    recs = split_records(item, rs)
    assert len(recs) == record_count(len(item), rs)
    assert all(len(r) == rs for r in recs[:-1]) and 1 <= len(recs[-1]) <= rs
    assert b"".join(recs) == item


@given(trailers())
def test_trailer_round_trip(t) -> None:  # type: ignore[no-untyped-def]
    b = encode_trailer(t)
    got = decode_trailer(b)
    assert got == t and got.digests == t.digests and got.digest_alg == t.digest_alg
    p = peek_item(b)
    assert p.header_len == 100 and p.total_len == len(b)
    assert b[92] == t.digest_alg and b[93:96] == bytes(3)
    # the digest table is the end of the body: data_blocks * 16 bytes (or nothing)
    n = t.data_blocks * DIGEST_LEN if t.digest_alg else 0
    assert len(t.digests) == n and b[len(b) - n :] == t.digests
    assert from_jsonable(type(t), to_jsonable(t)) == t
    # iter_trailer_digests: one digest per data block, in entry / run / block order
    table = list(iter_trailer_digests(got))
    expected_ids = [i for e in t.entries for i, zero in iter_blocks(e.runs) if not zero] if t.digest_alg else []
    assert [i for i, _ in table] == expected_ids
    assert b"".join(d for _, d in table) == t.digests
    # the end record for this trailer, at any record size
    end = trailer_end_for(b, trailer_record=1 + len(t.entries), record_size=512)
    assert end.trailer_len == len(b) and end.trailer_records == record_count(len(b), 512)
    check_trailer_end(end, b)
    assert decode_trailer_end(encode_trailer_end(end)) == end


@given(trailer_ends())
def test_trailer_end_round_trip(end: TrailerEnd) -> None:
    b = encode_trailer_end(end)
    assert decode_trailer_end(b) == end
    p = peek_item(b)
    assert p.magic == b"TATREND1" and p.header_len == p.total_len == len(b) == 60 and p.body_len == 0
    assert end.record == end.trailer_record + end.trailer_records
    assert from_jsonable(TrailerEnd, to_jsonable(end)) == end


def test_trailer_end_rejects_invalid_models() -> None:
    import dataclasses

    good = TrailerEnd(run_uuid=uuid.UUID(int=3), generation=1, trailer_record=5, trailer_records=1,
                      trailer_len=334, trailer_crc=0xDEADBEEF)  # fmt: skip
    encode_trailer_end(good)
    for change in (
        {"flags": 1},
        {"generation": 0},
        {"trailer_record": 0},
        {"trailer_records": 0},
        {"trailer_records": 2},  # 334 bytes take one record of >= 512 bytes
        {"trailer_len": 99},
        {"trailer_len": 2**32, "trailer_records": 64},
        {"trailer_crc": 2**32},
        {"trailer_record": 2**32},
    ):
        with pytest.raises(MalformedError):
            encode_trailer_end(dataclasses.replace(good, **change))


@settings(max_examples=60)
@given(geometries(max_blocks=40, max_block_size=2048), st.data())
def test_payload_digests(geo: tuple[int, int], d: st.DataObject) -> None:
    """payload_digests == block_digest of every data block at its own length, in run order."""
    bs, vs = geo
    runs = d.draw(runs_in(bs, vs))
    n = runs_data_len(runs, bs, vs)
    raw = bytes((i * 7 + 3) % 256 for i in range(n))
    got = payload_digests(runs, raw, bs, vs)
    expected = b""
    pos = 0
    for block_id, zero in iter_blocks(runs):
        if zero:
            continue
        ln = block_len(block_id, bs, vs)
        expected += block_digest(raw[pos : pos + ln])
        pos += ln
    assert got == expected and len(got) == 16 * sum(r.count for r in runs if r.kind == RunKind.DATA)
    assert payload_digests(runs, memoryview(raw), bs, vs) == got
    with pytest.raises(ValueError):
        payload_digests(runs, raw + b"x", bs, vs)
    if n:
        with pytest.raises(ValueError):
            payload_digests(runs, raw[:-1], bs, vs)


@given(st.binary(min_size=16, max_size=3000), st.integers(1, 700))
def test_split_records(item: bytes, rs: int) -> None:
    recs = split_records(item, rs)
    assert b"".join(recs) == item
    assert [len(r) for r in recs[:-1]] == [rs] * (len(recs) - 1)
    assert len(recs) == -(-len(item) // rs)


def test_split_records_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        split_records(b"abc", 0)


def test_reader_loop_over_records() -> None:
    """The reading procedure of SPEC section 5: first record, peek, read until total_len."""
    u = uuid.UUID(int=1)
    runs = (Run(0, 3, RunKind.DATA), Run(3, 2, RunKind.ZERO))
    raw = bytes(range(256)) * 36
    items = []
    for seq in range(3):
        _, hb, st_ = build_chunk(run_uuid=u, generation=1, seq=seq, block_size=3072,
                                 volume_size=5 * 3072, runs=runs, raw_payload=raw, compress=seq == 1)  # fmt: skip
        items.append(hb + bytes(st_))
    records = [bytes(r) for item in items for r in split_records(item, 512)]
    it = iter(records)
    seqs = []
    for first in it:
        p = peek_item(first)
        buf = bytearray(first)
        while len(buf) < p.total_len:
            buf += next(it)
        assert len(buf) == p.total_len
        h, payload = decode_chunk(buf)
        assert unpack_payload(h, payload) == raw
        seqs.append(h.seq)
    assert seqs == [0, 1, 2]


def test_encode_rejects_invalid_models() -> None:
    u = uuid.UUID(int=5)
    good = ChunkHeader(run_uuid=u, generation=1, seq=0, block_size=512, volume_size=4096,
                       runs=(Run(0, 8),), raw_len=4096, stored_len=4096, payload_crc=0)  # fmt: skip
    encode_chunk_header(good)
    import dataclasses

    for change in (
        {"raw_len": 4095, "stored_len": 4095},
        {"runs": (Run(1, 8),)},
        {"runs": ()},
        {"runs": (Run(0, 0),)},
        {"flags": 4},
        {"flags": 1},  # compressed but stored_len == raw_len
        {"generation": 0},
        {"block_size": 0},
        {"seq": 2**32},
        {"payload_crc": -1},
    ):
        with pytest.raises(MalformedError):
            encode_chunk_header(dataclasses.replace(good, **change))
    lb = Label(medium_uuid=u, media_set_uuid=u, sequence=1, record_size=65536, created=0)
    encode_label(lb)
    for change in ({"text": "x" * 65}, {"sequence": 0}, {"record_size": 100}, {"flags": 1},
                   {"created": -1}, {"text": "\udc80"}):  # fmt: skip
        with pytest.raises(MalformedError):
            encode_label(dataclasses.replace(lb, **change))


def test_trailer_entry_from_chunk() -> None:
    u = uuid.UUID(int=9)
    h, hb, stored = build_chunk(run_uuid=u, generation=1, seq=0, block_size=512, volume_size=1000,
                                runs=(Run(0, 2),), raw_payload=b"a" * 1000)  # fmt: skip
    e = ChunkIndexEntry.from_chunk(h, record=1, record_count=record_count(len(hb) + len(stored), 512))
    assert e.stored_len == h.stored_len and e.runs == h.runs and e.flags == h.flags == 1


@settings(max_examples=50)
@given(st.data())
def test_trailer_builder_matches_encode_trailer(data: st.DataObject) -> None:
    """The incremental builder the backup uses gives the same bytes as encode_trailer."""
    import uuid as _uuid

    from tapearc.format import ChunkIndexEntry, Run, RunKind, Trailer, TrailerBuilder, decode_trailer, encode_trailer

    bs = 4096
    digest_alg = data.draw(st.sampled_from([0, 1]))
    chunk_digests = []
    n = data.draw(st.integers(0, 8))
    entries = []
    block = 0
    record = 1
    for seq in range(n):
        runs = []
        raw = 0
        for _ in range(data.draw(st.integers(1, 3))):
            cnt = data.draw(st.integers(1, 5))
            zero = data.draw(st.booleans())
            runs.append(Run(block, cnt, RunKind.ZERO if zero else RunKind.DATA))
            raw += 0 if zero else cnt * bs
            block += cnt
        rc = data.draw(st.integers(1, 3))
        ndata = sum(r.count for r in runs if r.kind == RunKind.DATA)
        chunk_digests.append(digest_table(data.draw, ndata) if digest_alg else b"")
        entries.append(
            ChunkIndexEntry(
                seq=seq, record=record, record_count=rc, stored_len=raw, raw_len=raw, payload_crc=seq, runs=tuple(runs)
            )
        )
        record += rc
    vol = max(block, 1) * bs
    complete = data.draw(st.booleans())
    ru = _uuid.UUID(int=data.draw(st.integers(0, 2**128 - 1)))
    b = TrailerBuilder(run_uuid=ru, generation=3, volume_size=vol, block_size=bs, digest_alg=digest_alg)
    for e, dg in zip(entries, chunk_digests, strict=True):
        b.add(e, bytearray(dg) if e.seq % 2 else dg)  # any buffer
    built = b.finish(complete=complete)
    ref = Trailer.from_entries(run_uuid=ru, generation=3, volume_size=vol, block_size=bs, entries=tuple(entries),
                               digests=b"".join(chunk_digests), digest_alg=digest_alg, complete=complete)  # fmt: skip
    assert built == encode_trailer(ref)
    assert decode_trailer(built) == ref


def test_trailer_builder_checks_digests() -> None:
    from tapearc.format import TrailerBuilder

    u = uuid.UUID(int=4)
    e0 = ChunkIndexEntry(seq=0, record=1, record_count=1, stored_len=8192, raw_len=8192, payload_crc=0,
                         runs=(Run(0, 2), Run(2, 1, RunKind.ZERO)))  # fmt: skip
    b = TrailerBuilder(run_uuid=u, generation=1, volume_size=3 * 4096, block_size=4096)
    assert b.digest_alg == 1
    for bad in (b"", bytes(16), bytes(48), bytes(33)):
        with pytest.raises(MalformedError):
            b.add(e0, bad)
    assert b.chunk_count == 0 and b.body_len == 0  # unchanged after a rejected add
    b.add(e0, bytes(range(32)))
    t = decode_trailer(b.finish())
    assert t.digests == bytes(range(32)) and [i for i, _ in iter_trailer_digests(t)] == [0, 1]
    b0 = TrailerBuilder(run_uuid=u, generation=1, volume_size=3 * 4096, block_size=4096, digest_alg=0)
    with pytest.raises(MalformedError):
        b0.add(e0, bytes(32))
    b0.add(e0, b"")
    assert decode_trailer(b0.finish()).digest_alg == 0
    with pytest.raises(MalformedError):
        TrailerBuilder(run_uuid=u, generation=1, volume_size=4096, block_size=4096, digest_alg=3)


def test_encode_trailer_checks_digests() -> None:
    import dataclasses

    from tapearc.format import Trailer

    u = uuid.UUID(int=4)
    e0 = ChunkIndexEntry(seq=0, record=1, record_count=1, stored_len=8192, raw_len=8192, payload_crc=0,
                         runs=(Run(0, 2), Run(2, 1, RunKind.ZERO)))  # fmt: skip
    t = Trailer.from_entries(run_uuid=u, generation=1, volume_size=3 * 4096, block_size=4096,
                             entries=[e0], digests=bytes(32))  # fmt: skip
    assert decode_trailer(encode_trailer(t)) == t
    for change in ({"digests": b""}, {"digests": bytes(31)}, {"digests": bytes(48)}, {"digest_alg": 0},
                   {"digest_alg": 3}, {"digest_alg": 0, "digests": b"\0"}):  # fmt: skip
        with pytest.raises(MalformedError):
            encode_trailer(dataclasses.replace(t, **change))
    t0 = dataclasses.replace(t, digest_alg=0, digests=b"")
    assert decode_trailer(encode_trailer(t0)) == t0
    t2 = dataclasses.replace(t, digest_alg=2)  # keyed digests: the same table
    assert decode_trailer(encode_trailer(t2)) == t2
    # an empty generation: no chunks, no digests
    te = Trailer.from_entries(run_uuid=u, generation=1, volume_size=0, block_size=4096, entries=[])
    assert decode_trailer(encode_trailer(te)) == te


def test_trailer_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past 2**32 - 1 bytes (here: a lowered limit) the encoder and builder explain the limit."""
    import tapearc.format.codec as codec
    from tapearc.format import Trailer, TrailerBuilder

    monkeypatch.setattr(codec, "MAX_TRAILER_LEN", 100 + 43 + 32 + 43)
    u = uuid.UUID(int=4)
    es = [ChunkIndexEntry(seq=i, record=1 + i, record_count=1, stored_len=8192, raw_len=8192, payload_crc=0,
                          runs=(Run(2 * i, 2),)) for i in range(2)]  # fmt: skip
    t = Trailer.from_entries(run_uuid=u, generation=1, volume_size=4 * 4096, block_size=4096,
                             entries=es, digests=bytes(64))  # fmt: skip
    with pytest.raises(MalformedError) as info:
        encode_trailer(t)
    assert "268 million data blocks" in str(info.value) and info.value.hint == "use a larger block size"
    b = TrailerBuilder(run_uuid=u, generation=1, volume_size=4 * 4096, block_size=4096)
    b.add(es[0], bytes(32))
    with pytest.raises(MalformedError, match=r"larger block size|268 million"):
        b.add(es[1], bytes(32))
    assert b.chunk_count == 1
    assert decode_trailer(b.finish()).chunk_count == 1
