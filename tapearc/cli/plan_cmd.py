"""``tapearc plan``: show how a restore would go before anything is read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerDriveOpt,
    ChangerOpt,
    JsonOpt,
    ReadMediaOpt,
    emit_json,
    open_catalog,
    open_media,
    run,
    warn,
    whole,
)
from tapearc.cli.render import render_plan
from tapearc.cli.timeparse import AtOpt, check_at

if TYPE_CHECKING:
    from tapearc.media.base import TapeDrive


def plan(
    media: ReadMediaOpt,
    generation: Annotated[
        int | None,
        typer.Option(
            "--generation", help="Generation to plan (default: latest).", metavar="N", parser=whole("--generation")
        ),
    ] = None,
    volume: Annotated[str | None, typer.Option("--volume", help="Volume, when the media set holds several.")] = None,
    assume_generation: Annotated[
        int | None,
        typer.Option(
            "--assume-generation",
            help="Plan rolling a copy of generation K forward (or back) to the generation planned.",
            metavar="K",
            parser=whole("--assume-generation"),
        ),
    ] = None,
    chunks: Annotated[bool, typer.Option("--chunks", help="List every chunk to read.")] = False,
    at: AtOpt = None,
    changer: ChangerOpt = None,
    changer_drive: ChangerDriveOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the restore plan before anything is read: media needed in order, tape files and
    chunks to read, bytes to read and to skip."""
    run(
        json_out,
        lambda: _plan(
            media, generation, volume, assume_generation, chunks, changer, catalog, json_out, at, changer_drive
        ),
    )


def _plan(
    media: str,
    generation: int | None,
    volume: str | None,
    assume_generation: int | None,
    chunks: bool,
    changer: str | None,
    catalog: str | None,
    json_out: bool,
    at: int | None = None,
    changer_drive: int | None = None,
) -> None:
    check_at(at, generation)
    from tapearc.engine.plan import make_plan
    from tapearc.engine.restore import RestoreOptions, prepare_plan

    with (
        open_catalog(catalog) as cat,
        open_media(media, changer, write=False, catalog=cat, changer_drive=changer_drive) as src,
    ):
        _, chain, p = prepare_plan(src, cat, RestoreOptions(generation=generation, volume=volume, at=at))
        if assume_generation is not None:
            warnings = p.warnings
            p = make_plan(cat, chain, have=assume_generation)
            p.warnings = warnings
        if p.encrypted and p.key_fingerprint is None:
            p.key_fingerprint = _medium_key(src.current())
        labels = {m.uuid: m.label for m in cat.media_of_set(p.set_uuid) if m.label}
    warn(p.warnings)
    if json_out:
        out = p.to_json(with_chunks=True)
        for m in out["media"]:  # type: ignore[attr-defined]
            m["label"] = labels.get(UUID(m["medium"]))
        emit_json(out)
    else:
        render_plan(p, chunks=chunks, labels=labels)


def _medium_key(drive: TapeDrive) -> str | None:
    """The fingerprint of the medium's key record (an encrypted set's), when it has a readable one."""
    from tapearc.crypto.keys import fingerprint_text
    from tapearc.engine.keymedia import read_key_records
    from tapearc.errors import TapearcError

    try:
        records = read_key_records(drive)
    except TapearcError:
        return None
    return fingerprint_text(records[0].key_fingerprint) if records else None


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
