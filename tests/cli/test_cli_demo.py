"""``make demo`` (scripts/demo.sh) keeps a catalog of its own under its demo folder: the user's
catalog (``$TAPEARC_CATALOG``, or the default one under ``$XDG_DATA_HOME`` or ``~/.local/share``)
is neither created nor touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog

REPO = Path(__file__).resolve().parents[2]


def run_demo(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        cwd=cwd,
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_makefile_demo_runs_the_script() -> None:
    assert "bash scripts/demo.sh" in (REPO / "Makefile").read_text()


@pytest.mark.parametrize("user_env", ["default", "xdg", "tapearc_catalog"])
def test_demo_uses_its_own_catalog(tmp_path: Path, user_env: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "state")}
    real = home / ".local" / "share" / "tapearc" / "catalog.sqlite"  # the default catalog
    if user_env == "xdg":
        env["XDG_DATA_HOME"] = str(tmp_path / "data")
        real = tmp_path / "data" / "tapearc" / "catalog.sqlite"
    elif user_env == "tapearc_catalog":  # the user's own catalog, holding something already
        real = tmp_path / "mine.sqlite"
        env["TAPEARC_CATALOG"] = str(real)
        Catalog(real).close()
        before = real.read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    p = run_demo(work, env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "restored image is byte-identical" in p.stdout
    own = work / "demo" / "catalog.sqlite"
    assert own.is_file() and f"== catalog: {own}" in p.stdout
    assert "DEMO01: files 1 2" in p.stdout  # the catalog's view of the demo's two generations
    if user_env == "tapearc_catalog":
        assert real.read_bytes() == before
        assert not Path(str(real) + "-wal").exists()
    else:
        assert not real.parent.exists()
    assert not (home / ".local").exists() and not (tmp_path / "state").exists()
