"""``tapearc restore --at TIME``: the newest complete generation made at or before TIME (ISO 8601,
local time unless a zone is given). Three generations are written by the engine with a fixed
clock (30 Nov, 1 and 2 Dec 2026, 03:00 UTC), each with different data, so a restore shows which
one it picked byte for byte."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.cli.test_cli_catalog import BS, backup_at

TIMES = ("2026-11-30T03:00:00Z", "2026-12-01T03:00:00Z", "2026-12-02T03:00:00Z")


@pytest.fixture
def three(tmp_path: Path) -> dict[str, Any]:
    src = tmp_path / "vol.img"
    spec = f"sim:{tmp_path / 't.tap'}"
    data = bytearray(random.Random(1).randbytes(24 * BS))
    versions = []
    for i, when in enumerate(TIMES):
        data[i * BS : i * BS + 200] = random.Random(10 + i).randbytes(200)
        src.write_bytes(bytes(data))
        versions.append(bytes(data))
        assert backup_at(spec, src, when).generation == i + 1
    return {"spec": spec, "versions": versions, "tmp": tmp_path}


def restore_at(three: dict[str, Any], at: str, tz: str = "UTC", *extra: str) -> tuple[int | None, Any]:
    """(the generation restored, or None; the process)."""
    out = three["tmp"] / "out.img"
    out.unlink(missing_ok=True)
    p = subprocess.run(
        [sys.executable, "-m", "tapearc", "restore", "--media", three["spec"], "--to", str(out), "--at", at, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": tz},
    )
    if p.returncode != 0 or "--json" not in extra:
        return None, p
    got = json.loads(p.stdout)["generation"]
    assert out.read_bytes() == three["versions"][got - 1]  # that generation, byte for byte
    return got, p


def test_newest_at_or_before(three: dict[str, Any]) -> None:
    assert restore_at(three, "2026-12-01 12:00", "UTC", "--json")[0] == 2
    assert restore_at(three, "2026-12-31", "UTC", "--json")[0] == 3
    assert restore_at(three, "2026-11-30T23:59", "UTC", "--json")[0] == 1


def test_exactly_at_and_one_second_before(three: dict[str, Any]) -> None:
    assert restore_at(three, "2026-12-01T03:00:00Z", "UTC", "--json")[0] == 2
    assert restore_at(three, "2026-12-01 03:00", "UTC", "--json")[0] == 2  # seconds optional
    assert restore_at(three, "2026-12-01T02:59:59Z", "UTC", "--json")[0] == 1
    _, p = restore_at(three, "2026-12-02 03:00:00", "UTC")  # text output names the generation
    assert p.returncode == 0 and "generation 3" in p.stdout, p.stderr


def test_before_the_first_generation(three: dict[str, Any]) -> None:
    _, p = restore_at(three, "2026-11-30 02:59:59", "UTC")
    assert_one_line_error(
        p, 6, "'vol.img'", "at or before 2026-11-30 02:59:59+00:00", "generation 1", "2026-11-30 03:00:00+00:00"
    )
    assert not (three["tmp"] / "out.img").exists()
    _, p = restore_at(three, "2026-01-01", "UTC", "--json")
    assert p.returncode == 6 and json.loads(p.stdout)["error"] == "no-generation"


def test_local_time_follows_tz_and_a_given_zone_wins(three: dict[str, Any]) -> None:
    # 12:00 at UTC+10 is 02:00 UTC: before generation 2 (03:00 UTC)
    assert restore_at(three, "2026-12-01 12:00", "ZZZ-10", "--json")[0] == 1
    assert restore_at(three, "2026-12-01 13:00", "ZZZ-10", "--json")[0] == 2
    # at UTC-5, 22:00 on 30 Nov is 03:00 UTC on 1 Dec: generation 2 exactly
    assert restore_at(three, "2026-11-30 22:00", "ZZZ+5", "--json")[0] == 2
    assert restore_at(three, "2026-11-30 21:59", "ZZZ+5", "--json")[0] == 1
    # a zone in the value wins over TZ
    assert restore_at(three, "2026-12-01 12:00Z", "ZZZ-10", "--json")[0] == 2
    assert restore_at(three, "2026-12-01 04:00+01:00", "ZZZ-10", "--json")[0] == 2
    assert restore_at(three, "2026-12-01 03:59+01:00", "ZZZ-10", "--json")[0] == 1
    # a date alone is its 00:00 local time: 1 Dec 00:00 at UTC-5 is 05:00 UTC
    assert restore_at(three, "2026-12-01", "ZZZ+5", "--json")[0] == 2
    assert restore_at(three, "2026-12-01", "UTC", "--json")[0] == 1
    # the error names the time in the local zone
    _, p = restore_at(three, "2026-11-30 12:00", "ZZZ-10")
    assert_one_line_error(p, 6, "2026-11-30 12:00:00+10:00", "2026-11-30 13:00:00+10:00")


def test_at_with_generation_is_a_usage_error(three: dict[str, Any]) -> None:
    _, p = restore_at(three, "2026-12-01 12:00", "UTC", "--generation", "1")
    assert_one_line_error(p, 2, "--at", "--generation")
    assert not (three["tmp"] / "out.img").exists()


@pytest.mark.parametrize("value", ["yesterday", "2026-12-01 3:00", "2026-02-30", ""])
def test_bad_time_is_a_usage_error(three: dict[str, Any], value: str) -> None:
    _, p = restore_at(three, value, "UTC")
    assert_one_line_error(p, 2, "--at", repr(value))


def test_a_newer_generation_that_cannot_be_restored_is_named(three: dict[str, Any], _private_catalog: Path) -> None:
    with sqlite3.connect(_private_catalog) as db:  # as an interrupted backup leaves it
        db.execute("UPDATE generations SET state = 'incomplete' WHERE number = 3")
    # generation 3 was made before the time asked for, but cannot be restored: 2 instead, and exit 24 says so
    _, p = restore_at(three, "2026-12-02 12:00", "UTC")
    assert p.returncode == 24, p.stderr
    assert "tapearc: generation 3 is incomplete: restored generation 2, not the newest" in p.stderr
    err = next(ln for ln in p.stderr.splitlines() if ln.startswith("tapearc: error: "))
    assert "generation 3 (incomplete) cannot be restored; restored generation 2 instead" in err
    assert (three["tmp"] / "out.img").read_bytes() == three["versions"][1]
    # made after the time asked for: not in question
    assert restore_at(three, "2026-12-02 02:00", "UTC", "--json")[0] == 2


def test_a_lost_catalog_is_relearnt_from_the_medium(three: dict[str, Any], _private_catalog: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    # the times come from the generations' headers on the medium
    assert restore_at(three, "2026-12-01 12:00", "UTC", "--json")[0] == 2


def test_at_in_an_older_media_set(tmp_path: Path) -> None:
    """A pool making a new media set per full (TAP001: full and incremental of 1-2 Dec, TAP002: the
    full of 3 Dec, in the drive). restore --at 2 Dec loads TAP001 from the library by itself and
    restores that generation byte-identical; plan --at names the medium by its barcode (JSON: UUID
    and label); a lone drive holding TAP002 gets one line naming the older set and TAP001."""
    from tapearc.catalog.db import Catalog
    from tapearc.engine import pools
    from tapearc.engine.retention import KEEP_FULL, Policy

    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), 4, 4 * 1024 * 1024)
    spec = f"sim:{tmp_path / 'lib'}"
    src = tmp_path / "vol.img"
    data = bytearray(random.Random(1).randbytes(24 * BS))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 2), "new-set-per-full", 1_700_000_000)
    versions = []
    for i, when in enumerate(("2026-12-01T03:00:00Z", "2026-12-02T03:00:00Z", "2026-12-03T03:00:00Z")):
        data[i * BS : i * BS + 200] = random.Random(10 + i).randbytes(200)
        src.write_bytes(bytes(data))
        versions.append(bytes(data))
        backup_at(spec, src, when, pool="p", full=i != 1, volume_name="vol")

    def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tapearc", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "TZ": "UTC"})

    single = tmp_path / "single.tap"
    single.write_bytes((tmp_path / "lib" / "drive-0.tap").read_bytes())  # TAP002, on a drive of its own
    p = tapearc("plan", "--media", spec, "--volume", "vol", "--at", "2026-12-02 12:00")
    assert p.returncode == 0, p.stderr
    assert "  medium 1: TAP001 (sequence 1)" in p.stdout and "generation 2 " in p.stdout
    p = tapearc("plan", "--media", spec, "--volume", "vol", "--at", "2026-12-02 12:00", "--json")
    assert json.loads(p.stdout)["media"][0]["label"] == "TAP001"
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", spec, "--volume", "vol", "--at", "2026-12-02 12:00", "--to", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["generation"] == 2 and out.read_bytes() == versions[1]
    out.unlink()
    p = tapearc("restore", "--media", f"sim:{single}", "--volume", "vol", "--at", "2026-12-02", "--to", str(out))
    assert_one_line_error(p, 25)
    assert "media set" in p.stderr and "load its media TAP001" in p.stderr and not out.exists()
