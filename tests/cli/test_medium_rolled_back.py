"""A medium put back to an older state (an older image or dump of it restored, a tape written
over from some tape file on by another program): the catalog knows tape files the medium no
longer holds. A backup appending to it forgets them first, with a warning, so its incremental
never takes a vanished generation as its base (before: it did, and its restore gave older data
for the blocks that generation had changed, with exit 0). A restore keeps them known and says
what is missing (tests/cli/test_cli_restore_honest.py: exit 23/24)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KiB = 1024


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120)


def _save(media: Path, to: Path) -> None:
    if media.is_dir():
        shutil.copytree(media, to)
    else:
        shutil.copy(media, to)
        shutil.copy(f"{media}.tapesim", f"{to}.tapesim")


def _put_back(saved: Path, media: Path) -> None:
    if saved.is_dir():
        shutil.rmtree(media)
        shutil.copytree(saved, media)
    else:
        shutil.copy(saved, media)
        shutil.copy(f"{saved}.tapesim", f"{media}.tapesim")
        Path(f"{media}.tapesim-index").unlink(missing_ok=True)


@pytest.mark.parametrize("kind", ["sim", "dir"])
def test_an_incremental_on_a_medium_put_back_never_builds_on_a_vanished_generation(tmp_path: Path, kind: str) -> None:
    vol = tmp_path / "v.img"
    vol.write_bytes(os.urandom(3 * 1024 * KiB))
    media = tmp_path / ("m" if kind == "dir" else "a.tap")
    spec = f"{kind}:{media}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    _save(media, tmp_path / "saved")  # the medium holding generation 1 only
    with vol.open("r+b") as f:
        f.write(os.urandom(100 * KiB))  # generation 2 changes blocks 0-1
    for _ in range(2):
        assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    _put_back(tmp_path / "saved", media)
    p = tapearc("backup", str(vol), "--media", spec, "--json")
    assert p.returncode == 0, p.stderr
    warning = [ln for ln in p.stderr.splitlines() if ln.startswith("tapearc: warning:")]
    assert warning and "no longer holds what the catalog knew there" in warning[0], p.stderr
    assert "tape file 2 (volume 'v.img' generation 2)" in warning[0]
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", spec, "--volume", "v.img", "--to", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == vol.read_bytes()
