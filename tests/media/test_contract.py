"""The TapeDrive contract (tapearc/media/base.py), run against every backend.

Backends: the simulated tape (sim), the removable-disk folder (dir), the st adapter over an
independent in-memory model of st (fakest, and fakest-nofileno where the drive forgets
mt_fileno/mt_blkno like the real st after LOCATE), and a real st device when TAPEARC_TEST_TAPE is
set (hardware; destructive).

Findings documented here (asserted below):
* After MediumFullError a filemark still fits on every backend (sim: a SIMH filemark takes 4
  bytes of image; dir and fakest: filemarks take no space), and its status is EARLY_WARNING.
* st's ENOSPC alternation in the early-warning zone never reaches the caller: every write after
  the first EARLY_WARNING returns EARLY_WARNING until MediumFullError.
"""

from __future__ import annotations

import random

import pytest

from tapearc.errors import (
    MediumFullError,
    MediumIOError,
    RecordTooLargeError,
    WriteProtectedError,
)
from tapearc.media.base import DriveStatus, Mark, Position, TapeDrive, WriteStatus

from .backends import BACKENDS, TEST_MAX_RECORD, Backend

EOD = Mark.END_OF_DATA
FM = Mark.FILEMARK
OK = WriteStatus.OK
EW = WriteStatus.EARLY_WARNING


def payload(tag: int, size: int) -> bytes:
    return random.Random(tag).randbytes(size)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Backend:
    return request.param(tmp_path)


@pytest.fixture
def blank(backend: Backend) -> Backend:
    backend.create()
    return backend


# The standard layout: tape file 0 = 3 records, tape file 1 = 2 records, tape file 2 = 1 record
# without a closing filemark.
#   logical: 0 A0 | 1 A1 | 2 A2 | 3 FM | 4 B0 | 5 B1 | 6 FM | 7 C0 | 8 end of data
A = [payload(1, 1), payload(2, 4099), payload(3, 100)]
B = [payload(4, 65537), payload(5, 7)]
C = [payload(6, 3)]
LAYOUT = [*A, FM, *B, FM, *C]  # objects by logical number
EOD_POS = Position(8, 2, 1)
POSITIONS = [  # the Position of every logical object of LAYOUT, then end of data
    Position(0, 0, 0),
    Position(1, 0, 1),
    Position(2, 0, 2),
    Position(3, 0, 3),
    Position(4, 1, 0),
    Position(5, 1, 1),
    Position(6, 1, 2),
    Position(7, 2, 0),
    EOD_POS,
]


def write_layout(drive: TapeDrive, *, immediate: bool = False) -> None:
    """LAYOUT, every position checked on the way (``immediate``: its filemarks immediate ones:
    every position as with synchronous ones, at once)."""
    for i, obj in enumerate(LAYOUT):
        assert drive.position() == POSITIONS[i]
        status = drive.write_filemark(immediate=immediate) if obj is FM else drive.write_record(obj)
        assert status is OK
    assert drive.position() == EOD_POS


@pytest.fixture
def layout(blank: Backend) -> Backend:
    with blank.open(write=True) as d:
        write_layout(d)
    return blank


def read_all(drive: TapeDrive, limit: int = 10_000) -> list[bytes | Mark]:
    out: list[bytes | Mark] = []
    for _ in range(limit):
        obj = drive.read_record()
        if obj is EOD:
            return out
        out.append(obj)
    raise AssertionError("no end of data")


# ----------------------------------------------------------------------------- basics


def test_is_a_tapedrive(blank):
    with blank.open(write=True) as d:
        assert isinstance(d, TapeDrive)
        assert d.name == blank.spec
        assert d.writable is True
        assert d.max_record_size == TEST_MAX_RECORD or blank.id == "st"


def test_blank_medium_reads_end_of_data_repeatedly(blank):
    with blank.open(write=True) as d:
        assert d.position() == Position(0, 0, 0)
        for _ in range(3):
            assert d.read_record() is EOD
            assert d.position() == Position(0, 0, 0)
        assert d.seek_end_of_data() == Position(0, 0, 0)
        st = d.status()
        assert isinstance(st, DriveStatus)
        assert st.at_bot is True


