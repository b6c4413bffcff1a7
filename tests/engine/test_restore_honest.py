"""Honest restores (issue 12): a restore says exactly which blocks are not the requested
generation's; media that never arrive stop it; a target holding a newer generation is rolled
back; claims a generation cannot hold are refused before anything is written; memory follows the
runs on the medium, not the volume size a header claims."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.plan import NONE, ZERO, BlockMap, chain_map, load_chain
from tapearc.engine.restore import RestoreOptions, outcome, prepare_plan, restore
from tapearc.engine.scan import sync_medium
from tapearc.engine.verify import verify_medium
from tapearc.errors import (
    MalformedError,
    MediaMissingError,
    PartialRestoreError,
    SubstitutedRestoreError,
)
from tapearc.media import open_medium
from tests.hostile_images import Gen, claiming, write_medium

BS = 4096


def do_backup(spec: str, src: Path, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("block_size", BS)
    kw.setdefault("record_size", 16384)
    with Catalog() as cat, open_medium(spec, write=True) as d:
        return backup(str(src), d, cat, BackupOptions(**kw))  # type: ignore[arg-type]


def do_restore(spec: str, dst: str, **kw: object):  # type: ignore[no-untyped-def]
    with Catalog() as cat, open_medium(spec, write=False) as d:
        return restore(d, cat, dst, RestoreOptions(**kw))  # type: ignore[arg-type]


def blocks(data: bytes | bytearray, a: int, b: int) -> bytes:
    return bytes(data[a * BS : (b + 1) * BS])


# ----------------------------------------------------------------- finding 7: substituted data


def test_fallback_older_is_substituted_not_clean(tmp_path: Path) -> None:
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
    src.write_bytes(bytes(v2))
    do_backup(spec, src)
    raw = bytearray(img.read_bytes())
    pos = raw.rfind(b"TACHUNK1")  # generation 2's only chunk
    raw[pos + 2000] ^= 1
    img.write_bytes(bytes(raw))
    res = do_restore(spec, str(tmp_path / "o"), fallback_older=True)
    assert res.lost == [] and (tmp_path / "o").read_bytes()[5 * BS : 8 * BS] == blocks(v1, 5, 7)
    err = outcome(res)
    assert isinstance(err, SubstitutedRestoreError) and err.exit_code == 24
    assert "bytes 20480-32767 (blocks 5-7) from generation 1" in err.message
    js = res.to_json()
    assert js["status"] == "substituted" and js["exit_code"] == 24
    assert js["substituted"] == [
        {"blocks": [5, 7], "offset": 5 * BS, "length": 3 * BS, "from_generation": 1, "zero": False}
    ]
    # without --fallback-older the same blocks are lost: partial (23)
    res = do_restore(spec, str(tmp_path / "o2"))
    assert isinstance(outcome(res), PartialRestoreError) and res.to_json()["exit_code"] == 23


def test_generations_physically_gone_restore_older_blocks_says_so(tmp_path: Path) -> None:
    """The catalog knows generations 2 and 3, the medium lost them (cut after generation 1):
    --generation 3 --fallback-older gives generation 1's blocks, and says so."""
    rng = random.Random(7)
    img = tmp_path / "t.tap"
    spec = f"sim:{img}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(40 * BS))
    src.write_bytes(bytes(data))
    do_backup(spec, src)
    v1 = bytes(data)
    cut = img.stat().st_size
    for g in (2, 3):
        for b in (3 * g, 3 * g + 1, 20 + g):
            data[b * BS : (b + 1) * BS] = rng.randbytes(BS)
        src.write_bytes(bytes(data))
        do_backup(spec, src)
    raw = img.read_bytes()
    # generations 2 and 3 are physically gone: the image ends after generation 1's filemark
    img.write_bytes(raw[:cut])
    out = tmp_path / "o"
    with Catalog() as cat, open_medium(spec, write=False) as d:
        label, chain, _ = prepare_plan(d, cat, RestoreOptions(generation=3))
    assert [g.number for g in chain] == [1, 2, 3]
    res = do_restore(spec, str(out), generation=3, fallback_older=True)
    assert out.read_bytes() == v1 and res.lost == []
    err = outcome(res)
    assert isinstance(err, SubstitutedRestoreError)
    got = sorted((tuple(f["blocks"]), f["from_generation"]) for f in res.fallback)
    assert got == [((6, 7), 1), ((9, 10), 1), ((22, 23), 1)]
    _ = label


