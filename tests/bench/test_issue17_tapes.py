"""Where bench/issue17.py makes its simulated libraries: by default a new folder in /dev/shm when
it has room (a site's tape drives are devices of their own, not the volumes' disk), else the work
folder; ``work`` forces the work folder (the tapes' writes on the volumes' disk); any other value
is that folder. The benchmark itself is not run."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> dict[str, Any]:
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return runpy.run_path(str(ROOT / "bench" / "issue17.py"), run_name="issue17_probe")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_given_folders(bench: dict[str, Any], tmp_path: Path) -> None:
    assert bench["tapes_folder"]("work", 1 << 20) == (None, False)
    assert bench["tapes_folder"](str(tmp_path), 1 << 20) == (tmp_path, False)


def test_default_is_a_new_folder_in_dev_shm_when_it_has_room(bench: dict[str, Any]) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    free = shutil.disk_usage(shm).free
    folder, own = bench["tapes_folder"](None, 1 << 20)
    try:
        if free >= 4 * (1 << 20) + (1 << 30):
            assert own and folder is not None and folder.parent == shm and folder.is_dir()
        else:
            assert (folder, own) == (None, False)
    finally:
        if own and folder is not None:
            shutil.rmtree(folder)
    assert bench["tapes_folder"](None, 1 << 60) == (None, False)  # no room for an exabyte of tapes
