"""``tapearc lease list|break``: the leases on drives, media and changers that tapearc processes
hold in the catalog, and breaking a stale one (docs/leases.md)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tapearc.cli.common import CatalogOpt, JsonOpt, emit_json, open_catalog, run, say

lease_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Leases on drives, media and changers held in the catalog.",
)


@lease_app.callback()
def _lease_group() -> None:
    """Leases on drives, media and changers held in the catalog."""


def list_leases(catalog: CatalogOpt = None, json_out: JsonOpt = False) -> None:
    """Every lease: the resource, its holder (host, pid, what for), since when, until when."""
    from tapearc.catalog.leases import Leases, clock, describe_resource
    from tapearc.catalog.views import has_catalog
    from tapearc.engine.mediasource import catalog_spec

    def go() -> list[dict[str, object]]:
        if not has_catalog(catalog):  # listing never writes: no catalog made to find it empty
            return []
        # read through the catalog's own read-only connection (an older catalog's copy: no leases)
        with (
            open_catalog(catalog, read_only=True) as cat,
            Leases(catalog_spec(cat), connect=lambda _: cat.db) as leases,
        ):
            now = time.time()
            return [r.to_json(now) | {"what": describe_resource(r.resource)} for r in leases.rows()]

    rows = run(json_out, go)
    if json_out:
        emit_json({"leases": rows})
        return
    if not rows:
        say("no leases")
    now = time.time()
    for r in rows:
        state = "EXPIRED" if r["expired"] else f"expires {clock(float(str(r['expires_at'])), now)}"
        say(
            f"{r['resource']}  host {r['host']} pid {r['pid']} ({r['purpose']})  "
            f"since {clock(float(str(r['acquired_at'])), now)}  renewed {clock(float(str(r['renewed_at'])), now)}  "
            f"{state}"
        )


def break_lease(
    resource: Annotated[
        str, typer.Argument(help="The resource, as `tapearc lease list` shows it.", metavar="RESOURCE")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Break it even though its holder runs on this host and is alive.")
    ] = False,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove a stale lease (its holder crashed on another host and you will not wait for it to
    expire). Its holder, if it still runs, finds the lease lost and stops (exit 41)."""
    from tapearc.catalog.leases import LeaseBusyError, Leases, describe_resource, held_text, holder_gone
    from tapearc.catalog.views import has_catalog
    from tapearc.engine.mediasource import catalog_spec

    def go() -> dict[str, object] | None:
        if not has_catalog(catalog):  # no catalog, no lease: none made to find that out
            return None
        with open_catalog(catalog) as cat, Leases(catalog_spec(cat)) as leases:
            row = leases.get(resource)
            if row is None:
                return None
            local_live = row.host == leases.host and not holder_gone(row, leases.host)
            if local_live and not force and not row.expired(time.time()):
                raise LeaseBusyError(
                    f"{held_text(row, time.time())}, a process running on this host: not broken",
                    hint="stop that process, or give --force",
                    resource=resource,
                )
            broken = leases.break_lease(resource)
            return None if broken is None else broken.to_json() | {"what": describe_resource(resource)}

    r = run(json_out, go)
    if json_out:
        emit_json({"broken": r})
    elif r is None:
        say(f"no lease on {resource}")
    else:
        say(f"broke the lease on {r['what']}: held by host {r['host']} pid {r['pid']} ({r['purpose']})")


lease_app.command("list")(list_leases)
lease_app.command("break")(break_lease)


def register(app: typer.Typer) -> None:
    app.add_typer(lease_app, name="lease", help="Leases on drives, media and changers: list, break a stale one.")
