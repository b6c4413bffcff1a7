"""The library commands of tapesim: library, library-status, load, unload (run as subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tapesim.drive import SimDrive, load_settings
from tapesim.library import Library


def tapesim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tapesim", *args], capture_output=True, text=True, timeout=60)


def ok(*args: str) -> str:
    r = tapesim(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def fails(*args: str, needle: str) -> None:
    r = tapesim(*args)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_library_commands(tmp_path: Path):
    d = str(tmp_path / "lib")
    out = ok(
        "library",
        d,
        "--slots",
        "3",
        "--capacity",
        "2M",
        "--drives",
        "2",
        "--early-warning",
        "100K",
        "--max-record",
        "64K",
        "--barcode-prefix",
        "LTO",
    )
    assert "3 slots" in out and "LTO001" in out
    s = load_settings(os.path.join(d, "tapes", "LTO002.tap"))
    assert (s.capacity, s.early_warning, s.max_record, s.barcode) == (2 << 20, 100 << 10, 64 << 10, "LTO002")
    assert "loaded LTO002" in ok("load", d, "2", "--drive", "1")
    with SimDrive(os.path.join(d, "drive-1.tap")) as dr:
        assert dr.barcode == "LTO002"
    text = ok("library-status", d)
    assert "slot 2: empty" in text and "drive 1: LTO002 (from slot 2)" in text and "drive 0: empty" in text
    data = json.loads(ok("library-status", d, "--json"))
    assert data["slots"][1] == {"number": 2, "barcode": None}
    assert data["drives"][1] == {"number": 1, "barcode": "LTO002", "source_slot": 2}
    fails("load", d, "1", "--drive", "1", needle="drive 1 is full")
    fails("load", d, "2", needle="slot 2 is empty")
    fails("load", d, "7", needle="no slot 7")
    fails("load", d, "1", "--drive", "2", needle="no drive 2")
    fails("unload", d, needle="drive 0 is empty")
    fails("unload", d, "--drive", "1", "--slot", "1", needle="slot 1 is full")
    dr = SimDrive(os.path.join(d, "drive-1.tap"))
    try:
        fails("unload", d, "--drive", "1", needle="busy")
    finally:
        dr.close()
    assert "into slot 2" in ok("unload", d, "--drive", "1")
    assert [s.barcode for s in Library(d).status().slots] == ["LTO001", "LTO002", "LTO003"]


def test_library_create_errors(tmp_path: Path):
    d = str(tmp_path / "lib")
    ok("library", d, "--slots", "2", "--capacity", "1M")
    fails("library", d, "--slots", "2", "--capacity", "1M", needle="already holds a library")
    assert "4 slots" in ok("library", d, "--slots", "4", "--capacity", "1M", "--force")
    fails("library", str(tmp_path / "l2"), "--slots", "0", "--capacity", "1M", needle="slots")
    fails("library", str(tmp_path / "l2"), "--slots", "2", "--capacity", "lots", needle="invalid size")
    fails(
        "library",
        str(tmp_path / "l2"),
        "--slots",
        "2",
        "--capacity",
        "1M",
        "--barcode-prefix",
        "a b",
        needle="invalid barcode",
    )
    (tmp_path / "file").write_text("x")
    fails("library", str(tmp_path / "file"), "--slots", "2", "--capacity", "1M", needle="not a folder")


@pytest.mark.parametrize("cmd", [["library-status"], ["load", "1"], ["unload"]])
def test_not_a_library(tmp_path: Path, cmd):
    fails(cmd[0], str(tmp_path / "nope"), *cmd[1:], needle="no such library")
    fails(cmd[0], str(tmp_path), *cmd[1:], needle="not a tapesim library")
