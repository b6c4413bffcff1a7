"""Incremental generations, the catalog, the restore planner, scan, streams and roll-forward."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.restore import RestoreOptions, prepare_plan, restore
from tapearc.engine.scan import scan_medium
from tapearc.media import open_medium

BS = 4096


def do_backup(spec: str, src: Path, **kw: object):
    kw.setdefault("block_size", BS)
    kw.setdefault("record_size", 16384)
    with Catalog() as cat, open_medium(spec, write=True) as d:
        return backup(str(src), d, cat, BackupOptions(**kw))  # type: ignore[arg-type]


def do_restore(spec: str, dst: str, stdout: io.BytesIO | None = None, **kw: object):
    with Catalog() as cat, open_medium(spec, write=False) as d:
        return restore(d, cat, dst, RestoreOptions(**kw), stdout=stdout)  # type: ignore[arg-type]


def mutate(rng: random.Random, data: bytearray) -> bytearray:
    """Random changes: rewrite some blocks, zero some, grow or shrink (sometimes unaligned)."""
    n = len(data) // BS
    for _ in range(rng.randint(0, 6)):
        if n == 0:
            break
        b = rng.randrange(n)
        k = rng.randint(1, 3)
        what = rng.random()
        for i in range(b, min(b + k, n)):
            if what < 0.6:
                data[i * BS : (i + 1) * BS] = rng.randbytes(BS)
            elif what < 0.8:
                data[i * BS : (i + 1) * BS] = bytes(BS)
            else:  # a small change inside the block
                j = i * BS + rng.randrange(BS)
                data[j] ^= 0x5A
    r = rng.random()
    if r < 0.25:
        data += rng.randbytes(rng.randint(1, 5 * BS))  # grow, often unaligned
    elif r < 0.35:
        data += bytes(rng.randint(1, 3 * BS))  # grow with zeros
    elif r < 0.55 and len(data) > BS:
        del data[rng.randint(0, len(data) - 1) :]  # shrink
    return data


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kind", ["sim", "dir"])
def test_random_chain_every_generation_restores(tmp_path: Path, seed: int, kind: str) -> None:
    rng = random.Random(seed)
    spec = f"sim:{tmp_path / 't.tap'}" if kind == "sim" else f"dir:{tmp_path / 'm'}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(40 * BS) + bytes(10 * BS) + rng.randbytes(BS // 3))
    versions = []
    for g in range(12):
        if g:
            data = mutate(rng, data)
        if g == 7:
            data = bytearray()  # an empty volume in the middle of the chain
        src.write_bytes(bytes(data))
        res = do_backup(spec, src, compress="zstd" if g % 2 else "none")
        assert res.generation == g + 1 and res.complete
        assert res.kind == ("full" if g == 0 else "incremental")
        versions.append(bytes(data))
    for g, want in enumerate(versions, 1):
        out = tmp_path / f"r{g}"
        do_restore(spec, str(out), generation=g)
        assert out.read_bytes() == want, f"generation {g}"
        buf = io.BytesIO()
        do_restore(spec, "-", stdout=buf, generation=g)
        assert buf.getvalue() == want, f"generation {g} to a stream"


def test_incremental_holds_only_changed_blocks(tmp_path: Path) -> None:
    rng = random.Random(5)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(64 * BS))
    src.write_bytes(bytes(data))
    do_backup(spec, src)
    changed = [3, 4, 17, 40, 63]
    for b in changed:
        data[b * BS + 10] ^= 1
    data[20 * BS : 21 * BS] = bytes(BS)  # became zero: recorded, not stored
    data += rng.randbytes(2 * BS)  # two added blocks
    src.write_bytes(bytes(data))
    res = do_backup(spec, src)
    assert res.kind == "incremental" and res.base_generation == 1
    assert res.data_blocks == len(changed) + 2
    assert res.zero_blocks == 1
    assert res.raw_bytes == (len(changed) + 2) * BS  # the payload holds exactly the changed blocks
    assert res.unchanged_blocks == 64 - len(changed) - 1
    from tapearc.engine.listing import list_medium

    with open_medium(spec, write=False) as d:
        lst = list_medium(d)
    gen2 = next(f for f in lst.files if f.generation == 2)
    assert gen2.raw_bytes == (len(changed) + 2) * BS and gen2.data_blocks == len(changed) + 2


def test_restore_reads_only_planned_chunks(tmp_path: Path) -> None:
    rng = random.Random(9)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    # 4 chunks' worth of data at 4 KiB blocks and 16 KiB records
    data = bytearray(rng.randbytes(300 * BS))
    src.write_bytes(bytes(data))
    g1 = do_backup(spec, src, chunk_size=256 * 1024)  # 63 blocks per chunk
    assert g1.chunks >= 4
    # generation 2 rewrites the whole first chunk's blocks: that chunk of generation 1 is superseded
    data[0 : 70 * BS] = rng.randbytes(70 * BS)
    src.write_bytes(bytes(data))
    do_backup(spec, src, chunk_size=256 * 1024)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        _, _chain, plan = prepare_plan(d, cat, RestoreOptions())
        all_chunks = plan.chunks_in_chain
        read = {(r.chunk.generation, r.chunk.seq) for r in plan.reads}
    assert (1, 0) not in read  # fully superseded by generation 2
    assert len(plan.reads) < all_chunks and plan.bytes_to_skip > 0
    out = tmp_path / "out"
    res = do_restore(spec, str(out))
    assert out.read_bytes() == bytes(data)
    assert res.chunks_read == len(plan.reads)


def test_roll_forward_writes_only_differing_blocks(tmp_path: Path) -> None:
    rng = random.Random(11)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(80 * BS))
    versions = []
    src.write_bytes(bytes(data))
    do_backup(spec, src)
    versions.append(bytes(data))
    for g in range(2, 6):
        for b in rng.sample(range(len(data) // BS), 3):
            data[b * BS : (b + 1) * BS] = rng.randbytes(BS)
        if g == 4:
            data[5 * BS : 6 * BS] = bytes(BS)
            data += rng.randbytes(BS + 7)
        src.write_bytes(bytes(data))
        do_backup(spec, src)
        versions.append(bytes(data))
    copy = tmp_path / "standby.img"
    do_restore(spec, str(copy), generation=2)
    assert copy.read_bytes() == versions[1]
    # expected differing blocks between generation 2 and 5
    v2, v5 = versions[1], versions[4]
    n5 = -(-len(v5) // BS)
    diff = sum(
        1
        for b in range(n5)
        if v5[b * BS : (b + 1) * BS] != v2[b * BS : (b + 1) * BS]
        and v5[b * BS : (b + 1) * BS].count(0) != len(v5[b * BS : (b + 1) * BS])
    )
    zeroed = sum(
        1
        for b in range(n5)
        if v5[b * BS : (b + 1) * BS].count(0) == len(v5[b * BS : (b + 1) * BS])
        and v2[b * BS : (b + 1) * BS].count(0) != len(v2[b * BS : (b + 1) * BS])
        and b * BS < len(v2)
    )
    res = do_restore(spec, str(copy))  # detects that the copy holds generation 2
    assert res.mode == "roll-forward" and res.from_generation == 2
    assert res.blocks_written == diff and res.blocks_zeroed == zeroed
    assert copy.read_bytes() == v5
    # the same with --assume-generation, from a fresh restore of generation 3
    copy3 = tmp_path / "c3.img"
    do_restore(spec, str(copy3), generation=3)
    res = do_restore(spec, str(copy3), assume_generation=3)
    assert res.from_generation == 3 and copy3.read_bytes() == v5
    # a target holding something else is refused without --force
    other = tmp_path / "other.img"
    other.write_bytes(b"x" * 5000)
    from tapearc.errors import TargetError

    with pytest.raises(TargetError, match="holds no generation"):
        do_restore(spec, str(other))
    do_restore(spec, str(other), force=True)
    assert other.read_bytes() == v5


def test_scan_rebuilds_catalog(tmp_path: Path, _private_catalog: Path) -> None:
    rng = random.Random(21)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(50 * BS))
    versions = []
    for g in range(4):
        if g:
            data = mutate(rng, data)
        src.write_bytes(bytes(data))
        do_backup(spec, src)
        versions.append(bytes(data))
    with Catalog() as cat, open_medium(spec, write=False) as d:
        _, _, plan_before = prepare_plan(d, cat, RestoreOptions())
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        res = scan_medium(d, cat)
    assert [f.method for f in res.files] == ["trailer"] * 4
    assert all(f.state == "complete" for f in res.files)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        _, _, plan_after = prepare_plan(d, cat, RestoreOptions())
    assert plan_after.to_json() == plan_before.to_json()
    for g, want in enumerate(versions, 1):
        out = tmp_path / f"r{g}"
        do_restore(spec, str(out), generation=g)
        assert out.read_bytes() == want
    # deep scan gives the same catalog content
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        res = scan_medium(d, cat, deep=True)
        assert [f.method for f in res.files] == ["deep"] * 4
        _, _, plan_deep = prepare_plan(d, cat, RestoreOptions())
    assert plan_deep.to_json() == plan_before.to_json()


def test_deep_scan_recovers_generation_without_trailer(tmp_path: Path, _private_catalog: Path) -> None:
    rng = random.Random(33)
    img = tmp_path / "t.tap"
    spec = f"sim:{img}"
    src = tmp_path / "vol.img"
    v1 = rng.randbytes(60 * BS)
    src.write_bytes(v1)
    do_backup(spec, src)
    v2 = bytearray(v1)
    v2[0:BS] = rng.randbytes(BS)
    src.write_bytes(bytes(v2))
    do_backup(spec, src, full=True)
    # cut the image just before generation 2's trailer: as if the power failed there
    from tapesim import simh

    objs = simh.scan(str(img)).objects
    raw = img.read_bytes()
    trailer_at = [
        o for o in objs if o.kind == simh.ObjKind.RECORD and raw[o.offset + 4 : o.offset + 12] == b"TATRAIL1"
    ][-1]
    with open(img, "r+b") as f:
        f.truncate(trailer_at.offset)
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        res = scan_medium(d, cat, deep=True)
    assert [f.state for f in res.files] == ["complete", "incomplete"]
    assert res.files[1].chunks > 0
    out = tmp_path / "r1"
    do_restore(spec, str(out))  # the latest complete generation is 1
    assert out.read_bytes() == v1
    # the next backup continues correctly after the cut generation
    do_backup(spec, src)
    out2 = tmp_path / "r3"
    do_restore(spec, str(out2))
    assert out2.read_bytes() == bytes(v2)


class _DyingDrive:
    """Wraps a drive and raises after a number of record writes: an interrupted backup."""

    def __init__(self, drive, after: int) -> None:  # type: ignore[no-untyped-def]
        self._d = drive
        self._left = after

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._d, name)

    def write_record(self, data):  # type: ignore[no-untyped-def]
        if self._left == 0:
            raise KeyboardInterrupt
        self._left -= 1
        return self._d.write_record(data)


@pytest.mark.parametrize("after", [0, 1, 3, 6])
def test_interrupted_backup_never_looks_complete(tmp_path: Path, after: int) -> None:
    rng = random.Random(after)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    v1 = rng.randbytes(100 * BS)
    src.write_bytes(v1)
    do_backup(spec, src, chunk_size=64 * 1024)
    v2 = bytearray(v1)
    for b in range(0, 100, 7):
        v2[b * BS] ^= 1
    src.write_bytes(bytes(v2))
    with Catalog() as cat, open_medium(spec, write=True) as d:
        with pytest.raises(KeyboardInterrupt):
            backup(str(src), _DyingDrive(d, after), cat, BackupOptions(block_size=BS, chunk_size=64 * 1024))  # type: ignore[arg-type]
    with Catalog() as cat:
        medium = cat.medium(_label_of(spec))
        assert medium is not None
        gens = cat.generations(medium.set_uuid, "vol.img")
        assert [g.state for g in gens] == ["complete", "incomplete"]
    out = tmp_path / "out"
    do_restore(spec, str(out))  # the latest complete generation: 1
    assert out.read_bytes() == v1
    # the next backup continues correctly and the chain stays restorable
    res = do_backup(spec, src, chunk_size=64 * 1024)
    assert res.generation == 3 and res.base_generation == 1
    do_restore(spec, str(tmp_path / "out3"))
    assert (tmp_path / "out3").read_bytes() == bytes(v2)


def _label_of(spec: str):  # type: ignore[no-untyped-def]
    from tapearc.engine.layout import read_label

    with open_medium(spec, write=False) as d:
        return read_label(d).medium_uuid


def test_fallback_older_uses_older_versions(tmp_path: Path) -> None:
    """A damaged chunk of the newest generation: --fallback-older restores those blocks from the
    generation before, and says so; blocks with no older version stay lost."""
    rng = random.Random(41)
    img = tmp_path / "t.tap"
    spec = f"sim:{img}"
    src = tmp_path / "vol.img"
    v1 = bytearray(rng.randbytes(64 * BS))
    src.write_bytes(bytes(v1))
    do_backup(spec, src)
    v2 = bytearray(v1)
    for b in (5, 6, 7):
        v2[b * BS : (b + 1) * BS] = rng.randbytes(BS)
    v2 += rng.randbytes(2 * BS)  # blocks 64, 65: new in generation 2, no older version
    src.write_bytes(bytes(v2))
    do_backup(spec, src)
    raw = bytearray(img.read_bytes())
    pos = raw.rfind(b"TACHUNK1")  # generation 2's only chunk
    raw[pos + 2000] ^= 1
    img.write_bytes(bytes(raw))
    out = tmp_path / "o"
    res = do_restore(spec, str(out))
    assert [x["blocks"] for x in res.lost] == [[5, 7], [64, 65]]
    out2 = tmp_path / "o2"
    res = do_restore(spec, str(out2), fallback_older=True)
    assert [x["blocks"] for x in res.lost] == [[64, 65]]
    assert {tuple(f["blocks"]) for f in res.fallback} == {(5, 7)}
    got = out2.read_bytes()
    assert got[5 * BS : 8 * BS] == bytes(v1[5 * BS : 8 * BS])  # the older version
    assert got[: 5 * BS] == bytes(v2[: 5 * BS]) and got[8 * BS : 64 * BS] == bytes(v2[8 * BS : 64 * BS])
    assert got[64 * BS :] == bytes(2 * BS)
