"""Backend factories for the media contract suite: make a blank medium, open it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tapearc.media.base import TapeDrive
from tapearc.media.stlike import StLikeDrive

from .fakest import FakeSt, FakeTape

TEST_MAX_RECORD = 256 * 1024


class Backend:
    id = "?"
    can_set_geometry = True  # capacity, early warning, max record, write protection

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def create(
        self,
        *,
        capacity: int | None = None,
        early_warning: int | None = None,
        max_record: int = TEST_MAX_RECORD,
        write_protected: bool = False,
    ) -> None:
        raise NotImplementedError

    def open(self, *, write: bool = True, max_record_size: int | None = None) -> TapeDrive:
        raise NotImplementedError

    @property
    def spec(self) -> str:
        raise NotImplementedError


class SimBackend(Backend):
    id = "sim"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.path = str(tmp_path / "tape.tap")

    @property
    def spec(self) -> str:
        return f"sim:{self.path}"

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD,
               write_protected=False) -> None:
        from tapesim.drive import DEFAULT_CAPACITY, create_image

        create_image(self.path, capacity=capacity or DEFAULT_CAPACITY, early_warning=early_warning,
                     max_record=max_record, write_protected=write_protected)

    def open(self, *, write=True, max_record_size=None) -> TapeDrive:
        from tapearc.media.sim import open_sim

        return open_sim(self.path, write=write, create=False, max_record_size=max_record_size)


class DirBackend(Backend):
    id = "dir"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.path = str(tmp_path / "medium")

    @property
    def spec(self) -> str:
        return f"dir:{self.path}"

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD,
               write_protected=False) -> None:
        from tapearc.media.dirmedium import create_dir_medium

        create_dir_medium(self.path, capacity=capacity, early_warning=early_warning,
                          max_record_size=max_record, write_protected=write_protected)

    def open(self, *, write=True, max_record_size=None) -> TapeDrive:
        from tapearc.media.dirmedium import DirDrive

        # reserve=0: the early warning of these tests comes from the marker's capacity only
        return DirDrive(self.path, write=write, reserve=0, max_record_size=max_record_size)


class FakeStBackend(Backend):
    """The adapter over tests/media/fakest.py (an independent model of st)."""

    id = "fakest"
    hide_fileno = False
    report_eod = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.tape = FakeTape()

    @property
    def spec(self) -> str:
        return "fake:tape"

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD,
               write_protected=False) -> None:
        capacity = capacity or (1 << 30)
        if early_warning is None:
            early_warning = capacity // 8
        self.tape = FakeTape(capacity=capacity, early_warning=early_warning,
                             max_record=max_record, write_protected=write_protected)

    def open(self, *, write=True, max_record_size=None) -> TapeDrive:
        try:
            ops = FakeSt(self.tape, readonly=not write, hide_fileno=self.hide_fileno,
                         report_eod=self.report_eod)
        except OSError as err:
            assert err.errno == errno.EROFS
            write = False
            ops = FakeSt(self.tape, readonly=True, hide_fileno=self.hide_fileno,
                         report_eod=self.report_eod)
        return StLikeDrive(ops, name=self.spec, writable=write, max_record_size=max_record_size)


class FakeStNoFilenoBackend(FakeStBackend):
    """Closer to a real st: mt_fileno/mt_blkno are -1 after MTSEEK, MTEOM and MTBSF, and a
    mid-file end of data gives EIO without GMT_EOD."""

    id = "fakest-nofileno"
    hide_fileno = True
    report_eod = False


class StBackend(Backend):
    """A real tape drive (TAPEARC_TEST_TAPE=/dev/nstN). DESTRUCTIVE: erases the tape."""

    id = "st"
    can_set_geometry = False

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.device = os.environ["TAPEARC_TEST_TAPE"]

    @property
    def spec(self) -> str:
        return self.device if ":" in self.device else f"st:{self.device}"

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD,
               write_protected=False) -> None:
        if capacity is not None or write_protected:
            pytest.skip("cannot set the geometry of a real tape")
        from tapearc.errors import MediumUnavailableError
        from tapearc.media import mtio, open_medium

        try:
            drive = open_medium(self.spec, write=True)
        except MediumUnavailableError as err:
            pytest.skip(str(err))
        try:
            drive.rewind()
            drive._ops.mtop(mtio.MTERASE, 0)  # type: ignore[attr-defined]  # short erase: EOD at BOT
        finally:
            drive.close()

    def open(self, *, write=True, max_record_size=None) -> TapeDrive:
        from tapearc.media import open_medium

        return open_medium(self.spec, write=write)


def _sim_available() -> bool:
    try:
        import tapesim.drive  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = [
    pytest.param(SimBackend, id="sim",
                 marks=pytest.mark.skipif(not _sim_available(), reason="tapesim.drive missing")),
    pytest.param(DirBackend, id="dir"),
    pytest.param(FakeStBackend, id="fakest"),
    pytest.param(FakeStNoFilenoBackend, id="fakest-nofileno"),
    pytest.param(StBackend, id="st", marks=[
        pytest.mark.hardware,
        pytest.mark.skipif(not os.environ.get("TAPEARC_TEST_TAPE"), reason="TAPEARC_TEST_TAPE not set"),
    ]),
]
