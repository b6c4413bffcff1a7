"""Media pools in the catalog (schema 5): pools, each medium's pool, location, write protection,
and recycling. The retention decisions themselves are tapearc/engine/retention.py's."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from tapearc.catalog.db import Catalog
from tapearc.engine.retention import Gen, Policy

ALLOCATIONS = ("continue", "new-set-per-full")
LIBRARY = "library"
OFFSITE = "offsite"


@dataclass(frozen=True, slots=True)
class PoolRow:
    id: int
    name: str
    policy: Policy
    allocation: str
    created: int

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "retention": self.policy.retention,
            "keep": self.policy.keep,
            "allocation": self.allocation,
            "created": self.created,
            "policy": self.policy.describe(),
        }


@dataclass(frozen=True, slots=True)
class PoolMedium:
    """A medium (one label of it: a recycled medium's old label is a row of its own)."""

    id: int
    uuid: uuidlib.UUID
    set_uuid: uuidlib.UUID
    sequence: int
    label: str
    pool: str | None
    location: str
    write_protected: bool
    recycled: int | None
    created: int

    @property
    def name(self) -> str:
        return self.label or str(self.uuid)


_POOL_COLS = "id, name, retention, keep, allocation, created"


def _pool(r: tuple[object, ...]) -> PoolRow:
    return PoolRow(int(str(r[0])), str(r[1]), Policy(str(r[2]), int(str(r[3]))), str(r[4]), int(str(r[5])))


def create_pool(cat: Catalog, name: str, policy: Policy, allocation: str, now: int) -> PoolRow:
    with cat.transaction(durable=True):
        cat.db.execute(
            "INSERT INTO pools (name, retention, keep, allocation, created) VALUES (?, ?, ?, ?, ?)",
            (name, policy.retention, policy.keep, allocation, now),
        )
    found = pool(cat, name)
    assert found is not None
    return found


def pools(cat: Catalog) -> list[PoolRow]:
    return [_pool(r) for r in cat.db.execute(f"SELECT {_POOL_COLS} FROM pools ORDER BY name")]


def pool(cat: Catalog, name: str) -> PoolRow | None:
    r = cat.db.execute(f"SELECT {_POOL_COLS} FROM pools WHERE name = ?", (name,)).fetchone()
    return None if r is None else _pool(r)


def media(cat: Catalog, pool_name: str | None = None, with_recycled: bool = False) -> list[PoolMedium]:
    """The media the catalog knows (each in use label of them), of one pool if named."""
    q = """SELECT m.id, m.uuid, s.uuid, m.sequence, m.label, p.name, m.location, m.write_protected,
                  m.recycled, m.created
           FROM media m JOIN media_sets s ON s.id = m.set_id LEFT JOIN pools p ON p.id = m.pool_id"""
    where, args = [], []
    if pool_name is not None:
        where.append("p.name = ?")
        args.append(pool_name)
    if not with_recycled:
        where.append("m.recycled IS NULL")
    if where:
        q += " WHERE " + " AND ".join(where)
    q += " ORDER BY m.label, m.created, m.id"
    return [
        PoolMedium(r[0], uuidlib.UUID(r[1]), uuidlib.UUID(r[2]), r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])
        for r in cat.db.execute(q, args)
    ]


def _write(cat: Catalog, sql: str, args: tuple[object, ...]) -> int:
    with cat.transaction(durable=True):
        return int(cat.db.execute(sql, args).rowcount)


def set_location(cat: Catalog, medium_id: int, location: str) -> None:
    _write(cat, "UPDATE media SET location = ? WHERE id = ?", (location, medium_id))


def set_write_protected(cat: Catalog, medium_id: int, protected: bool) -> None:
    _write(cat, "UPDATE media SET write_protected = ? WHERE id = ?", (int(protected), medium_id))


