"""Trusting a change tracker (tapearc.sources.changes_trust.choose_change_map), case by case,
through real backups of a file volume with --changed-blocks: trusted only when the file starts
at the checkpoint the base generation recorded; every other case is a warning and a full read,
recorded in the catalog."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog, ChangeRecord
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.scan import scan_medium
from tapearc.errors import ChangeSourceError, UsageError
from tapearc.media import open_medium
from tapearc.sources.changes_trust import ChangeOptions

DATA = Path(__file__).parent / "data" / "changes"
K64 = 64 * 1024
NBLOCKS = 64


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    p = tmp_path / "vol.img"
    p.write_bytes(b"".join(bytes([i + 1]) * K64 for i in range(NBLOCKS)))
    return p


@pytest.fixture
def spec(tmp_path: Path) -> str:
    return f"sim:{tmp_path / 't.tap'}"


def run(spec: str, src: Path, **changes: Any) -> Any:
    with Catalog() as cat, open_medium(spec, write=True) as d:
        return backup(str(src), d, cat, BackupOptions(block_size=K64, changes=ChangeOptions(**changes)))


def rows(volume: str = "vol.img") -> list[Any]:
    with Catalog() as cat:
        m = cat.media_holding_generations()
        return cat.generations(m[0][1], volume)


def change_file(tmp_path: Path, doc: dict[str, Any], name: str = "c.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def write_block(src: Path, block: int, value: int) -> None:
    with src.open("r+b") as f:
        f.seek(block * K64)
        f.write(bytes([value]) * K64)


def test_no_tracker_records_a_full_read(spec: str, vol: Path) -> None:
    r1 = run(spec, vol)
    r2 = run(spec, vol, checkpoint="thin:7")
    assert r1.change == {"source": "full-read", "trusted": False, "since": None, "checkpoint": None}
    assert r2.change == {"source": "full-read", "trusted": False, "since": None, "checkpoint": "thin:7"}
    assert [g.change for g in rows()] == [
        ChangeRecord("full-read", False, None, None),
        ChangeRecord("full-read", False, None, "thin:7"),
    ]
    assert not [w for w in r1.warnings + r2.warnings if "trusted" in w]


def test_a_full_generation_records_the_checkpoint_but_trusts_nothing(spec: str, vol: Path, tmp_path: Path) -> None:
    f = change_file(tmp_path, {"since": "cp0", "until": "cp1", "changed": [[0, K64]]})
    r = run(spec, vol, changed_blocks=f)
    assert r.kind == "full"
    assert r.change == {"source": "changed-blocks:json", "trusted": False, "since": "cp0", "checkpoint": "cp1"}
    assert not [w for w in r.warnings if "trusted" in w]  # a full generation reads all: nothing to warn of


def test_trusted_when_the_file_starts_at_the_base_checkpoint(spec: str, vol: Path, tmp_path: Path) -> None:
    run(spec, vol, checkpoint="cp1")
    write_block(vol, 5, 0xEE)
    f = change_file(tmp_path, {"since": "cp1", "until": "cp2", "changed": [[5 * K64, K64]]})
    r = run(spec, vol, changed_blocks=f)
    assert (r.kind, r.change) == (
        "incremental",
        {"source": "changed-blocks:json", "trusted": True, "since": "cp1", "checkpoint": "cp2"},
    )
    assert not r.warnings
    assert r.data_blocks == 1  # block 5 only (read or not, the other blocks are unchanged)
    if getattr(r, "source_bytes_read", None) is not None:  # the reading loop that skips vouched blocks
        assert r.source_bytes_read == K64
    assert rows()[-1].change == ChangeRecord("changed-blocks:json", True, "cp1", "cp2")
    out = tmp_path / "restored"
    with Catalog() as cat, open_medium(spec, write=False) as d:
        restore(d, cat, str(out), RestoreOptions())
    assert out.read_bytes() == vol.read_bytes()
    # and the chain goes on: the next file must start at cp2
    f3 = change_file(tmp_path, {"since": "cp2", "until": "cp3", "changed": []}, "c3.json")
    assert run(spec, vol, changed_blocks=f3).change["trusted"] is True


def test_thin_delta_chain(spec: str, tmp_path: Path) -> None:
    """thin_delta's left snapshot is the checkpoint thin:LEFT; the base must have recorded it."""
    src = tmp_path / "snap"
    src.write_bytes(bytes(NBLOCKS * K64))
    run(spec, src, checkpoint="thin:1")
    r = run(spec, src, changed_blocks=str(DATA / "thin_delta.xml"))
    assert r.change == {
        "source": "changed-blocks:thin_delta",
        "trusted": True,
        "since": "thin:1",
        "checkpoint": "thin:2",
    }


