"""The catalog: what is on which medium, in SQLite or PostgreSQL.

The catalog is a cache of what the media say about themselves: ``tapearc scan`` rebuilds it
from the media alone. It records media sets, media, volumes, generations, their tape files and
logical positions, every chunk with its logical position (usable with LOCATE), block runs and
the BLAKE3-128 digests of its data blocks (the generation's manifest, in compact form: 16 bytes
per stored block, kept per chunk).

A generation is inserted in state ``writing`` when its backup starts and becomes ``complete``
only after its trailer and filemark are on the medium; a backup that is interrupted therefore
never leaves a generation that looks complete (the next open marks stale ``writing`` rows
``incomplete``).

Backends (docs/catalog.md): an SQLite file (tapearc/catalog/backend_sqlite.py) or a PostgreSQL
database (backend_pg.py), named by a spec (spec.py: a path or a URL). The schema is declared once
for both (schema.py); every statement here and in pools.py and views.py is written once, in the
SQL both understand, with ``?`` placeholders.

Schema (version 5) is documented in docs/catalog.md and formats/SPEC.md. Version 2 added the
source of each generation (``source_path``, ``source_real``, ``source_dev``, ``source_ino``:
the volume's identity, formats/SPEC.md section 7.1); version 3 the change source it was read
with (``change_source``, ``change_trusted``, ``change_since``, ``change_checkpoint``:
docs/changes.md); version 4 the key fingerprint of encrypted media sets and generations
(``key_fingerprint``, NULL for plain ones); version 5 media pools (``pools``), each medium's
pool, location, write protection and recycling, and the recycling of generations
(tapearc/catalog/pools.py). A version-1 to -4 catalog is migrated in place when it is opened
(its rows are kept; the new columns are NULL, "not recorded", or their defaults), but for a
read-only open (``Catalog(spec, read_only=True)``, the commands that only read it): that never
writes to the catalog (docs/catalog.md, "Schema", its migrations).
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from tapearc import format as fmt
from tapearc import settings
from tapearc.catalog import schema as _schema_mod
from tapearc.catalog import spec as catalog_spec
from tapearc.catalog.backend_sqlite import DEFAULT_BUSY_TIMEOUT, SqliteBackend, catalog_error
from tapearc.catalog.schema import SCHEMA_VERSION
from tapearc.catalog.states import FINAL_KNOWN, GenerationState
from tapearc.crypto.keys import fingerprint_text, parse_fingerprint
from tapearc.errors import CatalogError

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SCHEMA_VERSION", "Catalog", "catalog_error"]

_RUN = struct.Struct("<QIB")


def _fp_text(fingerprint: bytes | None) -> str | None:
    return None if fingerprint is None else fingerprint_text(fingerprint)


def path_text(path: str) -> str:
    """A path as the catalog stores and shows it: the OS bytes (held with surrogateescape) as
    UTF-8, undecodable bytes as ``\\xNN`` (SQLite text must be valid UTF-8)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def pack_runs(runs: Sequence[fmt.Run]) -> bytes:
    return b"".join(_RUN.pack(r.first, r.count, int(r.kind)) for r in runs)


def unpack_runs(blob: bytes) -> tuple[fmt.Run, ...]:
    return tuple(fmt.Run(a, n, fmt.RunKind(k)) for a, n, k in _RUN.iter_unpack(blob))


def default_catalog_path() -> Path:
    """The SQLite catalog file used when none is named: ``$XDG_DATA_HOME/tapearc/catalog.sqlite``
    (~/.local/share/...). ``$TAPEARC_CATALOG`` is read by :func:`default_catalog_spec`."""
    given = settings.catalog_spec()
    if given and not catalog_spec.is_url(given):
        return Path(given)
    return catalog_spec.default_sqlite_path()


def default_catalog_spec() -> str:
    """``$TAPEARC_CATALOG`` (a path or a URL), else the default SQLite file."""
    return settings.catalog_spec() or str(catalog_spec.default_sqlite_path())


def catalog_exists(spec: str | None) -> bool:
    """Whether the catalog ``spec`` names (None: the default) may hold something: an SQLite file
    that exists, or any PostgreSQL URL (the server is asked when it is opened). Browsing
    commands never create an SQLite file."""
    s = catalog_spec.parse(spec)
    return s.path.is_file() if s.path is not None else True


@dataclass(frozen=True, slots=True)
class MediumRow:
    id: int
    uuid: UUID
    set_uuid: UUID
    sequence: int
    label: str
    record_size: int


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """How a generation was read (docs/changes.md): its change ``source`` (``full-read``, no
    tracker; ``dirty-bitmap:NAME``; ``changed-blocks:FORMAT``), whether the tracker was
    ``trusted`` (False: every block was read), the checkpoint the tracker started at
    (``since``) and the checkpoint this generation was read at (``checkpoint``: where the next
    incremental's tracker must start)."""

    source: str
    trusted: bool
    since: str | None
    checkpoint: str | None

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "trusted": self.trusted, "since": self.since, "checkpoint": self.checkpoint}

    def brief(self) -> str:
        """A table cell: ``full-read``, ``csv trusted``, ``bitmap b0 every block``."""
        if self.source == "full-read":
            return self.source
        head = self.source.removeprefix("changed-blocks:").replace("dirty-bitmap:", "bitmap ", 1)
        return head + (" trusted" if self.trusted else " every block")

    def describe(self) -> str:
        """``changed-blocks:csv (trusted) since cp1, checkpoint cp2``."""
        head = self.source
        if head != "full-read":
            head += " (trusted)" if self.trusted else " (not trusted: every block read)"
        parts = [f"{k} {v}" for k, v in (("since", self.since), ("checkpoint", self.checkpoint)) if v]
        return head + (" " + ", ".join(parts) if parts else "")


