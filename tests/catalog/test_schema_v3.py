"""Catalog schema 3 (each generation's change source and checkpoints): a schema-2 catalog made by
the previous tapearc is migrated in place, keeps every row, and its generations read as "not
recorded" (so the next incremental with a tracker reads everything, with a warning)."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from tapearc.catalog.db import SCHEMA_VERSION, Catalog, ChangeRecord
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.media import open_medium
from tapearc.sources.changes_trust import ChangeOptions

DATA = Path(__file__).parent / "data" / "v2"
TABLES = ("media_sets", "media", "volumes", "generations", "tape_files", "chunks")


def old_volume() -> bytes:
    r = random.Random(2)
    d = bytearray(b"".join(r.randbytes(4096) if i % 3 else bytes(4096) for i in range(16)))
    d[5 * 4096 : 5 * 4096 + 4] = b"new!"
    return bytes(d)


def table_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    finally:
        db.close()


def test_schema_2_is_migrated_in_place(tmp_path: Path) -> None:
    cat = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(cat)
    db.executescript((DATA / "catalog-v2.sql").read_text())
    db.close()
    old = {t: table_rows(cat, t) for t in TABLES}
    assert len(old["generations"]) == 2
    with Catalog(cat) as c:
        set_uuid = c.media_holding_generations()[0][1]
        gens = c.generations(set_uuid, "root")
    assert SCHEMA_VERSION == 5  # migrated through 3 (change sources), 4 (key fingerprints) to 5 (pools)
    assert table_rows(cat, "meta") == [("schema_version", "5")]
    # four change-source columns, a key fingerprint and recycled; a set's key; pool, location, protection, recycled
    added = {"generations": (None,) * 6, "media_sets": (None,), "media": (None, "library", 0, None)}
    for t, rows in old.items():  # every row kept; the new columns are NULL or their defaults
        new = table_rows(cat, t)
        if t in added:
            tail = added[t]
            assert [r[: len(rows[0])] for r in new] == rows and all(r[len(rows[0]) :] == tail for r in new)
        else:
            assert new == rows
    assert [(g.number, g.change) for g in gens] == [(1, None), (2, None)]
    # opening it again changes nothing
    with Catalog(cat):
        pass
    assert table_rows(cat, "meta") == [("schema_version", "5")]

    for name in ("tape.tap", "tape.tap.tapesim"):
        shutil.copy(DATA / name, tmp_path / name)
    spec = f"sim:{tmp_path / 'tape.tap'}"
    out = tmp_path / "g2"
    with Catalog(cat) as c, open_medium(spec, write=False) as d:
        restore(d, c, str(out), RestoreOptions())
    assert out.read_bytes() == old_volume()

    # the next incremental with a tracker: the base recorded no checkpoint -> warning, full read
    src = tmp_path / "root"
    src.write_bytes(old_volume())
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"since": "cp1", "until": "cp2", "changed": []}))
    opts = BackupOptions(volume_name="root", block_size_given=False, changes=ChangeOptions(changed_blocks=str(f)))
    with Catalog(cat) as c, open_medium(spec, write=True) as d:
        r = backup(str(src), d, c, opts)
        gens = c.generations(set_uuid, "root")
    assert (r.generation, r.kind, r.change["trusted"]) == (3, "incremental", False)
    assert any("base generation 2 has no recorded change checkpoint" in w for w in r.warnings)
    assert gens[-1].change == ChangeRecord("changed-blocks:json", False, "cp1", "cp2")
