"""Full backup and restore through the engine, on every medium backend and volume shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.listing import list_medium
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import (
    MediumFullError,
    NoSuchGenerationError,
    NotTapearcMediumError,
    SourceError,
    TargetError,
    UsageError,
)
from tapearc.media import open_medium
from tests.conftest import SHAPES, make_volume


def run_backup(spec: str, src: Path, **kw: object):
    with Catalog() as cat, open_medium(spec, write=True) as drive:
        return backup(str(src), drive, cat, BackupOptions(**kw))  # type: ignore[arg-type]


def run_restore(spec: str, dst: Path, **kw: object):
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        return restore(drive, cat, str(dst), RestoreOptions(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_roundtrip_shapes(media_spec: str, tmp_path: Path, shape: str, compress: str) -> None:
    src = tmp_path / "vol.img"
    data = make_volume(src, shape)
    res = run_backup(media_spec, src, compress=compress, record_size=256 * 1024)
    assert res.complete and res.generation == 1 and res.volume_size == len(data)
    nblocks = -(-len(data) // (64 * 1024))
    assert res.data_blocks + res.zero_blocks == nblocks
    dst = tmp_path / "restored.img"
    rr = run_restore(media_spec, dst)
    assert dst.read_bytes() == data
    assert rr.blocks_written == res.data_blocks and rr.chunks_read <= res.chunks


def test_zero_blocks_are_not_stored(tmp_path: Path) -> None:
    src = tmp_path / "vol.img"
    data = make_volume(src, "zero-runs")
    res = run_backup(f"sim:{tmp_path / 't.tap'}", src)
    bs = 64 * 1024
    zero = sum(1 for o in range(0, len(data), bs) if data[o : o + bs].count(0) == len(data[o : o + bs]))
    assert res.zero_blocks == zero
    assert res.stored_bytes == len(data) - sum(
        len(data[o : o + bs]) for o in range(0, len(data), bs) if data[o : o + bs].count(0) == len(data[o : o + bs])
    )


@pytest.mark.parametrize(
    "bs,rs", [(4096, 4096), (16 * 1024, 64 * 1024), (64 * 1024, 1024 * 1024), (1024 * 1024, 64 * 1024)]
)
def test_block_and_record_sizes(tmp_path: Path, bs: int, rs: int) -> None:
    src = tmp_path / "vol.img"
    data = make_volume(src, "mixed", block_size=bs)
    spec = f"sim:{tmp_path / 't.tap'}"
    res = run_backup(spec, src, block_size=bs, record_size=rs)
    assert res.block_size == bs and res.record_size == rs
    with open_medium(spec, write=False) as d:
        listing = list_medium(d)
    for f in listing.files:
        for size, _ in f.record_sizes:
            assert size <= rs
    run_restore(spec, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


def test_several_generations_and_volumes(tmp_path: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    data_a1 = make_volume(a, "random", seed=1)
    assert run_backup(spec, a).generation == 1
    data_a2 = make_volume(a, "unaligned", seed=2)
    assert run_backup(spec, a).generation == 2
    data_b = make_volume(b, "tiny", seed=3)
    assert run_backup(spec, b).generation == 1
    assert run_backup(spec, a, full=True).kind == "full"
    with pytest.raises(UsageError, match="several volumes"):
        run_restore(spec, tmp_path / "x")
    run_restore(spec, tmp_path / "a1", volume="a.img", generation=1)
    run_restore(spec, tmp_path / "a2", volume="a.img")
    run_restore(spec, tmp_path / "b1", volume="b.img")
    assert (tmp_path / "a1").read_bytes() == data_a1
    assert (tmp_path / "a2").read_bytes() == data_a2
    assert (tmp_path / "b1").read_bytes() == data_b
    with pytest.raises(NoSuchGenerationError):
        run_restore(spec, tmp_path / "a9", volume="a.img", generation=9)


def test_restore_refuses_nonempty_target(tmp_path: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    data = make_volume(src, "tiny")
    run_backup(spec, src)
    dst = tmp_path / "dst"
    dst.write_bytes(b"precious")
    with pytest.raises(TargetError, match="holds no generation"):
        run_restore(spec, dst)
    assert dst.read_bytes() == b"precious"
    run_restore(spec, dst, force=True)
    assert dst.read_bytes() == data


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        run_backup(f"sim:{tmp_path / 't.tap'}", tmp_path / "nope.img")


def test_foreign_medium_is_refused(tmp_path: Path) -> None:
    from tapesim.drive import SimDrive

    img = tmp_path / "foreign.tap"
    with SimDrive(str(img), create=True) as d:
        d.write(b"HDR1 some other program's label".ljust(80))
        d.write(b"data" * 100)
    before = img.read_bytes()
    src = tmp_path / "vol.img"
    make_volume(src, "tiny")
    with pytest.raises(NotTapearcMediumError):
        run_backup(f"sim:{img}", src)
    assert img.read_bytes() == before  # untouched
    with pytest.raises(NotTapearcMediumError):
        run_restore(f"sim:{img}", tmp_path / "out")


def test_damaged_payload_is_reported_with_blocks(tmp_path: Path) -> None:
    """A damaged chunk does not stop the restore: the rest is restored, the lost ranges reported."""
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    data = make_volume(src, "random")  # 3 MiB: 48 blocks of 64 KiB, several chunks at 256 KiB records
    run_backup(spec, src, record_size=256 * 1024, chunk_size=1024 * 1024)
    img = tmp_path / "t.tap"
    raw = bytearray(img.read_bytes())
    # flip a byte inside the second chunk's payload
    pos = raw.find(b"TACHUNK1", raw.find(b"TACHUNK1") + 1)
    assert pos > 0
    raw[pos + 20000] ^= 0xFF
    img.write_bytes(bytes(raw))
    dst = tmp_path / "out"
    res = run_restore(spec, dst)
    assert len(res.lost) == 1 and len(res.damaged_chunks) == 1
    a, b = res.lost[0]["blocks"]
    assert "CRC" in str(res.damaged_chunks[0]["error"])
    out = dst.read_bytes()
    bs = 64 * 1024
    assert out[: a * bs] == data[: a * bs] and out[(b + 1) * bs :] == data[(b + 1) * bs :]
    assert out[a * bs : (b + 1) * bs] == bytes((b + 1 - a) * bs)  # lost: zeros, never stale data
    assert res.lost[0]["offset"] == a * bs


def test_medium_full_leaves_readable_medium(tmp_path: Path) -> None:
    from tapesim.drive import create_image

    img = tmp_path / "small.tap"
    create_image(str(img), capacity=3 * 1024 * 1024, early_warning=512 * 1024)
    spec = f"sim:{img}"
    small = tmp_path / "small.img"
    small_data = make_volume(small, "tiny")
    run_backup(spec, small)
    big = tmp_path / "big.img"
    make_volume(big, "random", seed=7)  # 3 MiB of random data: does not fit
    with pytest.raises(MediumFullError) as ei:
        run_backup(spec, big, compress="none")
    assert ei.value.medium == spec
    with open_medium(spec, write=False) as d:
        listing = list_medium(d)
    gens = [f for f in listing.files if f.kind == "generation"]
    assert len(gens) == 2 and gens[0].complete and not gens[1].complete
    assert gens[1].problem is None  # every chunk written is intact and readable
    run_restore(spec, tmp_path / "out", volume="small.img")
    assert (tmp_path / "out").read_bytes() == small_data