@pytest.mark.parametrize("sizes", [[1], [3, 1, 65537], [TEST_MAX_RECORD], [1, TEST_MAX_RECORD, 2]])
def test_record_round_trip(blank, sizes):
    data = [payload(100 + i, n) for i, n in enumerate(sizes)]
    with blank.open(write=True) as d:
        for i, rec in enumerate(data):
            src = bytearray(rec) if i % 2 else memoryview(rec)  # every accepted buffer type
            assert d.write_record(src) is OK
        assert d.write_filemark() is OK
    with blank.open(write=False) as d:
        assert d.writable is False
        for rec in data:
            got = d.read_record()
            assert isinstance(got, bytes) and got == rec
        assert d.read_record() is FM
        pos = d.position()
        assert pos == Position(len(data) + 1, 1, 0)
        for _ in range(3):
            assert d.read_record() is EOD
            assert d.position() == pos


def test_end_of_data_inside_a_tape_file(layout):
    with layout.open(write=False) as d:
        assert read_all(d) == LAYOUT
        for _ in range(3):
            assert d.position() == EOD_POS
            assert d.read_record() is EOD
        assert d.status().at_eod in (True, None)


def test_positions_while_reading(layout):
    with layout.open(write=False) as d:
        assert d.position() == POSITIONS[0]
        for i, obj in enumerate(LAYOUT):
            assert d.read_record() == obj
            assert d.position() == POSITIONS[i + 1]
        assert d.read_record() is EOD
        assert d.position() == EOD_POS
        d.rewind()
        assert d.position() == Position(0, 0, 0)
        assert d.read_record() == A[0]


def test_status_does_not_move(layout):
    with layout.open(write=False) as d:
        d.locate(5)
        st = d.status()
        assert st.name == layout.spec
        assert st.position == Position(5, 1, 1)
        assert st.at_bot is False
        assert st.write_protected is False
        assert st.max_record_size == d.max_record_size
        assert d.position() == Position(5, 1, 1)
        assert d.read_record() == B[1]
        d.rewind()
        assert d.status().at_bot is True


# ----------------------------------------------------------------------------- positioning


@pytest.mark.parametrize("target", range(len(LAYOUT) + 1))
def test_locate_every_object(layout, target):
    with layout.open(write=False) as d:
        d.read_record()
        d.locate(target)
        assert d.position() == POSITIONS[target]
        expect = LAYOUT[target] if target < len(LAYOUT) else EOD
        assert d.read_record() == expect


def test_locate_past_end_of_data(layout):
    with layout.open(write=False) as d:
        with pytest.raises(MediumIOError):
            d.locate(9)
        assert d.position() == EOD_POS
        assert d.read_record() is EOD
        with pytest.raises(MediumIOError):
            d.locate(1000)
        assert d.position() == EOD_POS
        d.locate(0)
        assert d.read_record() == A[0]


def test_space_files_forward(layout):
    with layout.open(write=False) as d:
        assert d.space_files(0) == 0
        assert d.position() == Position(0, 0, 0)
        assert d.space_files(1) == 1
        assert d.position() == Position(4, 1, 0)
        assert d.read_record() == B[0]  # from the middle of tape file 1
        assert d.space_files(1) == 1
        assert d.position() == Position(7, 2, 0)
        assert d.space_files(1) == 0  # no filemark left: stops at end of data
        assert d.position() == EOD_POS
        assert d.read_record() is EOD
        d.rewind()
        assert d.space_files(2) == 2
        assert d.position() == Position(7, 2, 0)
        d.rewind()
        assert d.space_files(5) == 2  # early stop
        assert d.position() == EOD_POS
        assert d.read_record() is EOD


