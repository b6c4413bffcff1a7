"""open_medium: parsing of the --tape spec."""

from __future__ import annotations

import pytest

from tapearc.errors import MediumUnavailableError
from tapearc.media import open_medium
from tapearc.media.dirmedium import DirDrive


def test_dir_prefix(tmp_path):
    spec = f"dir:{tmp_path / 'm'}"
    with open_medium(spec, write=True) as d:
        assert isinstance(d, DirDrive)
        assert d.name == spec


def test_bare_existing_folder_is_dir(tmp_path):
    (tmp_path / "m").mkdir()
    with open_medium(str(tmp_path / "m"), write=True) as d:
        assert isinstance(d, DirDrive)
        assert d.name == f"dir:{tmp_path / 'm'}"


def test_sim_prefix_and_bare_path(tmp_path):
    pytest.importorskip("tapesim.drive")
    spec = f"sim:{tmp_path / 't.tap'}"
    with open_medium(spec, write=True) as d:
        assert d.name == spec
        d.write_record(b"x")
    with open_medium(str(tmp_path / "t.tap"), write=False) as d:
        assert d.name == spec
        assert d.read_record() == b"x"


def test_sim_missing_for_reading(tmp_path):
    pytest.importorskip("tapesim.drive")
    with pytest.raises(MediumUnavailableError, match="no such simulated tape"):
        open_medium(f"sim:{tmp_path / 'none.tap'}", write=False)
    with pytest.raises(MediumUnavailableError, match="no such simulated tape"):
        open_medium(str(tmp_path / "none.tap"), write=False)


@pytest.mark.parametrize("spec", ["st:/dev/nst9", "/dev/nst9"])
def test_st_missing_device_node(spec, monkeypatch):
    import os

    real_stat = os.stat
    monkeypatch.setattr(
        os,
        "stat",
        lambda p, *a, **k: (_ for _ in ()).throw(FileNotFoundError(p)) if p == "/dev/nst9" else real_stat(p, *a, **k),
    )
    with pytest.raises(MediumUnavailableError, match="no such tape device /dev/nst9") as info:
        open_medium(spec, write=False)
    assert info.value.medium == "st:/dev/nst9"


def test_st_not_a_tape_device(tmp_path):
    f = tmp_path / "nst0"
    f.write_bytes(b"")
    with pytest.raises(MediumUnavailableError, match="not an st tape device"):
        open_medium(f"st:{f}", write=False)


def test_unknown_prefix_lists_the_accepted_forms():
    with pytest.raises(MediumUnavailableError) as info:
        open_medium("xyz:/tmp/a", write=False)
    msg = str(info.value)
    assert "'xyz:'" in msg
    for form in ("sim:PATH", "dir:PATH", "st:/dev/nstN"):
        assert form in msg


@pytest.mark.parametrize("spec", ["", "sim:", "dir:"])
def test_empty(spec):
    with pytest.raises(MediumUnavailableError):
        open_medium(spec, write=False)
