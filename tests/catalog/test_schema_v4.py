"""Catalog schema 4 (the key fingerprint of each media set and generation): a schema-3 catalog
made by the previous tapearc is migrated in place, keeps every row, and its sets and generations
read as plain; its media restore as before, and an encrypted backup into its plain media set is
refused (nothing written)."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from tapearc.catalog.db import SCHEMA_VERSION, Catalog
from tapearc.crypto.keys import Key
from tapearc.crypto.wrap import wrap_key
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.encryption import BackupKey
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import MediaSetKeyError
from tapearc.media import open_medium
from tests.catalog.test_schema_v3 import TABLES, table_rows

DATA = Path(__file__).parent / "data" / "v3"


def old_volume() -> bytes:
    r = random.Random(3)
    d = bytearray(b"".join(r.randbytes(4096) if i % 3 else bytes(4096) for i in range(16)))
    d[5 * 4096 : 5 * 4096 + 4] = b"new!"
    return bytes(d)


def test_schema_3_is_migrated_in_place(tmp_path: Path) -> None:
    cat = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(cat)
    db.executescript((DATA / "catalog-v3.sql").read_text())
    db.close()
    old = {t: table_rows(cat, t) for t in TABLES}
    assert table_rows(cat, "meta") == [("schema_version", "3")] and len(old["generations"]) == 2
    with Catalog(cat) as c:
        set_uuid = c.media_holding_generations()[0][1]
        gens = c.generations(set_uuid, "root")
        assert c.media_set_key(set_uuid) is None
    assert SCHEMA_VERSION == 5  # through 4 (key fingerprints) to 5 (pools)
    assert table_rows(cat, "meta") == [("schema_version", "5")]
    added = {"generations": (None, None), "media_sets": (None,), "media": (None, "library", 0, None)}
    for t, rows in old.items():  # every row kept; the new columns are NULL or their defaults
        new = table_rows(cat, t)
        if t in added:
            tail = added[t]
            assert [r[: len(rows[0])] for r in new] == rows and all(r[len(rows[0]) :] == tail for r in new)
        else:
            assert new == rows
    assert [(g.number, g.key_fingerprint, g.encrypted) for g in gens] == [(1, None, False), (2, None, False)]
    with Catalog(cat):  # opening it again changes nothing
        pass
    assert table_rows(cat, "meta") == [("schema_version", "5")]

    for name in ("tape.tap", "tape.tap.tapesim"):
        shutil.copy(DATA / name, tmp_path / name)
    spec = f"sim:{tmp_path / 'tape.tap'}"
    out = tmp_path / "g2"
    with Catalog(cat) as c, open_medium(spec, write=False) as d:
        restore(d, c, str(out), RestoreOptions())
    assert out.read_bytes() == old_volume()

    # --encrypt into this plain set: refused, the medium untouched
    src = tmp_path / "root"
    src.write_bytes(old_volume())
    key = Key.generate()
    before = (tmp_path / "tape.tap").read_bytes()
    opts = BackupOptions(
        volume_name="root", block_size_given=False, encrypt=BackupKey(wrap_key(key, "pw", log2_n=10), key)
    )
    with Catalog(cat) as c, open_medium(spec, write=True) as d, pytest.raises(MediaSetKeyError):
        backup(str(src), d, c, opts)
    assert (tmp_path / "tape.tap").read_bytes() == before
