"""The backup reads only data: holes of a sparse source are classified as zeros without a read,
blocks a change tracker vouches for are not read (unless checked), and the media are the same
bytes as for a dense copy of the volume."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine import backup as backup_mod
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.segments import Kind, Segment, block_runs, segments
from tapearc.media import open_medium
from tapearc.sources.base import Extent
from tests.conftest import KiB, MiB

BS = 64 * KiB
OPTS: dict[str, Any] = {"record_size": 64 * KiB, "chunk_size": 256 * KiB}


class Ranges:
    """A ChangeMap over a list of changed byte ranges."""

    name = "test"

    def __init__(self, changed: list[tuple[int, int]]) -> None:
        self.ranges = sorted(changed)
        self.changed_bytes = sum(n for _, n in self.ranges)
        self.changed_runs = len(self.ranges)

    def changed(self, offset: int, length: int) -> Iterator[tuple[int, int, bool]]:
        pos, end = offset, offset + length
        for a, n in self.ranges:
            a, b = max(a, pos), min(a + n, end)
            if b <= a:
                continue
            if a > pos:
                yield pos, a - pos, False
            yield a, b - a, True
            pos = b
        if pos < end:
            yield pos, end - pos, False


def run_backup(spec: str, src: Path, **kw: Any):  # type: ignore[no-untyped-def]
    with Catalog() as cat, open_medium(spec, write=True) as drive:
        return backup(str(src), drive, cat, BackupOptions(**{**OPTS, **kw}), clock=lambda: 1_700_000_000)


def restored(spec: str, dst: Path, **kw: Any) -> bytes:
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        restore(drive, cat, str(dst), RestoreOptions(**kw))
    data = dst.read_bytes()
    dst.unlink()
    return data


def write_sparse(path: Path, size: int, pieces: list[tuple[int, bytes]]) -> bytes:
    """Rewrite ``path`` in place (same inode) as a sparse file holding ``pieces``."""
    out = bytearray(size)
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.truncate(0)
        f.truncate(size)
        for off, chunk in pieces:
            f.seek(off)
            f.write(chunk)
            out[off : off + len(chunk)] = chunk
    return bytes(out)


def write_dense(path: Path, data: bytes) -> None:
    """Rewrite ``path`` in place (same inode) with every byte written, no holes."""
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.truncate(0)
        f.write(data)


# ---------------------------------------------------------------- segments


def test_block_runs_partly_hole_is_data() -> None:
    ext = iter([Extent(0, 100, True), Extent(100, 5 * BS, False), Extent(5 * BS + 100, 10, True)])
    assert list(block_runs(ext, BS, 8 * BS)) == [(0, 1, True), (1, 4, False), (5, 1, True), (6, 2, False)]
    assert list(block_runs(iter([]), BS, 3 * BS + 1)) == [(0, 4, False)]
    assert list(block_runs(iter([Extent(0, 3 * BS + 1, True)]), BS, 3 * BS + 1)) == [(0, 4, True)]


def test_segments_merge_holes_and_vouched_blocks() -> None:
    size = 10 * BS
    ext = [Extent(0, 2 * BS, True), Extent(2 * BS, 2 * BS, False), Extent(4 * BS, 6 * BS, True)]
    cm = Ranges([(6 * BS + 10, 1), (9 * BS, BS)])  # block 6 partly changed, block 9 changed
    segs = list(segments(iter(ext), BS, size, change_map=cm, base_blocks=8))
    assert segs == [
        Segment(0, 2, Kind.UNCHANGED),
        Segment(2, 2, Kind.ZERO),
        Segment(4, 2, Kind.UNCHANGED),
        Segment(6, 1, Kind.DATA),
        Segment(7, 1, Kind.UNCHANGED),
        Segment(8, 2, Kind.DATA),  # 8 is past the base: read whatever the map says
    ]
    checked = list(segments(iter(ext), BS, size, change_map=cm, base_blocks=8, verify=True))
    assert Segment(0, 2, Kind.DATA, True) in checked and Segment(2, 2, Kind.ZERO, True) in checked
    assert Segment(6, 1, Kind.DATA) in checked


# ---------------------------------------------------------------- sparse vs dense


@pytest.fixture
def fixed_uuids(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def reset() -> None:
        rng = random.Random(42)
        monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128), version=4))

    return reset


@pytest.mark.parametrize("kind", ["sim", "dir"])
def test_sparse_file_and_dense_copy_write_identical_media(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixed_uuids: Any, kind: str
) -> None:
    """A full backup and an incremental of a sparse file and of its dense copy (the same path and
    inode, so the header's source fields agree) write the same media bytes; the sparse one reads
    only its data."""
    rng = random.Random(9)
    size = 40 * BS + 777
    pieces1 = [(0, rng.randbytes(BS + 100)), (9 * BS + 4096, rng.randbytes(200)), (30 * BS, rng.randbytes(3 * BS))]
    pieces2 = [*pieces1, (20 * BS, rng.randbytes(10)), (size - 300, rng.randbytes(300))]
    src = tmp_path / "vol.img"
    media: dict[str, bytes] = {}
    for how in ("sparse", "dense"):
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat-{how}.sqlite"))
        fixed_uuids()
        spec = f"{kind}:{tmp_path / f'm-{how}'}"
        reads = []
        for pieces in (pieces1, pieces2):
            data = write_sparse(src, size, pieces)
            if how == "dense":
                write_dense(src, data)
            r = run_backup(spec, src)
            assert r.complete
            reads.append(r.source_bytes_read)
            assert restored(spec, tmp_path / "out.img") == data
        if how == "sparse":
            assert reads[0] == (2 + 1 + 3) * BS  # blocks 0-1, 9, 30-32
            assert reads[1] == reads[0] + BS + (size - 40 * BS)
        else:
            assert reads == [size, size]
        m = tmp_path / f"m-{how}"
        media[how] = (
            m.read_bytes()
            if m.is_file()
            else b"".join(p.read_bytes() for p in sorted(m.rglob("*")) if p.is_file() and not p.name.endswith("lock"))
        )
    assert len(media["sparse"]) > 6 * BS
    assert media["sparse"] == media["dense"]


def test_a_large_sparse_file_reads_only_its_data(tmp_path: Path) -> None:
    src = tmp_path / "big.img"
    rng = random.Random(1)
    data = write_sparse(src, 512 * MiB, [(100 * MiB, rng.randbytes(MiB)), (500 * MiB + 5, rng.randbytes(10))])
    spec = f"sim:{tmp_path / 't.tap'}"
    r = run_backup(spec, src, chunk_size=4 * MiB, record_size=MiB)
    assert r.source_bytes_read == MiB + BS
    assert r.data_blocks == 17 and r.zero_blocks == 512 * MiB // BS - 17
    assert restored(spec, tmp_path / "out.img") == data


# ---------------------------------------------------------------- change maps


def _with_map(monkeypatch: pytest.MonkeyPatch, cm: Ranges | None, verify: bool) -> None:
    real = backup_mod.volume_reader

    def reader_with_map(src: Any, plan: Any, change_map: Any, v: bool) -> Any:  # backup() passes its own (None)
        return real(src, plan, cm, verify)

    monkeypatch.setattr(backup_mod, "volume_reader", reader_with_map)


def _two_generations(tmp_path: Path) -> tuple[Path, str, bytes, bytes]:
    src = tmp_path / "vol.img"
    v1 = os.urandom(20 * BS)
    src.write_bytes(v1)
    spec = f"sim:{tmp_path / 't.tap'}"
    assert run_backup(spec, src).kind == "full"
    v2 = bytearray(v1)
    v2[3 * BS + 5] ^= 1
    v2[10 * BS : 11 * BS] = os.urandom(BS)
    v2[15 * BS + 100] ^= 1
    src.write_bytes(bytes(v2))
    return src, spec, v1, bytes(v2)


def test_vouched_blocks_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, spec, _v1, v2 = _two_generations(tmp_path)
    _with_map(monkeypatch, Ranges([(3 * BS + 5, 1), (10 * BS, BS), (15 * BS + 100, 1)]), False)
    r = run_backup(spec, src)
    assert r.kind == "incremental" and r.source_bytes_read == 3 * BS
    assert r.unchanged_blocks == 17 and r.data_blocks == 3 and r.tracker_missed == []
    assert restored(spec, tmp_path / "out.img") == v2


def test_verify_unchanged_reports_what_the_tracker_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracker that missed blocks 10 and 15: with verify_unchanged every block is read, the two
    are stored and reported; the restore is exact."""
    src, spec, _v1, v2 = _two_generations(tmp_path)
    _with_map(monkeypatch, Ranges([(3 * BS, 10)]), True)
    r = run_backup(spec, src)
    assert r.source_bytes_read == len(v2)
    assert r.tracker_missed == [(10, 10), (15, 15)]
    assert r.data_blocks == 3 and r.unchanged_blocks == 17
    assert restored(spec, tmp_path / "out.img") == v2
    assert r.to_json()["tracker_missed"] == [(10, 10), (15, 15)]


def test_a_trusted_tracker_that_missed_blocks_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without verify_unchanged the vouched blocks are taken as they were (what trusting means):
    the restore has the old block 10; block 3, partly changed, is read."""
    src, spec, v1, v2 = _two_generations(tmp_path)
    _with_map(monkeypatch, Ranges([(3 * BS + 5, 1), (15 * BS + 100, 1)]), False)
    r = run_backup(spec, src)
    assert r.source_bytes_read == 2 * BS and r.data_blocks == 2
    out = restored(spec, tmp_path / "out.img")
    assert out[10 * BS : 11 * BS] == v1[10 * BS : 11 * BS]
    assert out[: 10 * BS] == v2[: 10 * BS] and out[11 * BS :] == v2[11 * BS :]


# ---------------------------------------------------------------- the read plan


@pytest.mark.parametrize("threaded", [False, True])
def test_readahead_plan_reads_only_read_spans_in_order(threaded: bool) -> None:
    from tapearc.engine.pipeline import ReadAhead

    data = bytes(range(256)) * 64  # 16 KiB
    asked: list[tuple[int, int]] = []

    def read(buf: memoryview, off: int) -> int:
        asked.append((off, len(buf)))
        n = max(0, min(len(buf), len(data) - off))
        buf[:n] = data[off : off + n]
        return n

    plan = [(0, 5000, True, "a"), (5000, 3000, False, "hole"), (8000, 8384, True, "b")]
    got = []
    for off, n, tag, buf, k in ReadAhead(read, len(data), 4096, plan=iter(plan), threaded=threaded).items():
        if buf is None:
            got.append((off, n, tag, None))
        else:
            assert k == n
            got.append((off, n, tag, bytes(buf[0][buf[1] : buf[1] + k])))
    assert [(o, n, t) for o, n, t, _ in got] == [
        (0, 4096, "a"),
        (4096, 904, "a"),
        (5000, 3000, "hole"),
        (8000, 4096, "b"),
        (12096, 4096, "b"),
        (16192, 192, "b"),
    ]
    assert asked == [(o, n) for o, n, t, b in got if t != "hole"]
    for o, n, _t, b in got:
        assert b is None or b == data[o : o + n]


def test_readahead_plan_with_many_unread_spans_stops_when_closed() -> None:
    """The reader runs at most MAX_SKIPS unread spans ahead; closing early ends it."""
    from tapearc.engine.pipeline import MAX_SKIPS, ReadAhead

    handed = 0

    def plan() -> Iterator[tuple[int, int, bool, object]]:
        nonlocal handed
        for i in range(100 * MAX_SKIPS):
            handed += 1
            yield i * 10, 10, False, None

    ra = ReadAhead(lambda b, o: 0, 1 << 40, 4096, plan=plan(), threaded=True)
    it = ra.items()
    for _ in range(3):
        next(it)
    ra.close()
    assert handed < 3 * MAX_SKIPS


# ---------------------------------------------------------------- threads for scattered changes


@pytest.mark.parametrize(
    ("ranges", "verify", "threads"),
    [
        ([(i * 16 * BS, BS) for i in range(100)], False, False),  # scattered 64 KiB blocks: no threads
        ([(0, 64 * 1024 * 1024)], False, None),  # one long run: as a full read
        ([(i * 64 * BS, 32 * BS) for i in range(10)], False, None),  # runs of 2 MiB
        ([(i * 16 * BS, BS) for i in range(100)], True, None),  # --verify-unchanged reads everything
    ],
)
def test_scattered_changes_are_read_without_threads(
    ranges: list[tuple[int, int]], verify: bool, threads: bool | None
) -> None:
    assert backup_mod._threads_for(Ranges(ranges), verify) is threads
    assert backup_mod._threads_for(None, verify) is None  # no tracker: TAPEARC_PIPELINE decides
