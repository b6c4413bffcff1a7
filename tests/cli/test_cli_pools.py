"""``tapearc pool create|list|show``, ``media list|move``, ``backup --pool --now`` and a job file's
``pool`` key, through the command line, on a simulated library: text and JSON, the recycled
line, an off-site medium skipped, exits 36 and 37."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli_catalog import tapearc
from tests.engine.test_jobs import job_file


def ok(*args: str) -> str:
    p = tapearc(*args)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout + p.stderr


def ok_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").split("\ntapearc: warning")[0])


@pytest.fixture
def lib(tmp_path: Path) -> str:
    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), 3, 4 * 1024 * 1024, early_warning=512 * 1024, max_record=1024 * 1024)
    (tmp_path / "a.img").write_bytes(random.Random(1).randbytes(512 * 1024))
    return f"sim:{tmp_path / 'lib'}"


def test_pool_commands_and_recycling(tmp_path: Path, lib: str) -> None:
    src = str(tmp_path / "a.img")
    assert ok("pool", "create", "nightly", "--keep-full", "1", "--allocation", "new-set-per-full").strip() == (
        "pool nightly: keep the last 1 full generation of each volume, allocation new-set-per-full"
    )
    p = tapearc("pool", "create", "nightly", "--keep-days", "3")
    assert p.returncode == 37 and "exists already" in p.stderr
    p = tapearc("pool", "create", "x", "--keep-days", "3", "--keep-forever")
    assert p.returncode == 37 and "give one of" in p.stderr
    for day, full in (("01", True), ("02", False), ("03", True), ("04", True)):
        ok("backup", src, "--media", lib, "--pool", "nightly", "--now", f"2026-12-{day} 02:00", *(["--full"] * full))
    media = ok_json("media", "list", "--now", "2026-12-04 03:00")["media"]
    assert [(m["medium"], m["pool"], m["location"], m["recyclable"]) for m in media] == [
        ("TAP001", "nightly", "library", True),
        ("TAP002", "nightly", "library", True),
        ("TAP003", "nightly", "library", False),
    ]
    assert [(g["volume"], g["generation"]) for g in media[0]["generations"]] == [("a.img", 1), ("a.img", 2)]
    assert (
        media[2]["expiry"] == "needed by volume a.img generation 1 of 2026-12-04"
        and media[0]["bytes_used"] == 512 * 1024
    )
    assert ok("media", "move", "TAP001", "--location", "offsite").strip() == "TAP001: library -> offsite"
    p = tapearc("media", "move", "TAP009", "--location", "offsite")
    assert p.returncode == 37 and "TAP009" in p.stderr

    out = ok("backup", src, "--media", lib, "--pool", "nightly", "--now", "2026-12-05 02:00", "--full")
    assert "tapearc: warning: recycled TAP002 (held volume a.img generation 1, expired by keep the last 1 full" in out
    browsed = ok_json("catalog", "media")["media"]  # the recycled label is gone from the views
    assert sorted(m["label"] for m in browsed) == ["TAP001", "TAP002", "TAP003"]
    text = ok("pool", "show", "nightly", "--now", "2026-12-05 03:00")
    assert "pool nightly: keep the last 1 full generation of each volume, allocation new-set-per-full" in text
    assert "TAP001 (sequence 1, offsite): holds a.img generations 1-2; recyclable (expired)" in text
    assert (
        "TAP002 (sequence 1, library): holds a.img generation 1; needed by volume a.img generation 1 of 2026-12-05"
        in text
    )
    shown = ok_json("pool", "show", "nightly", "--now", "2026-12-05 03:00")
    assert shown["pool"]["retention"] == "keep-full" and len(shown["media"]) == 3
    listed = ok_json("pool", "list", "--now", "2026-12-05 03:00")["pools"]
    assert [(p["name"], p["media"], p["recyclable"]) for p in listed] == [("nightly", 3, 2)]
    assert "nightly: keep the last 1 full generation" in ok("pool", "list")

    # TAP001 is off-site, TAP002 holds the kept full, TAP003 is elsewhere, then write-protected
    ok("media", "move", "TAP003", "--location", "shelf 4")
    p = tapearc("backup", src, "--media", lib, "--pool", "nightly", "--now", "2026-12-06 02:00", "--full")
    assert p.returncode == 36, p.stderr
    assert p.stderr.startswith("tapearc: error: pool 'nightly' has no medium to write to: ")
    for why in ("TAP001: off-site", "TAP002: needed by volume a.img generation 1", "TAP003: at 'shelf 4'"):
        assert why in p.stderr
    assert "nothing was written" in p.stderr
    ok("media", "move", "TAP003", "--location", "library")
    assert ok("media", "protect", "TAP003").strip() == "TAP003: write-protected"
    p = tapearc("backup", src, "--media", lib, "--pool", "nightly", "--now", "2026-12-06 02:00", "--full")
    assert p.returncode == 36 and "TAP003: write-protected" in p.stderr
    assert ok("media", "protect", "TAP003", "--off").strip() == "TAP003: writable"
    out = ok("backup", src, "--media", lib, "--pool", "nightly", "--now", "2026-12-06 02:00", "--full")
    assert "recycled TAP003" in out
    p = tapearc("backup", src, "--media", lib, "--pool", "nope")
    assert p.returncode == 37 and "no media pool named 'nope' (pools: nightly)" in p.stderr


def test_job_file_pool(tmp_path: Path, lib: str) -> None:
    ok("pool", "create", "p", "--keep-full", "1", "--allocation", "new-set-per-full")
    path = job_file(tmp_path, {"name": "j", "media": lib, "pool": "p"}, [{"name": "a", "source": "a.img"}])
    for day in ("01", "02", "03"):
        ok("run", path, "--full", "--now", f"2026-12-{day} 02:00")
    r = ok_json("run", path, "--full", "--now", "2026-12-04 02:00")
    text = json.dumps(r)
    assert "recycled TAP001 (held volume a generation 1" in text, text
    media = ok_json("media", "list", "--pool", "p")["media"]
    assert sorted(m["medium"] for m in media) == ["TAP001", "TAP002", "TAP003"]
