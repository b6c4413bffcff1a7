"""The simulated autoloader (tapesim.library)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tapesim.drive import SimDrive, load_settings
from tapesim.library import (
    DriveInfo,
    Library,
    LibraryError,
    LibraryStatus,
    SlotInfo,
    create_library,
)

MiB = 1 << 20


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    return create_library(tmp_path / "lib", 4, 1 * MiB, early_warning=64 << 10)


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(LibraryError) as ei:
        fn(*args, **kwargs)
    assert ei.value.message and str(ei.value) == ei.value.message
    return ei.value.code


def test_create_layout(tmp_path):
    d = tmp_path / "lib"
    lib = create_library(d, 3, 2 * MiB, drives=2, max_record=256 << 10, barcode_prefix="XY")
    data = json.loads((d / "library.json").read_text())
    assert data["format"] == "tapesim-library" and data["version"] == 1
    assert (data["slots"], data["drives"]) == (3, 2)
    assert data["slot_contents"] == {"1": "XY001", "2": "XY002", "3": "XY003"}
    assert not data.get("drive_contents")
    for b in ("XY001", "XY002", "XY003"):
        img = d / "tapes" / f"{b}.tap"
        assert img.is_file() and img.stat().st_size == 0
        s = load_settings(img)
        assert (s.barcode, s.capacity, s.max_record) == (b, 2 * MiB, 256 << 10)
    assert not (d / "drive-0.tap").exists() and not (d / "drive-1.tap").exists()
    assert (lib.num_slots, lib.num_drives) == (3, 2)
    assert lib.status() == LibraryStatus(
        slots=[SlotInfo(1, "XY001"), SlotInfo(2, "XY002"), SlotInfo(3, "XY003")],
        drives=[DriveInfo(0, None, None), DriveInfo(1, None, None)],
    )


def test_create_refuses_existing_and_overwrite(tmp_path, lib):
    with SimDrive(lib.tape_path("TAP001")) as dr:
        dr.write(b"data")
    assert code_of(create_library, lib.path, 2, MiB) == "E200"
    assert os.path.getsize(lib.tape_path("TAP001")) > 0
    lib.load(1)
    lib2 = create_library(lib.path, 2, MiB, overwrite=True)
    assert [s.barcode for s in lib2.status().slots] == ["TAP001", "TAP002"]
    assert os.path.getsize(lib2.tape_path("TAP001")) == 0
    assert not os.path.lexists(lib2.drive_path(0))
    assert not os.path.exists(lib2.tape_path("TAP004"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"slots": 0},
        {"drives": 0},
        {"capacity": 0},
        {"barcode_prefix": "bad prefix"},
        {"barcode_prefix": "X" * 30},
        {"early_warning": 10 * MiB},
    ],
)
def test_create_bad_arguments(tmp_path, kwargs):
    args = {"slots": 2, "capacity": MiB} | kwargs
    with pytest.raises(ValueError):
        create_library(tmp_path / "lib", args.pop("slots"), args.pop("capacity"), **args)
    assert not (tmp_path / "lib" / "library.json").exists()


def test_open_non_library(tmp_path):
    assert code_of(Library, tmp_path) == "E200"
    assert code_of(Library, tmp_path / "missing") == "E200"
    (tmp_path / "library.json").write_text("{not json")
    assert code_of(Library, tmp_path) == "E200"
    (tmp_path / "library.json").write_text(json.dumps({"format": "other", "version": 1}))
    assert code_of(Library, tmp_path) == "E200"


def test_load_unload_and_simdrive(lib):
    d0 = lib.drive_path(0)
    assert d0 == os.path.join(lib.path, "drive-0.tap")
    with pytest.raises(OSError) as ei:
        SimDrive(d0)
    assert ei.value.errno == errno.ENOENT
    assert lib.load(2) == "TAP002"
    assert os.readlink(d0) == os.path.join("tapes", "TAP002.tap")
    assert os.readlink(d0 + ".tapesim") == os.path.join("tapes", "TAP002.tap.tapesim")
    st = lib.status()
    assert st.slots[1] == SlotInfo(2, None)
    assert st.drives == [DriveInfo(0, "TAP002", 2)]
    with SimDrive(d0) as dr:
        assert dr.barcode == "TAP002" and dr.capacity == MiB
        dr.write(b"hello tape")
    assert lib.unload() == 2
    assert not os.path.lexists(d0) and not os.path.lexists(d0 + ".tapesim")
    with pytest.raises(OSError) as ei:
        SimDrive(d0)
    assert ei.value.errno == errno.ENOENT
    assert lib.status().slots[1] == SlotInfo(2, "TAP002")
    # the data stayed on the tape: load it again elsewhere
    lib.load(2)
    with SimDrive(d0) as dr:
        assert dr.read(dr.max_record) == b"hello tape"
    assert code_of(lib.unload, 0, 1) == "E105"
    assert lib.unload() == 2


def test_unload_destinations(lib):
    lib.load(1)
    assert code_of(lib.unload, 0, 3) == "E105"
    assert lib.unload(0, None) == 1  # back to its source slot
    lib.load(1)
    lib.add_tape(1, "NEW001", MiB)  # someone filled slot 1 meanwhile
    lib.remove_tape(3)
    assert lib.unload() == 3  # source full: the first empty slot
    assert [s.barcode for s in lib.status().slots] == ["NEW001", "TAP002", "TAP001", "TAP004"]
    lib.load(1)
    lib.add_tape(1, "NEW002", MiB)
    assert code_of(lib.unload) == "E105"  # no empty slot at all
    lib.remove_tape(4)
    assert lib.unload(0, 4) == 4


def test_errors(tmp_path):
    lib = create_library(tmp_path / "lib", 3, MiB, drives=2)
    assert code_of(lib.load, 0) == "E101"
    assert code_of(lib.load, 4) == "E101"
    assert code_of(lib.load, 1, 2) == "E101"
    assert code_of(lib.load, 1, -1) == "E101"
    assert code_of(lib.unload, 2) == "E101"
    assert code_of(lib.unload, 0, 9) == "E101"
    assert code_of(lib.drive_path, 5) == "E101"
    assert code_of(lib.unload, 0) == "E104"
    lib.load(1, 0)
    assert code_of(lib.load, 1, 1) == "E102"
    assert code_of(lib.load, 2, 0) == "E103"
    lib.load(2, 1)
    assert code_of(lib.unload, 1, 3) == "E105"
    assert code_of(lib.add_tape, 7, "X") == "E101"
    assert code_of(lib.add_tape, 3, "X") == "E105"
    assert code_of(lib.remove_tape, 1) == "E102"
    assert code_of(lib.remove_tape, 0) == "E101"
    # nothing changed by the failures
    assert lib.status().drives == [DriveInfo(0, "TAP001", 1), DriveInfo(1, "TAP002", 2)]


def test_busy_drive(lib):
    lib.load(1)
    dr = SimDrive(lib.drive_path(0))
    try:
        dr.write(b"x")
        with pytest.raises(LibraryError) as caught:
            lib.unload()
        err = caught.value
        assert err.code == "E200" and "busy" in err.message
        assert lib.status().drives[0].barcode == "TAP001"
        assert os.path.islink(lib.drive_path(0))
    finally:
        dr.close()
    # the image opened through its own path holds the same lock
    with SimDrive(lib.tape_path("TAP001"), readonly=True):
        assert code_of(lib.unload) == "E200"
    assert lib.unload() == 1


def test_import_export(lib):
    lib.load(1)
    with SimDrive(lib.drive_path(0)) as dr:
        dr.write(b"keep me")
    lib.unload()
    assert lib.remove_tape(1) == "TAP001"
    assert lib.status().slots[0] == SlotInfo(1, None)
    assert os.path.exists(lib.tape_path("TAP001"))  # images never move
    assert code_of(lib.load, 1) == "E102"
    lib.add_tape(1, "TAP001")  # re-import: content kept
    lib.load(1)
    with SimDrive(lib.drive_path(0)) as dr:
        assert dr.read(dr.max_record) == b"keep me"
    lib.unload()
    lib.remove_tape(2)
    lib.add_tape(2, "BLANK_9-x", 2 * MiB, early_warning=1000)
    s = load_settings(lib.tape_path("BLANK_9-x"))
    assert (s.barcode, s.capacity, s.early_warning) == ("BLANK_9-x", 2 * MiB, 1000)
    lib.remove_tape(3)
    assert code_of(lib.add_tape, 3, "TAP004") == "E200"  # already in the library
    for bad in ("", "-", "has space", "x" * 33, "sl/ash", "é"):
        assert code_of(lib.add_tape, 3, bad) == "E200"


def test_protect_through_drive_link(lib):
    from tapesim.cli import main

    lib.load(1)
    with pytest.raises(SystemExit) as ei:
        main(["protect", lib.drive_path(0), "--on"])
    assert ei.value.code == 0
    assert os.path.islink(lib.drive_path(0) + ".tapesim")  # still a link
    assert load_settings(lib.tape_path("TAP001")).write_protected
    with pytest.raises(OSError) as e2:
        SimDrive(lib.drive_path(0))
    assert e2.value.errno == errno.EROFS


def test_several_library_objects(lib):
    other = Library(lib.path)
    lib.load(3)
    assert other.status().drives[0] == DriveInfo(0, "TAP003", 3)
    assert code_of(other.load, 1) == "E103"
    other.unload()
    assert lib.status().drives[0].barcode is None


_WORKER = textwrap.dedent(
    """
    import random, sys
    from tapesim.library import Library, LibraryError
    lib = Library(sys.argv[1]); drive = int(sys.argv[2]); rnd = random.Random(drive)
    done = 0
    for _ in range(40):
        try:
            if lib.status().drives[drive].barcode is None:
                lib.load(rnd.randint(1, lib.num_slots), drive)
            else:
                lib.unload(drive, rnd.choice([None, rnd.randint(1, lib.num_slots)]))
            done += 1
        except LibraryError as e:
            assert e.code in ("E102", "E103", "E104", "E105"), (e.code, e.message)
    print(done)
    """
)


def test_concurrent_processes(tmp_path):
    lib = create_library(tmp_path / "lib", 6, MiB, drives=3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, lib.path, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert int(out) > 0
    st = lib.status()
    where = [s.barcode for s in st.slots if s.barcode] + [d.barcode for d in st.drives if d.barcode]
    assert sorted(where) == [f"TAP00{k}" for k in range(1, 7)]  # every tape exactly once
    for d in st.drives:
        link = lib.drive_path(d.number)
        if d.barcode is None:
            assert not os.path.lexists(link)
        else:
            assert os.readlink(link) == os.path.join("tapes", f"{d.barcode}.tap")
            assert d.source_slot is not None
