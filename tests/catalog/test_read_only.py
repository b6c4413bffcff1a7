"""Reading commands never write to the catalog (docs/catalog.md, "Migrations"): the browsing
commands run on the catalogs made by older tapearcs (schema 1 to 4) show their content and leave
the file byte for byte as it was (no -wal or -shm left behind); a writing command then migrates
it as before. ``Catalog(read_only=True)`` of a current catalog writes nothing (bytes and mtime
kept, its journal mode too), refuses every write, never creates a missing file, refuses a newer
schema; of an older PostgreSQL catalog, it refuses with one line and changes nothing."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tapearc.catalog.db import SCHEMA_VERSION, Catalog
from tapearc.errors import CatalogError

TESTS = Path(__file__).parent.parent
OLD = {
    1: TESTS / "cli" / "data" / "old-v1" / "catalog-v1.sql",
    2: TESTS / "catalog" / "data" / "v2" / "catalog-v2.sql",
    3: TESTS / "catalog" / "data" / "v3" / "catalog-v3.sql",
    4: TESTS / "catalog" / "data" / "v4" / "catalog-v4.sql",
}
#: the commands that only read the catalog, each with what its JSON must show of the old
#: catalog's content (volume root, generations 1 and 2 on one medium)
BROWSING: list[tuple[list[str], object]] = [
    (["catalog", "volumes"], lambda j: [(v["volume"], v["generations"]) for v in j["volumes"]] == [("root", 2)]),
    (["catalog", "generations"], lambda j: [g["generation"] for g in j["generations"]] == [1, 2]),
    (["catalog", "media"], lambda j: [len(m["generations"]) for m in j["media"]] == [2]),
    (["lease", "list"], lambda j: j == {"leases": []}),
    (["pool", "list"], lambda j: j == {"pools": []}),
    (
        ["media", "list"],
        lambda j: [(m["pool"], m["location"], m["sequence"]) for m in j["media"]] == [(None, "library", 1)],
    ),
]


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120, check=False
    )


def old_catalog(path: Path, version: int, journal: str = "wal") -> Path:
    """The catalog the version-``version`` tapearc made (in WAL mode, as tapearc makes them)."""
    db = sqlite3.connect(path)
    db.executescript(OLD[version].read_text())
    db.execute(f"PRAGMA journal_mode = {journal}")
    db.close()
    return path


def state(path: Path) -> dict[str, tuple[bytes, int]]:
    """The catalog's files (with its -wal, -shm, -journal): bytes and mtime of each."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.parent.iterdir())
        if p.name.startswith(path.name)
    }


def version_of(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize("version", sorted(OLD))
def test_browsing_an_old_catalog_leaves_it_untouched(tmp_path: Path, version: int) -> None:
    cat = old_catalog(tmp_path / "catalog.sqlite", version)
    before = state(cat)
    assert list(before) == ["catalog.sqlite"]
    for args, shows in BROWSING:
        p = tapearc(*args, "--catalog", str(cat), "--json")
        assert p.returncode == 0 and p.stderr == "", (args, p.stderr)
        assert shows(json.loads(p.stdout)), (args, p.stdout)  # type: ignore[operator]
        assert state(cat) == before, args
    p = tapearc("pool", "show", "nosuch", "--catalog", str(cat))
    assert p.returncode == 37 and p.stderr.startswith("tapearc: error: no media pool named 'nosuch'"), p.stderr
    assert state(cat) == before
    assert version_of(cat) == str(version)

    p = tapearc("pool", "create", "daily", "--keep-full", "2", "--catalog", str(cat), "--json")  # writes: migrates
    assert p.returncode == 0, p.stderr
    assert version_of(cat) == str(SCHEMA_VERSION)
    p = tapearc("pool", "list", "--catalog", str(cat), "--json")
    assert [r["name"] for r in json.loads(p.stdout)["pools"]] == ["daily"]


def test_list_reads_change_sources_of_an_old_catalog_without_migrating_it(tmp_path: Path) -> None:
    """``list --media`` reads the change sources from the catalog (schema 3 records them)."""
    data = TESTS / "catalog" / "data" / "v3"
    for name in ("tape.tap", "tape.tap.tapesim"):
        shutil.copy(data / name, tmp_path / name)
    cat = old_catalog(tmp_path / "catalog.sqlite", 3)
    before = state(cat)
    p = tapearc("list", "--media", f"sim:{tmp_path / 'tape.tap'}", "--catalog", str(cat), "--json")
    assert p.returncode == 0, p.stderr
    gens = json.loads(p.stdout)["generations"]
    assert [g["generation"] for g in gens] == [1, 2] and all(g["change"] is not None for g in gens)
    assert state(cat) == before


def test_read_only_open_of_an_old_rollback_journal_catalog(tmp_path: Path) -> None:
    """A catalog in SQLite's rollback-journal mode stays so (no journal mode is set) and the copy
    in memory is the migrated catalog; writes go to the copy alone."""
    cat = old_catalog(tmp_path / "catalog.sqlite", 2, journal="delete")
    before = state(cat)
    with Catalog(cat, read_only=True) as c:
        assert c.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert [m[4] for m in c.media_holding_generations()] == ["sim:/tmp/v2/tape.tap"]
        assert len(c.db.execute("SELECT * FROM generations").fetchall()) == 2
        c.db.execute("DELETE FROM chunks")  # the copy's: the file is not ours to change here
    assert state(cat) == before
    db = sqlite3.connect(cat)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] > 0
    db.close()


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_read_only_open_of_a_current_catalog_writes_nothing(tmp_path: Path, journal: str) -> None:
    cat = tmp_path / "catalog.sqlite"
    Catalog(cat).close()
    db = sqlite3.connect(cat)
    db.execute(f"PRAGMA journal_mode = {journal}")
    db.close()
    before = state(cat)
    with Catalog(cat, read_only=True) as c:
        assert c.known_labels() == []
        with pytest.raises(CatalogError, match="readonly"):
            c.db.execute("INSERT INTO pools (name, retention, keep, allocation, created) VALUES ('p', 'x', 1, 'y', 0)")
    assert state(cat) == before


