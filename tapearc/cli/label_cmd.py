"""``tapearc label``: write a volume label on a medium."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerDriveOpt,
    ChangerOpt,
    JsonOpt,
    MediaOpt,
    emit_json,
    open_catalog,
    open_media,
    parse_size_opt,
    parse_uuid,
    run,
    say,
    whole,
)
from tapearc.cli.render import render_label


def label(
    media: MediaOpt,
    force: Annotated[bool, typer.Option("--force", help="Erase a medium that is not blank and label it anew.")] = False,
    text: Annotated[
        str, typer.Option("--text", help="Label text, e.g. the barcode (default: the changer's barcode).")
    ] = "",
    media_set: Annotated[
        str | None,
        typer.Option("--media-set", help="Label it as a medium of this existing set (UUID) ...", metavar="UUID"),
    ] = None,
    sequence: Annotated[
        int | None,
        typer.Option("--sequence", help="... with this sequence number.", metavar="N", parser=whole("--sequence")),
    ] = None,
    record_size: Annotated[
        str | None, typer.Option("--record-size", help="Largest record written (default 1M).")
    ] = None,
    changer: ChangerOpt = None,
    changer_drive: ChangerDriveOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a volume label on MEDIUM: a new media set (sequence 1) unless --media-set/--sequence.
    A labeled or foreign medium is refused unless --force (which erases it)."""
    run(
        json_out,
        lambda: _label(media, force, text, media_set, sequence, record_size, changer, catalog, json_out, changer_drive),
    )


def _label(
    media: str,
    force: bool,
    text: str,
    media_set: str | None,
    sequence: int | None,
    record_size: str | None,
    changer: str | None,
    catalog: str | None,
    json_out: bool,
    changer_drive: int | None = None,
) -> None:
    from tapearc.engine.labeling import label_medium

    with (
        open_catalog(catalog) as cat,
        open_media(media, changer, write=True, catalog=cat, changer_drive=changer_drive) as src,
    ):
        drive = src.current()
        lab = label_medium(
            drive,
            cat,
            force=force,
            text=text or src.loaded_barcode() or "",
            media_set=parse_uuid(media_set, "--media-set"),
            sequence=sequence,
            record_size=parse_size_opt(record_size, "--record-size"),
            barcode=src.loaded_barcode(),
            by_place=src.changer is None,
            erasing=lambda what: say(
                f"tapearc: warning: --force: erasing {drive.name}, which holds {what}", stderr=True
            ),
        )
        name = drive.name
    out: dict[str, Any] = {
        "medium": name,
        "medium_uuid": str(lab.medium_uuid),
        "media_set": str(lab.media_set_uuid),
        "sequence": lab.sequence,
        "record_size": lab.record_size,
        "text": lab.text,
    }
    if json_out:
        emit_json(out)
    else:
        render_label(out)


def register(app: typer.Typer) -> None:
    app.command("label")(label)