def test_space_files_backward(layout):
    with layout.open(write=False) as d:
        d.seek_end_of_data()
        assert d.space_files(-1) == 1  # before filemark 1: end of tape file 1
        assert d.position() == Position(6, 1, 2)
        assert d.read_record() is FM
        assert d.position() == Position(7, 2, 0)
        assert d.space_files(-2) == 2
        assert d.position() == Position(3, 0, 3)
        assert d.read_record() is FM
        assert d.position() == Position(4, 1, 0)
        assert d.space_files(-1) == 1
        assert d.position() == Position(3, 0, 3)
        assert d.space_files(-1) == 0  # no filemark before: stops at the beginning
        assert d.position() == Position(0, 0, 0)
        assert d.read_record() == A[0]
        d.seek_end_of_data()
        assert d.space_files(-5) == 2  # early stop at the beginning
        assert d.position() == Position(0, 0, 0)
        d.locate(5)  # middle of tape file 1
        assert d.space_files(-1) == 1
        assert d.position() == Position(3, 0, 3)


def test_space_files_over_empty_tape_files(blank):
    # tape file 0: 1 record; 1 and 2: empty; 3: 1 record, no filemark
    with blank.open(write=True) as d:
        d.write_record(b"x")
        d.write_filemark()
        d.write_filemark()
        d.write_filemark()
        d.write_record(b"y")
        assert d.position() == Position(5, 3, 1)
        d.rewind()
        assert d.space_files(2) == 2
        assert d.position() == Position(3, 2, 0)
        assert d.read_record() is FM
        assert d.position() == Position(4, 3, 0)
        assert d.space_files(-2) == 2
        assert d.position() == Position(2, 1, 0)
        assert d.space_files(-1) == 1
        assert d.position() == Position(1, 0, 1)
        d.locate(3)
        assert d.position() == Position(3, 2, 0)
        assert d.read_record() is FM
        assert d.read_record() == b"y"
        assert d.read_record() is EOD


def test_seek_end_of_data(layout):
    with layout.open(write=True) as d:
        assert d.seek_end_of_data() == EOD_POS
        assert d.position() == EOD_POS
        assert d.read_record() is EOD
        assert d.write_record(b"appended") is OK
        assert d.write_filemark() is OK
        assert d.position() == Position(10, 3, 0)
        d.rewind()
        assert d.seek_end_of_data() == Position(10, 3, 0)
        assert d.read_record() is EOD
    with layout.open(write=False) as d:
        assert read_all(d) == [*LAYOUT, b"appended", FM]


def test_rewind_from_anywhere(layout):
    with layout.open(write=False) as d:
        d.seek_end_of_data()
        d.rewind()
        assert d.position() == Position(0, 0, 0)
        d.locate(6)
        d.rewind()
        assert d.read_record() == A[0]


# ----------------------------------------------------------------------------- writing


def test_overwrite_in_the_middle_truncates(layout):
    with layout.open(write=True) as d:
        d.locate(5)  # B1
        assert d.write_record(b"new") is OK
        assert d.position() == Position(6, 1, 2)
        assert d.read_record() is EOD  # everything after it is gone
        assert d.position() == Position(6, 1, 2)
        assert d.seek_end_of_data() == Position(6, 1, 2)
        d.locate(0)
        assert read_all(d) == [*A, FM, B[0], b"new"]
        d.rewind()
        assert d.space_files(5) == 1
        assert d.position() == Position(6, 1, 2)
    with layout.open(write=False) as d:
        assert read_all(d) == [*A, FM, B[0], b"new"]


def test_overwrite_with_a_filemark(layout):
    with layout.open(write=True) as d:
        d.locate(1)
        assert d.write_filemark() is OK
        assert d.position() == Position(2, 1, 0)
        assert d.read_record() is EOD
        assert d.seek_end_of_data() == Position(2, 1, 0)
    with layout.open(write=False) as d:
        assert read_all(d) == [A[0], FM]
        d.rewind()
        assert d.space_files(3) == 1
        assert d.position() == Position(2, 1, 0)


def test_overwrite_at_bot(layout):
    with layout.open(write=True) as d:
        d.seek_end_of_data()
        d.rewind()
        assert d.write_record(b"fresh") is OK
        assert d.position() == Position(1, 0, 1)
    with layout.open(write=False) as d:
        assert read_all(d) == [b"fresh"]


