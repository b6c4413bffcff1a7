"""Which catalog a spec names, and the one-line errors of a catalog that cannot be used: a URL of
another scheme (39), a server not there, a wrong password, a database that does not exist (38).
A password never appears in a message."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from tapearc.catalog import spec as catalog_spec
from tapearc.catalog.backend_pg import pg_sql
from tapearc.catalog.db import Catalog, catalog_exists, default_catalog_path, default_catalog_spec
from tapearc.engine.jobfile import read_job
from tapearc.errors import CatalogError, CatalogSpecError, CatalogUnreachableError
from tests.pgsupport import PASSWORD, PASSWORD_ROLE, PgServer, with_database


def test_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = catalog_spec.parse(str(tmp_path / "c.sqlite"))
    assert (p.kind, p.path, p.url, p.given) == ("sqlite", tmp_path / "c.sqlite", None, True)
    assert catalog_spec.parse("sqlite:///var/lib/t/c.sqlite").path == Path("/var/lib/t/c.sqlite")
    assert catalog_spec.parse("sqlite://localhost/var/c.sqlite").path == Path("/var/c.sqlite")
    assert catalog_spec.parse("sqlite:rel/c.sqlite").path == Path("rel/c.sqlite")
    assert catalog_spec.parse("c:catalog").kind == "sqlite"  # no scheme of one letter
    for url in (
        "postgresql://u:secret@db.example/tapearc",
        "postgres://u:secret@db.example:5433/tapearc?sslmode=require",
    ):
        s = catalog_spec.parse(url)
        assert s.kind == "postgresql" and s.url == url and "secret" not in s.shown and "u@db.example" in s.shown
    s = catalog_spec.parse("postgresql:///tapearc?host=/run/postgresql&password=secret")
    assert "secret" not in s.shown and "host=/run/postgresql" in s.shown
    monkeypatch.setenv("TAPEARC_CATALOG", "postgresql://h/db")
    assert catalog_spec.parse(None).kind == "postgresql" and default_catalog_spec() == "postgresql://h/db"
    assert catalog_exists(None)
    assert default_catalog_path().name == "catalog.sqlite"  # a URL is not a path
    monkeypatch.delenv("TAPEARC_CATALOG")
    assert not catalog_spec.parse(None).given


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("mysql://u@h/db", "not mysql"),
        ("sqlite://otherhost/c.sqlite", "local file"),
        ("sqlite:///", "no file named"),
        ("postgresql://u:secret@h:notaport/db", "not a usable URL"),
    ],
)
def test_unusable_specs_are_refused(spec: str, words: str) -> None:
    with pytest.raises(CatalogSpecError, match=words) as e:
        Catalog(spec)
    assert e.value.exit_code == 39 and "secret" not in str(e.value)


def test_placeholders() -> None:
    assert pg_sql("SELECT a FROM t WHERE b = ? AND c LIKE '%?%' -- why? 100%\n AND d = ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%?%%' -- why? 100%%\n AND d = %s"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_no_server_there() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://tapearc:secret@127.0.0.1:{_closed_port()}/tapearc"
    with pytest.raises(
        CatalogUnreachableError, match=r"cannot reach catalog postgresql://tapearc@127.0.0.1:\d+/tapearc: .*refused"
    ) as e:
        Catalog(url)
    assert e.value.exit_code == 38 and "secret" not in str(e.value) and "running" in (e.value.hint or "")


def test_wrong_password_and_missing_database(pg_server: PgServer) -> None:
    if pg_server.password_url is None:
        pytest.skip("TAPEARC_TEST_POSTGRESQL names the server: no password role of ours on it")
    wrong = pg_server.password_url.replace(PASSWORD, "wrong-secret")
    with pytest.raises(CatalogUnreachableError, match="password authentication failed") as e:
        Catalog(wrong)
    assert e.value.exit_code == 38 and "wrong-secret" not in str(e.value) and PASSWORD not in str(e.value)
    assert "pgpass" in (e.value.hint or "")
    with pytest.raises(CatalogUnreachableError, match="does not exist") as e:
        Catalog(with_database(pg_server.url, "no_such_database"))
    assert "createdb" in (e.value.hint or "")
    # a database the role may not create tables in (PostgreSQL 15: not in another's public schema)
    name, _ = pg_server.new_database()
    try:
        with pytest.raises(CatalogError, match="permission denied for schema public") as e2:
            Catalog(with_database(pg_server.password_url, name))
        assert e2.value.exit_code == 16 and "right to create tables" in (e2.value.hint or "")
    finally:
        pg_server.drop_database(name)
    name, _ = pg_server.new_database(owner=PASSWORD_ROLE)  # as docs/catalog.md says: createdb -O
    try:
        with Catalog(with_database(pg_server.password_url, name)) as cat:
            assert PASSWORD not in cat.spec
            assert cat.volumes(uuid.uuid4()) == []
    finally:
        pg_server.drop_database(name)


def test_job_file_catalog_url_passes_unchanged(tmp_path: Path) -> None:
    for given, want in (
        ("postgresql://tapearc@db/tapearc", "postgresql://tapearc@db/tapearc"),
        ("sqlite:///var/lib/tapearc/c.sqlite", "sqlite:///var/lib/tapearc/c.sqlite"),
        ("cat.sqlite", str(tmp_path / "cat.sqlite")),
    ):
        job = tmp_path / "job.toml"
        job.write_text(
            f'[job]\nname = "n"\nmedia = "sim:t.tap"\ncatalog = "{given}"\n[[volume]]\nname = "v"\nsource = "v.img"\n'
        )
        assert read_job(os.fspath(job)).catalog == want


def test_a_lost_connection_is_unreachable(pg_url: str, pg_server: PgServer) -> None:
    import psycopg

    with Catalog(pg_url) as cat:
        pid = cat.db.conn.info.backend_pid
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(CatalogUnreachableError, match="cannot reach catalog") as e:
            cat.volumes(uuid.uuid4())
        assert e.value.exit_code == 38
