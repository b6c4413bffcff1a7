"""The catalog tests' fixtures: ``catalog_spec`` runs a test against both backends (an SQLite
file, a new PostgreSQL database: tests/pgsupport.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pgsupport import pg_server, pg_url  # noqa: F401 (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty catalog of each backend: its spec (a path, or a postgresql:// URL)."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.sqlite")
    return str(request.getfixturevalue("pg_url"))
