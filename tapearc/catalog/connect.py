"""A connection of its own to an existing catalog, for a part of tapearc that keeps a table of
its own there and needs a second connection (the leases and their heartbeat thread).

It does no schema work (the catalog was opened with :class:`tapearc.catalog.db.Catalog` first,
which made every table) and imports neither the schema nor the Catalog, so a module the schema
includes (tapearc/catalog/leases.py) can use it. The connection is in autocommit mode (each
statement commits by itself), may be used from any thread (one at a time), takes statements in
the catalog's common dialect with ``?`` placeholders and raises CatalogErrors.
"""

from __future__ import annotations

from typing import Any

from tapearc import settings
from tapearc.catalog.backend_sqlite import SqliteBackend
from tapearc.catalog.spec import parse
from tapearc.errors import CatalogError


def connect_existing(spec: str) -> Any:
    """The connection (see the module's text) to the catalog ``spec`` (a path or URL, password
    included: :attr:`Catalog.connect_spec`). CatalogError if an SQLite catalog does not exist."""
    parsed = parse(spec)
    timeout = settings.catalog_timeout()
    if parsed.path is not None:
        if not parsed.path.is_file():
            raise CatalogError(f"catalog {parsed.shown} does not exist", hint="open it with a tapearc command first")
        sqlite = SqliteBackend(parsed, timeout, "catalog", threads=True)
        sqlite.opened()
        return sqlite.db
    from tapearc.catalog.backend_pg import PgBackend

    pg = PgBackend(parsed, timeout)
    pg.opened()
    return pg.db
