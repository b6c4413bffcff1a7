"""SimDrive positioning: MTFSF/MTBSF/MTFSR/MTBSR/MTEOM/MTSEEK, mtpos and fileno/blkno."""

from __future__ import annotations

import errno

import pytest
from hwsim_helpers import payload

from tapesim import mtio
from tapesim.drive import SimDrive

# Layout used below (logical positions):
#   0 r0.0  1 r0.1  2 r0.2  3 FM  4 r1.0  5 FM  6 FM  7 r3.0  8 r3.1   (end of data at 9)
LAYOUT = [("r", 0), ("r", 1), ("r", 2), ("f",), ("r", 3), ("f",), ("f",), ("r", 4), ("r", 5)]


@pytest.fixture
def tape(image):
    with SimDrive(image, implicit_filemarks=False) as d:
        for obj in LAYOUT:
            if obj[0] == "r":
                d.write(payload(obj[1], 50 + obj[1]))
            else:
                d.mtop(mtio.MTWEOF)
        d.mtop(mtio.MTREW)
        yield d


def where(d: SimDrive) -> tuple[int, int, int]:
    st = d.mtget()
    return d.mtpos(), st.mt_fileno, st.mt_blkno


def eio(d: SimDrive, op: int, count: int) -> None:
    with pytest.raises(OSError) as ei:
        d.mtop(op, count)
    assert ei.value.errno == errno.EIO


def test_layout(tape):
    assert tape.object_count == 9
    assert where(tape) == (0, 0, 0)


def test_fsf(tape):
    tape.mtop(mtio.MTFSF, 1)
    assert where(tape) == (4, 1, 0)
    assert tape.mtget().mt_gstat & mtio.GMT_EOF
    tape.mtop(mtio.MTFSF, 2)
    assert where(tape) == (7, 3, 0)
    assert tape.read(100) == payload(4, 54)


def test_fsf_from_mid_file(tape):
    tape.mtop(mtio.MTSEEK, 1)
    tape.mtop(mtio.MTFSF, 1)
    assert where(tape) == (4, 1, 0)


def test_fsf_into_end_of_data_is_eio_at_eod(tape):
    eio(tape, mtio.MTFSF, 4)
    assert where(tape) == (9, 3, 2)
    assert tape.mtget().mt_gstat & mtio.GMT_EOD
    with pytest.raises(OSError) as ei:
        tape.read(100)
    assert ei.value.errno == errno.EIO


def test_bsf_stops_on_bot_side(tape):
    tape.mtop(mtio.MTEOM)
    assert where(tape) == (9, 3, 2)
    assert tape.mtget().mt_gstat & mtio.GMT_EOD
    tape.mtop(mtio.MTBSF, 1)
    assert where(tape) == (6, 2, 0)
    tape.mtop(mtio.MTBSF, 2)
    assert where(tape) == (3, 0, 3)
    assert tape.read(100) == b""  # reads the filemark
    assert where(tape) == (4, 1, 0)


def test_bsf_to_bot_is_eio(tape):
    tape.mtop(mtio.MTSEEK, 5)
    eio(tape, mtio.MTBSF, 2)
    assert where(tape) == (0, 0, 0)
    assert tape.mtget().mt_gstat & mtio.GMT_BOT


def test_fsr_and_bsr_within_a_file(tape):
    tape.mtop(mtio.MTFSR, 2)
    assert where(tape) == (2, 0, 2)
    tape.mtop(mtio.MTBSR, 1)
    assert where(tape) == (1, 0, 1)
    assert tape.read(100) == payload(1, 51)
    tape.mtop(mtio.MTFSR, 0)
    assert where(tape) == (2, 0, 2)


def test_fsr_meeting_filemark_stops_after_it_with_eio(tape):
    tape.mtop(mtio.MTFSR, 1)
    eio(tape, mtio.MTFSR, 5)
    assert where(tape) == (4, 1, 0)
    assert tape.read(100) == payload(3, 53)


def test_fsr_at_filemark_crosses_it(tape):
    tape.mtop(mtio.MTSEEK, 3)
    eio(tape, mtio.MTFSR, 1)
    assert where(tape) == (4, 1, 0)


