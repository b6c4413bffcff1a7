"""``tapearc restore``: restore a generation of a volume from media."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerDriveOpt,
    ChangerOpt,
    JsonOpt,
    KeyOpt,
    PassphraseFileOpt,
    TimeoutOpt,
    emit_json,
    emit_json_stderr,
    open_catalog,
    open_free_drive,
    open_media,
    run,
    say,
    start_key_arg,
    warn,
    whole,
)
from tapearc.cli.progress import make_progress
from tapearc.cli.render import render_restore, render_restore_ranges
from tapearc.cli.timeparse import AtOpt, check_at

if TYPE_CHECKING:
    from tapearc.catalog.db import Catalog
    from tapearc.engine.mediasource import MediaSource
    from tapearc.engine.restore import RestoreOptions, RestoreResult

RestoreMediaOpt = Annotated[
    list[str],
    typer.Option(
        "--media",
        "-m",
        help="Medium: sim:IMAGE, sim:LIBRARY, dir:FOLDER, /dev/nstN, - (a record stream on stdin). Given more "
        "than once (with --changer): the drives of the library, in the changer's drive order (the first is its "
        "drive 0); the restore takes a free one, or --drives N of them.",
        metavar="MEDIUM",
    ),
]
GenerationOpt = Annotated[
    int | None,
    typer.Option(
        "--generation",
        help="Generation to restore (default: latest). One volume's: with several --volume, choose by --at TIME.",
        metavar="N",
        parser=whole("--generation"),
    ),
]
ToOpt = Annotated[
    str,
    typer.Option(
        "--to",
        help="Target: a file (made sparse), a block device, an NBD export (nbd+unix:///EXPORT?socket=PATH, "
        "nbd://HOST[:PORT]/EXPORT) or - (standard output).",
    ),
]
VolumeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--volume",
        help="Volume to restore, when the medium holds several. Given more than once: each volume's newest "
        "generation (or at --at) from whichever media set holds it, into the folder --to DIR as DIR/VOLUME.img.",
    ),
]
RestoreDrivesOpt = Annotated[
    int | None,
    typer.Option(
        "--drives",
        help="Several --volume: restore them on N drives of the library at once (no medium is needed by two).",
        metavar="N",
        parser=whole("--drives"),
    ),
]


FallbackOlderOpt = Annotated[
    bool,
    typer.Option(
        "--fallback-older",
        help="Where a chunk is damaged, restore the newest older version of its blocks (exit 24 says which).",
    ),
]
PartialOpt = Annotated[
    bool,
    typer.Option(
        "--partial",
        help="If a medium never arrives, restore the rest and leave its blocks zero (exit 25); by default the restore stops.",
    ),
]


def restore(
    media: RestoreMediaOpt,
    to: ToOpt,
    generation: GenerationOpt = None,
    at: AtOpt = None,
    volume: VolumeOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a target that holds no generation of the volume.")
    ] = False,
    assume_generation: Annotated[
        int | None,
        typer.Option(
            "--assume-generation",
            help="TARGET holds generation K already: write only what differs.",
            metavar="K",
            parser=whole("--assume-generation"),
        ),
    ] = None,
    fallback_older: FallbackOlderOpt = False,
    partial: PartialOpt = False,
    key: KeyOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    changer: ChangerOpt = None,
    changer_drive: ChangerDriveOpt = None,
    wait: TimeoutOpt = None,
    catalog: CatalogOpt = None,
    drives: RestoreDrivesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a generation of a volume from MEDIUM, byte for byte, to a file, a block device, an NBD export
    (a qcow2 served by qemu-nbd, a disk served by nbdkit) or standard output (--to -). A target that already
    holds another generation of the volume (older or newer) is rolled forward or back in place: only the
    blocks that differ are written. Exit 0 only when every block is the requested generation's."""
    many = (volume is not None and len(volume) > 1) or (drives or 1) > 1
    drive_list, changer_of = tuple(media), (changer, changer_drive)

    def options() -> RestoreOptions:
        check_at(at, generation)
        opened = start_key_arg(key, passphrase_file)  # scrypt in a thread while the engine is imported
        from tapearc.engine.restore import RestoreOptions

        return RestoreOptions(
            generation=generation,
            at=at,
            volume=volume[0] if volume else None,
            force=force,
            assume_generation=assume_generation,
            fallback_older=fallback_older,
            partial=partial,
            key=opened(),  # before any medium or target is touched
        )

    if many:
        asked = Many(volume or [], drives or 1, generation, assume_generation, wait)
        run(json_out, lambda: _many(drive_list, to, changer_of, catalog, json_out, options, asked))
        return
    run(json_out, lambda: _restore(drive_list, to, changer_of, wait, catalog, json_out, options))