def test_newest_generation_incomplete_is_reported(tmp_path: Path) -> None:
    """A plain restore that passes over a newer generation that cannot be restored says so."""
    rng = random.Random(8)
    img = tmp_path / "t.tap"
    spec = f"sim:{img}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(20 * BS))
    src.write_bytes(bytes(data))
    do_backup(spec, src)
    data[0:BS] = rng.randbytes(BS)
    src.write_bytes(bytes(data))
    do_backup(spec, src)
    with Catalog() as cat:
        g2 = cat.generations(_set_of(spec, cat), "vol.img")[-1]
        with cat._tx():  # as a damaged end record or trailer leaves it
            cat.db.execute("UPDATE generations SET state = 'incomplete' WHERE id = ?", (g2.id,))
    res = do_restore(spec, str(tmp_path / "o"))
    assert res.generation == 1 and res.skipped_generations == [{"generation": 2, "state": "incomplete"}]
    err = outcome(res)
    assert isinstance(err, SubstitutedRestoreError) and "2 (incomplete)" in err.message
    # asking for generation 1 by number is exact
    res = do_restore(spec, str(tmp_path / "o1"), generation=1)
    assert outcome(res) is None and res.to_json()["status"] == "complete"


def _set_of(spec: str, cat: Catalog):  # type: ignore[no-untyped-def]
    with open_medium(spec, write=False) as d:
        return sync_medium(d, cat).media_set_uuid


# ----------------------------------------------------------------- media that never arrive

tapesim_library = pytest.importorskip("tapesim.library")


def spanning_set(tmp_path: Path) -> tuple[Path, bytes]:
    """A generation over three media of a simulated library; returns the library folder and the
    volume's bytes."""
    lib = tmp_path / "lib"
    tapesim_library.create_library(str(lib), 4, 1536 * 1024, early_warning=256 * 1024, max_record=1024 * 1024)
    src = tmp_path / "vol.img"
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 777)
    src.write_bytes(data)
    with Catalog() as cat, MediaSource(f"sim:{lib}", write=True, catalog=cat) as media:
        res = backup(str(src), media, cat, BackupOptions(block_size=16384, record_size=65536, chunk_size=256 * 1024))
    assert res.complete and len(res.parts) >= 2
    return lib, data


def first_tape(tmp_path: Path, lib: Path) -> str:
    """Sequence 1 of the set alone, outside the library (no changer)."""
    one = tmp_path / "one.tap"
    shutil.copy(lib / "tapes" / "TAP001.tap", one)
    shutil.copy(lib / "tapes" / "TAP001.tap.tapesim", str(one) + ".tapesim")
    return f"sim:{one}"


def test_medium_never_arrives_stops_and_leaves_no_file(tmp_path: Path) -> None:
    lib, data = spanning_set(tmp_path)
    spec = first_tape(tmp_path, lib)
    out = tmp_path / "out.img"
    with pytest.raises(MediaMissingError) as ei:
        do_restore(spec, str(out))
    e = ei.value
    assert e.exit_code == 25 and "sequence 2" in e.message and "was not created" in e.message
    assert e.ranges and e.ranges[0]["sequence"] == 2 and e.ranges[0]["blocks"][0][0] > 0
    assert not out.exists() and not list(tmp_path.glob(".out.img*"))
    # --partial: the rest is restored, the missing media's blocks are zeros, exit 25 says which
    res = do_restore(spec, str(out), partial=True)
    err = outcome(res)
    assert isinstance(err, MediaMissingError) and res.to_json()["status"] == "media-missing"
    got = out.read_bytes()
    missing = [(a, b) for m in res.missing_media for a, b in m["blocks"]]
    assert {m["sequence"] for m in res.missing_media} == {2, 3}
    bs = 16384
    first_missing = min(a for a, _ in missing)
    assert got[: first_missing * bs] == data[: first_missing * bs]
    for a, b in missing:
        assert got[a * bs : (b + 1) * bs] == bytes(len(got[a * bs : (b + 1) * bs]))
    assert res.damaged_chunks == []  # a missing medium is not damage


def test_operator_never_loads_the_tapes(tmp_path: Path) -> None:
    """The finding: an operator restore whose tapes were never loaded made a half-zero image."""
    from tapearc.media.changers.operator import OperatorChanger

    lib, _ = spanning_set(tmp_path)
    spec = first_tape(tmp_path, lib)
    prompts: list[str] = []
    op = OperatorChanger(prompts.append, poll=0.01, timeout=0.2)
    out = tmp_path / "out.img"
    with (
        Catalog() as cat,
        MediaSource(spec, write=False, changer=op, catalog=cat, operator_timeout=0.2) as media,
        pytest.raises(MediaMissingError, match="never arrived"),
    ):
        restore(media, cat, str(out), RestoreOptions())
    assert any("sequence 2" in p for p in prompts)
    assert not out.exists()


