"""``tapearc backup``: write a generation of a volume to a medium."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerDriveOpt,
    ChangerOpt,
    EncryptOpt,
    JsonOpt,
    MediaOpt,
    PassphraseFileOpt,
    TimeoutOpt,
    check_compress,
    emit_json,
    fail,
    open_catalog,
    open_media,
    parse_size_opt,
    parse_uuid,
    run,
    say,
    start_encrypt_arg,
    warn,
)
from tapearc.cli.progress import make_progress
from tapearc.cli.render import render_backup
from tapearc.cli.timeparse import NowOpt
from tapearc.errors import TapearcError

if TYPE_CHECKING:
    from tapearc.engine.backup import BackupOptions
    from tapearc.engine.encryption import BackupKey
    from tapearc.sources.changes_trust import ChangeOptions


VolumeOpt = Annotated[
    str | None,
    typer.Option(
        "--volume",
        help="Volume name (default: the volume SOURCE was backed up as, else SOURCE's file name). "
        "An existing volume with another source is taken as that volume moved.",
    ),
]

NewVolumeOpt = Annotated[
    bool,
    typer.Option(
        "--new-volume",
        help="Start a new volume (never continue an existing one): named --volume NAME (unused), "
        "else SOURCE's file name, else its folder/file name.",
    ),
]

DirtyBitmapOpt = Annotated[
    str | None,
    typer.Option(
        "--dirty-bitmap",
        help="Read only what this qemu dirty bitmap of the NBD export SOURCE marks dirty (qemu-nbd -B NAME); "
        "trusted only when the base generation was read with the same bitmap present (docs/changes.md).",
        metavar="NAME",
    ),
]

ChangedBlocksOpt = Annotated[
    str | None,
    typer.Option(
        "--changed-blocks",
        help="Read only the ranges this file names as changed: thin_delta or era_invalidate XML, JSON or CSV "
        "(docs/changes.md); trusted only when it starts at the base generation's checkpoint.",
        metavar="FILE",
    ),
]

ChangeBlockSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--change-block-size",
        help="Size of a block of the --changed-blocks file where it does not say (era_invalidate, CSV block,blocks).",
        metavar="SIZE",
    ),
]

ChangedSinceOpt = Annotated[
    str | None,
    typer.Option(
        "--changed-since",
        help="The checkpoint the --changed-blocks file starts at, where it does not say (era_invalidate, CSV).",
        metavar="ID",
    ),
]

CheckpointOpt = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        help="The tracker checkpoint this generation is read at (e.g. thin:ID, era:N, a VMware changeId); "
        "recorded: the next --changed-blocks file must start there.",
        metavar="ID",
    ),
]

VerifyUnchangedOpt = Annotated[
    bool,
    typer.Option(
        "--verify-unchanged",
        help="Read every block anyway and report those the change tracker called unchanged that were not (exit 27).",
    ),
]

#: The volume to back up: a path or an NBD URI (tapearc.sources.opener.open_source).
SourceArg = Annotated[
    str,
    typer.Argument(
        help="Volume to back up: a disk image file, a block device, or an NBD export by URI "
        "(nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH).",
        metavar="SOURCE",
    ),
]


PoolOpt = Annotated[
    str | None,
    typer.Option(
        "--pool",
        help="Choose the medium from the library for this media pool: its current set, a blank medium, or a "
        "recyclable one of the pool (never off-site or write-protected).",
        metavar="NAME",
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
    volume: VolumeOpt = None,
    new_volume: NewVolumeOpt = False,
    full: Annotated[bool, typer.Option("--full", help="Write a full generation even if the volume has one.")] = False,
    verify_after: Annotated[
        bool, typer.Option("--verify", help="Read each tape file back after writing it (every CRC and digest).")
    ] = False,
    media_set: Annotated[
        str | None,
        typer.Option("--media-set", help="Refuse a medium that is not of this media set (UUID).", metavar="UUID"),
    ] = None,
    dirty_bitmap: DirtyBitmapOpt = None,
    changed_blocks: ChangedBlocksOpt = None,
    change_block_size: ChangeBlockSizeOpt = None,
    changed_since: ChangedSinceOpt = None,
    checkpoint: CheckpointOpt = None,
    verify_unchanged: VerifyUnchangedOpt = False,
    encrypt: EncryptOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    changer: ChangerOpt = None,
    changer_drive: ChangerDriveOpt = None,
    pool: PoolOpt = None,
    now: NowOpt = None,
    wait: TimeoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Back up SOURCE to MEDIUM as a new generation: incremental (changed and added blocks only) when the
    volume already has a complete generation in the media set, else full. A blank medium is labeled first.
    With --pool the medium is chosen from the library for the pool (its current set, a blank, a recyclable one)."""
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
        changes=partial(change_options, dirty_bitmap, changed_blocks, change_block_size, changed_since, checkpoint),
        verify_unchanged=verify_unchanged,
        encrypt=partial(start_encrypt_arg, encrypt, passphrase_file),
        pool=pool,
    )
    run(json_out, lambda: _backup(source, media, changer, wait, catalog, json_out, opts, now, changer_drive))


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
    changes: Callable[..., ChangeOptions] | None = None,
    verify_unchanged: bool = False,
    encrypt: Callable[[], Callable[[], BackupKey | None]] | None = None,
    pool: str | None = None,
) -> BackupOptions:
    """The engine's BackupOptions from the command line's values, each checked; ``encrypt``
    starts opening the key (cli.common.start_encrypt_arg) while the engine is imported."""
    check_compress(compress)
    bs = parse_size_opt(block_size, "--block-size")
    key = encrypt() if encrypt is not None else None  # the passphrase asked for after the usage checks above
    from tapearc.engine.backup import DEFAULT_BLOCK_SIZE, BackupOptions
    from tapearc.sources.changes_trust import ChangeOptions

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
        changes=changes(verify_unchanged=verify_unchanged) if changes is not None else ChangeOptions(),
        pool=pool,
        encrypt=key() if key is not None else None,  # last: every other option is checked first
    )


