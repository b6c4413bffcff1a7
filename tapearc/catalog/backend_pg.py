"""The PostgreSQL catalog backend (psycopg 3): a catalog many tapearc processes on many hosts
share.

Statements are written once for both backends with ``?`` placeholders (docs/catalog.md, "Schema");
:func:`pg_sql` turns them into psycopg's ``%s``. The connection is in autocommit mode: a read
is a statement of its own (it sees every committed write, and never waits for a writer).

Writes: each write transaction (``Catalog.transaction()``) is ``BEGIN`` (read committed) and
then takes the catalog's write lock, a transaction-level advisory lock
(``pg_advisory_xact_lock(1952542819, 1)``), released by its COMMIT or ROLLBACK. Writers of one
catalog database therefore run one after the other, exactly as SQLite's ``BEGIN IMMEDIATE``
makes them, and each statement of a write sees everything committed before it took the lock:
two processes recording the same media set, volume or medium at once find each other's rows
(``INSERT ... ON CONFLICT``), never a duplicate, never a lost update. Readers are not blocked.
Waiting for the lock is bounded by ``$TAPEARC_CATALOG_TIMEOUT`` (the session's
``lock_timeout``); past it the write fails with a CatalogError (exit 16) naming the holder (its
host and pid, from the ``application_name`` each tapearc connection sets). A serialization
failure or deadlock (40001, 40P01: not expected between tapearc's writers, but another client of
the database may cause one) while taking the lock, or of a single statement outside a
transaction, is retried with a growing pause until that timeout.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from tapearc.catalog.spec import CatalogSpec
from tapearc.errors import CatalogError, CatalogSpecError, CatalogUnreachableError

if TYPE_CHECKING:
    import psycopg

#: The catalog's write lock: pg_advisory_xact_lock(LOCK_CLASS, LOCK_WRITE) ("tapc", 1).
LOCK_CLASS = 0x74617063
LOCK_WRITE = 1

_BEGIN = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({LOCK_CLASS}, {LOCK_WRITE})"
_RETRY_STATES = ("40001", "40P01")  # serialization_failure, deadlock_detected
_LOCK_TIMEOUT_STATE = "55P03"  # lock_not_available


@lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """``sql`` with each ``?`` placeholder outside string literals, quoted names and comments as
    ``%s``, and every ``%`` doubled (psycopg reads ``%`` everywhere in a query with parameters)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            j = sql.find(ch, i + 1)
            j = n - 1 if j < 0 else j
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if ch == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
            continue
        out.append("%s" if ch == "?" else "%%" if ch == "%" else ch)
        i += 1
    return "".join(out)


def _first_line(e: BaseException) -> str:
    """The error's message on one line: the server's primary message if it sent one."""
    primary = getattr(getattr(e, "diag", None), "message_primary", None)
    if primary:
        return str(primary)
    lines = [" ".join(x.split()) for x in str(e).splitlines() if x.strip()]
    text = "; ".join(lines) or type(e).__name__
    return text.removeprefix("connection failed: ")


def _sqlstate(e: BaseException) -> str | None:
    return getattr(e, "sqlstate", None)


def application_name() -> str:
    """How this process names itself to the server (a busy catalog names its holder so)."""
    return f"tapearc {socket.gethostname()} pid {os.getpid()}"[:63]


def _unreachable(shown: str, e: BaseException) -> CatalogUnreachableError:
    why = _first_line(e)
    low = why.lower()
    if "password" in low or "authentication" in low or "role" in low:
        hint = "check the user and password (~/.pgpass, PGPASSWORD) and pg_hba.conf (docs/catalog.md)"
    elif "database" in low and "does not exist" in low:
        hint = "create the database first: createdb -O USER DBNAME (docs/catalog.md)"
    else:
        hint = "is the PostgreSQL server running, and listening at that address? (docs/catalog.md)"
    return CatalogUnreachableError(f"cannot reach catalog {shown}: {why}", hint=hint)