def test_in_place_target_untouched_when_a_medium_is_missing(tmp_path: Path) -> None:
    """A target rolled in place cannot be put back: every medium is asked for before writing."""
    lib, data = spanning_set(tmp_path)
    src = tmp_path / "vol.img"
    new = bytearray(data)
    new[0:100] = bytes(100)
    new[-5000:] = random.Random(2).randbytes(5000)  # the end of the volume: on a later medium
    src.write_bytes(bytes(new))
    with Catalog() as cat, MediaSource(f"sim:{lib}", write=True, catalog=cat) as media:
        backup(str(src), media, cat, BackupOptions(block_size=16384, record_size=65536, chunk_size=256 * 1024))
    standby = tmp_path / "standby.img"
    standby.write_bytes(data)  # holds generation 1
    spec = first_tape(tmp_path, lib)  # generation 2's chunks are not all on it
    with pytest.raises(MediaMissingError):
        do_restore(spec, str(standby), generation=2)
    assert standby.read_bytes() == data


# ----------------------------------------------------------------- finding 9: rollback


def test_rollback_onto_a_newer_generation_writes_only_the_difference(tmp_path: Path) -> None:
    rng = random.Random(11)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(80 * BS))
    versions = []
    for g in range(1, 5):
        if g > 1:
            for b in rng.sample(range(len(data) // BS), 3):
                data[b * BS : (b + 1) * BS] = rng.randbytes(BS)
        if g == 3:
            data[5 * BS : 6 * BS] = bytes(BS)  # becomes zero
            data += rng.randbytes(BS + 7)  # grows, unaligned
        src.write_bytes(bytes(data))
        do_backup(spec, src)
        versions.append(bytes(data))
    vm = tmp_path / "vm.img"
    do_restore(spec, str(vm))  # last night's image: generation 4
    assert vm.read_bytes() == versions[3]
    v1, v4 = versions[0], versions[3]
    n1 = len(v1) // BS
    diff = [b for b in range(n1) if v1[b * BS : (b + 1) * BS] != v4[b * BS : (b + 1) * BS]]
    res = do_restore(spec, str(vm), generation=1)  # the target holds generation 4 of the volume
    assert res.mode == "rollback" and res.from_generation == 4
    assert vm.read_bytes() == v1
    assert res.blocks_written == len(diff) and res.bytes_written == len(diff) * BS
    assert outcome(res) is None
    # and forward again, from 1 to 3
    res = do_restore(spec, str(vm), generation=3)
    assert res.mode == "roll-forward" and res.from_generation == 1 and vm.read_bytes() == versions[2]
    # from 3 back to 2: the block that became zero in 3 is written back
    res = do_restore(spec, str(vm), generation=2)
    assert res.mode == "rollback" and res.from_generation == 3 and vm.read_bytes() == versions[1]
    assert res.blocks_written < 10
    # --assume-generation with a newer K
    res = do_restore(spec, str(vm), generation=1, assume_generation=2)
    assert res.from_generation == 2 and vm.read_bytes() == v1


def test_rollback_over_zero_blocks(tmp_path: Path) -> None:
    rng = random.Random(12)
    spec = f"dir:{tmp_path / 'm'}"
    src = tmp_path / "vol.img"
    v1 = bytearray(rng.randbytes(30 * BS))
    v1[10 * BS : 12 * BS] = bytes(2 * BS)
    src.write_bytes(bytes(v1))
    do_backup(spec, src)
    v2 = bytearray(v1)
    v2[10 * BS : 11 * BS] = rng.randbytes(BS)  # zero -> data
    v2[3 * BS : 4 * BS] = bytes(BS)  # data -> zero
    src.write_bytes(bytes(v2))
    do_backup(spec, src)
    vm = tmp_path / "vm.img"
    vm.write_bytes(bytes(v2))
    res = do_restore(spec, str(vm), generation=1)
    assert res.mode == "rollback" and vm.read_bytes() == bytes(v1)
    assert res.blocks_written == 1 and res.blocks_zeroed == 1 and res.bytes_zeroed == BS


# ----------------------------------------------------------------- finding 11: block size


def mismatched_chain(tmp_path: Path) -> tuple[str, bytes]:
    """Generation 1 (full, 4 KiB blocks) and a hand-made incremental generation 2 on it with
    8 KiB blocks, every CRC valid."""
    rng = random.Random(13)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    v1 = rng.randbytes(16 * BS)
    src.write_bytes(v1)
    res = do_backup(spec, src)
    with Catalog() as cat:
        vuuid = cat.generations(_set_of(spec, cat), "vol.img")[0].volume_uuid
    payload = rng.randbytes(8192)
    write_medium(
        spec,
        [
            Gen(
                generation=2,
                base=1,
                volume_size=len(v1),
                block_size=8192,
                chunks=[([fmt.Run(1, 1)], payload)],
                volume_uuid=vuuid,
            )
        ],
    )
    _ = res
    return spec, v1


def test_incremental_with_another_block_size_is_malformed(tmp_path: Path) -> None:
    spec, _ = mismatched_chain(tmp_path)
    out = tmp_path / "o"
    with pytest.raises(MalformedError, match=r"block size 8192.*base generation 1 has block size 4096") as ei:
        do_restore(spec, str(out))
    assert ei.value.exit_code == 21
    assert not out.exists() and not list(tmp_path.glob(".o.*"))
    # verify fails it too, and only it
    with Catalog() as cat, open_medium(spec, write=False) as d:
        sync_medium(d, cat)
        rep = verify_medium(d, cat)
    bad = [f for f in rep.files if not f.ok]
    assert [f.generation for f in bad] == [2] and "block size" in bad[0].problems[0].message
    assert not rep.ok
    # generation 1 restores, exactly
    assert outcome(do_restore(spec, str(tmp_path / "o1"), generation=1)) is None


# ----------------------------------------------------------------- finding 10: claims


def test_block_map_intervals() -> None:
    m = BlockMap(10, NONE)
    m.overlay([(0, 4, 0, 0), (4, 10, ZERO, 0)])
    m.overlay([(2, 3, 1, 32), (9, 20, 2, 0)])  # the last piece is cut at the end
    assert list(m) == [(0, 2, 0, 0), (2, 3, 1, 32), (3, 4, 0, 48), (4, 9, ZERO, 0), (9, 10, 2, 0)]
    m.resize(3)
    m.resize(5, NONE)
    assert list(m) == [(0, 2, 0, 0), (2, 3, 1, 32), (3, 5, NONE, 0)]
    assert list(m.segments(1, 4)) == [(1, 2, 0, 16), (2, 3, 1, 32), (3, 4, NONE, 0)]


@pytest.mark.parametrize("seed", range(5))
def test_block_map_agrees_with_a_block_by_block_model(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 300)
    m = BlockMap(n, NONE)
    model: list[tuple[int, int]] = [(NONE, 0)] * n  # per block: (value, digest offset)
    for step in range(12):
        if rng.random() < 0.25:
            n2 = rng.randint(0, 320)
            m.resize(n2, NONE)
            model = model[:n2] + [(NONE, 0)] * (n2 - len(model))
            n = n2
            continue
        pieces = []
        pos = 0
        while pos < n + 5:
            pos += rng.randint(0, 20)
            k = rng.randint(1, 15)
            v = rng.choice([ZERO, step, step + 100])
            d = rng.randrange(0, 1000) * 16 if v >= 0 else 0
            pieces.append((pos, pos + k, v, d))
            pos += k
        m.overlay(pieces)
        for s_, e_, v, d in pieces:
            for b in range(s_, min(e_, n)):
                model[b] = (v, d + (b - s_) * 16 if v >= 0 else 0)
        flat = [(v, d + (b - s_) * 16 if v >= 0 else 0) for s_, e_, v, d in m for b in range(s_, e_)]
        assert flat == model
        starts = [s_ for s_, _, _, _ in m]
        assert starts == sorted(starts) and (not starts or starts[0] == 0)
        a = rng.randint(0, max(n, 1))
        b = rng.randint(a, max(n, a))
        seg = [(v, d + (x - s_) * 16 if v >= 0 else 0) for s_, e_, v, d in m.segments(a, b) for x in range(s_, e_)]
        assert seg == model[a:b]


def test_huge_claim_held_by_a_zero_run_plans_in_a_few_intervals(tmp_path: Path) -> None:
    spec = f"sim:{tmp_path / 'h.tap'}"
    write_medium(spec, [claiming(1 << 40, cover=True)])
    assert os.path.getsize(tmp_path / "h.tap") < 6000
    with Catalog() as cat, open_medium(spec, write=False) as d:
        _, chain, plan = prepare_plan(d, cat, RestoreOptions())
        cm = chain_map(cat, chain)
    assert plan.volume_size == 1 << 40 and plan.blocks_to_write == 1 and len(plan.reads) == 1
    assert len(cm.map) == 2


@pytest.mark.parametrize("claim", [1 << 40, 1 << 60])
def test_claim_the_chunks_cannot_hold_is_malformed_before_writing(tmp_path: Path, claim: int) -> None:
    spec = f"sim:{tmp_path / 'h.tap'}"
    write_medium(spec, [claiming(claim)])
    out = tmp_path / "o"
    with pytest.raises(MalformedError, match="do not account for blocks 1-") as ei:
        do_restore(spec, str(out))
    assert ei.value.exit_code == 21
    assert not out.exists()
    with Catalog() as cat, open_medium(spec, write=False) as d:
        with pytest.raises(MalformedError):
            prepare_plan(d, cat, RestoreOptions())
        rep = verify_medium(d, cat)
    assert not rep.ok


def test_chain_checks_are_in_load_chain_and_chain_map(tmp_path: Path) -> None:
    spec, _ = mismatched_chain(tmp_path)
    with Catalog() as cat:
        s = _set_of(spec, cat)
        with pytest.raises(MalformedError):
            load_chain(cat, s, "vol.img", 2)
        chain_map(cat, load_chain(cat, s, "vol.img", 1))


def test_verify_against_follows_the_runs_not_the_claim(tmp_path: Path) -> None:
    """verify --against compares with the chain's block map: an incremental chain with zero
    blocks matches its source; a 1 TiB claim against a one-block source ends at once."""
    from tapearc.engine.verify import run_verify

    rng = random.Random(21)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(30 * BS))
    data[4 * BS : 9 * BS] = bytes(5 * BS)
    src.write_bytes(bytes(data))
    do_backup(spec, src)
    data[5 * BS : 6 * BS] = rng.randbytes(BS)
    data[20 * BS : 21 * BS] = bytes(BS)
    data += rng.randbytes(100)
    src.write_bytes(bytes(data))
    do_backup(spec, src)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        rep = run_verify(d, cat, against=str(src))
        assert rep.against is not None and rep.against["equal"], rep.against
        src.write_bytes(bytes(data[: 25 * BS]))
        rep = run_verify(d, cat, against=str(src))
    assert rep.against is not None and rep.against["differing_ranges"] == [[25, 30]]
    huge = f"sim:{tmp_path / 'h.tap'}"
    write_medium(huge, [claiming(1 << 40, cover=True)])
    one = tmp_path / "one.img"
    one.write_bytes(bytes(range(256)) * (BS // 256))
    with Catalog() as cat, open_medium(huge, write=False) as d:
        sync_medium(d, cat)
        rep = run_verify(d, cat, against=str(one))
    assert rep.against is not None and rep.against["differing_ranges"] == [[1, (1 << 40) // BS - 1]]


def test_stream_with_a_zero_older_version_emits_zeros(tmp_path: Path) -> None:
    """--to - --fallback-older where the older version of the damaged blocks is zero: those
    blocks are emitted as zeros in their turn, and the restore says they are substituted."""
    import io

    rng = random.Random(31)
    img = tmp_path / "t.tap"
    spec = f"sim:{img}"
    src = tmp_path / "vol.img"
    v1 = bytearray(rng.randbytes(32 * BS))
    v1[10 * BS : 14 * BS] = bytes(4 * BS)
    src.write_bytes(bytes(v1))
    do_backup(spec, src)
    v2 = bytearray(v1)
    v2[10 * BS : 14 * BS] = rng.randbytes(4 * BS)
    src.write_bytes(bytes(v2))
    do_backup(spec, src)
    raw = bytearray(img.read_bytes())
    pos = raw.rfind(b"TACHUNK1")  # generation 2's only chunk
    raw[pos + 2000] ^= 1
    img.write_bytes(bytes(raw))
    out = io.BytesIO()
    with Catalog() as cat, open_medium(spec, write=False) as d:
        res = restore(d, cat, "-", RestoreOptions(fallback_older=True), stdout=out)
    assert out.getvalue() == bytes(v1)
    assert [(f["blocks"], f.get("zero")) for f in res.fallback] == [([10, 13], True)]
    err = outcome(res)
    assert isinstance(err, SubstitutedRestoreError) and "(blocks 10-13) zeros (an older version)" in err.message
