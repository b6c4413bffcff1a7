"""Immediate filemarks (MTWEOFI) and sync (MTWEOF 0) on the real st driver. DESTRUCTIVE."""

from __future__ import annotations

import random

from tapearc.media import Mark, Position, WriteStatus, mtio, open_medium

from .conftest import blank_tape, mt_status


def test_two_tape_files_with_immediate_filemarks_sync_and_read_back(tape):
    dev = tape
    spec = dev if ":" in dev else f"st:{dev}"
    blank_tape(dev)
    files = [[random.Random(10 * f + i).randbytes(65536 - 7 * i) for i in range(5)] for f in range(2)]
    with open_medium(spec, write=True) as d:
        for f, records in enumerate(files):
            for rec in records:
                assert d.write_record(rec) is WriteStatus.OK
            assert d.write_filemark(immediate=True) is WriteStatus.OK
            assert d.position() == Position(6 * (f + 1), f + 1, 0)
        d.sync()
        assert d.position() == Position(12, 2, 0)  # sync neither moves nor writes a filemark
        assert d.status().position == Position(12, 2, 0)
        d.rewind()
        assert d.space_files(1) == 1
        assert d.read_record() == files[1][0]
    # after close (no filemark added by st, since MTWEOFI left it idle) and reopening
    with open_medium(spec, write=False) as d:
        for records in files:
            for rec in records:
                assert d.read_record() == rec
            assert d.read_record() is Mark.FILEMARK
        assert d.read_record() is Mark.END_OF_DATA
        assert d.seek_end_of_data() == Position(12, 2, 0)
        d.locate(6)
        assert d.position() == Position(6, 1, 0)
        assert d.read_record() == files[1][0]
    assert mt_status(dev)["file"] in (1, -1)


def test_st_writes_no_filemark_at_close_after_mtweofi(tape):
    # TAPE-FACTS §1.6, which the adapter relies on: st's close adds a filemark after a write,
    # not after MTWEOFI. The device is driven directly here (the adapter would flush first).
    dev = tape
    spec = dev if ":" in dev else f"st:{dev}"
    blank_tape(dev)
    with open_medium(spec, write=True) as d:
        ops = d._ops  # type: ignore[attr-defined]
        ops.write(b"a" * 1000)
        ops.mtop(mtio.MTWEOFI, 1)
        ops.write(b"b" * 1000)
        ops.mtop(mtio.MTWEOFI, 1)
        ops.close()  # st's close straight after MTWEOFI
    with open_medium(spec, write=False) as d:
        got = [d.read_record() for _ in range(5)]
    assert got == [b"a" * 1000, Mark.FILEMARK, b"b" * 1000, Mark.FILEMARK, Mark.END_OF_DATA]