def test_oversize_and_empty_writes_are_refused(blank):
    with blank.open(write=True) as d:
        d.write_record(b"keep")
        with pytest.raises(ValueError):
            d.write_record(b"x" * (d.max_record_size + 1))
        with pytest.raises(ValueError):
            d.write_record(b"")
        with pytest.raises(ValueError):
            d.write_record(bytearray())
        assert d.position() == Position(1, 0, 1)
        d.write_filemark()
    with blank.open(write=False) as d:
        assert read_all(d) == [b"keep", FM]


def test_read_only_refuses_writes(layout):
    with layout.open(write=False) as d:
        assert d.writable is False
        with pytest.raises(WriteProtectedError):
            d.write_record(b"x")
        with pytest.raises(WriteProtectedError):
            d.write_filemark()
        assert d.position() == Position(0, 0, 0)
        d.seek_end_of_data()
        with pytest.raises(WriteProtectedError):
            d.write_record(b"x")
    with layout.open(write=False) as d:
        assert read_all(d) == LAYOUT


def test_write_protected_medium(backend):
    if not backend.can_set_geometry:
        pytest.skip("cannot write-protect this medium from a test")
    backend.create(write_protected=True)
    with backend.open(write=True) as d:
        assert d.writable is False
        assert d.status().write_protected is True
        with pytest.raises(WriteProtectedError):
            d.write_record(b"x")
        with pytest.raises(WriteProtectedError):
            d.write_filemark()
        assert d.read_record() is EOD


def test_close_writes_nothing(blank):
    d = blank.open(write=True)
    d.write_record(b"one")
    d.write_record(b"two")
    d.close()
    d.close()  # idempotent
    with blank.open(write=False) as d:
        assert read_all(d) == [b"one", b"two"]  # no filemark added at close
        assert d.position() == Position(2, 0, 2)


def test_moving_after_a_write_writes_nothing(blank):
    # st writes a filemark on rewind / locate / backward spacing right after a write
    with blank.open(write=True) as d:
        d.write_record(b"r0")
        d.rewind()
        assert read_all(d) == [b"r0"]
        d.write_record(b"r1")
        d.locate(0)
        assert read_all(d) == [b"r0", b"r1"]
        d.write_record(b"r2")
        assert d.space_files(-1) == 0
        assert d.position() == Position(0, 0, 0)
        d.write_filemark()  # overwrites r0: the tape is now just one filemark
        d.write_record(b"s0")
        d.seek_end_of_data()
        assert d.position() == Position(2, 1, 1)
        d.write_record(b"s1")
        assert d.space_files(-1) == 1
        assert d.position() == Position(0, 0, 0)
        assert read_all(d) == [FM, b"s0", b"s1"]
    with blank.open(write=False) as d:
        assert read_all(d) == [FM, b"s0", b"s1"]


def test_context_manager_closes(blank):
    with blank.open(write=True) as d:
        d.write_record(b"a")
    d.close()  # already closed: no error
    with blank.open(write=True) as d2:  # the medium is free again
        assert d2.read_record() == b"a"


def test_record_too_large_for_the_reader(blank):
    if not blank.can_set_geometry:
        pytest.skip("needs a smaller read buffer")
    big, small = payload(7, 100_000), payload(8, 10)
    with blank.open(write=True) as d:
        d.write_record(big)
        d.write_record(small)
        d.write_filemark()
    with blank.open(write=False, max_record_size=65536) as d:
        assert d.max_record_size == 65536
        with pytest.raises(RecordTooLargeError):
            d.read_record()
        assert d.position() == Position(1, 0, 1)  # past the record
        assert d.read_record() == small
        assert d.read_record() is FM


# ----------------------------------------------------------------------------- end of medium

CAPACITY = 1 << 20
EW_ZONE = 192 * 1024
REC = 32 * 1024


