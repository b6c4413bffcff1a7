"""``tapearc pool create|list|show`` and ``tapearc media list|move``: media pools, their
retention, and where each medium is (docs/operations.md, "Media pools and retention")."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from tapearc.cli.common import CatalogOpt, JsonOpt, emit_json, open_catalog, out_console, run, say
from tapearc.cli.timeparse import NowOpt
from tapearc.errors import PoolError
from tapearc.units import format_size

if TYPE_CHECKING:
    from tapearc.engine.pools import MediumStatus

pool_app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Media pools and their retention."
)
media_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="The media: pool, set, location, what each holds, when it expires.",
)


@pool_app.callback()
def _pool_group() -> None:
    """Media pools and their retention."""


@media_app.callback()
def _media_group() -> None:
    """The media: pool, set, location, what each holds, when it expires."""


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


def create(
    name: Annotated[str, typer.Argument(help="The pool's name.", metavar="NAME")],
    keep_full: Annotated[
        int | None, typer.Option("--keep-full", help="Keep the last N full generations of each volume.", metavar="N")
    ] = None,
    keep_days: Annotated[
        int | None, typer.Option("--keep-days", help="Keep generations younger than D days.", metavar="D")
    ] = None,
    keep_forever: Annotated[bool, typer.Option("--keep-forever", help="Keep every generation.")] = False,
    allocation: Annotated[
        str,
        typer.Option(
            "--allocation",
            help="continue: append to the pool's current media set; new-set-per-full: each full backup "
            "starts a new media set.",
            metavar="continue|new-set-per-full",
        ),
    ] = "continue",
    now: NowOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a media pool with its retention (one of --keep-full, --keep-days, --keep-forever)."""
    from tapearc.engine import pools
    from tapearc.engine.retention import KEEP_DAYS, KEEP_FOREVER, KEEP_FULL, Policy

    given = [(KEEP_FULL, keep_full), (KEEP_DAYS, keep_days)] + ([(KEEP_FOREVER, 0)] if keep_forever else [])
    chosen = [(r, n) for r, n in given if n is not None]

    def go() -> dict[str, object]:
        if len(chosen) != 1:
            raise PoolError(f"pool {name!r}: give one of --keep-full N, --keep-days D, --keep-forever")
        r, n = chosen[0]
        with open_catalog(catalog) as cat:
            return pools.create(cat, name, Policy(r, n or 0), allocation, _now(now)).to_json()

    row = run(json_out, go)
    if json_out:
        emit_json({"pool": row})
    else:
        say(f"pool {name}: {row['policy']}, allocation {allocation}")


def list_pools(catalog: CatalogOpt = None, now: NowOpt = None, json_out: JsonOpt = False) -> None:
    """The pools: retention, allocation, media, how many are recyclable."""
    from tapearc.catalog import pools as cp
    from tapearc.catalog.views import has_catalog
    from tapearc.engine import pools

    def go() -> list[dict[str, object]]:
        if not has_catalog(catalog):  # browsing never writes: no catalog made to find it empty
            return []
        with open_catalog(catalog, read_only=True) as cat:
            st = pools.statuses(cat, _now(now))
            out = []
            for p in cp.pools(cat):
                mine = [s for s in st if s.medium.pool == p.name]
                free = sum(1 for s in mine if s.verdict is not None and s.verdict.recyclable)
                out.append(p.to_json() | {"media": len(mine), "recyclable": free})
            return out

    rows = run(json_out, go)
    if json_out:
        emit_json({"pools": rows})
        return
    if not rows:
        say("no pools")
    for r in rows:
        say(
            f"{r['name']}: {r['policy']}, allocation {r['allocation']}; {r['media']} media, {r['recyclable']} recyclable"
        )


