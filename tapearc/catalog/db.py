"""The catalog: what is on which medium, in SQLite.

The catalog is a cache of what the media say about themselves: ``tapearc scan`` rebuilds it
from the media alone. It records media sets, media, volumes, generations, their tape files and
logical positions, every chunk with its logical position (usable with LOCATE), block runs and
the BLAKE3-128 digests of its data blocks (the generation's manifest, in compact form: 16 bytes
per stored block, kept per chunk).

A generation is inserted in state ``writing`` when its backup starts and becomes ``complete``
only after its trailer and filemark are on the medium; a backup that is interrupted therefore
never leaves a generation that looks complete (the next open marks stale ``writing`` rows
``incomplete``).

Schema (version 4) is documented in docs/catalog.md and formats/SPEC.md. Version 2 added the
source of each generation (``source_path``, ``source_real``, ``source_dev``, ``source_ino``:
the volume's identity, formats/SPEC.md section 7.1); version 3 the change source it was read
with (``change_source``, ``change_trusted``, ``change_since``, ``change_checkpoint``:
docs/changes.md); version 4 the key fingerprint of encrypted media sets and generations
(``key_fingerprint``, NULL for plain ones); version 5 media pools (``pools``), each medium's
pool, location, write protection and recycling, and the recycling of generations
(tapearc/catalog/pools.py). A version-1 to -4 catalog is migrated in place when it is opened
(its rows are kept; the new columns are NULL, "not recorded", or their defaults).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from tapearc import format as fmt
from tapearc import settings
from tapearc.catalog.leases import LEASES_DDL
from tapearc.catalog.states import FINAL_KNOWN, GenerationState
from tapearc.crypto.keys import fingerprint_text, parse_fingerprint
from tapearc.errors import CatalogError, TapearcError

SCHEMA_VERSION = 5

#: Columns added by schema version 2 (ALTER TABLE of a version-1 catalog).
_V2_COLUMNS = (
    "source_path TEXT",  # absolute path of the source as given (NULL: not recorded)
    "source_real TEXT",  # the same with symlinks resolved
    "source_dev INTEGER",
    "source_ino INTEGER",
)

#: Columns added by schema version 3: the change source each generation was read with.
_V3_COLUMNS = (
    "change_source TEXT",  # full-read | dirty-bitmap:NAME | changed-blocks:FORMAT (NULL: not recorded)
    "change_trusted INTEGER",  # 1: blocks the tracker vouched for were not read
    "change_since TEXT",  # the checkpoint the tracker started at
    "change_checkpoint TEXT",  # the checkpoint this generation was read at (a later tracker's start)
)

#: Columns added by schema version 4: the key fingerprint of encrypted media sets and generations.
_V4_COLUMNS = (
    ("media_sets", "key_fingerprint TEXT"),  # 1a2b:3c4d:... of the set's key (NULL: plain, or not known)
    ("generations", "key_fingerprint TEXT"),  # the key the generation is encrypted with (NULL: plain)
)

#: Columns added by schema version 5: media pools, locations, write protection and recycling.
_V5_COLUMNS = (
    ("media", "pool_id INTEGER REFERENCES pools(id)"),  # the pool the medium belongs to (NULL: none)
    ("media", "location TEXT NOT NULL DEFAULT 'library'"),  # library | offsite | free text
    ("media", "write_protected INTEGER NOT NULL DEFAULT 0"),  # 1: never chosen for writing
    ("media", "recycled INTEGER"),  # when this label of the medium was recycled (relabelled); NULL: in use
    ("generations", "recycled INTEGER"),  # when the medium holding a part of it was recycled; NULL: on media
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS media_sets (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL,
    key_fingerprint TEXT          -- the set's key (1a2b:3c4d:...; NULL: a plain set, or not known yet)
);
CREATE TABLE IF NOT EXISTS pools (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    retention TEXT NOT NULL,      -- 'keep-full' | 'keep-days' | 'keep-forever'
    keep INTEGER NOT NULL,        -- N full generations, or D days (0 for keep-forever)
    allocation TEXT NOT NULL,     -- 'continue' | 'new-set-per-full'
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    set_id INTEGER NOT NULL REFERENCES media_sets(id),
    sequence INTEGER NOT NULL,
    label TEXT NOT NULL,
    record_size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    last_name TEXT,              -- how the medium was last named (--media), a hint only
    pool_id INTEGER REFERENCES pools(id),  -- its media pool (NULL: none)
    location TEXT NOT NULL DEFAULT 'library',  -- library | offsite | free text
    write_protected INTEGER NOT NULL DEFAULT 0,  -- 1: never chosen for writing
    recycled INTEGER              -- when this label was recycled (the medium relabelled); NULL: in use
);
CREATE TABLE IF NOT EXISTS volumes (
    id INTEGER PRIMARY KEY,
    set_id INTEGER NOT NULL REFERENCES media_sets(id),
    name TEXT NOT NULL,
    uuid TEXT NOT NULL,
    UNIQUE (set_id, name)
);
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY,
    volume_id INTEGER NOT NULL REFERENCES volumes(id),
    number INTEGER NOT NULL,
    run_uuid TEXT NOT NULL UNIQUE,
    base INTEGER NOT NULL,        -- 0 for a full generation
    kind TEXT NOT NULL,           -- 'full' | 'incremental'
    state TEXT NOT NULL,          -- 'writing' | 'complete' | 'incomplete'
    volume_size INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    record_size INTEGER NOT NULL,
    chunk_blocks INTEGER NOT NULL,
    compression TEXT NOT NULL,
    created INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    data_blocks INTEGER NOT NULL DEFAULT 0,
    zero_blocks INTEGER NOT NULL DEFAULT 0,
    raw_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,         -- 'backup' | 'trailer' | 'deep' (how the row was learnt)
    source_path TEXT,             -- the volume's source for this generation (NULL: not recorded)
    source_real TEXT,             -- the same path with symlinks resolved
    source_dev INTEGER,           -- block device number, or the file's file system device
    source_ino INTEGER,           -- the file's inode, 0 for a block device
    change_source TEXT,           -- how it was read: full-read | dirty-bitmap:NAME | changed-blocks:FORMAT
    change_trusted INTEGER,       -- 1: the tracker was trusted (blocks it vouched for were not read)
    change_since TEXT,            -- the tracker checkpoint the change source started at
    change_checkpoint TEXT,       -- the tracker checkpoint this generation was read at
    key_fingerprint TEXT,         -- the key its chunks are encrypted with (1a2b:3c4d:...; NULL: plain)
    recycled INTEGER,             -- when a medium holding a part of it was recycled (NULL: on the media)
    UNIQUE (volume_id, number)
);
CREATE TABLE IF NOT EXISTS tape_files (
    id INTEGER PRIMARY KEY,
    medium_id INTEGER NOT NULL REFERENCES media(id),
    file_number INTEGER NOT NULL,
    logical INTEGER NOT NULL,     -- logical position of its first record
    generation_id INTEGER REFERENCES generations(id),
    part INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,   -- ends with a filemark
    has_trailer INTEGER NOT NULL DEFAULT 0,
    continues INTEGER NOT NULL DEFAULT 0,  -- its trailer says: the generation goes on on the next medium
    UNIQUE (medium_id, file_number)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
    tape_file_id INTEGER NOT NULL REFERENCES tape_files(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    record INTEGER NOT NULL,      -- index of its first record within the tape file
    logical INTEGER NOT NULL,     -- logical position of its first record (LOCATE target)
    record_count INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    payload_crc INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    first_block INTEGER NOT NULL,
    last_block INTEGER NOT NULL,
    runs BLOB NOT NULL,           -- packed runs: (first u64, count u32, kind u8) little-endian each
    digests BLOB NOT NULL,        -- 16 bytes per data block, in run order
    UNIQUE (generation_id, seq)
);
CREATE INDEX IF NOT EXISTS chunks_by_generation ON chunks (generation_id, seq);
"""
SCHEMA += LEASES_DDL  # the leases of drives, media and changers (tapearc/catalog/leases.py)

