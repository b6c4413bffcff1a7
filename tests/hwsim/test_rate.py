"""The drive's native transfer rate (tapesim.transport): a tape clock behind a buffer.

A fake clock stands in for time: sleeping advances it, so every figure is exact arithmetic
(no timed assertions)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapesim import mtio
from tapesim.cli import app, parse_rate
from tapesim.drive import SimDrive, create_image
from tapesim.faults import add_fault
from tapesim.library import create_library
from tapesim.sidecar import SidecarError, TapeSettings, load_settings, read_sidecar, save_settings
from tapesim.transport import TapeClock, read_stats, stats_path
from tests.conftest import FakeTime

KiB = 1024
R = 1000  # bytes/s
B = 4000  # buffer, bytes


def tape_clock(t: FakeTime) -> TapeClock:
    return TapeClock(R, B, clock=t.clock, sleep=t.sleep)


def test_a_fast_writer_sleeps_what_the_tape_needs_beyond_the_buffer() -> None:
    t = FakeTime()
    c = tape_clock(t)
    for _ in range(20):  # 20 000 bytes at once: 20 s of tape, 4 s of it in the buffer
        c.write(1000)
    assert t.total == pytest.approx(20 - B / R)
    assert c.stats.throttle_seconds == pytest.approx(16)
    c.drain()  # a filemark: the buffer goes to tape
    assert t.total == pytest.approx(20)
    st = c.close()
    assert st.bytes_written == 20000 and st.moving_seconds == pytest.approx(20)
    assert st.idle_seconds == 0 and st.drain_seconds == pytest.approx(4) and st.open_seconds == pytest.approx(20)


def test_a_writer_within_the_buffer_never_waits() -> None:
    t = FakeTime()
    c = tape_clock(t)
    for _ in range(4):
        c.write(1000)
    assert t.slept == []


def test_a_slow_writer_leaves_the_drive_idle() -> None:
    t = FakeTime()
    c = tape_clock(t)
    for _ in range(5):  # each record is 1 s of tape; the host needs 3 s for the next one
        c.write(1000)
        t.now += 3
    assert t.slept == []
    assert c.stats.idle_seconds == pytest.approx(4 * 2)  # empty between the records
    assert c.stats.starved_seconds == pytest.approx(4 * 2)
    c.drain()  # the tape finished 2 s ago: no wait, 2 s more idle
    assert t.slept == [] and c.stats.idle_seconds == pytest.approx(10)
    t.now += 1
    c.close()  # no write after the last gaps: idle, not starved
    assert c.stats.idle_seconds == pytest.approx(11) and c.stats.starved_seconds == pytest.approx(8)


def test_a_gap_after_a_filemark_starves_the_drive_when_writing_goes_on() -> None:
    t = FakeTime()
    c = tape_clock(t)
    t.now += 5  # before the first write: idle, not starved
    c.write(1000)
    c.drain()  # a filemark: 1 s
    t.now += 2  # the host does something else
    c.write(1000)
    assert c.stats.idle_seconds == pytest.approx(7) and c.stats.starved_seconds == pytest.approx(2)
    assert c.stats.starved_at_marks_seconds == pytest.approx(2)  # all of it after the filemark
    t.now += 3  # a gap in the middle of writing: starved, not at a mark
    c.write(1000)
    assert c.stats.starved_seconds == pytest.approx(4) and c.stats.starved_at_marks_seconds == pytest.approx(2)


def test_gaps_before_the_host_first_gets_ahead_are_the_start() -> None:
    """Until a write finds the buffer still holding data the writer is starting: its gaps are
    starved, and counted as the start's; once it got ahead, every later gap is not."""
    t = FakeTime()
    c = tape_clock(t)  # 1000 bytes/s
    c.write(100)  # the label: 0.1 s of tape
    t.now += 0.5  # the first header comes late: 0.4 s starved, at the start
    c.write(100)
    t.now += 0.3  # and the first data: 0.2 s more
    c.write(1000)
    assert c.stats.starved_seconds == pytest.approx(0.6) and c.stats.starved_at_start_seconds == pytest.approx(0.6)
    t.now += 0.5  # the next record while the tape still has 0.5 s of data: the host is ahead
    c.write(1000)
    assert c.stats.starved_at_start_seconds == pytest.approx(0.6)
    t.now += 2.5  # a gap once streaming: starved (1 s), not the start's
    c.write(1000)
    assert c.stats.starved_seconds == pytest.approx(1.6) and c.stats.starved_at_start_seconds == pytest.approx(0.6)


