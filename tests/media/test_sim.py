"""sim: backend specifics (open_sim, image creation, write protection)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("tapesim.drive")

from tapearc.errors import MediumUnavailableError, WriteProtectedError
from tapearc.media.base import Mark, Position
from tapearc.media.sim import open_sim
from tapesim.drive import create_image


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