_RUN = struct.Struct("<QIB")


def _fp_text(fingerprint: bytes | None) -> str | None:
    return None if fingerprint is None else fingerprint_text(fingerprint)


_SCHEMA_TABLES = frozenset(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", SCHEMA))


def _check_folder(path: Path, what: str) -> None:
    """The folder of a catalog path the user gave must exist; tapearc does not make it."""
    folder = path.parent
    if not folder.is_dir():
        why = "does not exist" if not folder.exists() else "is not a folder"
        raise CatalogError(
            f"catalog {path} ({what}): folder {folder} {why}",
            hint=f"create {folder} first, or give another path",
        )


def path_text(path: str) -> str:
    """A path as the catalog stores and shows it: the OS bytes (held with surrogateescape) as
    UTF-8, undecodable bytes as ``\\xNN`` (SQLite text must be valid UTF-8)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def pack_runs(runs: Sequence[fmt.Run]) -> bytes:
    return b"".join(_RUN.pack(r.first, r.count, int(r.kind)) for r in runs)


def unpack_runs(blob: bytes) -> tuple[fmt.Run, ...]:
    return tuple(fmt.Run(a, n, fmt.RunKind(k)) for a, n, k in _RUN.iter_unpack(blob))


def default_catalog_path() -> Path:
    """``$TAPEARC_CATALOG``, else ``$XDG_DATA_HOME/tapearc/catalog.sqlite`` (~/.local/share/...)."""
    given = settings.catalog_path()
    if given:
        return Path(given)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tapearc" / "catalog.sqlite"


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


DEFAULT_BUSY_TIMEOUT = settings.DEFAULT_CATALOG_TIMEOUT


def busy_timeout() -> float:
    """Seconds a catalog write waits for another process's write to end:
    ``$TAPEARC_CATALOG_TIMEOUT``, default 30."""
    return settings.catalog_timeout()


def _is_busy(e: sqlite3.Error) -> bool:
    name = getattr(e, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(e)


def catalog_error(path: Path, e: sqlite3.Error, timeout: float) -> CatalogError:
    """The CatalogError for an sqlite3 error: 'locked by another process (pid N)' for a write
    lock held longer than the busy timeout, else the database's own message."""
    if _is_busy(e):
        from tapearc.locks import describe_holders, lock_holders

        p = str(path)
        holders = lock_holders(p, p + "-wal", p + "-shm", p + "-journal", write_only=True)
        return CatalogError(
            f"catalog {path} is locked by {describe_holders(holders)} (waited {timeout:g} s)",
            hint="wait for the other tapearc to finish, or set TAPEARC_CATALOG_TIMEOUT=SECONDS to wait longer",
            holders=",".join(map(str, holders)),
        )
    return CatalogError(
        f"catalog {path}: {e}",
        hint="if the catalog is damaged, move it away and rebuild it with tapearc scan",
    )


class _Connection(sqlite3.Connection):
    """A connection whose statements raise CatalogError (not sqlite3 errors) once the catalog is
    open: a busy or damaged database is a one-line error, never an internal one."""

    catalog_path: Path | None = None  # None while opening: Catalog.__init__ words its own errors
    busy_seconds: float = DEFAULT_BUSY_TIMEOUT

    def _wrap(self, e: sqlite3.Error) -> BaseException:
        return e if self.catalog_path is None else catalog_error(self.catalog_path, e, self.busy_seconds)

    def execute(self, *args: object) -> sqlite3.Cursor:
        try:
            return super().execute(*args)  # type: ignore[arg-type]
        except sqlite3.Error as e:
            raise self._wrap(e) from None

    def executemany(self, *args: object) -> sqlite3.Cursor:
        try:
            return super().executemany(*args)  # type: ignore[arg-type]
        except sqlite3.Error as e:
            raise self._wrap(e) from None

    def executescript(self, *args: object) -> sqlite3.Cursor:
        try:
            return super().executescript(*args)  # type: ignore[arg-type]
        except sqlite3.Error as e:
            raise self._wrap(e) from None


class Catalog:
    """An open catalog database. Use as a context manager; writes commit per call group.

    Several processes may use one catalog at once (two backups on two drives): SQLite (WAL mode)
    serialises the writes, each a short ``BEGIN IMMEDIATE`` transaction that waits up to
    ``$TAPEARC_CATALOG_TIMEOUT`` seconds (default 30) for another's to end; past that the
    operation fails with a CatalogError (exit 16) naming the process holding the write lock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        given = path is not None or settings.catalog_path() is not None
        self.path = Path(path) if path is not None else default_catalog_path()
        timeout = busy_timeout()
        try:
            if given:  # a path the user chose: its folder must exist (a typo makes no folders)
                _check_folder(self.path, "--catalog" if path is not None else "TAPEARC_CATALOG")
            else:  # the default location: its folder under the user's data folder is ours to make
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, factory=_Connection)
        except (OSError, sqlite3.Error) as e:
            raise CatalogError(f"cannot open catalog {self.path}: {e}") from None
        self.db.busy_seconds = timeout
        try:
            row = self._init_schema(timeout)
            if row is None:  # OR IGNORE: two processes may create the catalog at once
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif str(row[0]) in ("1", "2", "3", "4"):
                self._migrate()
            elif not str(row[0]).isdigit() or int(row[0]) != SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog {self.path} has schema version {row[0]}, this tapearc knows {SCHEMA_VERSION}",
                    hint="use another --catalog, or rebuild one with tapearc scan",
                )
        except sqlite3.DatabaseError as e:
            self.db.close()
            if _is_busy(e):
                raise catalog_error(self.path, e, timeout) from None
            raise CatalogError(
                f"{self.path} is not a usable tapearc catalog: {e}",
                hint="move it away and rebuild the catalog with tapearc scan",
            ) from None
        except BaseException:
            self.db.close()
            raise
        self.db.catalog_path = self.path

    def _migrate(self) -> None:
        """Schema 1 to 4 -> 5: add the generations' source columns (2), change-source columns
        (3), the key fingerprints of media sets and generations (4), NULL: not recorded (every
        generation written before version 4 is plain), and the media's pool, location, write
        protection and recycling (5: no pool, in the library, writable, in use; the ``pools``
        table is made by the schema script). One transaction, so two processes opening an old
        catalog at once migrate it once."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and str(row[0]) in ("1", "2", "3", "4"):
                cols = [("generations", c) for c in _V2_COLUMNS + _V3_COLUMNS] + list(_V4_COLUMNS + _V5_COLUMNS)
                for table, col in cols:
                    have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
                    if col.split()[0] not in have:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {col}")
                self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _init_schema(self, timeout: float) -> Any:
        """Set the connection up and create the schema. SQLite reports some lock conflicts while a
        database is being created or switched to WAL at once, without calling its busy handler
        (two processes opening a new catalog together): retry those until the busy timeout."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                self._check_ours()  # before anything writes to the file (journal_mode writes its header)
                self.db.execute("PRAGMA foreign_keys = ON")
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
                self.db.executescript(SCHEMA)
                return self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _check_ours(self) -> None:
        """Refuse, untouched, an SQLite database that is not a tapearc catalog: tapearc adds its
        tables only to an empty database or one that holds nothing but tapearc's tables (a
        catalog, or one another tapearc process is creating this moment)."""
        tables = {
            str(r[0])
            for r in self.db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            if not str(r[0]).startswith("sqlite_")
        }
        foreign = sorted(tables - _SCHEMA_TABLES)
        if "meta" in tables:
            cols = [str(r[1]) for r in self.db.execute("PRAGMA table_info(meta)")]
            if cols != ["key", "value"]:
                foreign.insert(0, "meta")  # a table of that name, but not ours
            elif self.db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone():
                return  # a tapearc catalog (its version is checked next)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise CatalogError(
                f"{self.path} is an SQLite database but not a tapearc catalog (it holds {shown}); "
                "tapearc leaves it untouched",
                hint="give --catalog a new file, or the path of a tapearc catalog",
            )

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> _Tx:
        return _Tx(self.db)

    # ------------------------------------------------------------------ media

    def _set_id(self, set_uuid: uuid.UUID) -> int:
        self.db.execute(
            "INSERT OR IGNORE INTO media_sets (uuid, first_seen) VALUES (?, ?)", (str(set_uuid), int(time.time()))
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
            self.db.execute(
                "DELETE FROM chunks WHERE tape_file_id IN (SELECT id FROM tape_files WHERE medium_id = ? AND file_number >= ?)",
                (m[0], from_file),
            )
            self.db.execute("DELETE FROM tape_files WHERE medium_id = ? AND file_number >= ?", (m[0], from_file))
            for g in gens:
                left = self.db.execute("SELECT COUNT(*) FROM tape_files WHERE generation_id = ?", (g,)).fetchone()[0]
                if left == 0:
                    self.db.execute("DELETE FROM chunks WHERE generation_id = ?", (g,))
                    self.db.execute("DELETE FROM generations WHERE id = ?", (g,))

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
            "INSERT OR IGNORE INTO volumes (set_id, name, uuid) VALUES (?, ?, ?)", (set_id, name, str(volume_uuid))
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
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (vol, *_generation_values(hdr, state, source)),
            )
            gen_id = int(cur.lastrowid or 0)
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
            "INSERT INTO tape_files (medium_id, file_number, logical, generation_id, part) VALUES (?, ?, ?, ?, ?)",
            (m[0], file_number, logical, gen_id, part),
        )
        return int(cur.lastrowid or 0)

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
                """INSERT OR REPLACE INTO chunks (generation_id, tape_file_id, seq, record, logical, record_count,
                       stored_len, raw_len, payload_crc, flags, first_block, last_block, runs, digests)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
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
        with self._tx():
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
                (str(state), tot[0], tot[1], tot[2], data, zero, gen_id),
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

    def mark_stale_writing(self, set_uuid: uuid.UUID) -> int:
        """Generations still ``writing`` (their backup died) become ``incomplete``."""
        with self._tx():
            cur = self.db.execute(
                """UPDATE generations SET state = ? WHERE state = ? AND volume_id IN
                   (SELECT v.id FROM volumes v JOIN media_sets s ON s.id = v.set_id WHERE s.uuid = ?)""",
                (str(GenerationState.INCOMPLETE), str(GenerationState.WRITING), str(set_uuid)),
            )
            return cur.rowcount

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
        recorded, :func:`path_text`)."""
        q = self._GEN_SELECT + " WHERE g.source_path = ? ORDER BY g.created, g.id"
        return [self._gen(r) for r in self.db.execute(q, (source_path,))]

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
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK), nestable (inner levels do nothing)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # (SQLite may have rolled back already, e.g. on SQLITE_FULL)
            try:
                self.db.execute("ROLLBACK")
            except (sqlite3.Error, TapearcError):
                pass  # the error being raised says more