def test_reads_come_at_the_native_rate_and_the_read_ahead_is_one_buffer() -> None:
    t = FakeTime()
    c = tape_clock(t)
    for _ in range(10):
        c.read(1000)
    assert t.total == pytest.approx(10)  # reading 10 000 bytes takes 10 s
    t.now += 100  # the host pauses: the drive reads a buffer ahead, then stops
    for _ in range(4):
        c.read(1000)
    assert t.total == pytest.approx(10)  # the 4 000 bytes were in the buffer
    assert c.stats.idle_seconds == pytest.approx(100 - B / R)
    c.read(1000)
    assert t.total == pytest.approx(11)
    c.drain()  # a move drops the read-ahead: nothing to wait for
    assert t.total == pytest.approx(11)
    assert c.stats.bytes_read == 15000


def _image(tmp_path: Path, rate: int = R, buffer: int = B) -> Path:
    p = tmp_path / "t.tap"
    create_image(p, capacity=1 << 20, rate=rate, buffer=buffer)
    return p


def test_simdrive_waits_at_filemarks_and_close_not_at_immediate_ones(tmp_path: Path) -> None:
    t = FakeTime()
    p = _image(tmp_path)
    d = SimDrive(p, clock=t.clock, sleep=t.sleep)
    for _ in range(6):
        d.write(b"x" * 1000)
    assert t.total == pytest.approx(6 - B / R)
    d.mtop(mtio.MTWEOFI, 1)  # immediate: does not wait for the buffer
    assert t.total == pytest.approx(6 - B / R)
    d.write(b"y" * 1000)
    d.mtop(mtio.MTWEOF, 1)  # waits until the 7 000 bytes are on tape
    assert t.total == pytest.approx(7)
    d.write(b"z" * 1000)
    d.close()  # close writes a filemark: it returns when the data is on tape
    assert t.total == pytest.approx(8)
    st = read_stats(str(p))
    assert st is not None and st.sessions == 1 and st.bytes_written == 8000
    assert st.moving_seconds == pytest.approx(8) and st.idle_seconds == pytest.approx(0)


def test_simdrive_reads_at_the_rate_and_stats_add_up_over_opens(tmp_path: Path) -> None:
    t = FakeTime()
    p = _image(tmp_path)
    with SimDrive(p, clock=t.clock, sleep=t.sleep) as d:
        for _ in range(8):
            d.write(b"x" * 1000)
        d.mtop(mtio.MTREW)  # st's filemark first, and the buffer drains
        assert t.total == pytest.approx(8)
        assert [len(d.read(1000)) for _ in range(8)] == [1000] * 8
        assert t.total == pytest.approx(16)
        assert d.read(1000) == b""  # the filemark costs no tape time here
    with SimDrive(p, readonly=True, clock=t.clock, sleep=t.sleep) as d:
        d.readinto(bytearray(1000))
    st = read_stats(str(p))
    assert st is not None and st.sessions == 2
    assert (st.bytes_written, st.bytes_read) == (8000, 9000)
    assert t.total == pytest.approx(17)


def test_unlimited_drives_are_as_before(tmp_path: Path) -> None:
    t = FakeTime()
    p = tmp_path / "u.tap"
    create_image(p, capacity=1 << 20)
    raw = read_sidecar(p)
    assert raw is not None and "rate" not in raw and "buffer" not in raw  # the sidecar is unchanged
    with SimDrive(p, clock=t.clock, sleep=t.sleep) as d:
        for _ in range(50):
            d.write(b"x" * 1000)
        assert d.tape_stats is None
    assert t.slept == [] and not Path(stats_path(str(p))).exists()


