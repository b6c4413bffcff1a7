"""tests/pgsupport.py: without PostgreSQL the tests that need it skip with the reason, and fail
instead when TAPEARC_TEST_REQUIRE_POSTGRESQL=1 (CI)."""

from __future__ import annotations

import pytest

from tests import pgsupport


def test_missing_postgresql_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAPEARC_TEST_POSTGRESQL", raising=False)
    monkeypatch.setattr(pgsupport, "_bindir", lambda: None)
    monkeypatch.delenv("TAPEARC_TEST_REQUIRE_POSTGRESQL", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        pgsupport.start_server()
    monkeypatch.setenv("TAPEARC_TEST_REQUIRE_POSTGRESQL", "1")
    with pytest.raises(pytest.fail.Exception, match=r"required.*not installed"):
        pgsupport.start_server()


def test_a_given_server_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setenv("TAPEARC_TEST_POSTGRESQL", "postgresql://someone@db.example/postgres")
    server, cluster = pgsupport.start_server()
    assert cluster is None and server.url == "postgresql://someone@db.example/postgres"
    assert (
        pgsupport.with_database(server.url + "?sslmode=require", "x")
        == "postgresql://someone@db.example/x?sslmode=require"
    )
