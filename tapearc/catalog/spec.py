"""Which catalog a spec names: an SQLite file or a PostgreSQL database (docs/catalog.md).

A spec is what ``--catalog``, ``$TAPEARC_CATALOG`` or a job file's ``catalog`` gives:

- a path, or ``sqlite:///abs/path`` (``sqlite:relative/path`` too): an SQLite catalog file;
- ``postgresql://[user[:password]@][host][:port]/dbname[?param=value...]`` (``postgres://``
  too): a PostgreSQL database, in libpq's URL form (``host=/run/postgresql`` names a socket
  folder; a password is better kept in ``~/.pgpass`` or ``PGPASSWORD`` than in the URL).

``CatalogSpec.shown`` names the catalog in messages: the path, or the URL without its password.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tapearc import settings
from tapearc.errors import CatalogSpecError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_PG_SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMS = ("password", "passfile", "sslpassword")


@dataclass(frozen=True, slots=True)
class CatalogSpec:
    kind: str  #: SQLITE or POSTGRESQL
    path: Path | None  #: the SQLite file (None: PostgreSQL)
    url: str | None  #: the PostgreSQL URL as given, password included (None: SQLite)
    shown: str  #: how messages name it: the path, or the URL without a password
    given: bool  #: the user named it (a path's folder must exist); False: the default location

    @property
    def is_sqlite(self) -> bool:
        return self.kind == SQLITE


def is_url(text: str) -> bool:
    """Whether a catalog spec is a URL (``scheme:...`` of two letters or more, so that a Windows
    drive letter or a plain relative path is not one)."""
    m = _SCHEME.match(text)
    return m is not None and len(m.group(1)) > 1 and (m.group(1).lower() in (*_PG_SCHEMES, SQLITE) or "://" in text)


def redact(url: str) -> str:
    """A PostgreSQL URL without its password (in the user part or a ``password=`` parameter)."""
    try:
        p = urlsplit(url)
        netloc = p.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            netloc = user.split(":", 1)[0] + "@" + host
        query = p.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="/")
        return urlunsplit((p.scheme, netloc, p.path, query, p.fragment))
    except ValueError:
        return url.split("://", 1)[0] + "://(a URL that cannot be parsed)"


def default_sqlite_path() -> Path:
    """``$XDG_DATA_HOME/tapearc/catalog.sqlite`` (``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tapearc" / "catalog.sqlite"


def parse(spec: str | os.PathLike[str] | None, what: str = "--catalog") -> CatalogSpec:
    """The catalog ``spec`` names (None: ``$TAPEARC_CATALOG``, else the default SQLite file).
    ``what`` says where the spec came from, for messages. CatalogSpecError for a URL of another
    scheme or one that cannot be parsed."""
    if spec is None:
        env = settings.catalog_spec()
        if env is None:
            p = default_sqlite_path()
            return CatalogSpec(SQLITE, p, None, str(p), given=False)
        spec, what = env, "TAPEARC_CATALOG"
    text = os.fspath(spec)
    if not is_url(text):
        return CatalogSpec(SQLITE, Path(text), None, text, given=True)
    scheme = text.split(":", 1)[0].lower()
    if scheme == SQLITE:
        rest = text[len("sqlite:") :]
        if rest.startswith("//"):  # sqlite:///abs/path (an empty host), sqlite://localhost/abs/path
            host, _, path = rest[2:].partition("/")
            if host not in ("", "localhost"):
                raise CatalogSpecError(f"{what} {text}: an SQLite catalog is a local file (no host {host!r})")
            rest = "/" + path
        if rest in ("", "/"):
            raise CatalogSpecError(f"{what} {text}: no file named", hint="sqlite:///abs/path/catalog.sqlite")
        return CatalogSpec(SQLITE, Path(rest), None, rest, given=True)
    if scheme in _PG_SCHEMES:
        try:
            _ = urlsplit(text).port  # raises ValueError for a port that is not a number
        except ValueError as e:
            raise CatalogSpecError(f"{what} {redact(text)}: not a usable URL ({e})") from None
        return CatalogSpec(POSTGRESQL, None, text, redact(text), given=True)
    raise CatalogSpecError(
        f"{what} {text.split('://', 1)[0]}://...: tapearc keeps its catalog in SQLite or PostgreSQL, not {scheme}",
        hint="give a path (SQLite) or a postgresql://user@host/dbname URL",
    )
