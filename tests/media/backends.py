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

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD, write_protected=False) -> None:
        from tapesim.drive import DEFAULT_CAPACITY, create_image

        create_image(
            self.path,
            capacity=capacity or DEFAULT_CAPACITY,
            early_warning=early_warning,
            max_record=max_record,
            write_protected=write_protected,
        )

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

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD, write_protected=False) -> None:
        from tapearc.media.dirmedium import create_dir_medium

        create_dir_medium(
            self.path,
            capacity=capacity,
            early_warning=early_warning,
            max_record_size=max_record,
            write_protected=write_protected,
        )

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

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD, write_protected=False) -> None:
        capacity = capacity or (1 << 30)
        if early_warning is None:
            early_warning = capacity // 8
        self.tape = FakeTape(
            capacity=capacity, early_warning=early_warning, max_record=max_record, write_protected=write_protected
        )

    def open(self, *, write=True, max_record_size=None) -> TapeDrive:
        try:
            ops = FakeSt(self.tape, readonly=not write, hide_fileno=self.hide_fileno, report_eod=self.report_eod)
        except OSError as err:
            assert err.errno == errno.EROFS
            write = False
            ops = FakeSt(self.tape, readonly=True, hide_fileno=self.hide_fileno, report_eod=self.report_eod)
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

    def create(self, *, capacity=None, early_warning=None, max_record=TEST_MAX_RECORD, write_protected=False) -> None:
        if capacity is not None or write_protected:
            pytest.skip("cannot set the geometry of a real tape")
        from tapearc.errors import MediumUnavailableError
        from tapearc.media import mtio, open_medium

        try:
            drive = open_medium(self.spec, write=True)
        except MediumUnavailableError as err:
            pytest.skip(str(err))
        try:
            if os.environ.get("STLAB_TAPE_MB"):
                _stlab_no_blklims(drive)
            drive.rewind()
            try:
                drive._ops.mtop(mtio.MTERASE, 0)  # type: ignore[attr-defined]  # short erase: EOD at BOT
            except OSError:
                if not _stlab_blank(self.device, drive):
                    raise
        finally:
            drive.close()

    def open(self, *, write=True, max_record_size=None) -> TapeDrive:
        from tapearc.media import open_medium

        return open_medium(self.spec, write=write)


_MT_ST_NO_BLKLIMS = 0x200


def _stlab_no_blklims(drive: TapeDrive) -> None:
    """In the stlab VM: tgt's emulated drive reports READ BLOCK LIMITS of 4 .. 1 MiB, so st refuses
    the contract's 1..3-byte records (EINVAL) where an LTO drive takes them (minimum 1). Tell st
    to leave the limits to the drive (the drive then takes any size); effective from the next
    open. Root only (CAP_SYS_ADMIN); a real drive is left alone."""
    from tapearc.media import mtio

    try:
        drive._ops.mtop(mtio.MTSETDRVBUFFER, mtio.MT_ST_SETBOOLEANS | _MT_ST_NO_BLKLIMS)  # type: ignore[attr-defined]
    except OSError:
        pass


def _stlab_blank(device: str, drive: TapeDrive) -> bool:
    """In the stlab VM: tgt's SSC emulation has no ERASE. Blank the tape by rewriting its image
    file in place (tgtd keeps it open and re-reads the beginning at REWIND). False elsewhere."""
    import re
    import subprocess

    from tapearc.media import mtio

    m = re.search(r"nst(\d+)$", device)
    image = f"/tape/tape{m.group(1)}.img" if m else ""
    if not (os.environ.get("STLAB_TAPE_MB") and image and os.path.exists(image)):
        return False
    blank = "/tmp/tapearc-blank.img"
    if not os.path.exists(blank):
        subprocess.run(
            [
                "tgtimg",
                "--op",
                "new",
                "--device-type",
                "tape",
                "--type",
                "data",
                "--barcode",
                f"STLAB{m.group(1)}",
                "--size",
                os.environ["STLAB_TAPE_MB"],
                "--file",
                blank,
            ],  # type: ignore[union-attr]
            check=True,
            stdout=subprocess.DEVNULL,
        )
    with open(blank, "rb") as src, open(image, "r+b") as dst:
        dst.write(src.read())
        dst.truncate()
    drive._ops.mtop(mtio.MTREW, 1)  # type: ignore[attr-defined]  # tgt re-reads the beginning
    return True


def _sim_available() -> bool:
    try:
        import tapesim.drive  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = [
    pytest.param(SimBackend, id="sim", marks=pytest.mark.skipif(not _sim_available(), reason="tapesim.drive missing")),
    pytest.param(DirBackend, id="dir"),
    pytest.param(FakeStBackend, id="fakest"),
    pytest.param(FakeStNoFilenoBackend, id="fakest-nofileno"),
    pytest.param(
        StBackend,
        id="st",
        marks=[
            pytest.mark.hardware,
            pytest.mark.skipif(not os.environ.get("TAPEARC_TEST_TAPE"), reason="TAPEARC_TEST_TAPE not set"),
        ],
    ),
]
