"""The catalog's contract, run against both backends (``catalog_spec``: an SQLite file and a new
PostgreSQL database): what the engine uses of it gives the same answers on both.

Media and media sets, generations (begin / add_chunks / finish, their states), chunks and
digests, key fingerprints, pools, the browsing views, forget before a rescan; the schema's
version and the refusal of a database that is not a catalog; values past 2^31 and bytes."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog import pools, views
from tapearc.catalog.db import SCHEMA_VERSION, Catalog, ChangeRecord
from tapearc.catalog.states import GenerationState
from tapearc.engine.plan import load_chain
from tapearc.engine.retention import Policy
from tapearc.errors import CatalogError, NoSuchGenerationError
from tests.catalog.fakes import entries, header, label, record_generation

SET = uuid.UUID("11111111-2222-3333-4444-555555555555")
KEY = bytes(range(16))


def test_kind_and_spec(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        assert cat.kind == ("sqlite" if "://" not in catalog_spec else "postgresql")
        assert cat.spec and "password" not in cat.spec
        assert cat.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION
        )
    with Catalog(catalog_spec) as cat:  # opened again: nothing changes, nothing is created twice
        assert cat.db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 1


def test_media_and_sets(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        a, b = label(SET, 1, "TAPE01"), label(SET, 2, "")
        ida = cat.record_medium(a, "sim:/x/a.tap")
        assert cat.record_medium(a, "sim:/x/a2.tap") == ida  # the same medium: its row, its last name updated
        cat.record_medium(b)
        m = cat.medium(a.medium_uuid)
        assert m is not None and (m.id, m.uuid, m.set_uuid, m.sequence, m.label, m.record_size) == (
            ida,
            a.medium_uuid,
            SET,
            1,
            "TAPE01",
            256 * 1024,
        )
        assert cat.medium(uuid.uuid4()) is None
        assert cat.known_labels() == ["TAPE01"]
        assert [x.sequence for x in cat.media_of_set(SET)] == [1, 2]
        assert views.media_sets(cat) == [SET]
        assert [(r.label, r.last_name) for r in views.all_media(cat)] == [("TAPE01", "sim:/x/a2.tap"), ("", None)]
        assert [r.uuid for r in views.find_media(cat, "TAPE01")] == [a.medium_uuid]
        assert [r.uuid for r in views.find_media(cat, b.medium_uuid.hex[:6])] == [b.medium_uuid]


def test_key_fingerprints(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        other = uuid.uuid4()
        assert cat.media_set_key(SET) is None
        cat.set_media_set_key(SET, KEY)
        cat.set_media_set_key(SET, bytes(16))  # a set's key never changes
        assert cat.media_set_key(SET) == KEY
        lab = label(other)
        cat.record_medium(lab)
        record_generation(cat, lab, header(lab, "v", 1, key=KEY[::-1]), 1, entries(1))
        assert cat.media_set_key(other) == KEY[::-1]  # learnt from an encrypted generation
        (g,) = cat.generations(other)
        assert g.encrypted and g.key_fingerprint == KEY[::-1]


def test_generation_lifecycle(catalog_spec: str) -> None:
    rng = random.Random(5)
    with Catalog(catalog_spec) as cat:
        lab = label(SET, 1, "T1")
        cat.record_medium(lab)
        h = header(lab, "disk", 1, source="/dev/sda", volume_size=3 * 2**40)  # 3 TiB: past 2^31 and 2^32
        gid = cat.begin_generation(h, medium_uuid=lab.medium_uuid, tape_file=1, logical=5_000_000_000)
        (g,) = cat.generations(SET)
        assert (g.id, g.state, g.chunk_count, g.volume_size) == (gid, GenerationState.WRITING, 0, 3 * 2**40)
        chunks = entries(3, rng=rng)
        cat.add_chunks(gid, lab.medium_uuid, 1, 5_000_000_000, chunks[:2])
        cat.add_chunks(gid, lab.medium_uuid, 1, 5_000_000_000, chunks[2:])
        cat.add_chunks(gid, lab.medium_uuid, 1, 5_000_000_000, chunks[1:2])  # the same chunk again: replaced
        cat.record_change(gid, ChangeRecord("dirty-bitmap:b0", True, "cp0", "cp1"))
        cat.finish_generation(
            gid, state="auto", medium_uuid=lab.medium_uuid, tape_file=1, closed=True, has_trailer=True, final=True
        )
        (g,) = cat.generations(SET)
        assert g.state == GenerationState.COMPLETE and g.chunk_count == 3
        assert (g.data_blocks, g.zero_blocks, g.raw_bytes, g.stored_bytes) == (48, 3, 3 * 16 * 65536, 3003)
        assert isinstance(g.raw_bytes, int) and isinstance(g.stored_bytes, int)
        assert g.change == ChangeRecord("dirty-bitmap:b0", True, "cp0", "cp1")
        assert (g.source_path, g.source_real, g.source_dev, g.source_ino) == ("/dev/sda", "/dev/sda", 2049, 12)
        assert cat.generation_by_run(h.run_uuid) == g
        assert cat.generation_of_tape_file(lab.medium_uuid, 1) == g
        assert cat.generations_from_source("/dev/sda") == [g]
        assert cat.last_number(SET, "disk") == 1 and cat.last_number(SET, "other") == 0
        assert cat.part_info(lab.medium_uuid, 1) == (0, False)

        rows = cat.chunks(gid)
        assert [(c.seq, c.logical, c.payload_crc, c.tape_file) for c in rows] == [
            (i, 5_000_000_000 + 1 + 5 * i, 0xFFFFFFF0 + i, 1) for i in range(3)
        ]
        assert [c.runs for c in rows] == [e.runs for e, _ in chunks]
        assert list(cat.chunk_runs(gid)) == [(c.id, c.runs) for c in rows]
        assert [d for _, d in cat.chunk_digests(gid)] == [d for _, d in chunks]
        assert all(isinstance(d, bytes) for _, d in cat.chunk_digests(gid))
        assert cat.chunk_digest_table(rows[1].id) == chunks[1][1]
        assert cat.chunk_digest_table(10**12) == b""
        tf = cat.tape_files(lab.medium_uuid)
        assert [(t.file_number, t.logical, t.generation, t.volume, t.closed, t.has_trailer) for t in tf] == [
            (1, 5_000_000_000, 1, "disk", True, True)
        ]


def test_states(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        lab = label(SET)
        cat.record_medium(lab)
        gap = entries(3)
        # a gap in the chunks with the trailer seen: complete-pending; no trailer: incomplete
        g1 = cat.begin_generation(header(lab, "v", 1), medium_uuid=lab.medium_uuid, tape_file=1, logical=10)
        cat.add_chunks(g1, lab.medium_uuid, 1, 10, [gap[0], gap[2]])
        cat.finish_generation(
            g1, state="auto", medium_uuid=lab.medium_uuid, tape_file=1, closed=True, has_trailer=True, final=True
        )
        g2 = cat.begin_generation(header(lab, "v", 2, base=1), medium_uuid=lab.medium_uuid, tape_file=2, logical=20)
        cat.finish_generation(
            g2, state="auto", medium_uuid=lab.medium_uuid, tape_file=2, closed=False, has_trailer=False
        )
        g3 = cat.begin_generation(header(lab, "w", 1), medium_uuid=lab.medium_uuid, tape_file=3, logical=30)
        assert cat.mark_stale_writing(uuid.uuid4()) == 0
        assert cat.mark_stale_writing(SET) == 1
        states = {g.id: g.state for g in cat.generations(SET)}
        assert states == {
            g1: GenerationState.COMPLETE_PENDING,
            g2: GenerationState.INCOMPLETE,
            g3: GenerationState.INCOMPLETE,
        }
        with pytest.raises(ValueError):
            cat.begin_generation(header(lab, "x", 1), medium_uuid=lab.medium_uuid, tape_file=4, logical=1, state="bad")
        with pytest.raises(CatalogError, match="not in the catalog"):
            cat.begin_generation(header(lab, "x", 1), medium_uuid=uuid.uuid4(), tape_file=4, logical=1)
        assert {g.volume for g in cat.generations(SET)} == {"v", "w"}  # the failed write left nothing


def test_spanning_parts(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        a, b = label(SET, 1), label(SET, 2)
        cat.record_medium(a)
        cat.record_medium(b)
        h = header(a, "big", 1)
        gid = cat.begin_generation(h, medium_uuid=a.medium_uuid, tape_file=1, logical=1)
        e = entries(4)
        cat.add_chunks(gid, a.medium_uuid, 1, 1, e[:2])
        cat.finish_generation(
            gid,
            state=GenerationState.WRITING,
            medium_uuid=a.medium_uuid,
            tape_file=1,
            closed=True,
            has_trailer=True,
            continues=True,
        )
        h2 = header(b, "big", 1, run_uuid=h.run_uuid, part=1, volume_uuid=h.volume_uuid)
        assert cat.begin_generation(h2, medium_uuid=b.medium_uuid, tape_file=1, logical=1) == gid
        cat.add_chunks(gid, b.medium_uuid, 1, 1, e[2:])
        cat.finish_generation(
            gid, state="auto", medium_uuid=b.medium_uuid, tape_file=1, closed=True, has_trailer=True, final=True
        )
        (g,) = cat.generations(SET)
        assert g.state == GenerationState.COMPLETE and g.chunk_count == 4
        assert cat.part_info(a.medium_uuid, 1) == (0, True) and cat.part_info(b.medium_uuid, 1) == (1, False)
        assert [(c.medium_sequence, c.seq) for c in cat.chunks(gid)] == [(1, 0), (1, 1), (2, 2), (2, 3)]
        held = cat.media_holding_generations()
        assert sorted((m[2], m[5]) for m in held) == [(1, [1]), (2, [1])]


def test_volumes_sorted_as_sqlite_sorts(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        lab = label(SET)
        cat.record_medium(lab)
        names = ["b", "B", "a", "_x", "Ä", "a b"]
        for i, n in enumerate(names):
            record_generation(cat, lab, header(lab, n, 1, source=f"/src/{n}"), i + 1, entries(1, first_seq=0))
        assert cat.volumes(SET) == sorted(names)  # by code point
        rows = cat.volume_rows(SET)
        assert [(r.name, r.generations, r.source_path, r.source_generation) for r in rows] == [
            (n, 1, f"/src/{n}", 1) for n in sorted(names)
        ]


def test_replacing_a_stale_generation_and_forget(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        lab = label(SET)
        cat.record_medium(lab)
        g1 = record_generation(cat, lab, header(lab, "v", 1), 1, entries(2))
        record_generation(cat, lab, header(lab, "v", 2, base=1), 2, entries(2))
        # the medium was rewritten from file 2: another run's generation 2 replaces the row
        g2b = record_generation(cat, lab, header(lab, "v", 2, base=1), 2, entries(1))
        assert [g.id for g in cat.generations(SET)] == [g1, g2b]
        assert len(cat.chunks(g2b)) == 1
        record_generation(cat, lab, header(lab, "v", 3, base=2), 3, entries(2))
        cat.forget_medium_files(lab.medium_uuid, 2)  # before a rescan from file 2
        assert [g.number for g in cat.generations(SET)] == [1]
        assert [t.file_number for t in cat.tape_files(lab.medium_uuid)] == [1]
        assert cat.last_number(SET, "v") == 1
        assert cat.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 2
        cat.forget_medium_files(uuid.uuid4())  # an unknown medium: nothing
        # rescanned: the same generations again
        g2c = record_generation(cat, lab, header(lab, "v", 2, base=1), 2, entries(2))
        assert [g.id for g in cat.generations(SET)] == [g1, g2c]


def test_pools(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        p = pools.create_pool(cat, "nightly", Policy("keep-full", 2), "continue", 1_700_000_000)
        assert pools.pools(cat) == [p] and pools.pool(cat, "nightly") == p and pools.pool(cat, "x") is None
        with pytest.raises(CatalogError):
            pools.create_pool(cat, "nightly", Policy("keep-days", 3), "continue", 1)
        assert [q.name for q in pools.pools(cat)] == ["nightly"]  # the failed write left nothing
        a, b = label(SET, 1, "P1"), label(SET, 2, "P2")
        cat.record_medium(a)
        cat.record_medium(b)
        gid = record_generation(cat, a, header(a, "v", 1), 1, entries(2))
        assert pools.join_pool(cat, SET, p.id) == 2
        assert pools.join_pool(cat, SET, p.id) == 0
        (ma, mb) = pools.media(cat, "nightly")
        pools.set_location(cat, ma.id, pools.OFFSITE)
        pools.set_write_protected(cat, mb.id, True)
        got = {m.label: (m.pool, m.location, m.write_protected) for m in pools.media(cat)}
        assert got == {"P1": ("nightly", "offsite", False), "P2": ("nightly", "library", True)}
        assert pools.set_sizes(cat) == {ma.id: 1000 + 1001}
        (r,) = pools.retention_rows(cat, p.id)
        assert (r.key, r.volume, r.number, r.state, r.media) == (gid, "v", 1, "complete", frozenset({ma.id}))
        pools.mark_recycled(cat, ma.id, 1_800_000_000)
        assert pools.retention_rows(cat) == [] and cat.generations(SET) == []
        assert [m.label for m in pools.media(cat)] == ["P2"]
        assert [m.recycled for m in pools.media(cat, with_recycled=True) if m.label == "P1"] == [1_800_000_000]
        new = label(SET, 1, "P1")
        cat.record_medium(new)
        pools.carry_over(cat, ma.id, new.medium_uuid, p.id)
        assert {(m.label, m.uuid, m.location) for m in pools.media(cat, "nightly")} == {
            ("P1", new.medium_uuid, "offsite"),
            ("P2", b.medium_uuid, "library"),
        }


def test_views(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        lab = label(SET, 1, "VIEW01")
        cat.record_medium(lab)
        record_generation(cat, lab, header(lab, "v", 1, created=1000), 1, entries(2))
        record_generation(cat, lab, header(lab, "v", 2, base=1, created=2000), 2, entries(1))
        record_generation(cat, lab, header(lab, "w", 1, created=1500), 3, entries(1), state="incomplete")
        vols = views.volumes(cat)
        assert [(v.name, v.generations, v.complete, v.first_backup, v.last_backup) for v in vols] == [
            ("v", 2, 2, 1000, 2000),
            ("w", 1, 0, 1500, 1500),
        ]
        gens = views.generations(cat, views.CatalogFilter(), load_chain)
        assert [(g.row.volume, g.row.number, g.restore.chain, g.restore.problem is None) for g in gens] == [
            ("v", 1, (1,), True),
            ("v", 2, (1, 2), True),
            ("w", 1, (), False),
        ]
        assert gens[1].restore.describe() == "VIEW01: files 1 2"
        assert [g.row.number for g in views.generations(cat, views.CatalogFilter(since=1200), load_chain)] == [2, 1]
        (m,) = views.media(cat)
        assert (m.medium.label, m.generations, m.tape_files, m.bytes_used) == (
            "VIEW01",
            (("v", 1), ("v", 2), ("w", 1)),
            3,
            1000 + 1001 + 1000 + 1000,
        )
        assert views.generation_at(cat, SET, "v", 1999).number == 1
        assert views.generation_at_any(cat, "v", 5000).number == 2
        with pytest.raises(NoSuchGenerationError):
            views.generation_at(cat, SET, "v", 999)


def test_a_newer_schema_is_refused(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        cat.db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(CatalogError, match=r"has schema version 99, this tapearc knows 5") as e:
        Catalog(catalog_spec)
    assert e.value.exit_code == 16


def test_a_database_that_is_not_a_catalog_is_left_untouched(catalog_spec: str, tmp_path: Path) -> None:
    if "://" in catalog_spec:
        import psycopg

        with psycopg.connect(catalog_spec, autocommit=True) as c:
            c.execute("CREATE TABLE invoices (id INTEGER)")
    else:
        import sqlite3

        with sqlite3.connect(catalog_spec) as c:
            c.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(CatalogError, match=r"not a tapearc catalog.*invoices.*untouched") as e:
        Catalog(catalog_spec)
    assert e.value.exit_code == 16


def test_a_failed_transaction_is_rolled_back(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        lab = label(SET)
        with pytest.raises(RuntimeError), cat.transaction():
            cat.record_medium(lab)
            raise RuntimeError("stop")
        assert cat.medium(lab.medium_uuid) is None
        with cat.transaction(), cat.transaction():  # nested: one transaction
            cat.record_medium(lab)
        assert cat.medium(lab.medium_uuid) is not None
        assert not cat.db.in_transaction


def test_many_chunks_round_trip(catalog_spec: str) -> None:
    """A generation of 2 GiB at 16 blocks of 64 KiB per chunk: 2048 chunks, their digests."""
    with Catalog(catalog_spec) as cat:
        lab = label(SET)
        cat.record_medium(lab)
        chunks = entries(2048, rng=random.Random(1))
        gid = record_generation(cat, lab, header(lab, "v", 1, volume_size=2 << 30), 1, chunks)
        assert [d for _, d in cat.chunk_digests(gid)] == [d for _, d in chunks]
        (g,) = cat.generations(SET)
        assert g.chunk_count == 2048 and g.data_blocks == 2048 * 16


def test_run_kinds_survive(catalog_spec: str) -> None:
    with Catalog(catalog_spec) as cat:
        lab = label(SET)
        cat.record_medium(lab)
        e = fmt.ChunkIndexEntry(
            seq=0,
            record=1,
            record_count=1,
            stored_len=1,
            raw_len=1,
            payload_crc=0,
            runs=(fmt.Run(2**40, 2**31, fmt.RunKind.ZERO), fmt.Run(2**40 + 2**31, 1)),
        )
        gid = record_generation(cat, lab, header(lab, "v", 1), 1, [(e, b"\x00" * 16)])
        (c,) = cat.chunks(gid)
        assert c.runs == e.runs


def test_a_write_waits_for_another_then_names_it(catalog_spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write waits up to TAPEARC_CATALOG_TIMEOUT for another process's write transaction; past
    it, a CatalogError (16) naming the holder. Reads are never blocked."""
    monkeypatch.setenv("TAPEARC_CATALOG_TIMEOUT", "0.3")
    with Catalog(catalog_spec) as holder, Catalog(catalog_spec) as other:
        lab = label(SET)
        with holder.transaction():
            holder.record_medium(lab)
            assert other.known_labels() == []  # a read is not blocked, and sees nothing uncommitted
            with pytest.raises(CatalogError, match=r"is locked by .*waited 0.3 s") as e:
                other.record_medium(label(SET, 2))
            assert e.value.exit_code == 16
            if holder.kind == "postgresql":
                assert f"pid {os.getpid()}" in str(e.value)  # the holder's application_name
        other.record_medium(label(SET, 2))  # the lock is free again
        assert len(other.media_of_set(SET)) == 2


