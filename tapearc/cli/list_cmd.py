"""``tapearc list``: what a medium holds, read from the medium itself."""

from __future__ import annotations

from typing import Annotated

import typer

from tapearc.cli.common import ChangerOpt, JsonOpt, MediaOpt, emit_json, open_media, run
from tapearc.cli.render import render_listing


def list_cmd(
    media: MediaOpt,
    chunks: Annotated[bool, typer.Option("--chunks", help="Also list every chunk and its block runs.")] = False,
    changer: ChangerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what MEDIUM holds, read from the medium itself: label, generations, chunks, blocks."""
    run(json_out, lambda: _list(media, chunks, changer, json_out))


def _list(media: str, chunks: bool, changer: str | None, json_out: bool) -> None:
    from tapearc.engine.listing import list_medium

    with open_media(media, changer, write=False) as src:
        listing = list_medium(src.current())
    if json_out:
        emit_json(listing.to_json(with_chunks=True))
    else:
        render_listing(listing, chunks=chunks)


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
