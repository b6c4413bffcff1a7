"""A backup larger than one tape spans media on a real st drive, tapes changed by mtx.

Needs TAPEARC_TEST_TAPE (the drive, e.g. /dev/nst0) and TAPEARC_TEST_CHANGER (the changer's sg
node; in the stlab VM with STLAB_CHANGER=S it is $STLAB_CHANGER_DEV, and the drives start
empty). DESTRUCTIVE: every tape in the changer may be written.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from tests.hardware.conftest import tapearc

CHANGER = os.environ.get("TAPEARC_TEST_CHANGER") or os.environ.get("STLAB_CHANGER_DEV")
pytestmark = pytest.mark.skipif(not CHANGER, reason="TAPEARC_TEST_CHANGER (a changer's sg node) not set")


def mtx_status() -> str:
    return subprocess.run(["mtx", "-f", str(CHANGER), "status"], capture_output=True, text=True, timeout=300).stdout


def test_backup_spans_tapes_through_mtx_and_restores(tape: str, tmp_path: Path) -> None:
    tape_mb = int(os.environ.get("STLAB_TAPE_MB", "0") or 0)
    size = int((tape_mb or 64) * 2.2 * 1024 * 1024)  # more than two tapes
    rng = random.Random(11)
    src = tmp_path / "vol.img"
    data = rng.randbytes(size)
    src.write_bytes(data)
    cat = tmp_path / "catalog.sqlite"
    p = tapearc(
        "backup",
        str(src),
        "--media",
        tape,
        "--changer",
        f"mtx:{CHANGER}",
        "--chunk-size",
        "2M",
        "--json",
        catalog=cat,
    )
    res = json.loads(p.stdout)
    assert res["complete"] and len(res["parts"]) >= 2, res
    assert [x["sequence"] for x in res["parts"]] == list(range(1, len(res["parts"]) + 1))
    assert any(int(w["record_in_chunk"]) > 0 for w in res["early_warnings"]), res["early_warnings"]
    status = mtx_status()
    assert "Data Transfer Element 0:Full" in status

    p = tapearc("plan", "--media", tape, "--changer", f"mtx:{CHANGER}", "--json", catalog=cat)
    plan = json.loads(p.stdout)
    assert [m["sequence"] for m in plan["media"]] == list(range(1, len(res["parts"]) + 1))

    out = tmp_path / "out.img"
    tapearc("restore", "--media", tape, "--changer", f"mtx:{CHANGER}", "--to", str(out), catalog=cat)
    assert out.read_bytes() == data
    # the catalog lost: restore learns the set's media through the changer
    cat.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(cat) + suffix).unlink(missing_ok=True)
    out2 = tmp_path / "out2.img"
    tapearc("restore", "--media", tape, "--changer", f"mtx:{CHANGER}", "--to", str(out2), catalog=cat)
    assert out2.read_bytes() == data