@dataclass(frozen=True, slots=True)
class GenerationRow:
    id: int
    volume: str
    volume_uuid: uuid.UUID
    set_uuid: uuid.UUID
    number: int
    run_uuid: uuid.UUID
    base: int
    kind: str
    state: GenerationState
    volume_size: int
    block_size: int
    record_size: int
    chunk_blocks: int
    compression: str
    created: int
    chunk_count: int
    data_blocks: int
    zero_blocks: int
    raw_bytes: int
    stored_bytes: int
    source: str
    source_path: str | None = None  #: the volume's source (None: not recorded)
    source_real: str | None = None
    source_dev: int | None = None
    source_ino: int | None = None
    change: ChangeRecord | None = None  #: how it was read (None: not recorded)
    key_fingerprint: bytes | None = None  #: the key its chunks are encrypted with (16 bytes; None: plain)

    @property
    def encrypted(self) -> bool:
        return self.key_fingerprint is not None

    @property
    def nblocks(self) -> int:
        return -(-self.volume_size // self.block_size)


@dataclass(frozen=True, slots=True)
class VolumeRow:
    """A volume of a media set and its source: the source of its latest generation that
    recorded one (None: none did, e.g. a volume backed up before sources were recorded)."""

    name: str
    uuid: uuid.UUID
    generations: int
    source_path: str | None
    source_real: str | None
    source_generation: int | None  #: the generation the source is taken from


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: int
    generation: int  # generation number
    medium_uuid: uuid.UUID
    medium_sequence: int
    tape_file: int
    seq: int
    record: int
    logical: int
    record_count: int
    stored_len: int
    raw_len: int
    payload_crc: int
    flags: int
    runs: tuple[fmt.Run, ...]


@dataclass(frozen=True, slots=True)
class TapeFileRow:
    medium_uuid: uuid.UUID
    file_number: int
    logical: int
    generation: int | None
    volume: str | None
    closed: bool
    has_trailer: bool


def busy_timeout() -> float:
    """Seconds a catalog write waits for another process's write to end:
    ``$TAPEARC_CATALOG_TIMEOUT``, default 30."""
    return settings.catalog_timeout()


def connect(spec: str | os.PathLike[str] | None) -> Any:
    """A connection of its own to the catalog ``spec`` (created or migrated first if need be):
    autocommit (each statement commits by itself), usable from any thread (one at a time),
    statements in the common dialect with ``?`` placeholders (:class:`Connection`), errors as
    CatalogErrors. For parts of tapearc that keep a table of their own in the catalog (leases:
    their heartbeats run in a thread). ``close()`` it when done."""
    return Catalog(spec, threads=True).db


class Cursor(Protocol):
    """What a statement gives back, on both backends."""

    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """``Catalog.db``: statements in the common dialect with ``?`` placeholders."""

    @property
    def in_transaction(self) -> bool: ...
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, rows: Any, /) -> Any: ...
    def close(self) -> None: ...


