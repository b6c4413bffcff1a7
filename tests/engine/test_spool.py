"""The trailer spooled to a temporary file (engine/spool.py) and streamed out as records
(layout.write_stream): the same bytes and records as built and written in memory."""

from __future__ import annotations

import random
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine import spool
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.layout import write_stream
from tapearc.engine.spool import SpoolStore
from tapearc.engine.verify import run_verify
from tapearc.media import open_medium
from tapearc.media.base import WriteStatus
from tests.conftest import make_volume


def _builder(store, nchunks: int, rng: random.Random) -> fmt.TrailerBuilder:
    bs = 4096
    b = fmt.TrailerBuilder(
        run_uuid=uuid.UUID(int=7), generation=2, volume_size=nchunks * 6 * bs, block_size=bs, store=store
    )
    block, record = 0, 1
    for seq in range(nchunks):
        runs = (fmt.Run(block, 4, fmt.RunKind.DATA), fmt.Run(block + 4, 2, fmt.RunKind.ZERO))
        e = fmt.ChunkIndexEntry(
            seq=seq, record=record, record_count=2, stored_len=4 * bs, raw_len=4 * bs, payload_crc=seq, runs=runs
        )
        b.add(e, rng.randbytes(4 * 16))
        block += 6
        record += 2
    return b


@settings(max_examples=30, deadline=None)
@given(nchunks=st.integers(0, 60), limit=st.integers(0, 3000), complete=st.booleans())
def test_spooled_trailer_is_the_same_trailer(nchunks: int, limit: int, complete: bool) -> None:
    mem = _builder(fmt.MemoryStore, nchunks, random.Random(nchunks)).finish(complete=complete)
    b = _builder(lambda: SpoolStore(limit), nchunks, random.Random(nchunks))
    assert b.finish(complete=complete) == mem
    header, total, pieces = b.finish_pieces(complete=complete)
    assert header + b"".join(bytes(p) for p in pieces) == mem and total == len(mem)
    assert fmt.trailer_end_from_header(header, total, trailer_record=5, record_size=512) == fmt.trailer_end_for(
        mem, trailer_record=5, record_size=512
    )
    assert fmt.decode_trailer(mem).chunk_count == nchunks
    b.close()


class Recorder:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    def write_record(self, data) -> WriteStatus:  # type: ignore[no-untyped-def]
        self.records.append(bytes(data))
        return WriteStatus.EARLY_WARNING if len(self.records) == 3 else WriteStatus.OK


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), max_size=8), first=st.integers(1, 300), rs=st.integers(1, 1024))
def test_write_stream_cuts_the_same_records_as_write_item(sizes: list[int], first: int, rs: int) -> None:
    rng = random.Random(len(sizes))
    head = rng.randbytes(first)
    pieces = [rng.randbytes(n) for n in sizes]
    r = Recorder()
    status, n = write_stream(r, head, iter(pieces), rs)  # type: ignore[arg-type]
    assert r.records == [bytes(x) for x in fmt.split_records(head + b"".join(pieces), rs)]
    assert n == len(r.records)
    assert status is (WriteStatus.EARLY_WARNING if n >= 3 else WriteStatus.OK)


def test_spool_moves_to_a_file_past_its_limit() -> None:
    s = SpoolStore(limit=100)
    s.append(b"a" * 60)
    assert s.file is None
    s.append(b"b" * 60)
    assert s.file is not None and len(s) == 120
    assert b"".join(bytes(p) for p in s.pieces()) == b"a" * 60 + b"b" * 60
    s.close()


def test_backup_with_a_spooled_trailer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup whose trailer index and digests go to temporary files (a tiny limit) writes the
    same medium as one that keeps them in memory, and it verifies."""
    monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / "cat.sqlite"))
    src = tmp_path / "v.img"
    make_volume(src, "mixed")
    images = []
    made = []
    real = tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **kw: (made.append(1), real(**kw))[1])
    for limit in (1 << 30, 64):
        monkeypatch.setattr(spool, "SPOOL_LIMIT", limit)
        monkeypatch.setattr(SpoolStore.__init__, "__defaults__", (limit,))
        ids = random.Random(1)
        monkeypatch.setattr(uuid, "uuid4", lambda ids=ids: uuid.UUID(int=ids.getrandbits(128), version=4))
        img = tmp_path / f"t{limit}.tap"
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat{limit}.sqlite"))
        with Catalog() as cat, open_medium(f"sim:{img}", write=True) as drive:
            res = backup(
                str(src), drive, cat, BackupOptions(record_size=64 * 1024, chunk_size=256 * 1024), clock=lambda: 1e9
            )
        assert res.complete
        with Catalog() as cat, open_medium(f"sim:{img}", write=False) as drive:
            assert run_verify(drive, cat).ok
        images.append(img.read_bytes())
        assert len(made) == (0 if limit > 1000 else 2)  # the index and the digests spooled
    assert images[0] == images[1]


def test_spool_without_room_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """$TMPDIR full or unwritable: a one-line error naming the folder and what to do."""
    import errno

    from tapearc.errors import TapearcError

    def full(**kw):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    s = SpoolStore(limit=10)
    s.append(b"x" * 5)
    with pytest.raises(TapearcError) as info:
        s.append(b"y" * 10)
    e = info.value
    assert "temporary file" in str(e) and "No space left on device" in str(e)
    assert e.hint and "TMPDIR" in e.hint
    assert len(s) == 5  # nothing half-counted


def test_spool_failing_to_read_back_is_a_temp_file_error() -> None:
    """The spool's file cut underneath (or unreadable) while the trailer is written out: one
    TempFileError naming what and the folder, not an OSError."""
    import os

    from tapearc.errors import TempFileError

    s = SpoolStore(limit=10)
    s.append(b"x" * 100)
    assert s.file is not None
    s.file.flush()
    os.ftruncate(s.file.fileno(), 10)
    with pytest.raises(TempFileError, match="cannot read back the trailer being written from its temporary file in"):
        b"".join(s.pieces())
    s.close()