def test_settings_check_and_keep_the_rate(tmp_path: Path) -> None:
    with pytest.raises(SidecarError, match="rate"):
        TapeSettings(rate=-1)
    with pytest.raises(SidecarError, match="buffer"):
        TapeSettings(rate=1, buffer=0)
    p = _image(tmp_path)
    s = load_settings(p)
    assert (s.rate, s.buffer) == (R, B)
    s.rate = 0  # back to unlimited: the rate keys go
    save_settings(p, s)
    raw = read_sidecar(p)
    assert raw is not None and "rate" not in raw


def test_faults_and_the_saved_index_with_a_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPESIM_INDEX_MIN", "0")
    t = FakeTime()
    p = _image(tmp_path)
    add_fault(p, "write_error", at=2)
    with SimDrive(p, clock=t.clock, sleep=t.sleep) as d:
        d.write(b"a" * 1000)
        d.write(b"b" * 1000)
        with pytest.raises(OSError) as e:
            d.write(b"c" * 1000)
        assert e.value.errno == errno.EIO
        assert d.tape_stats is not None and d.tape_stats.bytes_written == 2000  # nothing counted for it
    with SimDrive(p, readonly=True, clock=t.clock, sleep=t.sleep) as d:  # opened from the saved index
        assert d.object_count == 3 and d.read(1000) == b"a" * 1000


def test_library_tapes_get_the_rate_and_stats_stay_with_the_drive(tmp_path: Path) -> None:
    t = FakeTime()
    lib = create_library(tmp_path / "lib", 2, 1 << 20, drives=2, rate=R, buffer=B)
    for slot in (1, 2):
        assert load_settings(lib.tape_path(f"TAP00{slot}")).rate == R
        lib.load(slot, drive=1)
        with SimDrive(lib.drive_path(1), clock=t.clock, sleep=t.sleep) as d:
            d.write(b"x" * 1000)
        lib.unload(1)
    st = read_stats(lib.drive_path(1))
    assert st is not None and st.sessions == 2 and st.bytes_written == 2000
    assert read_stats(lib.drive_path(0)) is None


def test_parse_rate_is_decimal_like_data_sheets() -> None:
    assert parse_rate("400M") == parse_rate("400MB/s") == 400_000_000
    assert parse_rate("300MiB/s") == 300 * 1024 * 1024
    assert parse_rate("0") == 0


def test_cli_new_library_and_info_show_the_rate(tmp_path: Path) -> None:
    r = CliRunner()
    img = str(tmp_path / "n.tap")
    res = r.invoke(app, ["new", img, "--capacity", "1M", "--rate", "400M", "--buffer", "1G"])
    assert res.exit_code == 0 and "rate 400 MB/s (buffer 1 GiB)" in res.output
    res = r.invoke(app, ["info", img, "--json"])
    doc = json.loads(res.output)
    assert (doc["rate"], doc["buffer"]) == (400_000_000, 1 << 30)
    res = r.invoke(app, ["info", img])
    assert "rate 400 MB/s" in res.output
    res = r.invoke(app, ["new", str(tmp_path / "x.tap"), "--capacity", "1M", "--rate", "fast"])
    assert res.exit_code != 0 and "invalid rate 'fast'" in str(res.exception)  # main() prints it as one line
    res = r.invoke(app, ["library", str(tmp_path / "L"), "--slots", "2", "--capacity", "1M", "--rate", "360M"])
    assert res.exit_code == 0, res.output
    assert load_settings(tmp_path / "L" / "tapes" / "TAP002.tap").rate == 360_000_000


def test_simdrive_flush_drains_without_a_filemark(tmp_path: Path) -> None:
    t = FakeTime()
    p = _image(tmp_path)
    d = SimDrive(p, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        d.write(b"x" * 1000)
    d.mtop(mtio.MTWEOFI, 1)
    assert t.total == 0
    d.mtop(mtio.MTWEOF, 0)  # the flush: returns when the buffer is on tape
    assert t.total == pytest.approx(3)
    assert d.mtpos() == 4  # no filemark written, no move
    d.close()  # st is idle after the WEOFs: no filemark at close
    with SimDrive(p, readonly=True) as r:
        assert [r.read(1000) for _ in range(5)] == [b"x" * 1000] * 3 + [b"", b""]
        assert r.mtpos() == 4
