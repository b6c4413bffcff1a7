"""Restores over media with injected unreadable records (hw-sim faults): exactly the lost ranges
are reported, the rest is restored byte-identical, --fallback-older uses older versions."""

from __future__ import annotations

import random
from pathlib import Path

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.restore import RestoreOptions, prepare_plan, restore
from tapearc.media import open_medium
from tapesim.faults import add_fault

BS = 4096
OPTS = {"block_size": BS, "record_size": 8192, "chunk_size": 16384}  # 3 blocks per chunk, 2 records each


def test_unreadable_records_lost_ranges_and_fallback(tmp_path: Path) -> None:
    rng = random.Random(5)
    img = tmp_path / "t.tap"
    src = tmp_path / "v.img"
    v1 = bytearray(rng.randbytes(30 * BS))
    src.write_bytes(bytes(v1))
    with Catalog() as c, open_medium(f"sim:{img}", write=True) as d:
        backup(str(src), d, c, BackupOptions(**OPTS))
    v2 = bytearray(v1)
    for b in (4, 5, 12):
        v2[b * BS : (b + 1) * BS] = rng.randbytes(BS)
    src.write_bytes(bytes(v2))
    with Catalog() as c, open_medium(f"sim:{img}", write=True) as d:
        backup(str(src), d, c, BackupOptions(**OPTS))
    with Catalog() as c, open_medium(f"sim:{img}", write=False) as d:
        _, _, plan = prepare_plan(d, c, RestoreOptions())
    # make unreadable: the second record of generation 2's first chunk (blocks 4-5 and 12 there),
    # and the first record of generation 1's chunk holding blocks 21-23 (no newer version)
    g2 = [r for r in plan.reads if r.chunk.generation == 2]
    g1 = [r for r in plan.reads if r.chunk.generation == 1 and r.chunk.runs[0].first == 21]
    assert g2 and g1
    hit2 = g2[0]
    add_fault(str(img), "unreadable", at=hit2.chunk.logical + 1)
    add_fault(str(img), "unreadable", at=g1[0].chunk.logical)
    lost2 = [list(x) for x in [(a, a + n - 1) for a, n in hit2.runs]]
    out = tmp_path / "o"
    with Catalog() as c, open_medium(f"sim:{img}", write=False) as d:
        res = restore(d, c, str(out), RestoreOptions())
    assert sorted(x["blocks"] for x in res.lost) == sorted([*lost2, [21, 23]])
    got = out.read_bytes()
    lost_blocks = {b for x in res.lost for b in range(x["blocks"][0], x["blocks"][1] + 1)}
    for b in range(30):
        want = bytes(BS) if b in lost_blocks else bytes(v2[b * BS : (b + 1) * BS])
        assert got[b * BS : (b + 1) * BS] == want, b
    # with --fallback-older the blocks of generation 2's damaged chunk come from generation 1
    out2 = tmp_path / "o2"
    with Catalog() as c, open_medium(f"sim:{img}", write=False) as d:
        res = restore(d, c, str(out2), RestoreOptions(fallback_older=True))
    assert [x["blocks"] for x in res.lost] == [[21, 23]]
    assert sorted(f["blocks"] for f in res.fallback) == sorted(lost2)
    assert all(f["from_generation"] == 1 for f in res.fallback)
    got = out2.read_bytes()
    for a, b in lost2:
        assert got[a * BS : (b + 1) * BS] == bytes(v1[a * BS : (b + 1) * BS])
