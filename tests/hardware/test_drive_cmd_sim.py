"""``tapearc drive status`` on media that need no tape drive (sim:, dir:): runs everywhere."""

from __future__ import annotations

import json

import pytest

from .conftest import tapearc

pytestmark = pytest.mark.no_tape


def test_drive_status_sim_blank_then_labeled(tmp_path):
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "v.img"
    src.write_bytes(bytes(range(256)) * 1000)
    tapearc("backup", str(src), "--media", spec)
    info = json.loads(tapearc("drive", "status", "--media", spec, "--json").stdout)
    assert info["backend"] == "sim" and info["tape"] is True
    assert info["state"] == "tapearc" and info["label"]["sequence"] == 1
    assert info["position"] == {"logical": 0, "file": 0, "record": 0}
    text = tapearc("drive", "status", "--media", spec).stdout
    assert "tapearc label: medium " + info["label"]["medium_uuid"] in text


def test_drive_status_dir_blank(tmp_path):
    spec = f"dir:{tmp_path / 'm'}"
    (tmp_path / "m").mkdir()
    info = json.loads(tapearc("drive", "status", "--media", spec, "--json").stdout)
    assert info["backend"] == "dir" and info["state"] == "blank"
    assert "blank tape" in tapearc("drive", "status", "--media", spec).stdout


def test_drive_status_missing_st_device_is_one_line():
    proc = tapearc("drive", "status", "--media", "/dev/nst97", check=False)
    assert proc.returncode == 10
    assert proc.stderr.splitlines()[0] == "tapearc: error: medium st:/dev/nst97: no such tape device /dev/nst97"
