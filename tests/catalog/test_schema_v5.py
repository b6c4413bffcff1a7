"""Catalog schema 5 (media pools, locations, write protection, recycling): a schema-4 catalog
made by the previous tapearc is migrated in place, keeps every row, its media are in no pool,
in the library and writable, and its medium restores as before."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tapearc.catalog import pools
from tapearc.catalog.db import SCHEMA_VERSION, Catalog
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.media import open_medium
from tests.catalog.test_schema_v3 import TABLES, table_rows
from tests.catalog.test_schema_v4 import old_volume

DATA = Path(__file__).parent / "data" / "v4"


def test_schema_4_is_migrated_in_place(tmp_path: Path) -> None:
    cat = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(cat)
    db.executescript((DATA / "catalog-v4.sql").read_text())
    db.close()
    old = {t: table_rows(cat, t) for t in TABLES}
    assert table_rows(cat, "meta") == [("schema_version", "4")] and len(old["generations"]) == 2
    with Catalog(cat) as c:
        assert pools.pools(c) == []
        media = pools.media(c)
        gens = pools.retention_rows(c)
    assert SCHEMA_VERSION == 5
    assert table_rows(cat, "meta") == [("schema_version", "5")]
    for t, rows in old.items():  # every row kept; media gain 4 columns, generations 1
        new = table_rows(cat, t)
        if t == "media":
            assert [r[:-4] for r in new] == rows and all(r[-4:] == (None, "library", 0, None) for r in new)
        elif t == "generations":
            assert [r[:-1] for r in new] == rows and all(r[-1] is None for r in new)
        else:
            assert new == rows
    assert [(m.pool, m.location, m.write_protected, m.recycled) for m in media] == [(None, "library", False, None)]
    assert [(g.number, g.base, g.state, g.media == {media[0].id}) for g in gens] == [
        (1, 0, "complete", True),
        (2, 1, "complete", True),
    ]
    with Catalog(cat):  # opening it again changes nothing
        pass
    assert table_rows(cat, "meta") == [("schema_version", "5")]

    for name in ("tape.tap", "tape.tap.tapesim"):
        shutil.copy(DATA / name, tmp_path / name)
    out = tmp_path / "g2"
    with Catalog(cat) as c, open_medium(f"sim:{tmp_path / 'tape.tap'}", write=False) as d:
        restore(d, c, str(out), RestoreOptions())
    assert out.read_bytes() == old_volume()
