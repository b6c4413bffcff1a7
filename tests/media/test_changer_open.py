"""open_changer and the sim: backend's own behaviour."""

from __future__ import annotations

import os

import pytest

from tapearc.media.changer import ChangerError, DriveBayStatus
from tapearc.media.changers import ACCEPTED_FORMS, open_changer
from tapearc.media.changers.mtx import MtxChanger
from tapearc.media.changers.operator import OperatorChanger
from tapearc.media.changers.serial import SerialChanger
from tapearc.media.changers.sim import SimChanger

library = pytest.importorskip("tapesim.library")


@pytest.fixture
def libdir(tmp_path):
    d = tmp_path / "lib"
    library.create_library(d, 3, 1 << 20)
    return d


def test_forms(libdir):
    ch = open_changer(f"sim:{libdir}")
    assert isinstance(ch, SimChanger) and ch.name == f"sim:{libdir}"
    m = open_changer("mtx:/dev/sg3")  # runs nothing until asked
    assert isinstance(m, MtxChanger) and m.name == "mtx:/dev/sg3" and m.device == "/dev/sg3"
    assert isinstance(open_changer("operator"), OperatorChanger)
    assert isinstance(open_changer("OPERATOR"), OperatorChanger)


def test_serial_url_is_everything_after_the_first_colon(libdir):
    autoloader = pytest.importorskip("tapesim.autoloader")
    port, stop = autoloader.serve_tcp(libdir, "127.0.0.1", 0)
    try:
        ch = open_changer(f"serial:socket://127.0.0.1:{port}")
        assert isinstance(ch, SerialChanger)
        assert ch.url == f"socket://127.0.0.1:{port}" and ch.name == f"serial:socket://127.0.0.1:{port}"
        assert len(ch.status().slots) == 3
        ch.close()
    finally:
        stop()


@pytest.mark.parametrize("spec", ["", "tape", "scsi:/dev/sg3", "operator:x", "/dev/sg3", "sim:", "mtx:", "serial:"])
def test_unknown_or_incomplete(spec):
    with pytest.raises(ChangerError) as info:
        open_changer(spec)
    assert ACCEPTED_FORMS in str(info.value)
    assert "sim:DIR" in ACCEPTED_FORMS and "mtx:/dev/sgN" in ACCEPTED_FORMS and "operator" in ACCEPTED_FORMS


def test_sim_errors(tmp_path, libdir):
    with pytest.raises(ChangerError, match="not a tapesim library"):
        SimChanger(tmp_path / "nothing")
    ch = SimChanger(libdir)
    with pytest.raises(ChangerError) as info:
        ch.unload(0)
    assert str(info.value) == f"sim:{libdir}: drive 0 is empty"
    assert info.value.details["code"] == "E104"
    with pytest.raises(ChangerError, match="no drive 1"):
        ch.drive_path(1)


def test_sim_drive_path_is_the_loaded_tape(libdir):
    ch = SimChanger(libdir)
    path = ch.drive_path(0)
    assert path == os.path.join(str(libdir), "drive-0.tap") and not os.path.exists(path)
    ch.load(3)
    assert os.path.exists(path)
    assert ch.status().drives == (DriveBayStatus(0, True, "TAP003", 3),)
    ch.unload()
    assert not os.path.exists(path)
    ch.close()
    with pytest.raises(ChangerError, match="closed"):
        ch.status()


def test_sim_busy_drive(libdir):
    drive = pytest.importorskip("tapesim.drive")
    ch = SimChanger(libdir)
    ch.load(1)
    d = drive.SimDrive(ch.drive_path(0))
    try:
        with pytest.raises(ChangerError, match="busy"):
            ch.unload()
    finally:
        d.close()
    ch.unload()
