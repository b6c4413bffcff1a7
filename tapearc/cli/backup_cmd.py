"""``tapearc backup``: write a generation of a volume to a medium."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerOpt,
    JsonOpt,
    MediaOpt,
    TimeoutOpt,
    check_compress,
    emit_json,
    open_catalog,
    open_media,
    parse_size_opt,
    parse_uuid,
    run,
    warn,
)
from tapearc.cli.progress import make_progress
from tapearc.cli.render import render_backup

if TYPE_CHECKING:
    from tapearc.engine.backup import BackupOptions

#: The volume to back up: a path or an NBD URI (tapearc.sources.opener.open_source).
SourceArg = Annotated[
    str,
    typer.Argument(
        help="Volume to back up: a disk image file, a block device, or an NBD export by URI "
        "(nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH).",
    ),
]


def backup(
    source: SourceArg,
    media: MediaOpt,
    block_size: Annotated[
        str | None, typer.Option("--block-size", help="Volume block size (default 64K, or the volume's).")
    ] = None,
    record_size: Annotated[
        str | None,
        typer.Option("--record-size", help="Largest tape record written (default 1M, or the medium's)."),
    ] = None,
    compress: Annotated[str, typer.Option("--compress", help="Per-chunk compression: zstd or none.")] = "none",
    chunk_size: Annotated[
        str, typer.Option("--chunk-size", help="Target chunk size, a multiple of the record size (default 4M).")
    ] = "4M",
    volume: Annotated[
        str | None,
        typer.Option(
            "--volume",
            help="Volume name (default: the volume SOURCE was backed up as, else SOURCE's file name). "
            "An existing volume with another source is taken as that volume moved.",
        ),
    ] = None,
    new_volume: Annotated[
        bool,
        typer.Option(
            "--new-volume",
            help="Start a new volume (never continue an existing one): named --volume NAME (unused), "
            "else SOURCE's file name, else its folder/file name.",
        ),
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Write a full generation even if the volume has one.")] = False,
    verify_after: Annotated[
        bool, typer.Option("--verify", help="Read each tape file back after writing it (every CRC and digest).")
    ] = False,
    media_set: Annotated[
        str | None,
        typer.Option("--media-set", help="Refuse a medium that is not of this media set (UUID).", metavar="UUID"),
    ] = None,
    changer: ChangerOpt = None,
    wait: TimeoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Back up SOURCE to MEDIUM as a new generation: incremental (changed and added blocks only)
    when the volume already has a complete generation in the media set, else full. A blank
    medium is labeled first."""
    opts = partial(
        backup_options,
        block_size=block_size,
        record_size=record_size,
        compress=compress,
        chunk_size=chunk_size,
        volume=volume,
        new_volume=new_volume,
        full=full,
        verify=verify_after,
        media_set=media_set,
    )
    run(json_out, lambda: _backup(source, media, changer, wait, catalog, json_out, opts))


def backup_options(
    *,
    block_size: str | None,
    record_size: str | None,
    compress: str,
    chunk_size: str,
    volume: str | None,
    new_volume: bool,
    full: bool,
    verify: bool,
    media_set: str | None,
) -> BackupOptions:
    """The engine's BackupOptions from the command line's values, each checked."""
    from tapearc.engine.backup import DEFAULT_BLOCK_SIZE, BackupOptions

    check_compress(compress)
    bs = parse_size_opt(block_size, "--block-size")
    return BackupOptions(
        block_size=bs if bs is not None else DEFAULT_BLOCK_SIZE,
        block_size_given=bs is not None,
        record_size=parse_size_opt(record_size, "--record-size"),
        compress=compress,
        volume_name=volume,
        new_volume=new_volume,
        full=full,
        media_set=parse_uuid(media_set, "--media-set"),
        chunk_size=parse_size_opt(chunk_size, "--chunk-size") or 0,
        verify=verify,
    )


def _backup(
    source: str,
    media: str,
    changer: str | None,
    wait: float | None,
    catalog: str | None,
    json_out: bool,
    options: Callable[[], BackupOptions],
) -> None:
    from tapearc.engine.backup import backup as do_backup

    opts = options()
    with open_catalog(catalog) as cat, open_media(media, changer, write=True, catalog=cat, timeout=wait) as src:
        res = do_backup(source, src, cat, opts, make_progress(json_out))
    warn(res.warnings)
    if json_out:
        emit_json(res.to_json())
    else:
        render_backup(source, res)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
