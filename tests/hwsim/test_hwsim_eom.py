"""End of medium while writing: st's early-warning ENOSPC alternation and the physical end."""

from __future__ import annotations

import errno

import pytest

from tapesim import mtio
from tapesim.drive import SimDrive, create_image
from tapesim.simh import record_size, scan

REC = 1000  # record_size(1000) = 1008 image bytes
RS = record_size(REC)


@pytest.fixture
def small(tmp_path):
    """Capacity for exactly 20 records; the early warning begins inside record #15."""
    p = tmp_path / "small.tap"
    capacity = 20 * RS
    create_image(p, capacity=capacity, early_warning=5 * RS + 100)
    return p


def attempt(d: SimDrive, data: bytes) -> str:
    try:
        n = d.write(data)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
        return "ENOSPC"
    assert n == len(data)
    return "ok"


def test_early_warning_alternation_then_physical_end(small):
    with SimDrive(small) as d:
        ew_start = d.capacity - d.early_warning
        outcomes = []
        eot_seen_at = None
        for k in range(1, 40):
            pos_before = d.mtpos()
            used_before = d.used
            r = attempt(d, bytes([k % 256]) * REC)
            outcomes.append(r)
            if r == "ENOSPC":
                assert d.mtpos() == pos_before and d.used == used_before  # nothing written
            if eot_seen_at is None and d.mtget().mt_gstat & mtio.GMT_EOT:
                eot_seen_at = k
        # write #15 is the first whose end passes ew_start (15 * 1008 = 15120 > 15020)
        assert 14 * RS <= ew_start < 15 * RS
        assert eot_seen_at == 15
        assert outcomes[:14] == ["ok"] * 14
        # 15 ok (EOT), 16 ENOSPC, 17 ok, ..., 24 ENOSPC, 25 ok -> 20 records on tape, the
        # capacity is full; then physical end: always ENOSPC
        assert outcomes[14:25] == ["ok", "ENOSPC"] * 5 + ["ok"]
        assert outcomes[25:] == ["ENOSPC"] * (39 - 25)
        assert d.object_count == 20
        assert d.used == d.capacity
        assert d.mtget().mt_gstat & mtio.GMT_EOT
    # closing still writes st's filemark, as the stlab drive did at the physical end
    objs = scan(small).objects
    assert len(objs) == 21 and objs[-1].kind.value == "filemark"


def test_filemark_allowed_in_zone_and_close_writes_filemark(tmp_path):
    p = tmp_path / "fm.tap"
    create_image(p, capacity=10 * RS, early_warning=3 * RS)
    with SimDrive(p) as d:
        results = [attempt(d, b"x" * REC) for _ in range(9)]
        assert results[:8] == ["ok"] * 7 + ["ok"]  # #8 ends exactly past ew_start
        assert results[8] == "ENOSPC"
        d.mtop(mtio.MTWEOF)  # a filemark in the zone is fine
        assert d.object_count == 9
        # a trailer record after the refused write is allowed
        assert attempt(d, b"t" * REC) == "ok"
        assert d.mtget().mt_gstat & mtio.GMT_EOT
    # close wrote st's filemark after the trailer
    objs = scan(p).objects
    assert [o.kind.value for o in objs][-3:] == ["filemark", "record", "filemark"]


def test_weof_beyond_capacity_is_enospc(tmp_path):
    p = tmp_path / "full.tap"
    create_image(p, capacity=2 * RS + 4, early_warning=0)
    with SimDrive(p, implicit_filemarks=False) as d:
        d.write(b"a" * REC)
        d.write(b"b" * REC)
        d.mtop(mtio.MTWEOF)
        with pytest.raises(OSError) as ei:
            d.mtop(mtio.MTWEOF)
        assert ei.value.errno == errno.ENOSPC
        assert d.object_count == 3 and d.used == d.capacity


def test_write_that_does_not_fit_is_enospc_before_any_warning(tmp_path):
    p = tmp_path / "tiny.tap"
    create_image(p, capacity=100, early_warning=0)
    with SimDrive(p, implicit_filemarks=False) as d:
        assert attempt(d, b"x" * 93) == "ENOSPC"  # 8 + 93 + 1 = 102 > 100
        assert attempt(d, b"x" * 92) == "ok"  # exactly 100
        assert d.used == 100


def test_rewind_clears_eot_and_alternation(small):
    with SimDrive(small, implicit_filemarks=False) as d:
        for _ in range(15):
            d.write(b"x" * REC)
        assert d.mtget().mt_gstat & mtio.GMT_EOT
        d.mtop(mtio.MTREW)
        assert not d.mtget().mt_gstat & mtio.GMT_EOT
        d.mtop(mtio.MTSEEK, 10)  # before ew_start: overwrite from record 10
        assert not d.mtget().mt_gstat & mtio.GMT_EOT
        for _ in range(4):
            assert attempt(d, b"y" * REC) == "ok"
        assert not d.mtget().mt_gstat & mtio.GMT_EOT
        assert attempt(d, b"y" * REC) == "ok"  # record #15 again: early warning
        assert d.mtget().mt_gstat & mtio.GMT_EOT
        assert attempt(d, b"y" * REC) == "ENOSPC"


def test_locating_inside_zone_resets_alternation_but_keeps_eot(small):
    with SimDrive(small, implicit_filemarks=False) as d:
        for _ in range(15):
            d.write(b"x" * REC)
        assert attempt(d, b"x" * REC) == "ENOSPC"
        d.mtop(mtio.MTSEEK, 15)
        assert d.mtget().mt_gstat & mtio.GMT_EOT
        assert attempt(d, b"z" * REC) == "ok"
        assert attempt(d, b"z" * REC) == "ENOSPC"
