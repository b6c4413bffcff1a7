"""The backend of the lease contract suite: one fixture, ``lease_catalog``, gives the catalog
spec the suite's :class:`~tapearc.catalog.leases.Leases` open. It runs on SQLite; a PostgreSQL
catalog is one more parameter here (a throw-away cluster's URL), nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog


@pytest.fixture(params=["sqlite"])
def lease_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The spec of an empty catalog (its schema made, its lease table empty)."""
    path = tmp_path / "catalog.sqlite"
    Catalog(str(path)).close()
    return str(path)