def change_options(
    dirty_bitmap: str | None,
    changed_blocks: str | None,
    change_block_size: str | None,
    changed_since: str | None,
    checkpoint: str | None,
    *,
    verify_unchanged: bool,
) -> ChangeOptions:
    """The change-tracking options, checked (docs/changes.md)."""
    from tapearc.sources.changes_trust import ChangeOptions, check_change_options

    opts = ChangeOptions(
        dirty_bitmap=dirty_bitmap,
        changed_blocks=changed_blocks,
        change_block_size=parse_size_opt(change_block_size, "--change-block-size"),
        changed_since=changed_since,
        checkpoint=checkpoint,
        verify_unchanged=verify_unchanged,
    )
    check_change_options(opts)
    return opts


def _backup(
    source: str,
    media: str,
    changer: str | None,
    wait: float | None,
    catalog: str | None,
    json_out: bool,
    options: Callable[[], BackupOptions],
    now: int | None = None,
    changer_drive: int | None = None,
) -> None:
    import time

    from tapearc.engine.backup import backup as do_backup

    opts = options()
    clock = time.time if now is None else (lambda: float(now))
    with (
        open_catalog(catalog) as cat,
        open_media(media, changer, write=True, catalog=cat, timeout=wait, changer_drive=changer_drive) as src,
    ):
        res = do_backup(source, src, cat, opts, make_progress(json_out), clock=clock)
    warn(res.warnings)
    missed = getattr(res, "tracker_missed", None)  # --verify-unchanged: blocks the tracker missed
    err = tracker_missed_error(res.change, missed, res.block_size) if missed else None
    if json_out:
        out = res.to_json()
        if err is not None:
            out["error"] = err.to_json()
        emit_json(out)
    else:
        render_backup(source, res)
        if res.key_fingerprint is not None:
            say(f"  encrypted (AES-256-GCM) with key {res.key_fingerprint}")
        if res.change is not None and res.change["source"] != "full-read":
            from tapearc.catalog.db import ChangeRecord

            say(f"  change source: {ChangeRecord(**res.change).describe()}")  # type: ignore[arg-type]
    if err is not None:  # the generation is complete and correct: the result is shown, then exit 27
        raise fail(err, json_out=False)


def tracker_missed_error(change: dict[str, object] | None, missed: list[Any], block_size: int) -> TapearcError:
    """--verify-unchanged found blocks the tracker called unchanged that were not (exit 27)."""
    from tapearc.errors import TrackerMissedError

    spans = [(int(r[0]), int(r[1])) if isinstance(r, (list, tuple)) else (int(r), int(r)) for r in missed]
    total = sum(b - a + 1 for a, b in spans)
    shown = ", ".join(f"{a}-{b}" if b != a else str(a) for a, b in spans[:20]) + (" ..." if len(spans) > 20 else "")
    tracker = (change or {}).get("source", "the change tracker")
    return TrackerMissedError(
        f"{tracker} called {total} changed blocks unchanged (blocks {shown}, {block_size}-byte blocks); they were "
        "read and backed up anyway: the generation is complete and correct, but the tracker cannot be trusted",
        hint="back up without the tracker (or with --verify-unchanged) until its cause is found; docs/changes.md",
        ranges=len(spans),
    )


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