def show(
    name: Annotated[str, typer.Argument(help="The pool.", metavar="NAME")],
    catalog: CatalogOpt = None,
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A pool: its retention, its media sets and media, what each medium holds, and when it
    expires (or which generation still needs it)."""
    from tapearc.catalog.views import has_catalog
    from tapearc.engine import pools

    def go() -> tuple[dict[str, object], list[MediumStatus]]:
        if not has_catalog(catalog):  # none made to find it has no pool
            raise PoolError(f"no media pool named {name!r} (pools: none)", hint="tapearc pool create NAME ...")
        with open_catalog(catalog, read_only=True) as cat:
            p = pools.get_pool(cat, name)
            return p.to_json(), pools.statuses(cat, _now(now), name)

    info, st = run(json_out, go)
    if json_out:
        emit_json({"pool": info, "media": [s.to_json() for s in st]})
        return
    say(f"pool {name}: {info['policy']}, allocation {info['allocation']}")
    sets: dict[str, list[MediumStatus]] = {}
    for s in st:
        sets.setdefault(str(s.medium.set_uuid), []).append(s)
    for set_uuid, members in sets.items():
        say(f"media set {set_uuid}:")
        for s in sorted(members, key=lambda s: s.medium.sequence):
            say(f"  {s.medium.name} (sequence {s.medium.sequence}, {s.medium.location}): {_holds(s)}; {s.expiry()}")
    if not st:
        say("no media yet")


def _holds(s: MediumStatus) -> str:
    from tapearc.engine.retention import generation_ranges

    return "holds " + (generation_ranges(s.generations) if s.generations else "nothing")


def list_media(
    pool: Annotated[str | None, typer.Option("--pool", help="Only this pool's media.", metavar="POOL")] = None,
    catalog: CatalogOpt = None,
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The media: label, pool, media set, location, bytes used, generations, expiry."""
    from tapearc.catalog.views import has_catalog
    from tapearc.engine import pools

    def go() -> list[MediumStatus]:
        if not has_catalog(catalog):
            return []
        with open_catalog(catalog, read_only=True) as cat:
            return pools.statuses(cat, _now(now), pool)

    st = run(json_out, go)
    if json_out:
        emit_json({"media": [s.to_json() for s in st]})
        return
    if not st:
        say("no media")
        return
    from rich.table import Table

    t = Table(show_edge=False)
    for col in ("medium", "pool", "set", "seq", "location", "used", "generations", "expiry"):
        t.add_column(col, justify="right" if col in ("seq", "used") else "left")
    for s in st:
        m = s.medium
        t.add_row(
            m.name + (" (write-protected)" if m.write_protected else ""),
            m.pool or "-",
            str(m.set_uuid)[:8],
            str(m.sequence),
            m.location,
            format_size(s.bytes_used),
            _holds(s)[6:],
            s.expiry(),
        )
    out_console.print(t)


def move(
    medium: Annotated[str, typer.Argument(help="The medium: its barcode or label (or UUID).", metavar="MEDIUM")],
    location: Annotated[
        str, typer.Option("--location", help="library, offsite, or any text (a vault, a shelf).", metavar="WHERE")
    ],
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record where a medium is: only media in the library are ever chosen for writing."""
    from tapearc.catalog import pools as cp
    from tapearc.engine import pools

    def go() -> dict[str, object]:
        if not location.strip():
            raise PoolError("--location: give library, offsite or a place")
        with open_catalog(catalog) as cat:
            m = pools.find_medium(cat, medium)
            cp.set_location(cat, m.id, location.strip())
            return {"medium": m.name, "uuid": str(m.uuid), "from": m.location, "location": location.strip()}

    r = run(json_out, go)
    if json_out:
        emit_json(r)
    else:
        say(f"{r['medium']}: {r['from']} -> {r['location']}")


def protect(
    medium: Annotated[str, typer.Argument(help="The medium: its barcode or label (or UUID).", metavar="MEDIUM")],
    off: Annotated[bool, typer.Option("--off", help="Make it writable again.")] = False,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Mark a medium write-protected (retired): never chosen for writing or recycling."""
    from tapearc.catalog import pools as cp
    from tapearc.engine import pools

    def go() -> dict[str, object]:
        with open_catalog(catalog) as cat:
            m = pools.find_medium(cat, medium)
            cp.set_write_protected(cat, m.id, not off)
            return {"medium": m.name, "uuid": str(m.uuid), "write_protected": not off}

    r = run(json_out, go)
    if json_out:
        emit_json(r)
    else:
        say(f"{r['medium']}: " + ("write-protected" if r["write_protected"] else "writable"))


pool_app.command("create")(create)
pool_app.command("list")(list_pools)
pool_app.command("show")(show)
media_app.command("list")(list_media)
media_app.command("move")(move)
media_app.command("protect")(protect)


def register(app: typer.Typer) -> None:
    app.add_typer(pool_app, name="pool", help="Media pools and their retention.")
    app.add_typer(media_app, name="media", help="The media: pool, set, location, expiry (list, move, protect).")
