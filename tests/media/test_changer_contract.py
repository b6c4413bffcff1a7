"""The changer contract (tapearc/media/changer.py), one suite for every backend that runs
unattended: the simulated library, TALP/1 over a pty and over socket:// (against hw-sim's
device side), mtx with a stateful fake mtx, and — when TAPEARC_TEST_CHANGER=/dev/sgN is
set — a real SCSI changer through mtx (marked ``hardware``; it moves media: use a library
whose tapes may be moved, e.g. the lab's STLAB_CHANGER).

Every backend starts with its drives empty, at least two full slots and (except possibly on
hardware) one empty slot. Tests read the inventory and pick slots from it, so they do not
depend on the number of slots or on barcodes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapearc.media.changer import Changer, ChangerError, ChangerStatus
from tapearc.media.changers import open_changer

HW_CHANGER = os.environ.get("TAPEARC_TEST_CHANGER")
DATA = Path(__file__).parent / "data" / "mtx"


def _sim_library(tmp_path: Path) -> Path:
    library = pytest.importorskip("tapesim.library")
    d = tmp_path / "lib"
    library.create_library(d, 4, 1 << 20, drives=2)
    library.Library(d).remove_tape(4)  # one empty slot
    return d


def _fake_mtx(tmp_path: Path) -> str:
    state = {
        "device": "/dev/sg7",
        "slots": {"1": "STL001L8", "2": "STL002L8", "3": "STL003L8", "4": None},
        "drives": {"0": None, "1": None},
    }
    path = tmp_path / "mtx"
    path.write_text(f"#!{sys.executable}\n" + (DATA / "fake_mtx_stateful.py").read_text())
    path.chmod(0o755)
    (tmp_path / "mtx.json").write_text(json.dumps(state))
    return str(path)


@pytest.fixture(
    params=[
        "sim",
        "serial-pty",
        "serial-tcp",
        "mtx-fake",
        pytest.param(
            "mtx-hw",
            marks=[
                pytest.mark.hardware,
                pytest.mark.skipif(not HW_CHANGER, reason="set TAPEARC_TEST_CHANGER=/dev/sgN to run on a real changer"),
            ],
        ),
    ]
)
def changer(request, tmp_path) -> Iterator[Changer]:
    kind = request.param
    stop = None
    if kind == "sim":
        ch = open_changer(f"sim:{_sim_library(tmp_path)}")
    elif kind.startswith("serial-"):
        autoloader = pytest.importorskip("tapesim.autoloader")
        lib = _sim_library(tmp_path)
        if kind == "serial-pty":
            path, stop = autoloader.serve_pty(lib)
            ch = open_changer(f"serial:{path}")
        else:
            port, stop = autoloader.serve_tcp(lib, "127.0.0.1", 0)
            ch = open_changer(f"serial:socket://127.0.0.1:{port}")
    elif kind == "mtx-fake":
        from tapearc.media.changers.mtx import MtxChanger

        ch = MtxChanger("/dev/sg7", mtx=_fake_mtx(tmp_path))
    else:
        ch = open_changer(f"mtx:{HW_CHANGER}")
        for d in ch.status().drives:  # start with empty drives
            if d.full:
                ch.unload(d.number)
    try:
        yield ch
    finally:
        ch.close()
        if stop is not None:
            stop()
        if kind == "mtx-hw":  # leave the library with its drives empty (a test may have closed ch)
            again = open_changer(f"mtx:{HW_CHANGER}")
            for d in again.status().drives:
                if d.full:
                    again.unload(d.number)
            again.close()


def full_slots(st: ChangerStatus) -> list[int]:
    return [s.number for s in st.slots if s.full and not s.import_export]


def empty_slots(st: ChangerStatus) -> list[int]:
    return [s.number for s in st.slots if not s.full and not s.import_export]


def test_status_shape(changer):
    assert isinstance(changer, Changer)
    assert isinstance(changer.name, str) and ":" in changer.name
    st = changer.status()
    assert isinstance(st, ChangerStatus)
    assert [s.number for s in st.slots] == sorted(s.number for s in st.slots)
    assert min(s.number for s in st.slots) == 1
    assert next(d.number for d in st.drives) == 0
    assert all(not d.full and d.barcode is None and d.source_slot is None for d in st.drives)
    assert all(s.barcode is None for s in st.slots if not s.full)
    assert len(full_slots(st)) >= 2
    for s in st.slots:
        if s.full and s.barcode:
            assert st.slot_of(s.barcode) == s.number


def test_load_and_unload_back(changer):
    before = changer.status()
    slot = full_slots(before)[0]
    barcode = before.slots[slot - 1].barcode
    changer.load(slot, 0)
    st = changer.status()
    assert st.drives[0].full and st.drives[0].barcode == barcode and st.drives[0].source_slot == slot
    assert not st.slots[slot - 1].full
    if barcode:
        assert st.slot_of(barcode) is None
    changer.unload(0)  # default: where it came from
    assert changer.status() == before


def test_unload_into_a_given_slot(changer):
    st = changer.status()
    slot = full_slots(st)[0]
    others = [k for k in empty_slots(st) if k != slot]
    if not others:
        pytest.skip("no second empty slot")
    barcode = st.slots[slot - 1].barcode
    changer.load(slot, 0)
    changer.unload(0, others[0])
    st = changer.status()
    assert st.slots[others[0] - 1].full and st.slots[others[0] - 1].barcode == barcode
    assert not st.slots[slot - 1].full and not st.drives[0].full
    changer.load(others[0], 0)  # put it back
    changer.unload(0, slot)


def test_second_drive(changer):
    st = changer.status()
    if len(st.drives) < 2:
        pytest.skip("one drive")
    a, b = full_slots(st)[:2]
    changer.load(a, 0)
    changer.load(b, 1)
    st2 = changer.status()
    assert [(d.full, d.source_slot) for d in st2.drives[:2]] == [(True, a), (True, b)]
    changer.unload(1)
    changer.unload(0)
    assert changer.status() == st


def test_load_from_an_empty_slot(changer):
    st = changer.status()
    empty = empty_slots(st)
    if not empty:
        slot = full_slots(st)[0]
        changer.load(slot, 0)  # its slot is empty now; drive 0 is full, so try drive 1 or skip
        if len(st.drives) < 2:
            changer.unload(0)
            pytest.skip("no empty slot and one drive")
        with pytest.raises(ChangerError):
            changer.load(slot, 1)
        changer.unload(0)
        return
    with pytest.raises(ChangerError):
        changer.load(empty[0], 0)
    assert changer.status() == st


def test_load_into_a_full_drive(changer):
    st = changer.status()
    a, b = full_slots(st)[:2]
    changer.load(a, 0)
    with pytest.raises(ChangerError):
        changer.load(b, 0)
    st2 = changer.status()
    assert st2.drives[0].source_slot == a and st2.slots[b - 1].full
    changer.unload(0)


def test_unload_an_empty_drive(changer):
    st = changer.status()
    with pytest.raises(ChangerError):
        changer.unload(0)
    with pytest.raises(ChangerError):
        changer.unload(0, (empty_slots(st) or [1])[0])
    assert changer.status() == st


def test_unload_into_a_full_slot(changer):
    st = changer.status()
    a, b = full_slots(st)[:2]
    changer.load(a, 0)
    with pytest.raises(ChangerError):
        changer.unload(0, b)
    assert changer.status().drives[0].full
    changer.unload(0)


def test_no_such_slot_or_drive(changer):
    st = changer.status()
    n = max(s.number for s in st.slots)
    with pytest.raises(ChangerError):
        changer.load(n + 1, 0)
    with pytest.raises(ChangerError):
        changer.load(full_slots(st)[0], len(st.drives))
    assert changer.status() == st


def test_errors_name_the_changer(changer):
    st = changer.status()
    with pytest.raises(ChangerError) as info:
        changer.load(max(s.number for s in st.slots) + 1, 0)
    assert changer.name in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 17


def test_close_is_idempotent(changer):
    changer.close()
    changer.close()