def test_fsr_into_end_of_data(tape):
    tape.mtop(mtio.MTSEEK, 7)
    eio(tape, mtio.MTFSR, 3)
    assert where(tape) == (9, 3, 2)
    assert tape.mtget().mt_gstat & mtio.GMT_EOD


def test_fsr_after_filemark_to_eod_gives_zero_read(tape):
    # Spacing over a filemark leaves st's "just past a filemark" state (ST_FM)
    tape.mtop(mtio.MTSEEK, 4)
    eio(tape, mtio.MTFSR, 2)
    assert where(tape) == (6, 2, 0)


def test_bsr_meeting_filemark_stops_on_its_bot_side_with_eio(tape):
    tape.mtop(mtio.MTSEEK, 8)
    eio(tape, mtio.MTBSR, 5)
    assert where(tape) == (6, 2, 0)  # BOT side of the filemark at 6
    assert tape.read(100) == b""


def test_bsr_directly_before_filemark(tape):
    tape.mtop(mtio.MTSEEK, 4)
    eio(tape, mtio.MTBSR, 1)
    assert where(tape) == (3, 0, 3)


def test_bsr_to_bot_is_eio(tape):
    tape.mtop(mtio.MTSEEK, 2)
    eio(tape, mtio.MTBSR, 3)
    assert where(tape) == (0, 0, 0)
    eio(tape, mtio.MTBSR, 1)
    assert where(tape) == (0, 0, 0)


def test_negative_counts_reverse(tape):
    tape.mtop(mtio.MTFSF, 2)
    tape.mtop(mtio.MTFSF, -1)
    assert where(tape) == (5, 1, 1)
    tape.mtop(mtio.MTFSR, -1)  # = MTBSR 1
    assert where(tape) == (4, 1, 0)
    eio(tape, mtio.MTBSR, -2)  # = MTFSR 2: meets the filemark at 5
    assert where(tape) == (6, 2, 0)


def test_fsfm_and_bsfm(tape):
    tape.mtop(mtio.MTFSFM, 1)  # to the BOT side of the first filemark
    assert where(tape) == (3, 0, 3)
    tape.mtop(mtio.MTEOM)
    tape.mtop(mtio.MTBSFM, 2)  # back over 2 filemarks, then forward over one
    assert where(tape) == (6, 2, 0)


def test_seek_and_mtpos_round_trip(tape):
    for p in [0, 5, 2, 9, 7, 3, 8, 1]:
        tape.mtop(mtio.MTSEEK, p)
        assert tape.mtpos() == p
    positions = []
    tape.mtop(mtio.MTREW)
    while True:
        positions.append(tape.mtpos())
        try:
            tape.read(1000)
        except OSError:
            break
    # the tape ends mid-file: end of data gives EIO at once
    assert positions == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    for p in range(10):
        tape.mtop(mtio.MTSEEK, p)
        if p < 9:
            obj = LAYOUT[p]
            got = tape.read(1000)
            assert got == (payload(obj[1], 50 + obj[1]) if obj[0] == "r" else b"")


def test_seek_beyond_end_of_data_is_eio_at_eod(tape):
    eio(tape, mtio.MTSEEK, 10)
    assert tape.mtpos() == 9
    assert tape.mtget().mt_gstat & mtio.GMT_EOD


def test_eom_on_blank_tape(drive):
    drive.mtop(mtio.MTEOM)
    assert drive.mtpos() == 0
    drive.write(b"x")
    assert drive.mtpos() == 1


def test_gstat_bits_while_moving(tape):
    assert tape.mtget().mt_gstat & mtio.GMT_BOT
    tape.read(100)
    g = tape.mtget().mt_gstat
    assert not g & (mtio.GMT_BOT | mtio.GMT_EOF | mtio.GMT_EOD)
    tape.mtop(mtio.MTFSF, 1)
    assert tape.mtget().mt_gstat & mtio.GMT_EOF
    tape.mtop(mtio.MTREW)
    assert tape.mtget().mt_gstat & mtio.GMT_BOT
