"""Leases and a shared PostgreSQL catalog on a simulated library (issue 17): two backups at once
each get a drive; and the acceptance test: 4 processes x 13 backups (52) at once onto one
library of 2 drives, every process taking whichever drive is free, all into one PostgreSQL
catalog (about 35 s here). Afterwards no catalog row is lost or duplicated, every generation
restores byte for byte, and no
medium was written by two writers at once (each medium's tape files run 1, 2, ... without a gap
or a repeat, each file one generation, every generation complete)."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.catalog.leases import Leases
from tests.leases.test_cli_leases import library, start, tapearc, until, volume

PROCESSES = 4
BACKUPS = 13


def test_two_backups_at_once_get_two_drives(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPEARC_CATALOG", pg_url)  # the commands inherit it
    Catalog(pg_url).close()
    leases = Leases(pg_url, notify=lambda _t: None)
    try:
        lib = library(tmp_path)
        real = os.path.realpath(lib)
        data = [volume(tmp_path / f"{n}.img", i + 1) for i, n in enumerate("ab")]
        changer = leases.acquire(f"changer:{real}", purpose="the test")  # both take a drive, then wait
        procs = [start("backup", str(tmp_path / f"{n}.img"), "--media", f"sim:{lib}", "--json") for n in "ab"]
        until(lambda: len(leases.rows("drive:")) == 2, "both drives leased")
        assert {r.resource for r in leases.rows("drive:")} == {f"drive:{real}:0", f"drive:{real}:1"}
        assert sorted(r.pid for r in leases.rows("drive:")) == sorted(p.pid for p in procs)
        changer.release()
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert {json.loads(o)["medium"] for o, _ in outs} == {f"sim:{lib}/drive-0.tap", f"sim:{lib}/drive-1.tap"}
        assert leases.rows() == []
        for (o, _), d in zip(outs, data, strict=True):
            res = json.loads(o)
            out = tmp_path / f"r-{res['volume']}"
            p = tapearc("restore", "--media", res["medium"], "--changer", f"sim:{lib}", "--to", str(out))
            assert p.returncode == 0, p.stderr
            assert out.read_bytes() == d
    finally:
        leases.close()


def test_52_concurrent_backups_on_one_library(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPEARC_CATALOG", pg_url)
    lib = library(tmp_path, drives=2, slots=4, capacity="64M")
    results: dict[int, list[dict[str, object]]] = {i: [] for i in range(PROCESSES)}
    errors: list[str] = []

    def worker(i: int) -> None:
        rng = random.Random(i)
        src = tmp_path / f"vol{i}.img"
        data = bytearray(rng.randbytes(16 * 4096))
        for n in range(BACKUPS):
            data[(n % 16) * 4096 : (n % 16 + 1) * 4096] = rng.randbytes(4096)
            src.write_bytes(bytes(data))
            p = tapearc("backup", str(src), "--media", f"sim:{lib}", "--block-size", "4K", "--json")
            if p.returncode != 0:
                errors.append(f"process {i} backup {n + 1}: exit {p.returncode}: {p.stderr}")
                return
            res = json.loads(p.stdout)
            res["bytes"] = bytes(data)
            results[i].append(res)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(PROCESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(len(r) for r in results.values()) == PROCESSES * BACKUPS >= 50

    with Catalog(pg_url) as cat:
        count = {
            t: int(cat.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            for t in ("generations", "tape_files", "leases")
        }
        assert count == {"generations": 52, "tape_files": 52, "leases": 0}
        for table, key in (
            ("generations", "run_uuid"),
            ("generations", "volume_id, number"),
            ("chunks", "generation_id, seq"),
            ("tape_files", "medium_id, file_number"),
        ):
            dup = f"SELECT COUNT(*) FROM (SELECT {key} FROM {table} GROUP BY {key} HAVING COUNT(*) > 1) d"
            assert int(cat.db.execute(dup).fetchone()[0]) == 0, (table, key)
        # no medium written by two writers at once: each medium's files are 1..n, one generation each
        rows = cat.db.execute(
            """SELECT m.uuid, t.file_number, g.state FROM tape_files t JOIN media m ON m.id = t.medium_id
               JOIN generations g ON g.id = t.generation_id ORDER BY m.uuid, t.file_number"""
        ).fetchall()
        per_medium: dict[str, list[int]] = {}
        for mu, fnum, state in rows:
            assert state == "complete", (mu, fnum, state)
            per_medium.setdefault(str(mu), []).append(int(fnum))
        for files in per_medium.values():
            assert files == list(range(1, len(files) + 1)), files
    # every generation restores, byte for byte what it backed up
    for i, res in results.items():
        for n, r in enumerate(res):
            out = tmp_path / f"r{i}-{n}"
            p = tapearc(
                "restore",
                "--media", str(r["medium"]),
                "--changer", f"sim:{lib}",
                "--volume", str(r["volume"]),
                "--generation", str(r["generation"]),
                "--to", str(out),
            )  # fmt: skip
            assert p.returncode == 0, p.stderr
            assert out.read_bytes() == r["bytes"]
