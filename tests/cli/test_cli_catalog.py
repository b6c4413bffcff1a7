"""``tapearc catalog volumes|generations|media``: what the catalog holds, browsed without a
medium: each view, each filter, the JSON shape, the media each generation needs (a full, an
incremental chain, a generation spanning tapes of a simulated library), an empty catalog and bad
dates. Generations are written by the engine with a fixed clock, so their times are known."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.restore import RestoreOptions, prepare_plan
from tests.cli.test_cli import assert_one_line_error

BS = 16 * 1024


def ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def tapearc(*args: str, tz: str = "UTC") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": tz},
    )


def ok_json(*args: str) -> Any:
    p = tapearc(*args, "--json")
    assert p.returncode == 0, (p.stdout, p.stderr)
    return json.loads(p.stdout)  # one JSON document


def backup_at(spec: str, src: Path, when: str, **kw: Any) -> Any:
    """A backup made at ``when`` (the engine's clock), in the test's own catalog."""
    kw.setdefault("block_size", BS)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        return backup(str(src), media, cat, BackupOptions(**kw), clock=lambda: ts(when))


def write(path: Path, seed: int, size: int = 40 * BS) -> None:
    path.write_bytes(random.Random(seed).randbytes(size))


def change(path: Path, seed: int) -> None:
    data = bytearray(path.read_bytes())
    data[BS * seed : BS * seed + 100] = random.Random(seed).randbytes(100)
    path.write_bytes(bytes(data))


@pytest.fixture
def two_tapes(tmp_path: Path) -> dict[str, Any]:
    """Tape MON01 (one media set): a.img 1 (full), 2, 3 (incrementals), b.img 1; tape TUE01 (another
    set): a.img 1 (full)."""
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    mon, tue = f"sim:{tmp_path / 'mon.tap'}", f"sim:{tmp_path / 'tue.tap'}"
    write(a, 1)
    write(b, 2, 10 * BS)
    res = [backup_at(mon, a, "2026-11-29T03:00:00Z", label_text="MON01")]
    change(a, 3)
    res.append(backup_at(mon, a, "2026-11-30T03:00:00Z"))
    change(a, 5)
    res.append(backup_at(mon, a, "2026-12-01T03:00:00Z"))
    res.append(backup_at(mon, b, "2026-12-01T04:00:00Z"))
    res.append(backup_at(tue, a, "2026-12-02T03:00:00Z", label_text="TUE01"))
    assert [r.kind for r in res] == ["full", "incremental", "incremental", "full", "full"]
    return {"results": res, "mon": mon, "tue": tue}


def test_volumes_view(two_tapes: dict[str, Any]) -> None:
    vols = ok_json("catalog", "volumes")["volumes"]
    assert [(v["volume"], v["generations"]) for v in vols] == [("a.img", 3), ("a.img", 1), ("b.img", 1)]
    a1 = vols[0]
    assert set(a1) == {
        "volume",
        "uuid",
        "media_set",
        "source_path",
        "generations",
        "complete_generations",
        "first_backup",
        "last_backup",
        "size",
        "stored_bytes",
    }
    assert a1["first_backup"] == "2026-11-29T03:00:00+00:00" and a1["last_backup"] == "2026-12-01T03:00:00+00:00"
    assert a1["size"] == 40 * BS and a1["complete_generations"] == 3 and a1["source_path"].endswith("a.img")
    res = two_tapes["results"]
    assert a1["stored_bytes"] == sum(r.stored_bytes for r in res[:3])
    assert vols[0]["media_set"] != vols[1]["media_set"]
    # text: a table with local ISO dates (TZ), no zone
    p = tapearc("catalog", "volumes", tz="ZZZ-10")  # POSIX TZ: UTC+10
    assert p.returncode == 0, p.stderr
    row = next(ln for ln in p.stdout.splitlines() if "b.img" in ln)
    assert "2026-12-01 14:00:00" in row and "+" not in row


def test_volumes_filters(two_tapes: dict[str, Any]) -> None:
    assert [v["volume"] for v in ok_json("catalog", "volumes", "--volume", "b.img")["volumes"]] == ["b.img"]
    got = ok_json("catalog", "volumes", "--since", "2026-12-02")["volumes"]
    assert [(v["volume"], v["generations"]) for v in got] == [("a.img", 1)]  # the other set's a.img
    got = ok_json("catalog", "volumes", "--until", "2026-11-30 03:00")["volumes"]  # until is inclusive
    assert [(v["volume"], v["generations"]) for v in got] == [("a.img", 3)]  # the whole volume
    got = ok_json("catalog", "volumes", "--medium", "TUE01")["volumes"]
    assert [(v["volume"], v["generations"]) for v in got] == [("a.img", 1)]


def test_generations_view_and_json_shape(two_tapes: dict[str, Any]) -> None:
    gens = ok_json("catalog", "generations")["generations"]
    assert [(g["volume"], g["generation"]) for g in gens] == [
        ("a.img", 1),
        ("a.img", 2),
        ("a.img", 3),
        ("a.img", 1),
        ("b.img", 1),
    ]
    g2 = gens[1]
    assert set(g2) == {
        "volume",
        "media_set",
        "generation",
        "kind",
        "base",
        "state",
        "created",
        "volume_size",
        "stored_bytes",
        "raw_bytes",
        "source_path",
        "change",
        "parts",
        "restore",
    }
    assert (g2["kind"], g2["base"], g2["state"], g2["created"]) == (
        "incremental",
        1,
        "complete",
        "2026-11-30T03:00:00+00:00",
    )
    assert g2["stored_bytes"] == two_tapes["results"][1].stored_bytes
    assert [(p["label"], p["tape_file"], p["part"]) for p in g2["parts"]] == [("MON01", 2, 0)]
    assert set(g2["restore"]) == {"restorable", "problem", "chain", "media"}
    medium = g2["restore"]["media"][0]
    assert set(medium) == {"label", "uuid", "media_set", "sequence", "last_seen_as", "tape_files"}
    assert medium["last_seen_as"] == two_tapes["mon"]
    # text: kind, state, local time, and the media the restore needs
    p = tapearc("catalog", "generations", "--volume", "b.img")
    assert p.returncode == 0, p.stderr
    row = next(ln for ln in p.stdout.splitlines() if "b.img" in ln)
    for word in ("full", "complete", "2026-12-01 04:00:00", "MON01: file 4"):
        assert word in row, (word, row)


def test_media_needed_full_and_incremental_chain(two_tapes: dict[str, Any]) -> None:
    gens = {(g["media_set"], g["volume"], g["generation"]): g for g in ok_json("catalog", "generations")["generations"]}
    mon_set = next(k[0] for k in gens if k[1] == "b.img")

    def needs(volume: str, number: int, mset: str = mon_set) -> list[tuple[str, list[tuple[int, int]]]]:
        r = gens[(mset, volume, number)]["restore"]
        assert r["restorable"] and r["problem"] is None
        return [(m["label"], [(f["tape_file"], f["generation"]) for f in m["tape_files"]]) for m in r["media"]]

    assert needs("a.img", 1) == [("MON01", [(1, 1)])]  # a full: itself
    assert needs("a.img", 3) == [("MON01", [(1, 1), (2, 2), (3, 3)])]  # its chain, in tape order
    assert gens[(mon_set, "a.img", 3)]["restore"]["chain"] == [1, 2, 3]
    assert needs("b.img", 1) == [("MON01", [(4, 1)])]
    tue_set = next(k[0] for k in gens if k[0] != mon_set)
    assert needs("a.img", 1, tue_set) == [("TUE01", [(1, 1)])]
    p = tapearc("catalog", "generations", "--volume", "a.img", "--until", "2026-12-01T03:00Z")
    row = next(ln for ln in p.stdout.splitlines() if " 3 " in ln and "a.img" in ln)
    assert "MON01: files 1-3" in row and "incremental on 2" in row


def test_media_needed_when_a_base_is_not_complete(two_tapes: dict[str, Any], _private_catalog: Path) -> None:
    with sqlite3.connect(_private_catalog) as db:  # generation 2 of a.img: as an interrupted backup leaves it
        db.execute(
            """UPDATE generations SET state = 'incomplete' WHERE number = 2
               AND volume_id = (SELECT id FROM volumes WHERE name = 'a.img' ORDER BY id LIMIT 1)"""
        )
    gens = ok_json("catalog", "generations", "--volume", "a.img", "--medium", "MON01")["generations"]
    by = {g["generation"]: g["restore"] for g in gens}
    assert by[1]["restorable"] and by[1]["chain"] == [1]
    assert not by[2]["restorable"] and by[2]["media"] == [] and "is incomplete" in by[2]["problem"]
    assert not by[3]["restorable"] and "generation 3 needs it" in by[3]["problem"]
    p = tapearc("catalog", "generations", "--volume", "a.img", "--since", "2026-12-01")
    assert p.returncode == 0 and "not restorable: generation 2 of volume 'a.img' is incomplete" in p.stdout
    vols = ok_json("catalog", "volumes", "--volume", "a.img")["volumes"]
    assert vols[0]["complete_generations"] == 2 and vols[0]["generations"] == 3


def test_generations_filters(two_tapes: dict[str, Any]) -> None:
    def pick(*args: str) -> list[tuple[str, int]]:
        return [(g["volume"], g["generation"]) for g in ok_json("catalog", "generations", *args)["generations"]]

    assert pick("--volume", "b.img") == [("b.img", 1)]
    # both ends included; a date alone is its 00:00
    assert pick("--since", "2026-11-30 03:00", "--until", "2026-12-01T03:00:00Z") == [("a.img", 2), ("a.img", 3)]
    assert pick("--since", "2026-12-01T03:00:01Z", "--until", "2026-12-02") == [("b.img", 1)]
    # a zone given in the value wins over TZ: 04:00 in UTC is 05:00 at +01:00
    assert pick("--since", "2026-12-01 05:00+01:00", "--until", "2026-12-01 05:00+01:00") == [("b.img", 1)]
    assert pick("--medium", "TUE01") == [("a.img", 1)]
    assert pick("--medium", "MON01", "--volume", "a.img", "--since", "2026-11-30") == [("a.img", 2), ("a.img", 3)]
    assert pick("--since", "2027-01-01") == []


def test_medium_filter_by_uuid_and_name(two_tapes: dict[str, Any]) -> None:
    media = ok_json("catalog", "media")["media"]
    tue = next(m for m in media if m["label"] == "TUE01")
    for key in (tue["uuid"], tue["uuid"][:8], tue["uuid"].upper(), two_tapes["tue"]):
        got = ok_json("catalog", "media", "--medium", key)["media"]
        assert [m["label"] for m in got] == ["TUE01"], key
    p = tapearc("catalog", "generations", "--medium", "WED01")
    assert_one_line_error(p, 2, "--medium 'WED01'", "MON01", "TUE01")


def test_media_view(two_tapes: dict[str, Any]) -> None:
    media = ok_json("catalog", "media")["media"]
    assert [m["label"] for m in media] == ["MON01", "TUE01"]
    mon = media[0]
    assert set(mon) == {
        "label",
        "uuid",
        "media_set",
        "sequence",
        "last_seen_as",
        "generations",
        "tape_files",
        "bytes_used",
        "first_write",
        "last_write",
    }
    res = two_tapes["results"]
    assert mon["sequence"] == 1 and mon["tape_files"] == 4
    assert [(g["volume"], g["generation"]) for g in mon["generations"]] == [
        ("a.img", 1),
        ("a.img", 2),
        ("a.img", 3),
        ("b.img", 1),
    ]
    assert mon["bytes_used"] == sum(r.stored_bytes for r in res[:4])
    assert (mon["first_write"], mon["last_write"]) == ("2026-11-29T03:00:00+00:00", "2026-12-01T04:00:00+00:00")
    # filters choose the media; each row still describes the whole medium
    got = ok_json("catalog", "media", "--volume", "b.img")["media"]
    assert [m["label"] for m in got] == ["MON01"] and got[0]["tape_files"] == 4
    assert [m["label"] for m in ok_json("catalog", "media", "--since", "2026-12-02")["media"]] == ["TUE01"]
    assert ok_json("catalog", "media", "--until", "2026-11-28")["media"] == []
    p = tapearc("catalog", "media")
    row = next(ln for ln in p.stdout.splitlines() if "MON01" in ln)
    assert "a.img 1 2 3, b.img 1" in row and "2026-11-29 03:00:00" in row and "2026-12-01 04:00:00" in row
    assert mon["uuid"][:8] in row


def test_spanning_generation_needs_every_tape_in_order(tmp_path: Path) -> None:
    lib_mod = pytest.importorskip("tapesim.library")
    lib = tmp_path / "lib"
    lib_mod.create_library(str(lib), 6, 1536 * 1024, early_warning=256 * 1024, max_record=1024 * 1024)
    spec = f"sim:{lib}"
    src = tmp_path / "vol.img"
    write(src, 7, 3 * 1024 * 1024 + 777)
    opts: dict[str, Any] = {"record_size": 64 * 1024, "chunk_size": 256 * 1024}
    full = backup_at(spec, src, "2026-12-01T01:00:00Z", **opts)
    assert len(full.parts) >= 2
    change(src, 9)
    inc = backup_at(spec, src, "2026-12-02T01:00:00Z", **opts)
    n = len(full.parts)
    gens = ok_json("catalog", "generations")["generations"]
    barcodes = [f"TAP{i:03d}" for i in range(1, n + 1)]
    assert [p["label"] for p in gens[0]["parts"]] == barcodes  # the full's parts, one per tape
    need_full = [(m["label"], m["sequence"], m["tape_files"]) for m in gens[0]["restore"]["media"]]
    assert need_full == [(b, i, [{"tape_file": 1, "generation": 1}]) for i, b in enumerate(barcodes, 1)]
    need_inc = gens[1]["restore"]["media"]
    assert [m["label"] for m in need_inc] == barcodes  # the incremental is on the last tape, after the full's part
    assert need_inc[-1]["tape_files"] == [{"tape_file": 1, "generation": 1}, {"tape_file": 2, "generation": 2}]
    assert inc.parts[0]["sequence"] == n
    # what the restore planner reads is among them, in the same order
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        _, _, plan = prepare_plan(media, cat, RestoreOptions())
    listed = [m["uuid"] for m in need_inc]
    planned = [str(u) for u, _ in plan.media]
    assert planned == [u for u in listed if u in planned] and planned[-1] == listed[-1]
    p = tapearc("catalog", "generations")
    row = next(ln for ln in p.stdout.splitlines() if "incremental on 1" in ln)
    assert "; ".join(f"{b}: file 1" for b in barcodes[:-1]) + f"; {barcodes[-1]}: files 1 2" in row


def test_empty_catalog(tmp_path: Path, _private_catalog: Path) -> None:
    for view in ("volumes", "generations", "media"):
        assert ok_json("catalog", view) == {view: []}
        p = tapearc("catalog", view)
        assert p.returncode == 0 and p.stdout.strip() == f"no {view}", p.stdout
    assert not _private_catalog.exists()  # browsing never creates a catalog
    p = tapearc("catalog", "media", "--medium", "MON01")
    assert_one_line_error(p, 2, "--medium 'MON01'", "does not exist")
    Catalog().close()  # an empty catalog that exists
    assert ok_json("catalog", "generations") == {"generations": []}


@pytest.mark.parametrize(
    ("option", "value"),
    [("--since", "2026-13-01"), ("--until", "yesterday"), ("--since", ""), ("--until", "2026-12-01 3:00")],
)
def test_bad_date_is_a_usage_error(option: str, value: str) -> None:
    p = tapearc("catalog", "generations", option, value)
    assert_one_line_error(p, 2, option, repr(value), "ISO 8601")
    p = tapearc("catalog", "volumes", option, value, "--json")
    assert p.returncode == 2 and json.loads(p.stdout)["error"] == "usage"


def test_since_after_until_is_a_usage_error() -> None:
    p = tapearc("catalog", "media", "--since", "2026-12-02", "--until", "2026-12-01")
    assert_one_line_error(p, 2, "--since is after --until")