def test_early_warning_then_full(backend):
    if not backend.can_set_geometry:
        pytest.skip("cannot shrink a real tape")
    backend.create(capacity=CAPACITY, early_warning=EW_ZONE, max_record=64 * 1024)
    written: list[bytes] = []
    with backend.open(write=True) as d:
        for i in range(200):
            data = payload(1000 + i, REC)
            status = d.write_record(data)
            written.append(data)
            if status is EW:
                break
            assert status is OK
            assert d.status().early_warning is False
        else:
            pytest.fail("no early warning")
        assert len(written) >= (CAPACITY - EW_ZONE) // REC - 1
        assert d.status().early_warning is True
        # further writes still succeed (st's ENOSPC alternation is hidden) until the medium is full
        after = 0
        while True:
            pos = d.position()
            data = payload(5000 + after, REC)
            try:
                status = d.write_record(data)
            except MediumFullError:
                break
            assert status is EW
            written.append(data)
            after += 1
            assert after < 50
        assert after >= 2
        assert d.position() == pos  # nothing written
        assert pos.logical == len(written)
        with pytest.raises(MediumFullError):
            d.write_record(payload(9, REC))
        assert d.position() == pos
        # a filemark still fits after MediumFullError (see the module docstring)
        assert d.write_filemark() is EW
        assert d.position() == Position(pos.logical + 1, 1, 0)
    with backend.open(write=False) as d:
        got = read_all(d)
        assert got[:-1] == written  # everything written before reads back intact
        assert got[-1] is FM
    with backend.open(write=True) as d:
        # overwriting from the beginning leaves the early-warning zone
        assert d.write_record(b"x") is OK
        assert d.status().early_warning is False


@pytest.mark.parametrize("immediate", [False, True], ids=["synchronous", "immediate"])
def test_early_warning_filemark_fits(backend, immediate):
    if not backend.can_set_geometry:
        pytest.skip("cannot shrink a real tape")
    backend.create(capacity=CAPACITY, early_warning=EW_ZONE, max_record=64 * 1024)
    with backend.open(write=True) as d:
        n = 0
        while d.write_record(payload(n, REC)) is OK:
            n += 1
        # the write that entered the zone is on the medium; a trailer record and filemark fit
        assert d.write_record(b"trailer") is EW
        assert d.write_filemark(immediate=immediate) is EW  # an immediate one as the synchronous one
        assert d.position() == Position(n + 3, 1, 0)
        if immediate:
            d.sync()
            assert d.position() == Position(n + 3, 1, 0)
    with backend.open(write=False) as d:
        got = read_all(d)
        assert len(got) == n + 3
        assert got[-2:] == [b"trailer", FM]


def test_refused_write_then_close_writes_nothing(backend):
    if not backend.can_set_geometry:
        pytest.skip("cannot shrink a real tape")
    backend.create(capacity=CAPACITY, early_warning=EW_ZONE, max_record=64 * 1024)
    with backend.open(write=True) as d:
        n = 0
        try:
            while True:
                d.write_record(payload(n, REC))
                n += 1
        except MediumFullError:
            pass
    with backend.open(write=True) as d:
        d.seek_end_of_data()
        with pytest.raises(MediumFullError):  # the first operation of this session is refused
            d.write_record(payload(99, REC))
    with backend.open(write=False) as d:
        assert len(read_all(d)) == n  # no filemark was added by the refused write and close


# ----------------------------------------------------------------------------- immediate filemarks, sync


def write_layout_immediate(drive: TapeDrive) -> None:
    write_layout(drive, immediate=True)
    assert drive.status().position == EOD_POS


def check_layout(d: TapeDrive) -> None:
    """Reading, positions, locate and spacing of LAYOUT (as the tests above check them)."""
    d.rewind()
    for i, obj in enumerate(LAYOUT):
        assert d.read_record() == obj
        assert d.position() == POSITIONS[i + 1]
    assert d.read_record() is EOD
    for target in (7, 0, 4, 3, 8):
        d.locate(target)
        assert d.position() == POSITIONS[target]
        assert d.read_record() == (LAYOUT[target] if target < len(LAYOUT) else EOD)
    d.rewind()
    assert d.space_files(5) == 2
    assert d.position() == EOD_POS
    assert d.space_files(-1) == 1
    assert d.position() == Position(6, 1, 2)
    assert d.space_files(-1) == 1
    assert d.position() == Position(3, 0, 3)
    assert d.seek_end_of_data() == EOD_POS


