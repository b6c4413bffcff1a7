"""``tapearc -v`` says what tapearc does, one line per step, on standard error: the medium
opened, each changer move, where a generation goes and where it ends, when a job's drive has
written its buffer out, each medium a restore reads; ``-vv`` adds a line per chunk written or
read. Without ``-v`` none of it is printed (the result lines are the same)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_jobs import job_file


def tapearc(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAPEARC_CATALOG": str(tmp / "cat.sqlite")}
    p = subprocess.run([sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p


def log_lines(p: subprocess.CompletedProcess[str], level: str) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if ln.startswith(f"tapearc: {level}: ")]


def test_backup_and_restore_say_what_they_do_with_v_and_each_chunk_with_vv(tmp_path: Path) -> None:
    vol = tmp_path / "v.img"
    vol.write_bytes(random.Random(1).randbytes(160 * 65536))
    media = f"sim:{tmp_path / 't.tap'}"
    quiet = tapearc(tmp_path, "backup", str(vol), "--media", media)
    assert log_lines(quiet, "INFO") == [] and log_lines(quiet, "DEBUG") == []
    with open(vol, "r+b") as f:  # one block changes
        f.seek(5 * 65536)
        f.write(b"\x01" * 65536)
    v = tapearc(tmp_path, "-v", "backup", str(vol), "--media", media)
    info = "\n".join(log_lines(v, "INFO"))
    assert f"open {media} for writing" in info
    assert "volume 'v.img' generation 2 (incremental on generation 1, 65536-byte blocks)" in info
    assert f"to {media}, tape file 2" in info
    assert f"generation 2 of volume 'v.img' ends on medium {media} (tape file 2)" in info
    assert log_lines(v, "DEBUG") == []
    vv = tapearc(tmp_path, "-vv", "backup", str(vol), "--media", media, "--full")
    chunks = [ln for ln in log_lines(vv, "DEBUG") if "chunk " in ln and "of tape file 3" in ln]
    n = int(re.search(r"(\d+) chunks", vv.stdout).group(1))  # type: ignore[union-attr]
    assert len(chunks) == n > 1 and sum(int(re.search(r": (\d+) data", c).group(1)) for c in chunks) == 160  # type: ignore[union-attr]
    r = tapearc(tmp_path, "-vv", "restore", "--media", media, "--volume", "v.img", "--to", str(tmp_path / "r.img"))
    assert any(f"reading {media} (sequence 1 of media set" in ln for ln in log_lines(r, "INFO"))
    assert len([ln for ln in log_lines(r, "DEBUG") if "tape file 3" in ln]) == n  # the full's chunks
    assert (tmp_path / "r.img").read_bytes() == vol.read_bytes()


def test_a_job_in_a_library_names_the_changer_moves_and_the_drives_sync(tmp_path: Path) -> None:
    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), 4, 16 << 20, drives=1)
    for n in "ab":
        (tmp_path / f"{n}.img").write_bytes(random.Random(n).randbytes(4 * 65536))
    path = job_file(
        tmp_path, {"name": "j", "media": f"sim:{tmp_path / 'lib'}"}, [{"name": n, "source": f"{n}.img"} for n in "ab"]
    )
    p = tapearc(tmp_path, "-v", "run", path)
    info = log_lines(p, "INFO")
    assert any("load slot" in ln and "into drive 0" in ln for ln in info), p.stderr
    synced = [ln for ln in info if "wrote its buffer out" in ln]
    assert len(synced) == 1 and "generation 1 of volume 'a'" in synced[0] and "generation 1 of volume 'b'" in synced[0]


def test_a_warning_without_verbose_is_one_tapearc_line() -> None:
    """A warning logged on the way (a catalog write failing while a failure is reported) is one
    'tapearc: warning:' line without -v, not a bare message from Python's last-resort handler."""
    code = (
        "import logging; from tapearc.cli.app import global_options; "
        "global_options(version=False, verbose=0, debug=False, progress='none'); "
        "logging.getLogger('tapearc.engine.mediasource').warning('the catalog row stays writing'); "
        "logging.getLogger('tapearc.engine.genwriter').info('not shown')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "tapearc: warning: the catalog row stays writing\n"
