"""``tapearc catalog volumes|generations|media``: browse the catalog, no medium needed.

Registered by the main app with :func:`register` (``app.add_typer(catalog_app, name="catalog")``).
The rows come from :mod:`tapearc.catalog.views`; filters: ``--volume NAME``, ``--since TIME``,
``--until TIME`` (ISO 8601, :mod:`tapearc.cli.timeparse`), ``--medium LABEL|BARCODE|UUID``.
Text output is a table with local ISO dates; ``--json`` one JSON document, dates with their zone.
A catalog that does not exist (an SQLite file that is not there, a PostgreSQL database without
tapearc's tables) is shown empty and is not created: browsing never writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tapearc.cli.common import CatalogOpt, JsonOpt, emit_json, out_console, run, say
from tapearc.cli.timeparse import time_parser
from tapearc.errors import UsageError
from tapearc.units import format_size

if TYPE_CHECKING:
    from rich.table import Table

    from tapearc.catalog.db import Catalog
    from tapearc.catalog.views import CatalogFilter, GenerationView, MediumView, VolumeView

T = TypeVar("T")

catalog_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Browse the catalog: volumes, generations (and the media each needs), media.",
)


@catalog_app.callback()
def _catalog_group() -> None:
    """Browse the catalog: volumes, generations (and the media each needs), media."""


VolumeFilterOpt = Annotated[str | None, typer.Option("--volume", help="Only this volume.", metavar="NAME")]
SinceOpt = Annotated[
    int | None,
    typer.Option(
        "--since",
        help="Only generations made at or after TIME (ISO 8601, local time unless a zone is given).",
        metavar="TIME",
        parser=time_parser("--since"),
    ),
]
UntilOpt = Annotated[
    int | None,
    typer.Option(
        "--until",
        help="Only generations made at or before TIME (ISO 8601; a date alone is its 00:00).",
        metavar="TIME",
        parser=time_parser("--until"),
    ),
]
MediumFilterOpt = Annotated[
    str | None,
    typer.Option(
        "--medium",
        help="Only generations with a part on this medium: its label or barcode, its UUID (or the start of "
        "it, at least 4 hex digits), or the --media it was last used as.",
        metavar="MEDIUM",
    ),
]


def _query(
    catalog: str | None,
    volume: str | None,
    since: int | None,
    until: int | None,
    medium: str | None,
    view: Callable[[Catalog, CatalogFilter], list[T]],
) -> list[T]:
    """Open the catalog (if it exists: browsing never creates one) and run ``view`` with the
    filter the options make."""
    from tapearc.catalog.db import Catalog
    from tapearc.catalog.spec import parse
    from tapearc.catalog.views import CatalogFilter, all_media, find_media, has_catalog

    if since is not None and until is not None and since > until:
        raise UsageError("--since is after --until: nothing can be in between")
    if not has_catalog(catalog):
        shown = parse(catalog)
        if medium is not None:
            what = "does not exist" if shown.path is not None else "is an empty database"
            raise UsageError(f"--medium {medium!r}: the catalog {shown.shown} {what} (no backup made with it yet)")
        return []
    with Catalog(catalog, read_only=True) as cat:
        media = None
        if medium is not None:
            found = find_media(cat, medium)
            if not found:
                known = ", ".join(m.name for m in all_media(cat)) or "none"
                raise UsageError(
                    f"--medium {medium!r}: no medium of the catalog has that label, barcode or UUID (it knows: {known})"
                )
            media = frozenset(m.uuid for m in found)
        return view(cat, CatalogFilter(volume, since, until, media))


def volumes(
    volume: VolumeFilterOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    medium: MediumFilterOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The volumes: source, generations, first and last backup, size.

    With a time range or a medium: the volumes with a generation in it."""
    from tapearc.catalog import views

    rows = run(json_out, lambda: _query(catalog, volume, since, until, medium, views.volumes))
    if json_out:
        emit_json({"volumes": [v.to_json() for v in rows]})
    else:
        _print(_volumes_table(rows), len(rows), "volumes")