def join_pool(cat: Catalog, set_uuid: uuidlib.UUID, pool_id: int) -> int:
    """Every medium of a media set (in use, not in a pool yet) joins the pool: a set a pooled
    backup wrote to, including the media it spanned onto."""
    return _write(
        cat,
        """UPDATE media SET pool_id = ? WHERE pool_id IS NULL AND recycled IS NULL
           AND set_id = (SELECT id FROM media_sets WHERE uuid = ?)""",
        (pool_id, str(set_uuid)),
    )


def carry_over(cat: Catalog, old_id: int, new_uuid: uuidlib.UUID, pool_id: int) -> None:
    """A recycled medium's new label takes its pool and location."""
    _write(
        cat,
        """UPDATE media SET pool_id = ?, location = (SELECT location FROM media WHERE id = ?)
           WHERE uuid = ?""",
        (pool_id, old_id, str(new_uuid)),
    )


def mark_recycled(cat: Catalog, medium_id: int, now: int) -> None:
    """The medium is being relabelled: its old label and every generation with a part on it
    are gone from the media (their rows stay, marked recycled)."""
    with cat.transaction(durable=True):
        cat.db.execute("UPDATE media SET recycled = ? WHERE id = ?", (now, medium_id))
        cat.db.execute(
            """UPDATE generations SET recycled = ? WHERE recycled IS NULL AND id IN
               (SELECT generation_id FROM tape_files WHERE medium_id = ? AND generation_id IS NOT NULL)""",
            (now, medium_id),
        )


def retire(cat: Catalog, medium_uuid: uuidlib.UUID, now: int) -> None:
    """The medium of this label is being labelled anew (``tapearc label --force``): as
    :func:`mark_recycled` -- a generation with a part on it is no longer whole anywhere, so it
    counts for no retention rule, and the medium is no longer its set's last one."""
    r = cat.db.execute("SELECT id FROM media WHERE uuid = ? AND recycled IS NULL", (str(medium_uuid),)).fetchone()
    if r is not None:
        mark_recycled(cat, int(r[0]), now)


def retention_rows(cat: Catalog, pool_id: int | None = None) -> list[Gen]:
    """The generations (not recycled) of a pool's media sets, or of every set, with the media
    each has a part on."""
    q = """SELECT g.id, v.name, v.id, g.number, g.base, g.state, g.created, t.medium_id
           FROM generations g JOIN volumes v ON v.id = g.volume_id
           LEFT JOIN tape_files t ON t.generation_id = g.id
           WHERE g.recycled IS NULL"""
    args: tuple[object, ...] = ()
    if pool_id is not None:
        q += """ AND v.set_id IN (SELECT set_id FROM media WHERE pool_id = ?)"""
        args = (pool_id,)
    rows: dict[int, tuple[tuple[object, ...], set[int]]] = {}
    for r in cat.db.execute(q + " ORDER BY g.id", args):
        entry = rows.setdefault(r[0], (tuple(r[:7]), set()))
        if r[7] is not None:
            entry[1].add(int(r[7]))
    return [
        Gen(
            int(str(a[0])),
            str(a[1]),
            int(str(a[2])),
            int(str(a[3])),
            int(str(a[4])),
            str(a[5]),
            int(str(a[6])),
            frozenset(m),
        )
        for a, m in rows.values()
    ]


def last_file(cat: Catalog, medium_id: int) -> int:
    """The highest tape file number the catalog knows on a medium (0: its label only)."""
    r = cat.db.execute("SELECT MAX(file_number) FROM tape_files WHERE medium_id = ?", (medium_id,)).fetchone()
    return 0 if r is None or r[0] is None else int(r[0])


def set_sizes(cat: Catalog) -> dict[int, int]:
    """Bytes of chunk payload on each medium (what the catalog knows of)."""
    q = """SELECT t.medium_id, COALESCE(SUM(c.stored_len), 0) FROM chunks c JOIN tape_files t ON t.id = c.tape_file_id
           GROUP BY t.medium_id"""
    return {int(r[0]): int(r[1]) for r in cat.db.execute(q)}
