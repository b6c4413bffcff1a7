"""Two backups at once on two real st drives of one SCSI changer, one catalog.

Needs TAPEARC_TEST_TAPE (drive 0 of the changer, e.g. /dev/nst0), TAPEARC_TEST_TAPE2 (drive 1,
e.g. /dev/nst1) and TAPEARC_TEST_CHANGER (the changer's sg node; in the stlab VM with
``STLAB_TAPES=2 STLAB_CHANGER=S`` it is $STLAB_CHANGER_DEV, the drives start empty and mtx
drive i is /dev/nst<i>). DESTRUCTIVE: the tapes of the first two full slots are written.

Each of the two jobs loads its own tape from its own slot into its own drive through the
changer (tapearc's mtx changer, both moves asked for at the same moment: the changer has to
take the two at once, or one after the other) and then runs ``tapearc backup`` on that drive;
the two backup processes run at the same time and write into one SQLite catalog. Both
volumes restore byte-identical from their drives, the catalog holds both generations,
complete, and both tapes go back to their slots at once. (The moves are the test's: a
one-drive ``tapearc backup --media /dev/nst1 --changer mtx:...`` loads into the changer's
drive 0, as it cannot tell which of the changer's drives /dev/nst1 is.)
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


def test_two_backups_at_once_on_two_drives_of_one_changer(tape: str, tmp_path: Path) -> None:
    drives = (tape, str(TAPE2))
    _empty_drives()
    st = _changer().status()
    if len(st.drives) < 2:
        pytest.skip(f"the changer has {len(st.drives)} drive(s)")
    slots = [s.number for s in st.slots if s.full and not s.import_export][:2]
    assert len(slots) == 2, f"two full slots needed: {st}"

    # 1. both loads asked for at once (threads: each runs its own mtx process)
    _both_at_once(slots, load=True)
    after = {b.number: b for b in _changer().status().drives}
    assert after[0].full and after[1].full, after
    assert after[0].source_slot in (slots[0], None) and after[1].source_slot in (slots[1], None), after

    # 2. two backup processes at once, one per drive, one catalog
    tape_mb = int(os.environ.get("STLAB_TAPE_MB", "0") or 0)
    size = int((tape_mb or 64) * 0.4 * 1024 * 1024) // 4096 * 4096  # well within one tape
    cat = tmp_path / "catalog.sqlite"
    srcs, datas, procs = [], [], []
    for i in range(2):
        src = tmp_path / f"host{i}.img"
        data = random.Random(20 + i).randbytes(size)
        src.write_bytes(data)
        srcs.append(src)
        datas.append(data)
    t0 = time.monotonic()
    for src, dev in zip(srcs, drives, strict=True):
        cmd = [sys.executable, "-m", "tapearc", "backup", str(src), "--media", dev, "--chunk-size", "1M", "--json"]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(cat), cwd="/tmp"
            )
        )
    outs = [p.communicate(timeout=900) for p in procs]
    print(f"two backups of {size >> 20} MiB at once: {time.monotonic() - t0:.1f} s")
    for p, (out, err), dev in zip(procs, outs, drives, strict=True):
        assert p.returncode == 0, f"backup on {dev} -> {p.returncode}\n{out}\n{err}"
    results = [json.loads(out) for out, _ in outs]
    assert all(r["complete"] and r["kind"] == "full" for r in results), results

    # 3. the catalog holds both generations, complete; each drive restores its own volume
    with sqlite3.connect(cat) as db:
        rows = db.execute(
            "SELECT v.name, g.number, g.state FROM generations g JOIN volumes v ON v.id = g.volume_id ORDER BY v.name"
        ).fetchall()
    assert rows == [("host0.img", 1, "complete"), ("host1.img", 1, "complete")] or (
        len(rows) == 2 and all(r[1:] == (1, "complete") for r in rows)
    ), rows
    for i, dev in enumerate(drives):
        out_path = tmp_path / f"restored{i}.img"
        tapearc("restore", "--media", dev, "--to", str(out_path), catalog=cat)
        assert out_path.read_bytes() == datas[i], f"the volume restored from {dev} differs"

    # 4. both tapes back to their slots at once
    _both_at_once(slots, load=False)
    st = _changer().status()
    assert not any(b.full for b in st.drives) and all(s.full for s in st.slots if s.number in slots), st