class PgConnection:
    """A psycopg connection with the interface tapearc's catalog code uses (``execute``,
    ``executemany``, ``in_transaction``), statements in the common dialect (``?``), errors as
    CatalogErrors once the catalog is open."""

    def __init__(self, conn: psycopg.Connection[Any], shown: str, timeout: float) -> None:
        self.conn = conn
        self.shown = shown
        self.timeout = timeout
        self.wrap_errors = False  # True once the catalog is open: Catalog.__init__ words its own errors

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.conn.info.transaction_status != TransactionStatus.IDLE

    def wrap(self, e: Exception) -> BaseException:
        if not self.wrap_errors:
            return e
        if self.conn.broken or self.conn.closed:
            return _unreachable(self.shown, e)
        if _sqlstate(e) == _LOCK_TIMEOUT_STATE:
            return self.busy_error()
        return CatalogError(
            f"catalog {self.shown}: {_first_line(e)}",
            hint="if the catalog is damaged, rebuild it in a new database with tapearc scan",
        )

    def busy_error(self) -> CatalogError:
        holders = self.lock_holders()
        who = ", ".join(holders) if holders else "another tapearc process"
        return CatalogError(
            f"catalog {self.shown} is locked by {who} (waited {self.timeout:g} s)",
            hint="wait for the other tapearc to finish, or set TAPEARC_CATALOG_TIMEOUT=SECONDS to wait longer",
            holders=",".join(holders),
        )

    def lock_holders(self) -> list[str]:
        """The sessions holding the catalog's write lock (``tapearc HOST pid N`` each, else the
        server's pid and client address)."""
        import psycopg

        try:
            if self.in_transaction:
                self.conn.execute("ROLLBACK")
            rows = self.conn.execute(
                """SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l
                   JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
                     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
                (LOCK_CLASS, LOCK_WRITE),
            ).fetchall()
        except psycopg.Error:
            return []
        return [str(r[0]) if r[0] else f"server process {r[2]} (client {r[1] or 'local'})" for r in rows]

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        import psycopg

        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                if not params:
                    return self.conn.execute(sql)
                return self.conn.execute(pg_sql(sql), list(params))
            except psycopg.Error as e:
                if _sqlstate(e) in _RETRY_STATES and not self.in_transaction and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                raise self.wrap(e) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        import psycopg

        cur = self.conn.cursor()
        try:
            cur.executemany(pg_sql(sql), list(rows))
        except psycopg.Error as e:
            raise self.wrap(e) from None
        return cur

    def close(self) -> None:
        self.conn.close()


class PgBackend:
    """An open PostgreSQL catalog (see the module's text)."""

    kind = "postgresql"

    def __init__(self, spec: CatalogSpec, timeout: float, read_only: bool = False) -> None:
        """``read_only``: every transaction of the session is read-only (the server refuses a
        write; docs/catalog.md, "Schema", its migrations)."""
        assert spec.url is not None
        self.shown = spec.shown
        self.timeout = timeout
        try:
            import psycopg
        except ImportError:
            raise CatalogSpecError(
                f"catalog {spec.shown}: PostgreSQL support is not installed (the psycopg package)",
                hint="pip install 'tapearc[postgresql]', or use an SQLite catalog (a path)",
            ) from None
        kw: dict[str, Any] = {"autocommit": True, "application_name": application_name()}
        if "connect_timeout" not in spec.url:
            kw["connect_timeout"] = 10
        try:
            conn = psycopg.connect(spec.url, **kw)
        except psycopg.Error as e:
            raise _unreachable(spec.shown, e) from None
        except Exception as e:  # a URL libpq cannot parse (e.g. an unknown parameter)
            raise CatalogSpecError(f"catalog {spec.shown}: {_first_line(e)}") from None
        try:
            # lock_timeout 0 would be "wait forever": at least a millisecond. synchronous_commit
            # off: a commit does not wait for its WAL to reach the disk (as SQLite's WAL with
            # synchronous=NORMAL); the commits that must last ask for it (durable())
            conn.execute(f"SET lock_timeout = {max(1, round(timeout * 1000))}; SET synchronous_commit = off")
            if read_only:
                conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as e:
            conn.close()
            raise _unreachable(spec.shown, e) from None
        self.db = PgConnection(conn, spec.shown, timeout)

    # ---------------------------------------------------------------- opening

    def tables(self) -> set[str]:
        rows = self.db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
        return {str(r[0]) for r in rows}

    def columns(self, table: str) -> list[str]:
        rows = self.db.execute(
            """SELECT column_name FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position""",
            (table,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def prepare(self) -> None:
        pass  # the session was set up when it connected

    def private_copy(self, shown: str, version: str | None) -> PgConnection:
        """A read-only open of a catalog that needs its schema made or migrated is refused: a
        migration in a transaction rolled back at the end would hold an exclusive lock on the
        catalog's tables (every backup writing to it waits) for as long as the browsing lasts."""
        what = "has no tapearc schema yet" if version is None else f"has the older schema version {version}"
        raise CatalogError(
            f"catalog {shown} {what}: a reading command does not change it",
            hint="a writing command of this tapearc (backup, scan, label, pool create) migrates it",
        )

    def retryable(self, e: BaseException) -> bool:
        return _sqlstate(e) in _RETRY_STATES

    def open_error(self, e: BaseException) -> BaseException:
        import psycopg

        if not isinstance(e, psycopg.Error):
            return e
        if self.db.conn.broken or self.db.conn.closed:
            return _unreachable(self.shown, e)
        if _sqlstate(e) == _LOCK_TIMEOUT_STATE:
            return self.db.busy_error()
        return CatalogError(
            f"catalog {self.shown} cannot be used: {_first_line(e)}",
            hint="the database's user needs the right to create tables in it (docs/catalog.md)",
        )

    def foreign_error(self, shown: str) -> CatalogError:
        return CatalogError(
            f"catalog {self.shown}: the database is not a tapearc catalog (it holds {shown}); tapearc leaves it untouched",
            hint="give a new empty database (createdb), or a tapearc catalog's",
        )

    def opened(self) -> None:
        self.db.wrap_errors = True

    # ---------------------------------------------------------------- transactions

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def begin(self) -> None:
        """BEGIN and take the catalog's write lock (see the module's text)."""
        import psycopg

        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                self.db.conn.execute(_BEGIN)  # one round trip: BEGIN; the write lock
                return
            except psycopg.Error as e:
                self.rollback()
                if _sqlstate(e) in _RETRY_STATES and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                if self.db.wrap_errors:
                    raise self.db.wrap(e) from None
                raise

    def durable(self) -> None:
        """The transaction under way waits, at its commit, for its WAL (and so every earlier
        commit's) to be on the server's disk."""
        self.db.execute("SET LOCAL synchronous_commit = on")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        import psycopg

        if self.db.conn.closed or self.db.conn.broken:
            return
        if self.db.in_transaction:
            try:
                self.db.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # the error being raised says more

    def close(self) -> None:
        self.db.close()
