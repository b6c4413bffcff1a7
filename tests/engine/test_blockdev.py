"""Block devices as source and restore target, on loop devices (root only; skipped otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_volume


def _losetup_works() -> bool:
    return os.geteuid() == 0 and shutil.which("losetup") is not None and os.path.exists("/dev/loop-control")


pytestmark = pytest.mark.skipif(not _losetup_works(), reason="needs root and loop devices")


@pytest.fixture
def loopdev(tmp_path: Path) -> Iterator[object]:
    made: list[str] = []

    def make(size: int, data: bytes = b"", name: str = "lo") -> str:
        backing = tmp_path / f"{name}{len(made)}.img"
        with open(backing, "wb") as f:
            f.truncate(size)
            f.write(data)
        p = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"losetup failed: {p.stderr.strip()}")
        dev = p.stdout.strip()
        made.append(dev)
        return dev

    yield make
    for dev in made:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120)


def test_block_device_source_and_target(tmp_path: Path, loopdev) -> None:  # type: ignore[no-untyped-def]
    vol = tmp_path / "vol.img"
    data = make_volume(vol, "zero-runs")
    size = 4 * 1024 * 1024  # loop devices are whole sectors: pad the volume to 4 MiB
    data = data + bytes(size - len(data))
    src = loopdev(size, data)
    spec = f"sim:{tmp_path / 't.tap'}"
    p = tapearc("backup", src, "--media", spec, "--volume", "lv0")
    assert p.returncode == 0, p.stderr
    # a device that held other data: zero blocks must be written as zeros, not skipped
    dst = loopdev(size, b"\xff" * size)
    p = tapearc("restore", "--media", spec, "--to", dst)
    assert p.returncode == 4 and "not empty" in p.stderr  # refuses without --force
    p = tapearc("restore", "--media", spec, "--to", dst, "--force")
    assert p.returncode == 0, p.stderr
    with open(dst, "rb") as f:
        assert f.read(size) == data
    big = loopdev(2 * size)  # a larger, empty device is fine; what is past the volume is said
    p = tapearc("restore", "--media", spec, "--to", big)
    assert p.returncode == 0, p.stderr
    assert f"tapearc: warning: block device {big} holds {2 * size} bytes, the volume {size}: bytes {size}-" in p.stderr
    assert "were not written (they keep what they held before)" in p.stderr
    assert "block device" not in tapearc("restore", "--media", spec, "--to", dst, "--force").stderr  # same size
    with open(big, "rb") as f:
        assert f.read(size) == data


def test_target_device_too_small(tmp_path: Path, loopdev) -> None:  # type: ignore[no-untyped-def]
    vol = tmp_path / "vol.img"
    make_volume(vol, "random")  # 3 MiB
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(vol), "--media", spec).returncode == 0
    small = loopdev(1024 * 1024)
    p = tapearc("restore", "--media", spec, "--to", small, "--force")
    assert p.returncode == 5, p.stderr
    assert p.stderr.startswith("tapearc: error: ") and small in p.stderr and "Traceback" not in p.stderr
