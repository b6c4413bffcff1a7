"""Hardware tests: a real st device named by TAPEARC_TEST_TAPE (e.g. /dev/nst0). DESTRUCTIVE.

Every test here is marked ``hardware`` and skipped unless TAPEARC_TEST_TAPE is set, except the
ones marked ``no_tape`` (simulator stand-ins, which always run). Commands run as
``python3 -m tapearc`` (console scripts do not run in the stlab VM) with this checkout first on
PYTHONPATH. In the stlab VM (STLAB_TAPE_MB set, tgtadm present) the tests can also make the
drive empty or the tape write-protected through tgt (``lab`` fixture).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_tape: a hardware-suite test that needs no tape device")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="TAPEARC_TEST_TAPE not set (hardware test, destructive)")
    for item in items:
        if here not in Path(str(item.fspath)).parents or item.get_closest_marker("no_tape"):
            continue
        item.add_marker(pytest.mark.hardware)
        if not os.environ.get("TAPEARC_TEST_TAPE"):
            item.add_marker(skip)


@pytest.fixture
def tape() -> str:
    return os.environ["TAPEARC_TEST_TAPE"]


def env_for(catalog: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if catalog is not None:
        env["TAPEARC_CATALOG"] = str(catalog)
    return env


def tapearc(*args: str, catalog: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python3 -m tapearc ARGS`` (``drive ...`` through tapearc.cli.drive_cmd)."""
    if args and args[0] == "drive":
        cmd = [sys.executable, "-m", "tapearc.cli.drive_cmd", *args[1:]]
    else:
        cmd = [sys.executable, "-m", "tapearc", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env_for(catalog), cwd="/tmp", timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def mt(dev: str, *args: str) -> str:
    exe = shutil.which("mt-st") or shutil.which("mt")
    if exe is None:
        pytest.skip("mt-st is not installed")
    proc = subprocess.run([exe, "-f", dev, *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"mt {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def mt_tell(dev: str) -> int:
    m = re.search(r"At block (\d+)", mt(dev, "tell"))
    assert m, "mt tell printed no block"
    return int(m.group(1))


def mt_status(dev: str) -> dict[str, object]:
    out = mt(dev, "status")
    f = re.search(r"File number=(-?\d+), block number=(-?\d+)", out)
    assert f, out
    bits = out.split("General status bits on", 1)[1].splitlines()[1].split() if "General status bits on" in out else []
    return {"file": int(f.group(1)), "block": int(f.group(2)), "bits": bits, "text": out}


@dataclass
class Lab:
    """The stlab VM's tgt target: drive nstN is LUN N+1 of target 1."""

    lun: int

    def _update(self, params: str) -> None:
        subprocess.run(
            [
                "tgtadm",
                "--lld",
                "iscsi",
                "--mode",
                "logicalunit",
                "--op",
                "update",
                "--tid",
                "1",
                "--lun",
                str(self.lun),
                "--params",
                params,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def write_protect(self, on: bool) -> None:
        self._update(f"readonly={1 if on else 0}")

    def online(self, on: bool) -> None:
        self._update(f"online={1 if on else 0}")


@pytest.fixture
def lab(tape: str) -> Lab:
    m = re.search(r"nst(\d+)$", tape)
    if not (os.environ.get("STLAB_TAPE_MB") and shutil.which("tgtadm") and m):
        pytest.skip("needs the stlab VM (tgtadm) to change the drive's state")
    return Lab(lun=int(m.group(1)) + 1)


def blank_tape(dev: str) -> None:
    """Make the tape blank (end of data at the beginning): a short erase, or in the stlab VM
    (tgt has no ERASE) a fresh image written over the old one."""
    from tapearc.media import mtio, open_medium

    drive = open_medium(dev if ":" in dev else f"st:{dev}", write=True)
    try:
        drive.rewind()
        try:
            drive._ops.mtop(mtio.MTERASE, 0)  # type: ignore[attr-defined]
            return
        except OSError:
            m = re.search(r"nst(\d+)$", dev)
            image = f"/tape/tape{m.group(1)}.img" if m else ""
            if not (os.environ.get("STLAB_TAPE_MB") and os.path.exists(image)):
                raise
        blank = "/tmp/tapearc-hw-blank.img"
        if not os.path.exists(blank):
            subprocess.run(
                [
                    "tgtimg",
                    "--op",
                    "new",
                    "--device-type",
                    "tape",
                    "--type",
                    "data",
                    "--barcode",
                    "STLAB",
                    "--size",
                    os.environ["STLAB_TAPE_MB"],
                    "--file",
                    blank,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        with open(blank, "rb") as src, open(image, "r+b") as dst:
            dst.write(src.read())
            dst.truncate()
        drive._ops.mtop(mtio.MTREW, 1)  # type: ignore[attr-defined]  # tgt re-reads the beginning
    finally:
        drive.close()
