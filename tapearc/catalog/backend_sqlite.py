"""The SQLite catalog backend: one file, WAL mode, writes serialised by ``BEGIN IMMEDIATE``.

Several processes may use one catalog at once (two backups on two drives): each write is a
short ``BEGIN IMMEDIATE`` transaction that waits up to ``$TAPEARC_CATALOG_TIMEOUT`` seconds
(default 30) for another's to end; past that the operation fails with a CatalogError (exit 16)
naming the process holding the write lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tapearc import settings
from tapearc.catalog.spec import CatalogSpec
from tapearc.errors import CatalogError, TapearcError

DEFAULT_BUSY_TIMEOUT = settings.DEFAULT_CATALOG_TIMEOUT


def is_busy(e: BaseException) -> bool:
    if not isinstance(e, sqlite3.Error):
        return False
    name = getattr(e, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(e)


def catalog_error(path: Path, e: sqlite3.Error, timeout: float) -> CatalogError:
    """The CatalogError for an sqlite3 error: 'locked by another process (pid N)' for a write
    lock held longer than the busy timeout, else the database's own message."""
    if is_busy(e):
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


class SqliteConnection(sqlite3.Connection):
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


def _check_folder(path: Path, what: str) -> None:
    """The folder of a catalog path the user gave must exist; tapearc does not make it."""
    folder = path.parent
    if not folder.is_dir():
        why = "does not exist" if not folder.exists() else "is not a folder"
        raise CatalogError(
            f"catalog {path} ({what}): folder {folder} {why}",
            hint=f"create {folder} first, or give another path",
        )


class SqliteBackend:
    """An open SQLite catalog file (see the module's text)."""

    kind = "sqlite"

    def __init__(
        self, spec: CatalogSpec, timeout: float, what: str, threads: bool = False, read_only: bool = False
    ) -> None:
        """``read_only`` (docs/catalog.md, "Schema", its migrations): the connection refuses every write
        (``PRAGMA query_only``) and nothing sets the file's journal mode; a file that does not
        exist is not created (an empty catalog in memory stands for it)."""
        assert spec.path is not None
        self.path = spec.path
        self.timeout = timeout
        self.read_only = read_only
        self.threads = threads
        try:
            if spec.given:  # a path the user chose: its folder must exist (a typo makes no folders)
                _check_folder(self.path, what)
            elif not read_only:  # the default location: its folder under the user's data folder is ours to make
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._connect(*self._target())
            if read_only:
                self.db.execute("PRAGMA query_only = ON")
        except (OSError, sqlite3.Error) as e:
            raise CatalogError(f"cannot open catalog {self.path}: {e}") from None

    def _target(self) -> tuple[str, bool]:
        """What to connect to (and whether it is a URI): the file; read-only, an empty database
        in memory for a file that does not exist, and the file opened read-only when a
        write-ahead log with content is beside it (a writer's, or one a writer that died left:
        a connection that may write would fold it into the file when it closes last)."""
        if not self.read_only:
            return str(self.path), False
        if not self.path.is_file():
            return ":memory:", False
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            return self.path.absolute().as_uri() + "?mode=ro", True
        return str(self.path), False

    def _connect(self, name: str, uri: bool = False) -> SqliteConnection:
        db = sqlite3.connect(
            name,
            uri=uri,
            timeout=self.timeout,
            isolation_level=None,
            factory=SqliteConnection,
            check_same_thread=not self.threads,
        )
        db.busy_seconds = self.timeout
        return db

    # ---------------------------------------------------------------- opening

    def tables(self) -> set[str]:
        return {
            str(r[0])
            for r in self.db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            if not str(r[0]).startswith("sqlite_")
        }

    def columns(self, table: str) -> list[str]:
        return [str(r[1]) for r in self.db.execute(f"PRAGMA table_info({table})")]

    def prepare(self) -> None:
        """Per connection settings (after the catalog was found to be ours: journal_mode writes
        the file's header; not done read-only: the file stays as it is)."""
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.read_only:
            return
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")

    def private_copy(self, shown: str, version: str | None) -> SqliteConnection:
        """For a read-only open of a catalog that needs its schema made or migrated: a copy of
        it (SQLite's backup API), which becomes this backend's connection; the file is left as
        it was (the caller migrates the copy). The copy is SQLite's private temporary database
        (an empty file name): kept in its page cache, spilled to a temporary file it deletes
        itself when it grows past that, so memory does not follow the catalog's size."""
        copy = self._connect("")
        try:
            self.db.backup(copy)
        except sqlite3.Error:
            copy.close()
            raise
        self.db.close()
        self.db = copy
        return copy

    def retryable(self, e: BaseException) -> bool:
        """SQLite reports some lock conflicts while a database is being created or switched to
        WAL at once, without calling its busy handler (two processes opening a new catalog
        together): opening retries those until the busy timeout."""
        return isinstance(e, sqlite3.OperationalError) and is_busy(e)

    def open_error(self, e: BaseException) -> BaseException:
        """What an error while opening becomes."""
        if not isinstance(e, sqlite3.Error):
            return e
        if is_busy(e):
            return catalog_error(self.path, e, self.timeout)
        return CatalogError(
            f"{self.path} is not a usable tapearc catalog: {e}",
            hint="move it away and rebuild the catalog with tapearc scan",
        )

    def foreign_error(self, shown: str) -> CatalogError:
        return CatalogError(
            f"{self.path} is an SQLite database but not a tapearc catalog (it holds {shown}); "
            "tapearc leaves it untouched",
            hint="give --catalog a new file, or the path of a tapearc catalog",
        )

    def opened(self) -> None:
        """From now on, errors of statements are CatalogErrors."""
        self.db.catalog_path = self.path

    # ---------------------------------------------------------------- transactions

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def durable(self) -> None:
        pass  # WAL with synchronous=NORMAL, as every commit (the catalog can be rebuilt with scan)

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:  # (SQLite may have rolled back already, e.g. on SQLITE_FULL)
            try:
                self.db.execute("ROLLBACK")
            except (sqlite3.Error, TapearcError):
                pass  # the error being raised says more

    def close(self) -> None:
        self.db.close()