def test_immediate_filemarks_read_back_like_synchronous_ones_after_sync(blank):
    with blank.open(write=True) as d:
        write_layout_immediate(d)
        d.sync()
        assert d.position() == EOD_POS  # sync does not move
        check_layout(d)
        # appending after reading: a synchronous filemark after immediate ones
        d.write_record(b"appended")
        assert d.write_filemark() is OK
        assert d.position() == Position(10, 3, 0)
    with blank.open(write=False) as d:
        assert read_all(d) == [*LAYOUT, b"appended", FM]


def test_immediate_filemarks_read_back_after_close_and_reopen(blank):
    with blank.open(write=True) as d:
        write_layout_immediate(d)  # no sync: close flushes
    with blank.open(write=False) as d:
        assert read_all(d) == LAYOUT
        check_layout(d)
    with blank.open(write=True) as d:
        assert d.seek_end_of_data() == EOD_POS
        check_layout(d)


def test_immediate_filemarks_without_sync_read_back_in_the_same_session(blank):
    # moving flushes on its own: reading back needs no explicit sync
    with blank.open(write=True) as d:
        write_layout_immediate(d)
        check_layout(d)


def test_sync_does_not_move_and_writes_nothing(blank):
    with blank.open(write=True) as d:
        d.sync()  # nothing written yet
        assert d.position() == Position(0, 0, 0)
        d.write_record(b"r0")
        d.sync()
        assert d.position() == Position(1, 0, 1)
        d.write_filemark(immediate=True)
        d.write_record(b"r1")
        d.sync()
        d.sync()
        assert d.position() == Position(3, 1, 1)
        assert d.read_record() is EOD
        d.rewind()
        d.sync()
        assert d.position() == Position(0, 0, 0)
        assert read_all(d) == [b"r0", FM, b"r1"]
    with blank.open(write=False) as d:
        assert read_all(d) == [b"r0", FM, b"r1"]  # no filemark from sync or close


def test_sync_on_a_read_only_drive_does_nothing(layout):
    with layout.open(write=False) as d:
        d.sync()
        assert d.position() == Position(0, 0, 0)
        d.locate(5)
        d.sync()
        assert d.position() == Position(5, 1, 1)
        assert d.read_record() == B[1]
    with layout.open(write=False) as d:
        assert read_all(d) == LAYOUT


def test_close_right_after_an_immediate_filemark_adds_nothing(blank):
    d = blank.open(write=True)
    d.write_record(b"one")
    d.write_filemark(immediate=True)
    d.write_record(b"two")
    assert d.write_filemark(immediate=True) is OK
    d.close()
    d.close()
    with blank.open(write=False) as d:
        assert read_all(d) == [b"one", FM, b"two", FM]  # no extra filemark
        assert d.position() == Position(4, 2, 0)
        assert d.seek_end_of_data() == Position(4, 2, 0)


def test_immediate_filemark_refused_when_read_only(layout):
    with layout.open(write=False) as d:
        with pytest.raises(WriteProtectedError):
            d.write_filemark(immediate=True)
        assert d.position() == Position(0, 0, 0)


def test_immediate_filemark_after_medium_full_fits(backend):
    if not backend.can_set_geometry:
        pytest.skip("cannot shrink a real tape")
    backend.create(capacity=CAPACITY, early_warning=EW_ZONE, max_record=64 * 1024)
    with backend.open(write=True) as d:
        n = 0
        with pytest.raises(MediumFullError):
            while True:
                d.write_record(payload(n, REC))
                n += 1
        assert d.write_filemark(immediate=True) is EW
        assert d.position() == Position(n + 1, 1, 0)
    with backend.open(write=False) as d:
        got = read_all(d)
        assert len(got) == n + 1 and got[-1] is FM