class Backend(Protocol):
    kind: str

    @property
    def db(self) -> Any: ...
    @property
    def in_transaction(self) -> bool: ...
    def tables(self) -> set[str]: ...
    def columns(self, table: str) -> list[str]: ...
    def prepare(self) -> None: ...
    def private_copy(self, shown: str, version: str | None) -> Any: ...
    def retryable(self, e: BaseException) -> bool: ...
    def open_error(self, e: BaseException) -> BaseException: ...
    def foreign_error(self, shown: str) -> CatalogError: ...
    def opened(self) -> None: ...
    def begin(self) -> None: ...
    def durable(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


def open_backend(
    spec: catalog_spec.CatalogSpec, timeout: float, what: str, threads: bool = False, read_only: bool = False
) -> Backend:
    if spec.is_sqlite:
        return SqliteBackend(spec, timeout, what, threads, read_only)
    from tapearc.catalog.backend_pg import PgBackend

    return PgBackend(spec, timeout, read_only)


def _older(version: str) -> bool:
    """Whether a catalog's schema ``version`` is older than this tapearc's."""
    return version.isdigit() and int(version) < SCHEMA_VERSION


class Catalog:
    """An open catalog database: an SQLite file or a PostgreSQL database (``spec``: a path,
    ``sqlite:///abs/path``, ``postgresql://...``; None: ``$TAPEARC_CATALOG``, else the default
    file). Use as a context manager; writes commit per call group, each a write transaction
    (:meth:`transaction`) that waits up to ``$TAPEARC_CATALOG_TIMEOUT`` seconds (default 30)
    for another process's to end; past that the operation fails with a CatalogError (exit 16)
    naming the process holding the write lock. tapearc/catalog/backend_sqlite.py and
    backend_pg.py say how each backend does it.
    """

    path: Path | None  #: the SQLite file (None: a PostgreSQL catalog)
    spec: str  #: names the catalog in messages (a PostgreSQL URL without its password)
    #: how another connection of tapearc's opens this catalog: its path, or its URL with the
    #: password (never shown: messages use :attr:`spec`)
    connect_spec: str
    kind: str  #: "sqlite" or "postgresql"
    db: Any  #: statements in the common dialect (:class:`Connection`)

    def __init__(
        self, spec: str | os.PathLike[str] | None = None, *, threads: bool = False, read_only: bool = False
    ) -> None:
        """``threads``: the connection may be used from other threads too (one at a time).
        ``read_only``: for the commands that only read the catalog: nothing is written to it,
        not even to migrate it (docs/catalog.md, "Schema", its migrations; :meth:`_open_read_only`)."""
        parsed = catalog_spec.parse(spec)
        what = "--catalog" if spec is not None else "TAPEARC_CATALOG"
        self.path, self.spec, self.kind = parsed.path, parsed.shown, parsed.kind
        self.connect_spec = parsed.url or str(parsed.path)
        timeout = busy_timeout()
        self.read_only = read_only
        self._backend = open_backend(parsed, timeout, what, threads, read_only)
        self.db = self._backend.db
        try:
            self._retry_opening(timeout)
        except BaseException as e:
            err = self._backend.open_error(e)
            self._backend.close()
            raise err from None
        self._backend.opened()

    def _retry_opening(self, timeout: float) -> None:
        """Open the schema, retrying the conflicts a backend reports while two processes create
        or migrate a catalog at once (until the busy timeout)."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                self._open_schema()
                return
            except Exception as e:
                if not self._backend.retryable(e) or time.monotonic() >= deadline:
                    raise
                self._backend.rollback()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _version(self) -> str | None:
        if "meta" not in self._backend.tables():
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _open_schema(self) -> None:
        """Check the catalog is ours; create the schema in an empty one, migrate an older one
        (docs/catalog.md, "Schema", its migrations), refuse a newer one. An up-to-date catalog is only read."""
        self._check_ours()  # before anything writes (SQLite's journal_mode writes the file's header)
        if self.read_only:
            self._open_read_only()
            return
        self._backend.prepare()
        if not self._current():
            self._make_or_migrate()

    def _current(self) -> bool:
        """Whether the schema is this tapearc's, every table there."""
        return self._version() == str(SCHEMA_VERSION) and _schema_mod.table_names() <= self._backend.tables()

    def _open_read_only(self) -> None:
        """A read-only open: a catalog of this version is only read; a newer one is refused; an
        older one (or one lacking a table this tapearc adds, or an empty one) is left as it is:
        an SQLite catalog is copied (SQLite's private temporary database) and the copy made current (the commands browse
        the copy, and say nothing of it), a PostgreSQL one is refused (its backend says why)."""
        self._backend.prepare()
        if self._current():
            return
        version = self._version()
        if version is not None and version != str(SCHEMA_VERSION) and not _older(version):
            raise self._newer_error(version)
        self.db = self._backend.private_copy(self.spec, version)
        self._backend.prepare()
        self._make_or_migrate()

    def _newer_error(self, version: str) -> CatalogError:
        return CatalogError(
            f"catalog {self.spec} has schema version {version}, this tapearc knows {SCHEMA_VERSION}",
            hint="use another --catalog, or rebuild one with tapearc scan",
        )

    def _make_or_migrate(self) -> None:
        """Make the schema in an empty catalog, migrate an older one, refuse a newer one."""
        with self.transaction():  # one transaction: two processes opening a new or old catalog at once
            self._check_ours()
            for statement in _schema_mod.statements(self.kind):
                self.db.execute(statement)
            version = self._version()
            if version is None:
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING",
                    (str(SCHEMA_VERSION),),
                )
            elif _older(version):
                self._migrate(int(version))
            elif version != str(SCHEMA_VERSION):
                raise self._newer_error(version)

    def _migrate(self, version: int) -> None:
        """Schema ``version`` -> :data:`SCHEMA_VERSION`: add the columns the versions after it
        added (tapearc/catalog/schema.py MIGRATIONS; their rows keep NULL, "not recorded", or
        the column's default; new tables were made by the schema's statements)."""
        tables = {t for t, _ in _schema_mod.missing_columns(version, {})}
        have = {t: set(self._backend.columns(t)) for t in tables}
        for table, col in _schema_mod.missing_columns(version, have):
            self.db.execute(f"ALTER TABLE {table} ADD COLUMN {_schema_mod.dialect_sql(col, self.kind)}")
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def _check_ours(self) -> None:
        """Refuse, untouched, a database that is not a tapearc catalog: tapearc adds its tables
        only to an empty database or one that holds nothing but tapearc's tables (a catalog, or
        one another tapearc process is creating this moment)."""
        tables = self._backend.tables()
        foreign = sorted(tables - _schema_mod.tables())
        if "meta" in tables:
            if self._backend.columns("meta") != ["key", "value"]:
                foreign.insert(0, "meta")  # a table of that name, but not ours
            elif self.db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone():
                return  # a tapearc catalog (its version is checked next)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise self._backend.foreign_error(shown)

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self, durable: bool = False) -> _Tx:
        """A write transaction (a context manager; nestable: inner levels join the outer one):
        SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``BEGIN`` and the catalog's write lock. Committed
        at the end, rolled back on an error. ``durable``: on PostgreSQL its commit waits for the
        server's disk (other commits do not: the catalog can be rebuilt with scan, and a chunk's
        commit per chunk written must stay cheap); a durable commit makes every earlier one
        durable too. SQLite's commits are as its WAL mode with synchronous=NORMAL makes them."""
        return _Tx(self._backend, durable)

    _tx = transaction

    # ------------------------------------------------------------------ media

    def _set_id(self, set_uuid: uuid.UUID) -> int:
        self.db.execute(
            "INSERT INTO media_sets (uuid, first_seen) VALUES (?, ?) ON CONFLICT (uuid) DO NOTHING",
            (str(set_uuid), int(time.time())),
        )
        return int(self.db.execute("SELECT id FROM media_sets WHERE uuid = ?", (str(set_uuid),)).fetchone()[0])

    def _set_key(self, set_uuid: uuid.UUID, fingerprint: bytes) -> None:
        self.db.execute(
            "UPDATE media_sets SET key_fingerprint = ? WHERE uuid = ? AND key_fingerprint IS NULL",
            (_fp_text(fingerprint), str(set_uuid)),
        )

    def set_media_set_key(self, set_uuid: uuid.UUID, fingerprint: bytes) -> None:
        """Record the key of an encrypted media set (its key record is on its media); a set's key
        never changes: a fingerprint recorded already stays."""
        with self._tx():
            self._set_id(set_uuid)
            self._set_key(set_uuid, fingerprint)

    def media_set_key(self, set_uuid: uuid.UUID) -> bytes | None:
        """The fingerprint of the media set's key (16 bytes), or None: a plain set, or one whose
        key the catalog has not learnt (no key record read, no encrypted generation)."""
        r = self.db.execute("SELECT key_fingerprint FROM media_sets WHERE uuid = ?", (str(set_uuid),)).fetchone()
        return None if r is None or r[0] is None else parse_fingerprint(str(r[0]))

    def record_medium(self, label: fmt.Label, name: str | None = None) -> int:
        with self._tx():
            set_id = self._set_id(label.media_set_uuid)
            self.db.execute(
                """INSERT INTO media (uuid, set_id, sequence, label, record_size, created, last_name)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(uuid) DO UPDATE SET last_name = excluded.last_name""",
                (str(label.medium_uuid), set_id, label.sequence, label.text, label.record_size, label.created, name),
            )
            return int(self.db.execute("SELECT id FROM media WHERE uuid = ?", (str(label.medium_uuid),)).fetchone()[0])

    def medium(self, medium_uuid: uuid.UUID) -> MediumRow | None:
        r = self.db.execute(
            """SELECT m.id, m.uuid, s.uuid, m.sequence, m.label, m.record_size
               FROM media m JOIN media_sets s ON s.id = m.set_id WHERE m.uuid = ?""",
            (str(medium_uuid),),
        ).fetchone()
        if r is None:
            return None
        return MediumRow(r[0], uuid.UUID(r[1]), uuid.UUID(r[2]), r[3], r[4], r[5])

    def known_labels(self) -> list[str]:
        """Label texts (barcodes) of every medium the catalog knows."""
        return [r[0] for r in self.db.execute("SELECT label FROM media WHERE label != ''")]

    def media_holding_generations(self) -> list[tuple[uuid.UUID, uuid.UUID, int, str, str | None, list[int]]]:
        """(medium uuid, media set uuid, sequence, label text, last name, numbers of the
        generations on it) of every medium the catalog holds at least one generation for."""
        rows = self.db.execute(
            """SELECT m.uuid, s.uuid, m.sequence, m.label, m.last_name, g.number
               FROM tape_files t JOIN media m ON m.id = t.medium_id
               JOIN media_sets s ON s.id = m.set_id
               JOIN generations g ON g.id = t.generation_id
               ORDER BY m.id, g.number"""
        ).fetchall()
        out: dict[str, tuple[uuid.UUID, uuid.UUID, int, str, str | None, list[int]]] = {}
        for mu, su, seq, text, last, number in rows:
            entry = out.setdefault(mu, (uuid.UUID(mu), uuid.UUID(su), seq, text, last, []))
            if number not in entry[5]:
                entry[5].append(number)
        return list(out.values())

    def media_of_set(self, set_uuid: uuid.UUID) -> list[MediumRow]:
        rows = self.db.execute(
            """SELECT m.id, m.uuid, s.uuid, m.sequence, m.label, m.record_size
               FROM media m JOIN media_sets s ON s.id = m.set_id WHERE s.uuid = ? ORDER BY m.sequence""",
            (str(set_uuid),),
        ).fetchall()
        return [MediumRow(r[0], uuid.UUID(r[1]), uuid.UUID(r[2]), r[3], r[4], r[5]) for r in rows]

    def forget_medium_files(self, medium_uuid: uuid.UUID, from_file: int = 1) -> None:
        """Drop what the catalog knows of tape files >= ``from_file`` of a medium (before a rescan),
        and the generations that lived only there."""
        with self._tx():
            m = self.db.execute("SELECT id FROM media WHERE uuid = ?", (str(medium_uuid),)).fetchone()
            if m is None:
                return
            gens = [
                r[0]
                for r in self.db.execute(
                    "SELECT DISTINCT generation_id FROM tape_files WHERE medium_id = ? AND file_number >= ? AND generation_id IS NOT NULL",
                    (m[0], from_file),
                )
            ]
            self._drop_tape_files(m[0], from_file)
            for g in gens:
                left = self.db.execute("SELECT COUNT(*) FROM tape_files WHERE generation_id = ?", (g,)).fetchone()[0]
                if left == 0:
                    self.db.execute("DELETE FROM chunks WHERE generation_id = ?", (g,))
                    self.db.execute("DELETE FROM generations WHERE id = ?", (g,))

    def forget_gone_files(self, medium_uuid: uuid.UUID, from_file: int, now: int) -> None:
        """Tape files >= ``from_file`` of a medium are gone from it (an older state of the medium
        put back): their rows and chunks go, so the tape files written there next are learnt
        afresh, and every generation with a part there is marked recycled (gone from the media;
        its number stays taken, as a recycled medium's generations')."""
        with self.transaction(durable=True):
            m = self.db.execute("SELECT id FROM media WHERE uuid = ?", (str(medium_uuid),)).fetchone()
            if m is None:
                return
            self.db.execute(
                """UPDATE generations SET recycled = ? WHERE recycled IS NULL AND id IN
                   (SELECT generation_id FROM tape_files WHERE medium_id = ? AND file_number >= ?
                    AND generation_id IS NOT NULL)""",
                (now, m[0], from_file),
            )
            self._drop_tape_files(m[0], from_file)

    def _drop_tape_files(self, medium_id: int, from_file: int) -> None:
        """Delete the rows of a medium's tape files >= ``from_file`` and of their chunks."""
        self.db.execute(
            "DELETE FROM chunks WHERE tape_file_id IN (SELECT id FROM tape_files WHERE medium_id = ? AND file_number >= ?)",
            (medium_id, from_file),
        )
        self.db.execute("DELETE FROM tape_files WHERE medium_id = ? AND file_number >= ?", (medium_id, from_file))

    def tape_files(self, medium_uuid: uuid.UUID) -> list[TapeFileRow]:
        rows = self.db.execute(
            """SELECT t.file_number, t.logical, g.number, v.name, t.closed, t.has_trailer
               FROM tape_files t JOIN media m ON m.id = t.medium_id
               LEFT JOIN generations g ON g.id = t.generation_id
               LEFT JOIN volumes v ON v.id = g.volume_id
               WHERE m.uuid = ? ORDER BY t.file_number""",
            (str(medium_uuid),),
        ).fetchall()
        return [TapeFileRow(medium_uuid, r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5])) for r in rows]

    # ------------------------------------------------------------------ generations

    def _volume_id(self, set_uuid: uuid.UUID, name: str, volume_uuid: uuid.UUID) -> int:
        set_id = self._set_id(set_uuid)
        self.db.execute(
            "INSERT INTO volumes (set_id, name, uuid) VALUES (?, ?, ?) ON CONFLICT (set_id, name) DO NOTHING",
            (set_id, name, str(volume_uuid)),
        )
        # a volume row left without generations (its tape files were forgotten) takes the identity
        # of the volume now written under its name
        self.db.execute(
            """UPDATE volumes SET uuid = ? WHERE set_id = ? AND name = ? AND uuid != ?
                 AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.volume_id = volumes.id)""",
            (str(volume_uuid), set_id, name, str(volume_uuid)),
        )
        return int(
            self.db.execute("SELECT id FROM volumes WHERE set_id = ? AND name = ?", (set_id, name)).fetchone()[0]
        )

    def begin_generation(
        self,
        hdr: fmt.GenerationHeader,
        *,
        medium_uuid: uuid.UUID,
        tape_file: int,
        logical: int,
        state: GenerationState | str = GenerationState.WRITING,
        source: str = "backup",
    ) -> int:
        """Record a generation (state ``writing`` while its backup runs) and its first tape file.
        ``state`` is a :class:`GenerationState` or its string (an unknown one raises ValueError)."""
        state = GenerationState(state)
        with self._tx():
            same = self.db.execute("SELECT id FROM generations WHERE run_uuid = ?", (str(hdr.run_uuid),)).fetchone()
            if same is not None:  # another part of a generation that spans media (or the same part again)
                self._tape_file(medium_uuid, tape_file, logical, int(same[0]), hdr.part)
                if state == GenerationState.WRITING and source == "backup":  # a backup writing its next part
                    self.db.execute(
                        "UPDATE generations SET state = ? WHERE id = ?", (str(GenerationState.WRITING), same[0])
                    )
                return int(same[0])
            vol = self._volume_id(hdr.media_set_uuid, hdr.volume_name, hdr.volume_uuid)
            old = self.db.execute(
                "SELECT id FROM generations WHERE volume_id = ? AND number = ?", (vol, hdr.generation)
            ).fetchone()
            if old is not None:  # a stale row of another run (the medium was rewritten): replace it
                self.db.execute("DELETE FROM chunks WHERE generation_id = ?", (old[0],))
                self.db.execute("UPDATE tape_files SET generation_id = NULL WHERE generation_id = ?", (old[0],))
                self.db.execute("DELETE FROM generations WHERE id = ?", (old[0],))
            cur = self.db.execute(
                """INSERT INTO generations (volume_id, number, run_uuid, base, kind, state, volume_size, block_size,
                       record_size, chunk_blocks, compression, created, source,
                       source_path, source_real, source_dev, source_ino, key_fingerprint)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                (vol, *_generation_values(hdr, state, source)),
            )
            gen_id = int(cur.fetchone()[0])
            if hdr.key_fingerprint is not None:  # an encrypted generation: its set's key (scan learns it so)
                self._set_key(hdr.media_set_uuid, hdr.key_fingerprint)
            self._tape_file(medium_uuid, tape_file, logical, gen_id, hdr.part)
            return gen_id

    def _tape_file(self, medium_uuid: uuid.UUID, file_number: int, logical: int, gen_id: int | None, part: int) -> int:
        m = self.db.execute("SELECT id FROM media WHERE uuid = ?", (str(medium_uuid),)).fetchone()
        if m is None:
            raise CatalogError(f"medium {medium_uuid} is not in the catalog")
        old = self.db.execute(
            "SELECT id FROM tape_files WHERE medium_id = ? AND file_number = ?", (m[0], file_number)
        ).fetchone()
        if old is not None:
            self.db.execute("DELETE FROM chunks WHERE tape_file_id = ?", (old[0],))
            self.db.execute("DELETE FROM tape_files WHERE id = ?", (old[0],))
        cur = self.db.execute(
            """INSERT INTO tape_files (medium_id, file_number, logical, generation_id, part)
               VALUES (?, ?, ?, ?, ?) RETURNING id""",
            (m[0], file_number, logical, gen_id, part),
        )
        return int(cur.fetchone()[0])

    def add_chunks(
        self,
        gen_id: int,
        medium_uuid: uuid.UUID,
        tape_file: int,
        file_logical: int,
        entries: Sequence[tuple[fmt.ChunkIndexEntry, bytes]],
    ) -> None:
        """Record chunks (index entry + the digests of its data blocks) of a generation's tape file."""
        if not entries:
            return
        with self._tx():
            tf = self.db.execute(
                """SELECT t.id FROM tape_files t JOIN media m ON m.id = t.medium_id
                   WHERE m.uuid = ? AND t.file_number = ?""",
                (str(medium_uuid), tape_file),
            ).fetchone()
            if tf is None:
                raise CatalogError(f"tape file {tape_file} of medium {medium_uuid} is not in the catalog")
            rows = []
            for e, digests in entries:
                first = min(r.first for r in e.runs)
                last = max(r.first + r.count - 1 for r in e.runs)
                rows.append(
                    (
                        gen_id,
                        tf[0],
                        e.seq,
                        e.record,
                        file_logical + e.record,
                        e.record_count,
                        e.stored_len,
                        e.raw_len,
                        e.payload_crc,
                        e.flags,
                        first,
                        last,
                        pack_runs(e.runs),
                        digests,
                    )
                )
            self.db.executemany(
                """INSERT INTO chunks (generation_id, tape_file_id, seq, record, logical, record_count,
                       stored_len, raw_len, payload_crc, flags, first_block, last_block, runs, digests)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (generation_id, seq) DO UPDATE SET tape_file_id = excluded.tape_file_id,
                       record = excluded.record, logical = excluded.logical, record_count = excluded.record_count,
                       stored_len = excluded.stored_len, raw_len = excluded.raw_len,
                       payload_crc = excluded.payload_crc, flags = excluded.flags,
                       first_block = excluded.first_block, last_block = excluded.last_block,
                       runs = excluded.runs, digests = excluded.digests""",
                rows,
            )

    def finish_generation(
        self,
        gen_id: int,
        *,
        state: GenerationState | str,
        medium_uuid: uuid.UUID,
        tape_file: int,
        closed: bool,
        has_trailer: bool,
        final: bool = False,
        continues: bool = False,
    ) -> None:
        """Set the generation's state and totals (from its chunks). ``state="auto"`` derives it: a
        part whose trailer said complete was seen (``final``) and the chunks run 0..n-1 without a
        gap -> complete; a part that continues -> writing stays only while a backup runs, else
        incomplete. ``state`` is a :class:`GenerationState` or its string."""
        state = GenerationState(state)
        with self._tx(durable=True):  # the generation is complete once this lasts
            if state == GenerationState.AUTO:
                state = self._derive_state(gen_id, final)
            tot = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(raw_len), 0), COALESCE(SUM(stored_len), 0) FROM chunks WHERE generation_id = ?",
                (gen_id,),
            ).fetchone()
            data = zero = 0
            for (blob,) in self.db.execute("SELECT runs FROM chunks WHERE generation_id = ?", (gen_id,)):
                for r in unpack_runs(blob):
                    if r.is_zero:
                        zero += r.count
                    else:
                        data += r.count
            self.db.execute(
                """UPDATE generations SET state = ?, chunk_count = ?, raw_bytes = ?, stored_bytes = ?,
                       data_blocks = ?, zero_blocks = ? WHERE id = ?""",
                (str(state), int(tot[0]), int(tot[1]), int(tot[2]), data, zero, gen_id),
            )
            self.db.execute(
                """UPDATE tape_files SET closed = ?, has_trailer = ?, continues = ?
                   WHERE generation_id = ? AND file_number = ?
                     AND medium_id = (SELECT id FROM media WHERE uuid = ?)""",
                (int(closed), int(has_trailer), int(continues), gen_id, tape_file, str(medium_uuid)),
            )

    def _derive_state(self, gen_id: int, final: bool) -> GenerationState:
        """complete: the last part is known (``final`` now or before) and the chunk numbers run
        0..n-1; complete-pending: the last part is known but an earlier part is not (yet);
        incomplete otherwise."""
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(MAX(seq), -1) FROM chunks WHERE generation_id = ?", (gen_id,)
        ).fetchone()
        count, top = int(row[0]), int(row[1])
        prior = self.db.execute("SELECT state FROM generations WHERE id = ?", (gen_id,)).fetchone()
        final_known = final or (prior is not None and prior[0] in FINAL_KNOWN)
        if final_known:
            return GenerationState.COMPLETE if count == top + 1 else GenerationState.COMPLETE_PENDING
        return GenerationState.INCOMPLETE

    def record_change(self, gen_id: int, change: ChangeRecord) -> None:
        """Record how generation ``gen_id`` was read (its change source and checkpoints)."""
        with self._tx():
            self.db.execute(
                """UPDATE generations SET change_source = ?, change_trusted = ?, change_since = ?,
                       change_checkpoint = ? WHERE id = ?""",
                (change.source, int(change.trusted), change.since, change.checkpoint, gen_id),
            )

    def mark_stale_writing(self, set_uuid: uuid.UUID, medium_uuid: uuid.UUID | None = None) -> int:
        """Generations still ``writing`` (their backup died) become ``incomplete``. With
        ``medium_uuid`` (the medium the caller holds), only those whose latest part is on that
        medium: another process may be writing a generation of the same media set on another
        medium this moment (two drives, two hosts sharing a catalog), and its row must stay
        ``writing``."""
        args: list[object] = [str(GenerationState.INCOMPLETE), str(GenerationState.WRITING), str(set_uuid)]
        q = """UPDATE generations SET state = ? WHERE state = ? AND volume_id IN
               (SELECT v.id FROM volumes v JOIN media_sets s ON s.id = v.set_id WHERE s.uuid = ?)"""
        if medium_uuid is not None:
            q += """ AND id IN (SELECT t.generation_id FROM tape_files t JOIN media m ON m.id = t.medium_id
                     WHERE m.uuid = ? AND t.part = (SELECT MAX(t2.part) FROM tape_files t2
                                                   WHERE t2.generation_id = t.generation_id))"""
            args.append(str(medium_uuid))
        with self._tx():
            return int(self.db.execute(q, args).rowcount)

    _GEN_SELECT = """SELECT g.id, v.name, v.uuid, s.uuid, g.number, g.run_uuid, g.base, g.kind, g.state,
                            g.volume_size, g.block_size, g.record_size, g.chunk_blocks, g.compression, g.created,
                            g.chunk_count, g.data_blocks, g.zero_blocks, g.raw_bytes, g.stored_bytes, g.source,
                            g.source_path, g.source_real, g.source_dev, g.source_ino,
                            g.change_source, g.change_trusted, g.change_since, g.change_checkpoint,
                            g.key_fingerprint
                     FROM generations g JOIN volumes v ON v.id = g.volume_id JOIN media_sets s ON s.id = v.set_id"""

    @staticmethod
    def _gen(r: Sequence[Any]) -> GenerationRow:
        """A row of :attr:`_GEN_SELECT` (SQLite gives back the types the columns were written with)."""
        row = GenerationRow(
            r[0],
            r[1],
            uuid.UUID(str(r[2])),
            uuid.UUID(str(r[3])),
            r[4],
            uuid.UUID(str(r[5])),
            r[6],
            r[7],
            GenerationState(r[8]),
            *r[9:25],
        )
        if r[29] is not None:
            row = dataclasses.replace(row, key_fingerprint=parse_fingerprint(str(r[29])))
        if r[25] is None:
            return row
        return dataclasses.replace(row, change=ChangeRecord(str(r[25]), bool(r[26]), r[27], r[28]))

    def generations(self, set_uuid: uuid.UUID, volume: str | None = None) -> list[GenerationRow]:
        q = self._GEN_SELECT + " WHERE s.uuid = ? AND g.recycled IS NULL"  # recycled: gone from the media
        args: list[object] = [str(set_uuid)]
        if volume is not None:
            q += " AND v.name = ?"
            args.append(volume)
        q += " ORDER BY v.name, g.number"
        return [self._gen(r) for r in self.db.execute(q, args)]

    def last_number(self, set_uuid: uuid.UUID, volume: str) -> int:
        """The highest generation number a volume of a set ever had, recycled ones included (a
        new generation's number follows it: numbers are never reused)."""
        r = self.db.execute(
            """SELECT MAX(g.number) FROM generations g JOIN volumes v ON v.id = g.volume_id
               JOIN media_sets s ON s.id = v.set_id WHERE s.uuid = ? AND v.name = ?""",
            (str(set_uuid), volume),
        ).fetchone()
        return int(r[0] or 0)

    def generations_from_source(self, source_path: str) -> list[GenerationRow]:
        """Every generation, of any volume in any media set, read from ``source_path`` (as
        recorded, :func:`path_text`): the path as given or with symlinks resolved."""
        q = self._GEN_SELECT + " WHERE g.source_path = ? OR g.source_real = ? ORDER BY g.created, g.id"
        return [self._gen(r) for r in self.db.execute(q, (source_path, source_path))]

    def generation_of_tape_file(self, medium_uuid: uuid.UUID, file_number: int) -> GenerationRow | None:
        r = self.db.execute(
            self._GEN_SELECT
            + """ JOIN tape_files t ON t.generation_id = g.id JOIN media m ON m.id = t.medium_id
                 WHERE m.uuid = ? AND t.file_number = ?""",
            (str(medium_uuid), file_number),
        ).fetchone()
        return None if r is None else self._gen(r)

    def part_info(self, medium_uuid: uuid.UUID, file_number: int) -> tuple[int, bool]:
        """(part number, continues on the next medium) of a tape file."""
        r = self.db.execute(
            """SELECT t.part, t.continues FROM tape_files t JOIN media m ON m.id = t.medium_id
               WHERE m.uuid = ? AND t.file_number = ?""",
            (str(medium_uuid), file_number),
        ).fetchone()
        return (0, False) if r is None else (int(r[0]), bool(r[1]))

    def generation_by_run(self, run_uuid: uuid.UUID) -> GenerationRow | None:
        r = self.db.execute(self._GEN_SELECT + " WHERE g.run_uuid = ?", (str(run_uuid),)).fetchone()
        return None if r is None else self._gen(r)

    def volumes(self, set_uuid: uuid.UUID) -> list[str]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT v.name FROM volumes v JOIN media_sets s ON s.id = v.set_id WHERE s.uuid = ? ORDER BY v.name",
                (str(set_uuid),),
            )
        ]

    def volume_rows(self, set_uuid: uuid.UUID) -> list[VolumeRow]:
        """Every volume of a media set with its source (that of its latest generation that
        recorded one), by name."""
        out = []
        for vid, name, vuuid in self.db.execute(
            """SELECT v.id, v.name, v.uuid FROM volumes v JOIN media_sets s ON s.id = v.set_id
               WHERE s.uuid = ? ORDER BY v.name""",
            (str(set_uuid),),
        ).fetchall():
            n = int(self.db.execute("SELECT COUNT(*) FROM generations WHERE volume_id = ?", (vid,)).fetchone()[0])
            src = self.db.execute(
                """SELECT source_path, source_real, number FROM generations
                   WHERE volume_id = ? AND source_path IS NOT NULL ORDER BY number DESC LIMIT 1""",
                (vid,),
            ).fetchone()
            out.append(
                VolumeRow(name, uuid.UUID(str(vuuid)), n, None, None, None)
                if src is None
                else VolumeRow(name, uuid.UUID(str(vuuid)), n, src[0], src[1], int(src[2]))
            )
        return out

    def chunks(self, gen_id: int) -> list[ChunkRow]:
        rows = self.db.execute(
            """SELECT c.id, g.number, m.uuid, m.sequence, t.file_number, c.seq, c.record, c.logical, c.record_count,
                      c.stored_len, c.raw_len, c.payload_crc, c.flags, c.runs
               FROM chunks c JOIN generations g ON g.id = c.generation_id
               JOIN tape_files t ON t.id = c.tape_file_id JOIN media m ON m.id = t.medium_id
               WHERE c.generation_id = ? ORDER BY c.seq""",
            (gen_id,),
        ).fetchall()
        return [
            ChunkRow(
                r[0],
                r[1],
                uuid.UUID(r[2]),
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
                unpack_runs(r[13]),
            )
            for r in rows
        ]

    def chunk_runs(self, gen_id: int) -> Iterator[tuple[int, tuple[fmt.Run, ...]]]:
        """(chunk id, runs) of each chunk of a generation, in seq order: the mapping alone,
        without the chunk's location or digests."""
        for cid, blob in self.db.execute("SELECT id, runs FROM chunks WHERE generation_id = ? ORDER BY seq", (gen_id,)):
            yield cid, unpack_runs(blob)

    def chunk_digest_table(self, chunk_id: int) -> bytes:
        """The digests of one chunk's data blocks (16 bytes each, in run order); b"" for an unknown id."""
        row = self.db.execute("SELECT digests FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return bytes(row[0]) if row is not None else b""

    def chunk_digests(self, gen_id: int) -> Iterator[tuple[tuple[fmt.Run, ...], bytes]]:
        """(runs, digests of the data blocks) of each chunk of a generation, in seq order."""
        for blob, digests in self.db.execute(
            "SELECT runs, digests FROM chunks WHERE generation_id = ? ORDER BY seq", (gen_id,)
        ):
            yield unpack_runs(blob), digests


def _generation_values(hdr: fmt.GenerationHeader, state: GenerationState, source: str) -> tuple[object, ...]:
    """The columns of a generation's row after its volume, from its header."""
    src = hdr.source
    return (
        hdr.generation,
        str(hdr.run_uuid),
        hdr.base_generation,
        "full" if hdr.kind == fmt.GenerationKind.FULL else "incremental",
        str(state),
        hdr.volume_size,
        hdr.block_size,
        hdr.record_size,
        hdr.chunk_blocks,
        "zstd" if hdr.compression == fmt.Compression.ZSTD else "none",
        hdr.created,
        source,
        None if src is None else path_text(src.path),
        None if src is None else path_text(src.real_path),
        None if src is None else src.dev,
        None if src is None else src.ino,
        _fp_text(hdr.key_fingerprint),
    )


class _Tx:
    """A write transaction of a backend, nestable (inner levels do nothing)."""

    def __init__(self, backend: Backend, durable: bool = False) -> None:
        self.backend = backend
        self.durable = durable
        self.outer = False

    def __enter__(self) -> None:
        if not self.backend.in_transaction:
            self.backend.begin()
            self.outer = True
        if self.durable:
            self.backend.durable()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self.backend.commit()
        else:
            self.backend.rollback()