@dataclass(frozen=True, slots=True)
class Many:
    """What a restore of several volumes was asked for beyond the one-volume restore's options."""

    volumes: list[str]
    drives: int
    generation: int | None
    assume: int | None
    wait: float | None

    def why(self) -> str:
        """What makes it a restore of several volumes, as the messages say it."""
        return f"{len(self.volumes)} volumes" if len(self.volumes) > 1 else f"--drives {self.drives}"


def _many(
    media: tuple[str, ...],
    to: str,
    changer_of: tuple[str | None, int | None],
    catalog: str | None,
    json_out: bool,
    options: Callable[[], RestoreOptions],
    asked: Many,
) -> None:
    from tapearc.cli.restore_many import restore_many

    check_many(to, asked)
    changer, changer_drive = changer_of
    restore_many(
        media, to, changer, catalog, json_out, options, asked.volumes, asked.drives, changer_drive, timeout=asked.wait
    )


def check_many(to: str, asked: Many) -> None:
    """What a restore of several volumes cannot take: the options that choose one volume's
    restore (OneVolumeOptionError, exit 44, before anything is opened)."""
    from tapearc.errors import OneVolumeOptionError

    why = asked.why()
    if to == "-":
        raise OneVolumeOptionError(
            f"--to -: standard output takes one volume's data, and this is a restore of {why}",
            hint="give a folder, --to DIR: each volume is restored to DIR/VOLUME.img",
        )
    if asked.generation is not None:
        raise OneVolumeOptionError(
            f"--generation {asked.generation}: a generation number counts one volume's generations, and this is "
            f"a restore of {why}",
            hint="give --at TIME to choose every volume's generation (the newest made at or before TIME), "
            "or restore that volume alone: --volume NAME --generation N --to FILE",
        )
    if asked.assume is not None:
        raise OneVolumeOptionError(
            f"--assume-generation {asked.assume}: says which generation one target holds, and this is a restore of "
            f"{why}",
            hint="leave it out (each volume's target is checked for what it holds), "
            "or restore that volume alone: --volume NAME --assume-generation K --to FILE",
        )


def _restore(
    media: tuple[str, ...],
    to: str,
    changer_of: tuple[str | None, int | None],
    wait: float | None,
    catalog: str | None,
    json_out: bool,
    options: Callable[[], RestoreOptions],
) -> None:
    from tapearc.cli.restore_many import check_drive_list
    from tapearc.engine.restore import check_stream_output
    from tapearc.engine.restore import restore as do_restore

    changer, changer_drive = changer_of
    check_drive_list(media, changer, changer_drive)
    if to == "-":
        check_stream_output(sys.stdout.buffer)  # before any medium is opened
    opts = options()
    with open_catalog(catalog) as cat, one_drive(media, changer, cat, wait, changer_drive) as src:
        res = do_restore(src, cat, to, opts, make_progress(json_out, data_on_stdout=to == "-"))
    warn(res.warnings)
    _report_restore(res, to, json_out)


@contextmanager
def one_drive(
    media: tuple[str, ...], changer: str | None, cat: Catalog, wait: float | None, changer_drive: int | None = None
) -> Iterator[MediaSource]:
    """The drive ``--media`` names; of several (a library's drives, in its changer's order: the
    position is the drive number), the first free one (waiting for one up to --wait)."""
    if len(media) == 1 or changer is None:
        with open_media(media[0], changer, write=False, catalog=cat, timeout=wait, changer_drive=changer_drive) as src:
            yield src
        return
    with open_free_drive(media, changer, write=False, catalog=cat, timeout=wait) as src:
        yield src


def _report_restore(res: RestoreResult, to: str, json_out: bool) -> None:
    from tapearc.engine.restore import outcome

    if json_out:
        (emit_json_stderr if to == "-" else emit_json)(res.to_json())
        render_restore_ranges(res)
        err = outcome(res)
        if err is not None:
            say(f"tapearc: error: {err}", stderr=True)
            raise typer.Exit(err.exit_code)
        return
    render_restore(res, to_stderr=to == "-")
    render_restore_ranges(res)
    err = outcome(res)
    if err is not None:
        raise err


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)
