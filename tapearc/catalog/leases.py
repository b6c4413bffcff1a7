"""Leases on drives, media and changers, held in the catalog database (docs/leases.md).

A lease is a row of the ``leases`` table: one per resource (``drive:<library>:<index>``,
``medium:<uuid or barcode>``, ``changer:<library>``), naming its holder (host, pid, the pid's
start time, a random holder id), what it is for, and until when it holds. Every tapearc process
that shares the catalog (several processes on one host with SQLite; several hosts with a shared
PostgreSQL catalog) sees the others' leases:

* :meth:`Leases.acquire` takes a free resource in one atomic statement (``INSERT ... ON CONFLICT
  (resource) DO UPDATE ... WHERE leases.holder = <the holder we saw> RETURNING``): a lease that
  has expired, or whose holder process on this same host is gone, is taken over, with a warning
  naming the old holder; a lease held by a live holder makes the caller wait (polling with a
  bounded back-off; the message naming the holder is given once per wait, again only when
  another process holds it, and once for all the threads of this process waiting for it) or raise :class:`LeaseBusyError` (exit 40);
* a heartbeat thread (its own connection) renews every held lease each ``ttl / 3`` seconds; if
  it finds a lease gone (broken by an operator) or taken over, the lease is marked lost and
  :meth:`Lease.check` raises :class:`LeaseLostError` (exit 41): the engine calls it before it
  writes, so a holder that lost its lease stops before writing more;
* :meth:`Lease.release` deletes only our own row.

Times are epoch seconds from the client's clock: hosts sharing a catalog need synchronized
clocks (NTP), as Bareos' storage daemons do. The SQL is written once, in the common subset of
SQLite >= 3.35 and PostgreSQL >= 13, with ``?`` placeholders.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tapearc import settings
from tapearc.catalog.schema import LEASES_DDL
from tapearc.catalog.spec import parse as parse_spec
from tapearc.errors import CatalogError, LeaseBusyError, LeaseLostError

__all__ = [
    "DEFAULT_TTL",
    "LEASES_DDL",
    "Lease",
    "LeaseBusy",
    "LeaseBusyError",
    "LeaseLostError",
    "LeaseRow",
    "Leases",
    "describe_resource",
]

LeaseBusy = LeaseBusyError

DEFAULT_TTL = settings.DEFAULT_LEASE_TTL  #: without $TAPEARC_LEASE_TTL
MIN_TTL = 0.3
_MAX_POLL = 1.0
#: The heartbeat's longest sleep: a long ttl's renewal (TAPEARC_LEASE_TTL has no upper bound)
#: is waited for in steps, as a thread cannot wait past threading.TIMEOUT_MAX (~292 years).
MAX_HEARTBEAT_SLEEP = 3600.0

_COLUMNS = "resource, holder, host, pid, pid_start, purpose, acquired_at, renewed_at, expires_at"
_SELECT = f"SELECT {_COLUMNS} FROM leases WHERE resource = ?"
_TAKE = f"""
INSERT INTO leases ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (resource) DO UPDATE SET
    holder = excluded.holder, host = excluded.host, pid = excluded.pid, pid_start = excluded.pid_start,
    purpose = excluded.purpose, acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at,
    expires_at = excluded.expires_at
