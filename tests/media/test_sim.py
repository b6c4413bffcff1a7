"""sim: backend specifics (open_sim, image creation, write protection)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("tapesim.drive")

from tapearc.errors import MediumUnavailableError, WriteProtectedError
from tapearc.media.base import Mark, Position
from tapearc.media.sim import open_sim
from tapearc.media.stlike import StLikeDrive
from tapesim.drive import SimDrive, create_image
from tapesim.transport import read_stats
from tests.conftest import FakeTime


def test_missing_image_for_reading(tmp_path):
    path = str(tmp_path / "none.tap")
    with pytest.raises(MediumUnavailableError, match=f"no such simulated tape: {path}"):
        open_sim(path, write=False, create=False)
    assert not os.path.exists(path)


def test_missing_image_without_create(tmp_path):
    with pytest.raises(MediumUnavailableError):
        open_sim(str(tmp_path / "none.tap"), write=True, create=False)


def test_created_blank_when_missing(tmp_path):
    path = str(tmp_path / "new.tap")
    with open_sim(path, write=True, create=True) as d:
        assert d.name == f"sim:{path}"
        assert d.writable
        assert d.read_record() is Mark.END_OF_DATA
        d.write_record(b"hello")
        d.write_filemark()
    assert os.path.exists(path) and os.path.exists(path + ".tapesim")
    with open_sim(path, write=False, create=False) as d:
        assert d.read_record() == b"hello"
        assert d.read_record() is Mark.FILEMARK
        st = d.status()
        assert st.capacity and st.used and st.details["backend"] == "st"


def test_write_protected_opens_read_only(tmp_path):
    path = str(tmp_path / "wp.tap")
    create_image(path, write_protected=True)
    with open_sim(path, write=True, create=True) as d:
        assert d.writable is False
        assert d.status().write_protected
        with pytest.raises(WriteProtectedError):
            d.write_record(b"x")


def test_busy_image(tmp_path):
    path = str(tmp_path / "t.tap")
    with open_sim(path, write=True, create=True), pytest.raises(MediumUnavailableError):
        open_sim(path, write=False, create=False)


def test_default_max_record_is_the_drives(tmp_path):
    path = str(tmp_path / "t.tap")
    create_image(path, max_record=123456)
    with open_sim(path, write=True, create=False) as d:
        assert d.max_record_size == 123456
        with pytest.raises(ValueError):
            d.write_record(b"x" * 123457)
        d.write_record(b"x" * 123456)
        d.rewind()
        assert len(d.read_record()) == 123456
        assert d.position() == Position(1, 0, 1)


def test_bad_sidecar_is_unavailable(tmp_path):
    path = str(tmp_path / "t.tap")
    create_image(path)
    with open(path + ".tapesim", "w") as fh:
        fh.write("{not json")
    with pytest.raises(MediumUnavailableError, match="bad settings"):
        open_sim(path, write=False, create=False)


# ---------------------------------------------------------------- immediate filemarks on a rate-limited drive


def _rated_image(folder: Path) -> Path:
    p = folder / "t.tap"
    create_image(p, capacity=1 << 20, rate=1000, buffer=4000)  # 1000 bytes/s, a 4 s buffer
    return p


def _volume_change(t: FakeTime, p: Path, *, immediate: bool) -> tuple[float, float]:
    """Two 'generations' through the st adapter, 2 s of host work between them (the next
    volume's start); returns (seconds the host waited before the second generation, starved)."""
    d = StLikeDrive(SimDrive(p, clock=t.clock, sleep=t.sleep), name="sim:t", writable=True)
    for _ in range(3):
        d.write_record(b"x" * 1000)
    d.write_filemark(immediate=immediate)
    waited = t.total
    t.now += 2  # the next volume's backup starts; the drive goes on writing its buffer
    for _ in range(3):
        d.write_record(b"y" * 1000)
    d.write_filemark(immediate=immediate)
    d.sync()  # the end of the drive's run: everything on tape
    assert t.total == pytest.approx(4 if immediate else 3 + 3)  # host seconds asleep
    d.close()
    st = read_stats(str(p))
    assert st is not None and st.bytes_written == 6000
    return waited, st.starved_seconds


def test_immediate_filemarks_keep_the_tape_streaming_and_sync_drains(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    t = FakeTime()
    waited, starved = _volume_change(t, _rated_image(tmp_path / "a"), immediate=False)
    assert waited == pytest.approx(3)  # MTWEOF 1: the host waited for the 3 000 bytes
    assert starved == pytest.approx(2)  # and the tape stood still for the 2 s in between
    t = FakeTime()
    waited, starved = _volume_change(t, _rated_image(tmp_path / "b"), immediate=True)
    assert waited == 0  # MTWEOFI: no wait
    assert starved == 0  # the 2 s of host work overlapped the buffer going to tape
    # the sync at the end (MTWEOF 0) drained it: the host slept until the tape caught up
    st = read_stats(str(tmp_path / "b" / "t.tap"))
    assert st is not None and st.drain_seconds == pytest.approx(6 - 2) and st.idle_seconds == 0