def untrusted(r: Any, why: str) -> None:
    assert r.change["trusted"] is False
    warn = [w for w in r.warnings if "is not trusted" in w]
    assert len(warn) == 1 and why in warn[0] and warn[0].endswith("every block is read"), r.warnings


def test_base_without_a_checkpoint(spec: str, vol: Path, tmp_path: Path) -> None:
    run(spec, vol)
    f = change_file(tmp_path, {"since": "cp1", "changed": []})
    untrusted(run(spec, vol, changed_blocks=f), "base generation 1 was not read at a tracker checkpoint")


def test_another_checkpoint(spec: str, vol: Path, tmp_path: Path) -> None:
    run(spec, vol, checkpoint="thin:1")
    src = tmp_path / "thin.xml"
    shutil.copy(DATA / "thin_delta.xml", src)
    run(spec, vol, checkpoint="1")
    untrusted(
        run(spec, vol, changed_blocks=str(src)),
        "it starts at checkpoint 'thin:1', base generation 2 was read at '1'",
    )


def test_a_catalog_rebuilt_by_scan_does_not_know_the_checkpoint(spec: str, vol: Path, tmp_path: Path) -> None:
    run(spec, vol, checkpoint="cp1")
    fresh = tmp_path / "rebuilt.sqlite"
    with Catalog(fresh) as cat, open_medium(spec, write=False) as d:
        scan_medium(d, cat)
        assert [g.change for g in cat.generations(cat.media_holding_generations()[0][1])] == [None]
    f = change_file(tmp_path, {"since": "cp1", "changed": []})
    with Catalog(fresh) as cat, open_medium(spec, write=True) as d:
        opts = BackupOptions(block_size=K64, changes=ChangeOptions(changed_blocks=f))
        r = backup(str(vol), d, cat, opts)
    untrusted(r, "base generation 1 has no recorded change checkpoint")


def test_a_generation_after_the_base(spec: str, vol: Path, tmp_path: Path) -> None:
    """An interrupted generation after the base: the tracker may have been reset after it."""
    run(spec, vol, checkpoint="cp1")
    with Catalog() as cat:
        db: sqlite3.Connection = cat.db
        db.execute(
            """INSERT INTO generations (volume_id, number, run_uuid, base, kind, state, volume_size, block_size,
                   record_size, chunk_blocks, compression, created, source)
               SELECT volume_id, 2, '00000000-0000-4000-8000-000000000002', 1, 'incremental', 'incomplete', volume_size, block_size, record_size,
                   chunk_blocks, compression, created, source FROM generations WHERE number = 1"""
        )
    f = change_file(tmp_path, {"since": "cp1", "changed": []})
    r = run(spec, vol, changed_blocks=f)
    assert r.base_generation == 1
    untrusted(r, "generation 2 (incomplete) came after base generation 1")


def test_the_same_disk_backed_up_elsewhere_after_the_base(spec: str, vol: Path, tmp_path: Path) -> None:
    """Backed up to another media set after the base (where a bitmap may have been cleared
    afterwards): not trusted for the first set's next incremental."""
    run(spec, vol, checkpoint="cp1")
    other = f"sim:{tmp_path / 'other.tap'}"
    run(other, vol, checkpoint="cp1")
    f = change_file(tmp_path, {"since": "cp1", "changed": []})
    r = run(spec, vol, changed_blocks=f)
    assert r.base_generation == 1
    untrusted(r, f"{vol} was read again after base generation 1, as generation 1 of volume 'vol.img'")
    assert run(other, vol, changed_blocks=f).change["trusted"] is False  # other's base: read again since, too


