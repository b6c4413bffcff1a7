"""A PostgreSQL server for the tests: ``TAPEARC_TEST_POSTGRESQL`` (a URL of a role that may
create databases) when set, else a throw-away cluster started here (initdb in a temporary
folder, its unix socket in that folder, a free port on 127.0.0.1; as root the server runs as
the ``postgres`` user, since PostgreSQL refuses to run as root), stopped at the end of the
session. Without PostgreSQL's programs (/usr/lib/postgresql/*/bin) the tests that need it skip
with the reason, and fail instead when ``TAPEARC_TEST_REQUIRE_POSTGRESQL=1`` (CI sets it).

Each test gets a database of its own (``pg_url``): CREATE DATABASE from template0 on a cluster
with fsync off, a few milliseconds each.

The cluster also has a role ``tapearc_pw`` with the password ``right-password`` that may only
log in over TCP with it (scram-sha-256): ``PgServer.password_url`` (tests of a wrong password).
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

PASSWORD_ROLE = "tapearc_pw"
PASSWORD = "right-password"


def _required() -> bool:
    return os.environ.get("TAPEARC_TEST_REQUIRE_POSTGRESQL", "") == "1"


def _unavailable(why: str) -> None:
    if _required():
        pytest.fail(f"PostgreSQL is required (TAPEARC_TEST_REQUIRE_POSTGRESQL=1) but {why}")
    pytest.skip(why)


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, dbname: str) -> str:
    """``url`` with its database replaced by ``dbname`` (query parameters such as host= kept)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + quote(dbname), p.query, p.fragment))


@dataclass
class PgServer:
    url: str  #: a role that may create databases, on its maintenance database
    password_url: str | None = None  #: tapearc_pw over TCP, with its password (own cluster only)
    _counter: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(sql)  # type: ignore[arg-type]

    def new_database(self, prefix: str = "t", owner: str | None = None) -> tuple[str, str]:
        """(name, URL) of a new empty database (owned by ``owner``: None, the server's role)."""
        name = f"tapearc_{prefix}_{os.getpid()}_{next(self._counter)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0' + (f' OWNER "{owner}"' if owner else ""))
        return name, with_database(self.url, name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _Cluster:
    """initdb + pg_ctl start in a temporary folder; stop() removes it all."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        # short: a unix socket's path has at most ~107 bytes (a long $TMPDIR: /tmp instead)
        self.root = tempfile.mkdtemp(prefix="tapearc-pg-", dir=None if len(tempfile.gettempdir()) < 50 else "/tmp")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.started = False

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")

    def start(self, durable: bool = False) -> str:
        """Start the server; its URL (a superuser, on the unix socket). ``durable``: PostgreSQL's
        own defaults (fsync, synchronous commit) as a site runs it, for measurements; else
        fsync off (tests: nothing here must survive a power cut)."""
        b = self.bindir
        self._run(f"{b}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n")
            f.write(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n")
            f.write("host all all 127.0.0.1/32 reject\n")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=100"
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = os.path.join(self.root, "server.log")
        self._run(f"{b}/pg_ctl", "-D", self.data, "-o", opts, "-l", log, "-w", "-t", "60", "start")
        self.started = True
        return f"postgresql://postgres@/postgres?host={quote(self.root, safe='/')}&port={self.port}"

    def stop(self) -> None:
        try:
            if self.started:
                self._run(f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server(durable: bool = False) -> tuple[PgServer, _Cluster | None]:
    """The server the tests use (see the module's text); raises RuntimeError if a cluster
    cannot be started, pytest's skip (or fail) if PostgreSQL is not here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[test]')")
    given = os.environ.get("TAPEARC_TEST_POSTGRESQL")
    if given:
        return PgServer(given), None
    bindir = _bindir()
    if bindir is None:
        _unavailable("PostgreSQL's programs are not installed (/usr/lib/postgresql/*/bin; Debian package postgresql)")
    assert bindir is not None
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _unavailable("running as root without runuser: cannot start PostgreSQL as the postgres user")
    cluster = _Cluster(bindir)
    try:
        url = cluster.start(durable)
        server = PgServer(url)
        server.admin(f"CREATE ROLE {PASSWORD_ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        server.password_url = f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{cluster.port}/postgres"
    except BaseException:
        cluster.stop()
        raise
    return server, cluster


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server, cluster = start_server()
    try:
        yield server
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new empty database, dropped after the test."""
    name, url = pg_server.new_database()
    try:
        yield url
    finally:
        pg_server.drop_database(name)