def generations(
    volume: VolumeFilterOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    medium: MediumFilterOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The generations: kind, state, when, size, and the media restoring each needs.

    The media a restore of a generation reads: its chain (the full, every incremental up to
    it), every part of each, in the order the restore reads them, with their tape files."""
    from tapearc.catalog import views
    from tapearc.engine.plan import load_chain

    rows = run(
        json_out,
        lambda: _query(catalog, volume, since, until, medium, lambda c, f: views.generations(c, f, load_chain)),
    )
    if json_out:
        emit_json({"generations": [g.to_json() for g in rows]})
    else:
        _print(_generations_table(rows), len(rows), "generations")


def media(
    volume: VolumeFilterOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    medium: MediumFilterOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The media: label (barcode), UUID, set, sequence, generations on it, bytes, writes.

    With a volume or time range: the media holding a generation it takes."""
    from tapearc.catalog import views

    rows = run(json_out, lambda: _query(catalog, volume, since, until, medium, views.media))
    if json_out:
        emit_json({"media": [m.to_json() for m in rows]})
    else:
        _print(_media_table(rows), len(rows), "media")


# ---------------------------------------------------------------- text


def _table(*cols: str, right: tuple[str, ...] = ()) -> Table:
    from rich.table import Table

    table = Table(show_edge=False)
    for col in cols:
        table.add_column(col, justify="right" if col in right else "left")
    return table


def _print(table: Table, n: int, what: str) -> None:
    if n == 0:
        say(f"no {what}")
        return
    out_console.print(table)


def _when(ts: int | None) -> str:
    from tapearc.catalog.views import local_time

    return "" if ts is None else local_time(ts)


def _volumes_table(rows: list[VolumeView]) -> Table:
    from tapearc.catalog.views import short_uuid

    t = _table("volume", "set", "source", "gens", "first backup", "last backup", "size", "stored", right=("gens",))
    for v in rows:
        t.add_row(
            v.name,
            short_uuid(v.set_uuid),
            v.source_path or "",
            f"{v.generations}"
            + (f" ({v.generations - v.complete} not complete)" if v.complete < v.generations else ""),
            _when(v.first_backup),
            _when(v.last_backup),
            format_size(v.size),
            format_size(v.stored_bytes),
        )
    return t


def _generations_table(rows: list[GenerationView]) -> Table:
    from tapearc.catalog.views import short_uuid

    cols = ("volume", "gen", "kind", "state", "created", "size", "stored", "read", "set", "restore needs")
    t = _table(*cols, right=("gen",))
    for v in rows:
        g = v.row
        t.add_row(
            g.volume,
            str(g.number),
            v.kind,
            str(g.state),
            _when(g.created),
            format_size(g.volume_size),
            format_size(g.stored_bytes),
            "" if g.change is None else g.change.brief(),
            short_uuid(g.set_uuid),
            v.restore.describe(),
        )
    return t


def _media_table(rows: list[MediumView]) -> Table:
    from tapearc.catalog.views import short_uuid

    t = _table(
        "medium",
        "uuid",
        "set",
        "seq",
        "generations",
        "used",
        "first write",
        "last write",
        "last seen as",
        right=("seq",),
    )
    for m in rows:
        t.add_row(
            m.medium.label or "-",
            short_uuid(m.medium.uuid),
            short_uuid(m.medium.set_uuid),
            str(m.medium.sequence),
            _generations_on(m.generations),
            format_size(m.bytes_used),
            _when(m.first_write),
            _when(m.last_write),
            m.medium.last_name or "",
        )
    return t


def _generations_on(gens: tuple[tuple[str, int], ...]) -> str:
    """``vol.img 1 2 3, db 4``: the generations on a medium, volume by volume."""
    by: dict[str, list[int]] = {}
    for v, n in gens:
        by.setdefault(v, []).append(n)
    return ", ".join(f"{v} " + " ".join(map(str, ns)) for v, ns in by.items())


catalog_app.command("volumes")(volumes)
catalog_app.command("generations")(generations)
catalog_app.command("media")(media)


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog", help="Browse the catalog (volumes, generations, media).")
