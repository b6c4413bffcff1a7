"""The backend of the lease contract suite: one fixture, ``lease_catalog``, gives the catalog
spec the suite's :class:`~tapearc.catalog.leases.Leases` open: an SQLite file, and a new
PostgreSQL database (tests/pgsupport.py: a throw-away cluster's, or TAPEARC_TEST_POSTGRESQL's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tests.pgsupport import pg_server, pg_url  # noqa: F401 (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def lease_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The spec of an empty catalog (its schema made, its lease table empty)."""
    spec = str(tmp_path / "catalog.sqlite") if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    Catalog(spec).close()
    return spec