def test_a_size_change(spec: str, vol: Path, tmp_path: Path) -> None:
    run(spec, vol, checkpoint="cp1")
    with vol.open("ab") as f:
        f.write(b"\x01" * K64)
    c = change_file(tmp_path, {"since": "cp1", "changed": [[NBLOCKS * K64, K64]]})
    untrusted(run(spec, vol, changed_blocks=c), "the volume's size changed since base generation 1")


def test_the_file_says_another_volume_size(spec: str, vol: Path, tmp_path: Path) -> None:
    run(spec, vol, checkpoint="cp1")
    c = change_file(tmp_path, {"since": "cp1", "volume_size": 123 * K64, "changed": []})
    untrusted(run(spec, vol, changed_blocks=c), f"is for a volume of {123 * K64} bytes")


def test_since_from_the_command_line(spec: str, vol: Path, tmp_path: Path) -> None:
    """CSV and era_invalidate do not say where they start: --changed-since does, and must agree
    with a file that says."""
    run(spec, vol, checkpoint="era:3")
    csv = tmp_path / "c.csv"
    csv.write_text("offset,length\n")
    untrusted(run(spec, vol, changed_blocks=str(csv)), "does not say which checkpoint its changes start at")
    run(spec, vol, checkpoint="era:3")
    r = run(spec, vol, changed_blocks=str(csv), changed_since="era:3", checkpoint="era:4")
    assert r.change == {"source": "changed-blocks:csv", "trusted": True, "since": "era:3", "checkpoint": "era:4"}
    r = run(spec, vol, changed_blocks=str(DATA / "era_invalidate.xml"), change_block_size=K64, changed_since="era:4")
    assert r.change == {
        "source": "changed-blocks:era_invalidate",
        "trusted": True,
        "since": "era:4",
        "checkpoint": None,
    }
    run(spec, vol, checkpoint="cp1")
    j = change_file(tmp_path, {"since": "cp1", "changed": []})
    untrusted(run(spec, vol, changed_blocks=j, changed_since="cp0"), "--changed-since says 'cp0'")


def test_checkpoint_must_be_where_the_file_ends(spec: str, vol: Path, tmp_path: Path) -> None:
    run(spec, vol, checkpoint="cp1")
    j = change_file(tmp_path, {"since": "cp1", "until": "cp2", "changed": []})
    untrusted(run(spec, vol, changed_blocks=j, checkpoint="cp9"), "ends at checkpoint 'cp2'")
    assert rows()[-1].change == ChangeRecord("changed-blocks:json", False, "cp1", "cp9")


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"dirty_bitmap": "b", "changed_blocks": "f"}, "exclude each other"),
        ({"dirty_bitmap": "b", "checkpoint": "x"}, "--checkpoint is for --changed-blocks"),
        ({"changed_since": "x"}, "describe a --changed-blocks file"),
        ({"change_block_size": 4096}, "describe a --changed-blocks file"),
        ({"verify_unchanged": True}, "--verify-unchanged checks a change tracker"),
        ({"changed_blocks": "f", "checkpoint": " "}, "--checkpoint must not be empty"),
        ({"dirty_bitmap": "b"}, "is not an NBD export"),
        ({"checkpoint": "dirty-bitmap:b"}, "recorded by --dirty-bitmap only"),
    ],
)
def test_bad_options_write_nothing(spec: str, vol: Path, tmp_path: Path, opts: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run(spec, vol, **opts)
    assert not (tmp_path / "t.tap").exists() or (tmp_path / "t.tap").stat().st_size == 0


def test_a_bad_file_writes_nothing(spec: str, vol: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("offset,length\n0,-1\n")
    with pytest.raises(ChangeSourceError, match=r"bad.csv:2: negative range"):
        run(spec, vol, changed_blocks=str(bad))
    assert not (tmp_path / "t.tap").exists() or (tmp_path / "t.tap").stat().st_size == 0
