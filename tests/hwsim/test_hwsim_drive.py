"""SimDrive: open, read, write, end of data, protection, close (st semantics)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hwsim_helpers import TM, KiB, MiB, payload, rec

from tapesim import mtio
from tapesim.drive import SidecarError, SimDrive, TapeSettings, create_image, load_settings, sidecar_path
from tapesim.simh import MTR_ERF, scan


def errno_of(excinfo: pytest.ExceptionInfo[OSError]) -> int | None:
    return excinfo.value.errno


def expect_errno(code: int, fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    assert ei.value.errno == code, f"expected {errno.errorcode[code]}, got {ei.value!r}"
    return ei.value


# ------------------------------------------------------------------ open / settings


def test_missing_image_is_enoent_naming_path(tmp_path):
    p = tmp_path / "nope.tap"
    e = expect_errno(errno.ENOENT, SimDrive, p)
    assert e.filename == str(p)


def test_create_makes_blank_image_with_defaults(tmp_path):
    p = tmp_path / "new.tap"
    with SimDrive(p, create=True) as d:
        assert p.exists() and d.used == 0 and d.object_count == 0
        assert d.capacity == 1 << 40
        assert d.early_warning == 4 << 30
        assert d.max_record == 1 << 20
        assert not d.write_protected
        assert d.path == str(p)
    assert not Path(sidecar_path(p)).exists()


def test_default_early_warning_is_an_eighth_for_small_tapes(tmp_path):
    s = create_image(tmp_path / "a.tap", capacity=8 * MiB)
    assert s.early_warning == MiB
    assert load_settings(tmp_path / "a.tap") == s


def test_create_image_settings_roundtrip(tmp_path):
    p = tmp_path / "b.tap"
    create_image(p, capacity=10 * MiB, early_warning=KiB, max_record=64 * KiB, barcode="ABC123L8")
    with SimDrive(p) as d:
        assert (d.capacity, d.early_warning, d.max_record, d.barcode) == (10 * MiB, KiB, 64 * KiB, "ABC123L8")


def test_create_image_refuses_overwrite_when_asked(tmp_path):
    p = tmp_path / "c.tap"
    create_image(p, capacity=MiB)
    with pytest.raises(FileExistsError):
        create_image(p, capacity=MiB, overwrite=False)


@pytest.mark.parametrize(
    "bad",
    [
        {"capacity": 0},
        {"capacity": 100, "early_warning": 200},
        {"max_record": 0},
        {"max_record": 1 << 24},
        {"write_protected": "yes"},
        {"barcode": 5},
    ],
)
def test_invalid_settings(bad):
    with pytest.raises(SidecarError):
        TapeSettings(**bad)


def test_bad_sidecar_is_reported(image):
    Path(sidecar_path(image)).write_text("{not json")
    with pytest.raises(SidecarError):
        SimDrive(image)


def test_write_protected_open_for_write_is_erofs(tmp_path):
    p = tmp_path / "wp.tap"
    create_image(p, capacity=MiB, write_protected=True)
    expect_errno(errno.EROFS, SimDrive, p)
    with SimDrive(p, readonly=True) as d:
        assert d.mtget().mt_gstat & mtio.GMT_WR_PROT
        expect_errno(errno.EACCES, d.write, b"x")
        expect_errno(errno.EACCES, d.mtop, mtio.MTWEOF, 1)
        expect_errno(errno.EACCES, d.mtop, mtio.MTERASE, 0)
    assert p.stat().st_size == 0


def test_readonly_open_gives_eacces_on_writes(image):
    with SimDrive(image) as d:
        d.write(b"data")
    size = image.stat().st_size
    with SimDrive(image, readonly=True) as d:
        assert not d.mtget().mt_gstat & mtio.GMT_WR_PROT  # the tab is off; only the open is O_RDONLY
        expect_errno(errno.EACCES, d.write, b"x")
        expect_errno(errno.EACCES, d.mtop, mtio.MTWEOF)
        assert d.read(100) == b"data"
    assert image.stat().st_size == size


def test_second_open_is_ebusy(image):
    with SimDrive(image):
        expect_errno(errno.EBUSY, SimDrive, image)
    with SimDrive(image):
        pass


# ------------------------------------------------------------------ read / write


def test_write_then_read_back(drive):
    sizes = [1, 2, 3, 100, 4095, 4096, 65536]
    for i, n in enumerate(sizes):
        assert drive.write(payload(i, n)) == n
    drive.mtop(mtio.MTWEOF)
    drive.mtop(mtio.MTREW)
    for i, n in enumerate(sizes):
        assert drive.read(drive.max_record) == payload(i, n)
    assert drive.read(drive.max_record) == b""  # the filemark


def test_readinto(drive):
    drive.write(b"hello")
    drive.mtop(mtio.MTWEOF)
    drive.mtop(mtio.MTREW)
    buf = bytearray(16)
    assert drive.readinto(buf) == 5 and bytes(buf[:5]) == b"hello"
    assert drive.readinto(buf) == 0  # filemark
    assert drive.readinto(buf) == 0  # end of data right after a filemark
    expect_errno(errno.EIO, drive.readinto, buf)
    expect_errno(errno.ENOMEM, lambda: (drive.mtop(mtio.MTREW), drive.readinto(bytearray(2))))
    assert drive.mtpos() == 1


def test_read_longer_record_is_enomem_and_tape_is_past_it(drive):
    drive.write(b"A" * 1000)
    drive.write(b"B" * 10)
    drive.mtop(mtio.MTREW)
    expect_errno(errno.ENOMEM, drive.read, 999)
    assert drive.mtpos() == 1
    assert drive.read(100) == b"B" * 10
    drive.mtop(mtio.MTBSR, 2)
    assert drive.read(1000) == b"A" * 1000


def test_read_size_limits(drive):
    drive.write(b"abc")
    drive.mtop(mtio.MTREW)
    expect_errno(errno.EINVAL, drive.read, drive.max_record + 1)
    assert drive.read(0) == b""  # does nothing
    assert drive.mtpos() == 0
    assert drive.read(drive.max_record) == b"abc"


def test_write_size_limits(tmp_path):
    p = tmp_path / "m.tap"
    create_image(p, capacity=MiB, max_record=4 * KiB)
    with SimDrive(p) as d:
        expect_errno(errno.EINVAL, d.write, b"x" * (4 * KiB + 1))
        assert d.write(b"") == 0
        assert d.mtpos() == 0 and d.used == 0
        assert d.write(b"x" * 4 * KiB) == 4 * KiB
        assert d.mtpos() == 1


def test_write_accepts_buffer_objects(drive):
    assert drive.write(bytearray(b"xyz")) == 3
    assert drive.write(memoryview(b"0123456789")[2:5]) == 3
    drive.mtop(mtio.MTREW)
    assert drive.read(10) == b"xyz"
    assert drive.read(10) == b"234"


def test_end_of_data_after_filemark_is_zero_then_eio(drive):
    drive.write(b"r1")
    drive.mtop(mtio.MTWEOF)
    drive.mtop(mtio.MTREW)
    assert drive.read(100) == b"r1"
    assert drive.read(100) == b""  # filemark
    st = drive.mtget()
    assert (st.mt_fileno, st.mt_blkno) == (1, 0)
    assert st.mt_gstat & mtio.GMT_EOF and not st.mt_gstat & mtio.GMT_EOD
    assert drive.read(100) == b""  # end of data: zero once, no movement
    assert drive.mtpos() == 2
    assert drive.mtget().mt_gstat & mtio.GMT_EOD
    expect_errno(errno.EIO, drive.read, 100)
    expect_errno(errno.EIO, drive.read, 100)
    assert drive.mtpos() == 2


def test_end_of_data_mid_file_is_eio(drive):
    drive.write(b"r1")
    drive.write(b"r2")
    drive.mtop(mtio.MTBSR, 2)  # (MTREW would write st's filemark first)
    assert drive.read(100) == b"r1"
    assert drive.read(100) == b"r2"
    expect_errno(errno.EIO, drive.read, 100)
    assert drive.mtget().mt_gstat & mtio.GMT_EOD
    assert drive.mtpos() == 2


def test_blank_tape_read_is_eio(drive):
    expect_errno(errno.EIO, drive.read, 100)
    assert drive.mtpos() == 0


def test_end_of_data_after_locate_past_filemark_is_eio(drive):
    # st: only a filemark just read or spaced over gives the zero read (LOCATE resets it)
    drive.write(b"r1")
    drive.mtop(mtio.MTWEOF)
    drive.mtop(mtio.MTSEEK, 2)
    expect_errno(errno.EIO, drive.read, 100)


def test_end_of_data_after_fsf_is_zero_then_eio(drive):
    drive.write(b"r1")
    drive.mtop(mtio.MTWEOF)
    drive.mtop(mtio.MTREW)
    drive.mtop(mtio.MTFSF, 1)
    assert drive.read(100) == b""
    expect_errno(errno.EIO, drive.read, 100)


def test_error_flagged_record_is_eio_past_it(raw_image):
    p = raw_image(rec(4, fill=1) + rec(5, fill=2, flag=MTR_ERF) + rec(6, fill=3) + TM)
    with SimDrive(p) as d:
        assert d.read(100) == b"\x01" * 4
        expect_errno(errno.EIO, d.read, 100)
        assert d.mtpos() == 2
        assert d.read(100) == b"\x03" * 6


def test_truncated_tail_is_eio_and_writing_repairs_it(raw_image):
    p = raw_image(rec(4) + TM + rec(6) + rec(100)[:50])
    with SimDrive(p, implicit_filemarks=False) as d:
        assert d.truncated and d.object_count == 3
        assert d.read(100) == b"\x04" * 4
        assert d.read(100) == b""
        assert d.read(100) == b"\x06" * 6
        expect_errno(errno.EIO, d.read, 100)
        assert d.mtpos() == 3
        d.mtop(mtio.MTEOM)
        assert d.mtpos() == 3
        d.write(b"fresh")
        assert not d.truncated
    res = scan(p)
    assert not res.truncated
    assert [o.length for o in res.objects] == [4, 0, 6, 5]


def test_truncated_tail_right_after_filemark_is_eio(raw_image):
    p = raw_image(rec(4) + TM + b"\x10\x00")
    with SimDrive(p) as d:
        assert d.read(10) == b"\x04" * 4
        assert d.read(10) == b""
        expect_errno(errno.EIO, d.read, 10)


def test_overwrite_truncates_the_rest(drive, image):
    for i in range(5):
        drive.write(payload(i, 100))
    drive.mtop(mtio.MTWEOF)
    drive.write(b"file1")
    drive.mtop(mtio.MTWEOF)
    used_before = drive.used
    drive.mtop(mtio.MTSEEK, 2)
    assert drive.write(b"new") == 3
    assert drive.object_count == 3
    assert drive.used < used_before
    assert image.stat().st_size == drive.used
    drive.mtop(mtio.MTWEOF)
    drive.mtop(mtio.MTREW)
    assert [drive.read(200) for _ in range(4)] == [payload(0, 100), payload(1, 100), b"new", b""]
    drive.close()
    assert [o.length for o in scan(image).objects] == [100, 100, 3, 0]


def test_weof_in_the_middle_truncates(drive):
    for i in range(3):
        drive.write(payload(i, 10))
    drive.mtop(mtio.MTSEEK, 1)
    drive.mtop(mtio.MTWEOF, 2)
    assert drive.object_count == 3 and drive.mtpos() == 3
    assert drive.mtget().mt_fileno == 2


def test_erase_truncates_from_position(drive, image):
    for i in range(4):
        drive.write(payload(i, 10))
    drive.mtop(mtio.MTSEEK, 2)
    drive.mtop(mtio.MTERASE)
    assert drive.object_count == 2 and drive.mtpos() == 2
    assert image.stat().st_size == drive.used == 2 * 18
    expect_errno(errno.EIO, drive.read, 100)


def test_persistence_across_reopen(image):
    with SimDrive(image) as d:
        d.write(b"one")
        d.mtop(mtio.MTWEOF)
        d.write(b"two")
        d.mtop(mtio.MTWEOF)
    with SimDrive(image) as d:
        assert d.object_count == 4
        st = d.mtget()
        assert st.mt_gstat & mtio.GMT_BOT and (st.mt_fileno, st.mt_blkno) == (0, 0)
        assert [d.read(10) for _ in range(4)] == [b"one", b"", b"two", b""]


# ------------------------------------------------------------------ st's implicit filemarks


def test_close_after_write_writes_one_filemark(image):
    with SimDrive(image) as d:
        d.write(b"a")
        d.write(b"b")
    assert [o.kind.value for o in scan(image).objects] == ["record", "record", "filemark"]


def test_close_after_weof_writes_no_extra_filemark(image):
    with SimDrive(image) as d:
        d.write(b"a")
        d.mtop(mtio.MTWEOF)
    assert [o.kind.value for o in scan(image).objects] == ["record", "filemark"]


def test_close_after_read_writes_nothing(image):
    with SimDrive(image) as d:
        d.write(b"a")
        d.mtop(mtio.MTWEOF)
    with SimDrive(image) as d:
        d.read(10)
    assert len(scan(image).objects) == 2


def test_implicit_filemarks_can_be_disabled(image):
    with SimDrive(image, implicit_filemarks=False) as d:
        d.write(b"a")
    assert [o.kind.value for o in scan(image).objects] == ["record"]


def test_rewind_after_write_writes_a_filemark_first(drive):
    drive.write(b"a")
    drive.mtop(mtio.MTREW)
    assert drive.object_count == 2
    assert drive.read(10) == b"a"
    assert drive.read(10) == b""


def test_bsf_after_write_counts_the_implicit_filemark(drive):
    drive.write(b"a")
    drive.write(b"b")
    # st writes a filemark, then spaces back over 2 filemarks: only one exists, so BOT + EIO
    expect_errno(errno.EIO, drive.mtop, mtio.MTBSF, 1)
    assert drive.object_count == 3
    assert drive.mtpos() == 0


def test_bsf_after_write_into_previous_file(drive):
    drive.write(b"a")
    drive.mtop(mtio.MTWEOF)
    drive.write(b"b")
    drive.mtop(mtio.MTBSF, 1)  # filemark written, BSF 2: BOT side of the first filemark
    assert drive.object_count == 4
    assert drive.mtpos() == 1
    assert drive.read(10) == b""
    assert drive.read(10) == b"b"


def test_fsr_after_write_writes_no_filemark(drive):
    drive.write(b"a")
    drive.mtop(mtio.MTBSR, 1)
    assert drive.object_count == 1
    drive.close()


# ------------------------------------------------------------------ unload, status, misc


def test_offline_then_enomedium(drive):
    drive.write(b"a")
    drive.mtop(mtio.MTOFFL)
    assert drive.object_count == 2  # filemark written before unloading
    st = drive.mtget()
    assert st.mt_gstat & mtio.GMT_DR_OPEN and not st.mt_gstat & mtio.GMT_ONLINE
    assert (st.mt_fileno, st.mt_blkno) == (-1, -1)
    expect_errno(errno.ENOMEDIUM, drive.read, 10)
    expect_errno(errno.ENOMEDIUM, drive.write, b"x")
    expect_errno(errno.ENOMEDIUM, drive.mtop, mtio.MTREW)
    expect_errno(errno.ENOMEDIUM, drive.mtpos)
    drive.close()


def test_mtget_fresh_tape(drive):
    st = drive.mtget()
    assert st.mt_type == mtio.MT_ISSCSI2 == 0x72
    assert (st.mt_resid, st.mt_dsreg, st.mt_erreg, st.mt_fileno, st.mt_blkno) == (0, 0, 0, 0, 0)
    assert mtio.gstat_names(st.mt_gstat) == ["BOT", "ONLINE", "IM_REP_EN"]


def test_setblk_and_unknown_ops(drive):
    drive.mtop(mtio.MTSETBLK, 0)
    expect_errno(errno.EINVAL, drive.mtop, mtio.MTSETBLK, 512)
    expect_errno(errno.ENOSYS, drive.mtop, mtio.MTTELL, 0)
    expect_errno(errno.ENOSYS, drive.mtop, 99, 0)
    expect_errno(errno.EINVAL, drive.mtop, mtio.MTWSM, 1)
    drive.mtop(mtio.MTNOP)
    drive.mtop(mtio.MTCOMPRESSION, 0)


def test_closed_drive_is_ebadf(image):
    d = SimDrive(image)
    d.close()
    d.close()  # idempotent
    expect_errno(errno.EBADF, d.read, 1)
    expect_errno(errno.EBADF, d.write, b"x")
    expect_errno(errno.EBADF, d.mtget)


def test_mtio_constants_match_linux():
    assert (mtio.MTIOCTOP, mtio.MTIOCGET, mtio.MTIOCPOS) == (0x40086D01, 0x80306D02, 0x80086D03)
    assert (mtio.MTFSF, mtio.MTBSF, mtio.MTFSR, mtio.MTBSR, mtio.MTWEOF, mtio.MTREW) == (1, 2, 3, 4, 5, 6)
    assert (mtio.MTOFFL, mtio.MTNOP, mtio.MTEOM, mtio.MTERASE) == (7, 8, 12, 13)
    assert (mtio.MTSETBLK, mtio.MTSEEK, mtio.MTTELL, mtio.MTWEOFI) == (20, 22, 23, 35)
    assert (mtio.GMT_EOF, mtio.GMT_BOT, mtio.GMT_EOT, mtio.GMT_EOD) == (0x80000000, 0x40000000, 0x20000000, 0x08000000)
    assert (mtio.GMT_WR_PROT, mtio.GMT_ONLINE, mtio.GMT_DR_OPEN) == (0x04000000, 0x01000000, 0x00040000)
    assert mtio.MT_ST_SCSI2LOGICAL == 0x800


def test_image_written_size_matches_used(drive, image):
    drive.write(b"x" * 3)
    drive.mtop(mtio.MTWEOF)
    assert drive.used == 8 + 3 + 1 + 4 == image.stat().st_size
    assert os.path.getsize(image) == drive.used