WHERE leases.holder = ?
RETURNING holder
"""
_RENEW = "UPDATE leases SET renewed_at = ?, expires_at = ? WHERE resource = ? AND holder = ?"
_RELEASE = "DELETE FROM leases WHERE resource = ? AND holder = ?"


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What leases need of a database connection (sqlite3's, or the PostgreSQL wrapper's)."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def close(self) -> None: ...


def connect_catalog(spec: str) -> Connection:
    """A connection of its own to the catalog ``spec`` (a path, ``sqlite:///abs/path`` or a
    PostgreSQL URL, its password included), in autocommit mode: every lease statement is one
    atomic statement (tapearc/catalog/connect.py). The catalog must exist (opening it with
    :class:`tapearc.catalog.db.Catalog` creates the table)."""
    from tapearc.catalog.connect import connect_existing

    db: Connection = connect_existing(spec)
    try:
        db.execute("SELECT 1 FROM leases LIMIT 1")
    except (sqlite3.Error, CatalogError) as e:
        db.close()
        raise CatalogError(f"catalog {parse_spec(spec).shown}: cannot use its lease table: {e}") from None
    return db


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A lease as the table holds it."""

    resource: str
    holder: str
    host: str
    pid: int
    pid_start: int | None
    purpose: str
    acquired_at: float
    renewed_at: float
    expires_at: float

    @classmethod
    def of(cls, r: Sequence[Any]) -> LeaseRow:
        ps = None if r[4] is None else int(r[4])
        return cls(str(r[0]), str(r[1]), str(r[2]), int(r[3]), ps, str(r[5]), float(r[6]), float(r[7]), float(r[8]))

    def expired(self, now: float) -> bool:
        return self.expires_at < now

    def holder_text(self) -> str:
        """``host h pid 123 (backup of vm1)``."""
        return f"host {self.host} pid {self.pid} ({self.purpose})"

    def to_json(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        return {
            "resource": self.resource,
            "host": self.host,
            "pid": self.pid,
            "purpose": self.purpose,
            "acquired_at": self.acquired_at,
            "renewed_at": self.renewed_at,
            "expires_at": self.expires_at,
            "expired": self.expired(now),
        }


def clock(t: float, now: float | None = None) -> str:
    """A time as the messages show it: ``03:02:11`` today, else ``2026-12-03 03:02:11``."""
    lt, ln = time.localtime(t), time.localtime(time.time() if now is None else now)
    if lt[:3] == ln[:3]:
        return time.strftime("%H:%M:%S", lt)
    return time.strftime("%Y-%m-%d %H:%M:%S", lt)


def describe_resource(resource: str) -> str:
    """``drive:L:1`` -> ``drive 1 of library L``; ``medium:X`` -> ``medium X``;
    ``changer:L`` -> ``the changer of library L``."""
    kind, _, rest = resource.partition(":")
    if kind == "drive":
        lib, _, index = rest.rpartition(":")
        return f"drive {index} of library {lib}" if lib else f"drive {rest}"
    if kind == "changer":
        return f"the changer of library {rest}"
    if kind == "medium":
        return f"medium {rest}"
    return resource


def held_text(row: LeaseRow, now: float) -> str:
    """``drive 1 of library L is held by host h pid 123 (backup of vm1) since 03:02:11``."""
    return f"{describe_resource(row.resource)} is held by {row.holder_text()} since {clock(row.acquired_at, now)}"


def busy_error(rows: Sequence[LeaseRow], waited: float, now: float) -> LeaseBusyError:
    text = "; ".join(
        f"{held_text(r, now)}, renewed {clock(r.renewed_at, now)}, expires {clock(r.expires_at, now)}" for r in rows
    )
    first = rows[0]
    return LeaseBusyError(
        text + (f" (waited {waited:g} s)" if waited > 0 else ""),
        hint=(
            "wait for it (--wait SECONDS, a job's wait); if that process is gone, its lease expires by itself, "
            f"or break it: tapearc lease break {first.resource}"
        ),
        resource=first.resource,
        holder_host=first.host,
        holder_pid=first.pid,
        holder_purpose=first.purpose,
    )


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot, /proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def holder_gone(row: LeaseRow, host: str) -> bool:
    """The holder is a process of this host that is no longer running (or whose pid now names
    another process: its start time differs)."""
    if row.host != host or row.pid <= 0:
        return False
    try:
        os.kill(row.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    start = process_start(row.pid)
    return row.pid_start is not None and start is not None and start != row.pid_start


class Lease:
    """A held lease (a context manager: released at the end). :meth:`check` raises
    :class:`LeaseLostError` once the heartbeat found it lost."""

    def __init__(self, owner: Leases, resource: str, holder: str, purpose: str, ttl: float) -> None:
        self.owner = owner
        self.resource = resource
        self.holder = holder
        self.purpose = purpose
        self.ttl = ttl
        self.lost: str | None = None
        self.released = False
        self.next_renewal = time.monotonic() + ttl / 3

    def check(self) -> None:
        """Raise LeaseLostError if the lease was lost (taken over, broken)."""
        if self.lost is not None:
            raise LeaseLostError(
                f"lost the lease on {describe_resource(self.resource)}: {self.lost}; stopped before writing more",
                hint="see docs/leases.md: a lease is lost when its holder cannot renew it within its ttl",
                resource=self.resource,
            )

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.owner.release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease({self.resource!r}, purpose={self.purpose!r})"


def stderr_notify(text: str) -> None:
    sys.stderr.write(f"tapearc: {text}\n")
    sys.stderr.flush()


class Leases:
    """The leases of one process in the catalog ``catalog_spec``. ``notify`` receives the wait
    and takeover messages (default: a ``tapearc:`` line on standard error). One per process:
    not to be shared across a fork."""

    def __init__(
        self,
        catalog_spec: str,
        *,
        notify: Callable[[str], None] | None = None,
        connect: Callable[[str], Connection] | None = None,
        ttl: float | None = None,
    ) -> None:
        self.spec = catalog_spec
        #: the ttl of the leases taken without one ($TAPEARC_LEASE_TTL, default 60 s)
        self.ttl = settings.lease_ttl() if ttl is None else ttl
        self.connect = connect or connect_catalog
        self.notify = notify or stderr_notify
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self.db = self.connect(catalog_spec)
        self.lock = threading.Lock()
        self.held: dict[str, Lease] = {}
        #: the holders a wait message was given for: (resource, host, pid), until the resource is ours
        self.told: set[tuple[str, str, int]] = set()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reading

    def _run(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        with self.lock:
            try:
                cur: Cursor = self.db.execute(sql, params)
                return cur
            except sqlite3.Error as e:
                raise CatalogError(f"catalog {self.spec}: leases: {e}") from None

    def get(self, resource: str) -> LeaseRow | None:
        r = self._run(_SELECT, (resource,)).fetchone()
        return None if r is None else LeaseRow.of(r)

    def rows(self, prefix: str = "") -> list[LeaseRow]:
        """Every lease (of resources starting with ``prefix``), by resource."""
        sql = f"SELECT {_COLUMNS} FROM leases ORDER BY resource"
        return [LeaseRow.of(r) for r in self._run(sql).fetchall() if str(r[0]).startswith(prefix)]

    def break_lease(self, resource: str) -> LeaseRow | None:
        """Delete the lease on ``resource`` whoever holds it (an operator's ``lease break``);
        returns the row deleted (None: there was none). Its holder finds it lost."""
        row = self.get(resource)
        if row is not None:
            self._run("DELETE FROM leases WHERE resource = ? AND holder = ?", (resource, row.holder))
        return row

    # ------------------------------------------------------------------ acquiring

    def _try(self, resource: str, purpose: str, ttl: float) -> tuple[Lease | None, LeaseRow | None]:
        """One attempt: (the lease, None) or (None, the row of its live holder)."""
        now = time.time()
        row = self.get(resource)
        takeover = ""
        if row is not None:
            if row.expired(now):
                takeover = (
                    f"took over the expired lease on {describe_resource(resource)}: it was held by "
                    f"{row.holder_text()} since {clock(row.acquired_at, now)}, last renewed {clock(row.renewed_at, now)}"
                )
            elif holder_gone(row, self.host):
                takeover = (
                    f"took over the lease on {describe_resource(resource)} at once: its holder {row.holder_text()} "
                    f"(since {clock(row.acquired_at, now)}) is no longer running on this host"
                )
            else:
                return None, row
        holder = uuid.uuid4().hex
        params = (resource, holder, self.host, self.pid, self.pid_start, purpose, now, now, now + ttl)
        got = self._run(_TAKE, (*params, "" if row is None else row.holder)).fetchone()
        if got is None or str(got[0]) != holder:
            return None, self.get(resource) or row  # someone else was quicker: try again
        if takeover:
            self.notify(f"warning: {takeover}")
        lease = Lease(self, resource, holder, purpose, ttl)
        with self.lock:
            self.held[resource] = lease
        self._start_heartbeat()
        return lease, None

    def acquire(self, resource: str, *, purpose: str, wait: float | None = 0, ttl: float | None = None) -> Lease:
        """Lease ``resource`` for ``purpose``; wait up to ``wait`` seconds (None: as long as it
        takes) for its holder to release it; LeaseBusyError naming the holder past that."""
        return self.acquire_any([resource], purpose=purpose, wait=wait, ttl=ttl)

    def acquire_any(
        self, resources: Sequence[str], *, purpose: str, wait: float | None = 0, ttl: float | None = None
    ) -> Lease:
        """Lease the first free one of ``resources`` (in their order), waiting as :meth:`acquire`
        (``ttl``: None, the Leases' own)."""
        if not resources:
            raise ValueError("acquire_any: no resources")
        ttl = max(float(self.ttl if ttl is None else ttl), MIN_TTL)
        start = time.monotonic()
        delay = 0.02
        while True:
            busy: list[LeaseRow] = []
            for res in resources:
                lease, row = self._try(res, purpose, ttl)
                if lease is not None:
                    self._waited(resources)
                    return lease
                if row is not None:
                    busy.append(row)
            waited = time.monotonic() - start
            if wait is not None and waited >= wait:
                self._waited(resources)
                raise busy_error(busy or [self._placeholder(resources[0])], wait, time.time())
            self._tell(busy)
            pause = delay if wait is None else min(delay, max(wait - waited, 0.0))
            time.sleep(pause)
            delay = min(delay * 2, _MAX_POLL, max(ttl / 3, 0.05))

    def _tell(self, busy: Sequence[LeaseRow]) -> None:
        """The wait message for each holder not told about yet in this wait: a holder is its
        process (host, pid), not its lease (a process that takes the changer's lease for each
        load holds it under a new lease id each time), and the threads of this process that wait
        for the same holder share one message."""
        for row in busy:
            key = (row.resource, row.host, row.pid)
            with self.lock:
                if key in self.told:
                    continue
                self.told.add(key)
            self.notify(f"{held_text(row, time.time())}; waiting")

    def _waited(self, resources: Sequence[str]) -> None:
        """The wait for ``resources`` is over (one is ours, or waiting was given up): a later
        wait for one of them says again whom it waits for."""
        with self.lock:
            self.told = {k for k in self.told if k[0] not in resources}

    def _placeholder(self, resource: str) -> LeaseRow:
        now = time.time()
        return LeaseRow(resource, "", "?", 0, None, "unknown", now, now, now)

    # ------------------------------------------------------------------ releasing, renewing

    def release(self, lease: Lease) -> None:
        """Delete our own row of ``lease`` (someone else's row is left alone)."""
        with self.lock:
            if self.held.get(lease.resource) is lease:
                del self.held[lease.resource]
        lease.released = True
        if lease.lost is None:
            try:
                self._run(_RELEASE, (lease.resource, lease.holder))
            except CatalogError:
                pass  # the lease expires by itself

    def _start_heartbeat(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.stop.clear()
            self.thread = threading.Thread(target=self._heartbeat, name="tapearc-leases", daemon=True)
            self.thread.start()

    def _heartbeat(self) -> None:
        db: Connection | None = None
        try:
            while not self.stop.is_set():
                with self.lock:
                    leases = [x for x in self.held.values() if x.lost is None]
                if not leases:
                    self.stop.wait(0.2)
                    continue
                if db is None:
                    db = self._heartbeat_connection()
                if db is not None:
                    self.renew_due(db, leases)
                wake = min(x.next_renewal for x in leases) - time.monotonic()
                self.stop.wait(min(max(wake, 0.01), MAX_HEARTBEAT_SLEEP))
        finally:
            if db is not None:
                db.close()

    def _heartbeat_connection(self) -> Connection | None:
        try:
            return self.connect(self.spec)
        except CatalogError:
            return None  # tried again at the next renewal; the lease expires if it never comes back

    def renew_due(self, db: Connection, leases: Sequence[Lease]) -> None:
        """Renew the leases whose renewal is due; mark lost those that are gone or taken over."""
        for lease in leases:
            if time.monotonic() < lease.next_renewal or lease.released:
                continue
            now = time.time()
            try:
                n = db.execute(_RENEW, (now, now + lease.ttl, lease.resource, lease.holder)).rowcount
                row = None if n else db.execute(_SELECT, (lease.resource,)).fetchone()
            except (sqlite3.Error, CatalogError):
                lease.next_renewal = time.monotonic() + min(lease.ttl / 10, 1.0)
                continue
            if n:
                lease.next_renewal = time.monotonic() + lease.ttl / 3
            elif not lease.released:
                lease.lost = (
                    "its row was deleted (tapearc lease break)"
                    if row is None
                    else f"it is held now by {LeaseRow.of(row).holder_text()} since {clock(float(row[6]))}"
                )

    def held_leases(self) -> list[Lease]:
        with self.lock:
            return list(self.held.values())

    def check(self) -> None:
        """Raise LeaseLostError if any lease held is lost."""
        for lease in self.held_leases():
            lease.check()

    def close(self) -> None:
        """Release every lease still held and stop the heartbeat."""
        for lease in self.held_leases():
            lease.release()
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        with self.lock:
            self.db.close()

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
