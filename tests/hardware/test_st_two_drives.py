"""Two backups at once on two real st drives of one SCSI changer, one catalog.

Needs TAPEARC_TEST_TAPE (drive 0 of the changer, e.g. /dev/nst0), TAPEARC_TEST_TAPE2 (drive 1,
e.g. /dev/nst1) and TAPEARC_TEST_CHANGER (the changer's sg node; in the stlab VM with
``STLAB_TAPES=2 STLAB_CHANGER=S`` it is $STLAB_CHANGER_DEV, the drives start empty and mtx
drive i is /dev/nst<i>). DESTRUCTIVE: the tapes of the first two full slots are written.

Two ``tapearc backup`` processes run at the same time, one per drive, each loading its own tape
through the changer: ``--media /dev/nst<i> --changer mtx:DEV --changer-drive <i>``, one SQLite
catalog (its leases: each process holds ``drive:<library>:<i>``, and the changer's lease
serialises the two loads). Each volume restores byte-identical from its drive
(``restore --changer-drive i``), both at once with ``restore --media /dev/nst0 --media
/dev/nst1 --changer mtx:DEV --volume A --volume B --drives 2``; the catalog holds both
generations, complete; a ``--changer-drive`` the changer does not have is one line (exit 2);
both tapes go back to their slots at once (two mtx processes asked at the same moment).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.hardware.conftest import env_for, tapearc

CHANGER = os.environ.get("TAPEARC_TEST_CHANGER") or os.environ.get("STLAB_CHANGER_DEV")
TAPE2 = os.environ.get("TAPEARC_TEST_TAPE2")
pytestmark = [
    pytest.mark.skipif(not CHANGER, reason="TAPEARC_TEST_CHANGER (a changer's sg node) not set"),
    pytest.mark.skipif(not TAPE2, reason="TAPEARC_TEST_TAPE2 (the changer's second drive, e.g. /dev/nst1) not set"),
]


def _changer():  # type: ignore[no-untyped-def]
    from tapearc.media.changers.mtx import MtxChanger

    return MtxChanger(str(CHANGER))


def _empty_drives() -> None:
    """Unload whatever an earlier test left in a drive, back to its slot."""
    ch = _changer()
    for bay in ch.status().drives:
        if bay.full:
            ch.unload(bay.number)


def _move(slot: int, drive: int, log: dict[int, tuple[float, float, str | None]], *, load: bool) -> None:
    t0 = time.monotonic()
    err = None
    try:
        if load:
            _changer().load(slot, drive)
        else:
            _changer().unload(drive, slot)
    except Exception as e:  # the assertion below names it
        err = f"{type(e).__name__}: {e}"
    log[drive] = (t0, time.monotonic(), err)


def _both_at_once(slots: list[int], *, load: bool) -> None:
    """Slot slots[i] into (or out of) drive i, the two moves asked for at the same moment
    (threads: each runs its own mtx process); prints how long each took and their overlap."""
    log: dict[int, tuple[float, float, str | None]] = {}
    threads = [threading.Thread(target=_move, args=(slots[i], i, log), kwargs={"load": load}) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    overlap = min(log[0][1], log[1][1]) - max(log[0][0], log[1][0])
    what = "loads" if load else "unloads"
    print(
        f"\nmtx {what}: drive 0 {log[0][1] - log[0][0]:.1f} s, drive 1 {log[1][1] - log[1][0]:.1f} s, overlap {overlap:.1f} s"
    )
    assert log[0][2] is None and log[1][2] is None, f"{what} failed: {log}"


def _backups(drives: tuple[str, str], srcs: list[Path], cat: Path) -> list[dict[str, object]]:
    """``tapearc backup`` of srcs[i] onto drive i, the two processes started together; each
    loads its own tape (``--changer-drive i``)."""
    procs = []
    t0 = time.monotonic()
    for i, (src, dev) in enumerate(zip(srcs, drives, strict=True)):
        cmd = [sys.executable, "-m", "tapearc", "backup", str(src), "--media", dev, "--chunk-size", "1M"]
        cmd += ["--changer", f"mtx:{CHANGER}", "--changer-drive", str(i), "--json"]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(cat), cwd="/tmp"
            )
        )
    outs = [p.communicate(timeout=900) for p in procs]
    print(f"two backups of {srcs[0].stat().st_size >> 20} MiB at once, loads included: {time.monotonic() - t0:.1f} s")
    for p, (out, err), dev in zip(procs, outs, drives, strict=True):
        assert p.returncode == 0, f"backup on {dev} -> {p.returncode}\n{out}\n{err}"
        if err.strip():
            print(f"backup on {dev}, stderr: {err.strip()}")
    return [json.loads(out) for out, _ in outs]


def test_two_backups_at_once_on_two_drives_of_one_changer(tape: str, tmp_path: Path) -> None:
    drives = (tape, str(TAPE2))
    _empty_drives()
    st = _changer().status()
    if len(st.drives) < 2:
        pytest.skip(f"the changer has {len(st.drives)} drive(s)")
    slots = [s.number for s in st.slots if s.full and not s.import_export][:2]
    assert len(slots) == 2, f"two full slots needed: {st}"
    cat = tmp_path / "catalog.sqlite"

    # 0. a drive the changer does not have: one line naming the changer and its drives
    bad = tapearc("list", "--media", tape, "--changer", f"mtx:{CHANGER}", "--changer-drive", "7", check=False)
    assert bad.returncode == 2 and "has no drive 7 (its drives: 0, 1" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr

    # 1. two backup processes at once, one per drive, each loading its tape, one catalog
    tape_mb = int(os.environ.get("STLAB_TAPE_MB", "0") or 0)
    size = int((tape_mb or 64) * 0.4 * 1024 * 1024) // 4096 * 4096  # well within one tape
    srcs, datas = [], []
    for i in range(2):
        src = tmp_path / f"host{i}.img"
        data = random.Random(20 + i).randbytes(size)
        src.write_bytes(data)
        srcs.append(src)
        datas.append(data)
    results = _backups(drives, srcs, cat)
    assert all(r["complete"] and r["kind"] == "full" for r in results), results
    after = {b.number: b for b in _changer().status().drives}
    assert after[0].full and after[1].full, after  # each process loaded its own drive
    print(f"drives after the backups: {after}")

    # 2. the catalog holds both generations, complete; each drive restores its own volume
    with sqlite3.connect(cat) as db:
        rows = db.execute(
            "SELECT v.name, g.number, g.state FROM generations g JOIN volumes v ON v.id = g.volume_id ORDER BY v.name"
        ).fetchall()
        left = db.execute("SELECT resource FROM leases").fetchall()
    assert rows == [("host0.img", 1, "complete"), ("host1.img", 1, "complete")], rows
    assert left == [], f"leases left behind: {left}"
    for i, dev in enumerate(drives):
        out_path = tmp_path / f"restored{i}.img"
        t0 = time.monotonic()
        tapearc(
            "restore", "--media", dev, "--changer", f"mtx:{CHANGER}", "--changer-drive", str(i),
            "--volume", srcs[i].name, "--to", str(out_path), catalog=cat,
        )  # fmt: skip
        print(f"restore from drive {i}: {time.monotonic() - t0:.1f} s")
        assert out_path.read_bytes() == datas[i], f"the volume restored from {dev} differs"

    # 3. both volumes at once on both drives (the drives listed in the changer's order)
    folder = tmp_path / "both"
    folder.mkdir()
    t0 = time.monotonic()
    p = tapearc(
        "restore", "--media", drives[0], "--media", drives[1], "--changer", f"mtx:{CHANGER}",
        "--volume", srcs[0].name, "--volume", srcs[1].name, "--to", str(folder), "--drives", "2", "--json",
        catalog=cat,
    )  # fmt: skip
    print(f"restore of both volumes on both drives: {time.monotonic() - t0:.1f} s")
    doc = json.loads(p.stdout)
    print(f"drives used: {[(v['volume'], v.get('drive')) for v in doc['volumes']]}")
    for i in range(2):
        assert (folder / f"{srcs[i].name}.img").read_bytes() == datas[i], f"{srcs[i].name} differs (both drives)"

    # 4. both tapes back to their slots at once (the slot each came from: the two processes
    # loaded the first full slot each found, in whichever order they got the changer)
    bays = {b.number: b for b in _changer().status().drives}
    assert bays[0].full and bays[1].full, bays
    home = [bays[i].source_slot or slots[i] for i in (0, 1)]
    assert sorted(home) == sorted(slots), (home, slots)
    _both_at_once(home, load=False)
    st = _changer().status()
    assert not any(b.full for b in st.drives) and all(s.full for s in st.slots if s.number in slots), st