def test_a_connection_of_its_own_for_another_table(catalog_spec: str) -> None:
    """catalog.db.connect: what leases use: autocommit, ``?`` placeholders, any thread."""
    import threading

    from tapearc.catalog import db as catalog_db

    db = catalog_db.connect(catalog_spec)
    try:
        seen: list[object] = []
        t = threading.Thread(
            target=lambda: seen.append(
                db.execute("SELECT value FROM meta WHERE key = ? AND 1 = ?", ("schema_version", 1)).fetchone()[0]
            )
        )
        t.start()
        t.join()
        assert seen == ["5"] and not db.in_transaction
        with pytest.raises(CatalogError):
            db.execute("SELECT nothing FROM nowhere WHERE x = ?", (1,))
    finally:
        db.close()


def test_a_table_added_to_the_schema_is_made_in_an_existing_catalog(
    catalog_spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """schema.EXTRA_DDL (another part's table, e.g. leases) joins catalogs made before it."""
    from tapearc.catalog import schema

    with Catalog(catalog_spec):
        pass
    monkeypatch.setattr(
        schema, "EXTRA_DDL", ["CREATE TABLE IF NOT EXISTS extra_things (name TEXT PRIMARY KEY, n INTEGER)"]
    )
    with Catalog(catalog_spec) as cat:
        cat.db.execute("INSERT INTO extra_things (name, n) VALUES (?, ?)", ("a", 2**40))
        assert cat.db.execute("SELECT n FROM extra_things").fetchone()[0] == 2**40


def test_stale_writing_only_on_the_medium_held(catalog_spec: str) -> None:
    """Another process may be writing a generation of the same media set on another medium (two
    drives, two hosts): opening one medium marks only the generations whose latest part is on it."""
    with Catalog(catalog_spec) as cat:
        a, b, c = label(SET, 1), label(SET, 2), label(SET, 3)
        for lab in (a, b, c):
            cat.record_medium(lab)
        on_b = cat.begin_generation(header(b, "vb", 1), medium_uuid=b.medium_uuid, tape_file=1, logical=1)
        h = header(a, "span", 1)
        span = cat.begin_generation(h, medium_uuid=a.medium_uuid, tape_file=1, logical=1)
        cat.finish_generation(
            span, state="writing", medium_uuid=a.medium_uuid, tape_file=1, closed=True, has_trailer=True, continues=True
        )
        h2 = header(c, "span", 1, run_uuid=h.run_uuid, part=1, volume_uuid=h.volume_uuid)
        cat.begin_generation(h2, medium_uuid=c.medium_uuid, tape_file=1, logical=1)  # now writing on c
        assert cat.mark_stale_writing(SET, a.medium_uuid) == 0  # span goes on on c; b's is not a's
        assert {g.id: g.state for g in cat.generations(SET)} == {on_b: "writing", span: "writing"}
        assert cat.mark_stale_writing(SET, b.medium_uuid) == 1
        assert cat.mark_stale_writing(SET, c.medium_uuid) == 1
        assert {g.state for g in cat.generations(SET)} == {"incomplete"}
