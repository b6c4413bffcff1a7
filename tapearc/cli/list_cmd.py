"""``tapearc list``: what a medium holds, read from the medium itself; and, from the catalog when
there is one, how each generation was read (its change source, docs/changes.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerDriveOpt,
    ChangerOpt,
    JsonOpt,
    ReadMediaOpt,
    emit_json,
    open_media,
    run,
    say,
)
from tapearc.cli.render import render_listing

if TYPE_CHECKING:
    from tapearc.catalog.db import ChangeRecord
    from tapearc.engine.listing import MediumListing


def list_cmd(
    media: ReadMediaOpt,
    chunks: Annotated[bool, typer.Option("--chunks", help="Also list every chunk and its block runs.")] = False,
    changer: ChangerOpt = None,
    changer_drive: ChangerDriveOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what MEDIUM holds, read from the medium itself: label, generations, chunks, blocks;
    and, when the catalog knows them, the change source each generation was read with."""
    run(json_out, lambda: _list(media, chunks, changer, catalog, json_out, changer_drive))


def _list(
    media: str, chunks: bool, changer: str | None, catalog: str | None, json_out: bool, changer_drive: int | None = None
) -> None:
    from tapearc.engine.listing import list_medium

    with open_media(media, changer, write=False, changer_drive=changer_drive) as src:
        listing = list_medium(src.current())
    changes = change_records(listing, catalog)
    if json_out:
        out = listing.to_json(with_chunks=True)
        for g in out["generations"]:  # type: ignore[attr-defined]
            c = changes.get((g["volume"], g["generation"]))
            g["change"] = None if c is None else c.to_json()
        emit_json(out)
        return
    render_listing(listing, chunks=chunks)
    shown = [(k, v) for k, v in sorted(changes.items(), key=lambda kv: (kv[0][0], kv[0][1])) if v is not None]
    if shown:
        say("change sources (from the catalog):")
    for (volume, number), c in shown:
        say(f"  {volume} generation {number}: {c.describe()}")


def change_records(listing: MediumListing, catalog: str | None) -> dict[tuple[str, int], ChangeRecord | None]:
    """(volume, generation) -> how it was read (None: not recorded), from the catalog when it
    exists (list never creates one)."""
    from tapearc.catalog.db import Catalog, catalog_exists

    if not catalog_exists(catalog):
        return {}
    with Catalog(catalog, read_only=True) as cat:
        return {(g.volume, g.number): g.change for g in cat.generations(listing.label.media_set_uuid)}


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