def test_read_only_open_never_creates_a_catalog(tmp_path: Path) -> None:
    cat = tmp_path / "catalog.sqlite"
    with Catalog(cat, read_only=True) as c:
        assert c.known_labels() == []
    assert list(tmp_path.iterdir()) == []


def test_read_only_open_refuses_a_newer_catalog(tmp_path: Path) -> None:
    cat = tmp_path / "catalog.sqlite"
    Catalog(cat).close()
    db = sqlite3.connect(cat)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    before = state(cat)
    with pytest.raises(CatalogError, match="has schema version 99, this tapearc knows"):
        Catalog(cat, read_only=True)
    assert state(cat) == before


def _pg_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert row is not None
        return str(row[0])


def test_postgresql_read_only(pg_url: str) -> None:
    """A current PostgreSQL catalog is only read (the server refuses a write); an older one (its
    version faked) is refused by the reading commands with one line, left as it is, and
    migrated by a writing command."""
    Catalog(pg_url).close()
    with Catalog(pg_url, read_only=True) as c:
        assert c.known_labels() == []
        with pytest.raises(CatalogError, match="read-only transaction"):
            c.db.execute("INSERT INTO pools (name, retention, keep, allocation, created) VALUES ('p', 'x', 1, 'y', 0)")
    with Catalog(pg_url) as c:
        c.db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        c.db.execute("ALTER TABLE generations DROP COLUMN recycled")
    with pytest.raises(CatalogError, match="has the older schema version 4: a reading command does not change it"):
        Catalog(pg_url, read_only=True)
    p = tapearc("catalog", "volumes", "--catalog", pg_url)
    assert p.returncode == 16 and p.stdout == "", p.stderr
    assert p.stderr.splitlines()[0].startswith("tapearc: error: catalog postgresql://")
    assert "migrates it" in p.stderr
    assert _pg_version(pg_url) == "4"  # left as it was
    with Catalog(pg_url) as c:  # a writing open migrates it
        assert c.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert "recycled" in {
            str(r[0])
            for r in c.db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'generations'"
            ).fetchall()
        }
    assert _pg_version(pg_url) == str(SCHEMA_VERSION)


def test_pool_and_media_commands_never_create_a_catalog(tmp_path: Path, catalog_spec: str) -> None:
    """``pool list|show`` and ``media list`` of a catalog that does not exist (or an empty
    PostgreSQL database) show it empty and make nothing."""
    assert json.loads(tapearc("pool", "list", "--catalog", catalog_spec, "--json").stdout) == {"pools": []}
    assert json.loads(tapearc("media", "list", "--catalog", catalog_spec, "--json").stdout) == {"media": []}
    p = tapearc("pool", "show", "daily", "--catalog", catalog_spec)
    assert p.returncode == 37 and p.stderr.startswith("tapearc: error: no media pool named 'daily' (pools: none)")
    if not catalog_spec.startswith("postgresql"):
        assert list(tmp_path.iterdir()) == []
        return
    import psycopg

    with psycopg.connect(catalog_spec) as db:
        assert db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone() == (0,)


def test_read_only_open_leaves_a_dead_writers_log_alone(tmp_path: Path) -> None:
    """A write-ahead log with commits a writer that died left beside the file: the read-only
    open sees them and folds nothing into the file (file and log byte-identical after)."""
    made = tmp_path / "made"
    made.mkdir()
    Catalog(made / "catalog.sqlite").close()
    writer = sqlite3.connect(made / "catalog.sqlite", isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute(
        "INSERT INTO pools (name, retention, keep, allocation, created) VALUES ('p', 'keep-full', 1, 'continue', 0)"
    )
    crashed = tmp_path / "a dir?#x"  # (the URI of a path that needs quoting)
    crashed.mkdir()
    for name in ("catalog.sqlite", "catalog.sqlite-wal"):  # the files as the writer's death leaves them
        shutil.copy(made / name, crashed / name)
    writer.close()
    cat = crashed / "catalog.sqlite"
    before = state(cat)
    assert before["catalog.sqlite-wal"][0]
    with Catalog(cat, read_only=True) as c:
        assert c.db.execute("SELECT name FROM pools").fetchall() == [("p",)]
    after = state(cat)
    assert {k: after[k] for k in before} == before  # (SQLite may leave the log's index, -shm)
