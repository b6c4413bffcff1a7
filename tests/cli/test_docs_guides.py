"""What the guides promise, run as they show it: behaviours of docs/operations.md, docs/cli.md and
docs/errors.md checked against the command. A test marked xfail(strict) is a documented behaviour
the code does not have yet: it fails loudly (XPASS) once the code is mended, so the mark is
removed then."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.cli.test_cli_catalog import BS, backup_at


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tapearc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "TZ": "UTC"})


def test_restore_at_a_set_whose_medium_left_the_library_is_media_missing(tmp_path: Path) -> None:
    """docs/operations.md (the whole path): 'a tape that is off-site is asked for by name before
    anything is written (exit 25)'. (It ended with exit 10, medium-unavailable, and the hint
    "or a blank one".) A pool makes a new media set per full: TAP001 holds the 1 Dec
    full, TAP002 (in the drive) the 2 Dec one; TAP001 is taken out of the library. restore --at
    1 Dec needs TAP001: exit 25 naming it, no target made."""
    from tapearc.catalog.db import Catalog
    from tapearc.engine import pools
    from tapearc.engine.retention import KEEP_FULL, Policy

    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), 4, 4 * 1024 * 1024)
    spec = f"sim:{tmp_path / 'lib'}"
    src = tmp_path / "vol.img"
    src.write_bytes(random.Random(1).randbytes(24 * BS))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 2), "new-set-per-full", 1_700_000_000)
    for when in ("2026-12-01T03:00:00Z", "2026-12-02T03:00:00Z"):
        backup_at(spec, src, when, pool="p", full=True, volume_name="vol")
    lib = lib_mod.Library(str(tmp_path / "lib"))
    slot = next(s.number for s in lib.status().slots if s.barcode == "TAP001")
    assert lib.remove_tape(slot) == "TAP001"  # off-site: the library no longer has it
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", spec, "--volume", "vol", "--at", "2026-12-01 12:00", "--to", str(out))
    assert_one_line_error(p, 25, "TAP001")
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [("list",), ("verify",), ("scan",), ("plan",), ("key", "recover", "--to", "k.key")],
    ids=lambda a: " ".join(a[:2]),
)
def test_commands_that_read_a_medium_never_make_one(tmp_path: Path, args: tuple[str, ...]) -> None:
    """docs/cli.md and their help: a command that only reads a medium never makes a missing sim:
    image (backup and label do): exit 10, no image, no settings file."""
    image = tmp_path / "none.tap"
    words = [str(tmp_path / w) if w.endswith(".key") else w for w in args]
    at = 2 if args[0] == "key" else 1  # --media goes after the (sub)command
    p = tapearc(*words[:at], "--media", f"sim:{image}", *words[at:])
    assert_one_line_error(p, 10, "no such simulated tape")
    assert sorted(f.name for f in tmp_path.iterdir() if f.name.startswith("none")) == []
