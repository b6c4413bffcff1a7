"""``tapearc restore --volume A --volume B --to DIR [--drives N]``: several volumes at once.

Each volume's newest complete generation (or at ``--at``), from whichever media set holds it, is
restored to ``DIR/VOLUME.img`` (a ``/`` in a volume's name becomes ``_``); with ``--drives N``
the volumes are spread over N drives of the library (tapearc.engine.restoremany). The summary
names each volume's outcome; the exit status is the first failed volume's (0 when all are whole).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import typer

from tapearc.cli.common import emit_json, open_catalog, open_media, out_console, say, warn
from tapearc.cli.progress import make_drives_progress
from tapearc.errors import TapearcError, UsageError
from tapearc.units import format_size

if TYPE_CHECKING:
    from tapearc.engine.restore import RestoreOptions
    from tapearc.engine.restoremany import VolumeRestore


def target_of(folder: str, volume: str) -> str:
    return os.path.join(folder, volume.replace("/", "_") + ".img")


def restore_many(
    media: tuple[str, ...],
    to: str,
    changer: str | None,
    catalog: str | None,
    json_out: bool,
    options: Callable[[], RestoreOptions],
    volumes: list[str],
    drives: int,
    changer_drive: int | None = None,
    *,
    timeout: float | None = None,
) -> None:
    """``timeout``: ``--wait``, how long to wait for the drives (None: as long as it takes for a
    drive's lease; $TAPEARC_LOCK_TIMEOUT for drives locked on this host without leases)."""
    from tapearc.engine.restoremany import restore_volumes

    check_drive_list(media, changer, changer_drive)
    if drives > 1 and changer_drive is not None:
        raise UsageError(f"--changer-drive {changer_drive}: --drives {drives} takes free drives of the library")

    if not os.path.isdir(to):
        raise UsageError(f"--to {to}: several volumes are restored into a folder, and {to} is not one")
    if len(set(volumes)) != len(volumes) or not volumes:
        raise UsageError("--volume: give each volume once (at least one)")
    from tapearc.catalog.db import Catalog

    opts = options()
    wanted = [(v, target_of(to, v)) for v in volumes]
    bars = make_drives_progress(json_out)
    kw: dict[str, Any] = {"progress": bars.row} if bars is not None else {}
    with open_catalog(catalog) as cat, bars or nullcontext():
        if drives == 1 and len(media) == 1:
            with open_media(
                media[0], changer, write=False, catalog=cat, changer_drive=changer_drive, timeout=timeout
            ) as src:
                done = restore_volumes([src], cat, wanted, opts, open_catalog=lambda: Catalog(catalog), **kw)
        else:
            from tapearc.engine.drives import library_of, open_drives

            library = library_of(media if len(media) > 1 else media[0], changer)
            if len(media) > 1:
                check_library_drives(library.changer, len(media))
            with open_drives(library, drives, write=False, catalog=cat, timeout=timeout) as ds:
                done = restore_volumes(list(ds), cat, wanted, opts, open_catalog=lambda: Catalog(catalog), **kw)
    for v in done:
        if v.result is not None:
            warn([f"volume {v.volume}: {w}" for w in v.result.warnings])
    first = next((e for v in done if (e := v.exit_error()) is not None), None)
    if json_out:  # one JSON document: the error's line goes to standard error only
        emit_json({"volumes": [v.to_json() for v in done], "exit_code": _exit(done)})
        if first is not None:
            say(f"tapearc: error: {first}", stderr=True)
            raise typer.Exit(first.exit_code)
        return
    _render(done)
    if first is not None:
        raise first


def check_drive_list(media: tuple[str, ...], changer: str | None, changer_drive: int | None) -> None:
    """Several ``--media``: the drives of the library ``--changer`` names, in its drive order."""
    from tapearc.errors import UsageError

    if len(media) < 2:
        return
    if changer is None or changer.strip().lower() == "operator":
        raise UsageError(
            f"--media given {len(media)} times: several drives are the drives of a library "
            "(give --changer, and the drives in its drive order)"
        )
    if changer_drive is not None:
        raise UsageError(
            f"--changer-drive {changer_drive}: with several --media each one's place is its changer drive number"
        )
    if len(set(media)) != len(media):
        raise UsageError("--media: give each drive once, in the changer's drive order")


def check_library_drives(changer: str, count: int) -> None:
    """The changer has (at least) the ``count`` drives listed: its drive ``count - 1`` exists."""
    from tapearc.engine.mediasource import check_drive_number
    from tapearc.media.changers import open_changer

    ch = open_changer(changer)
    try:
        check_drive_number(ch, count - 1)
    finally:
        ch.close()


def _exit(done: list[VolumeRestore]) -> int:
    err: TapearcError | None = next((e for v in done if (e := v.exit_error()) is not None), None)
    return err.exit_code if err is not None else 0


def _render(done: list[VolumeRestore]) -> None:
    from rich.table import Table

    t = Table(show_edge=False)
    for col in ("volume", "generation", "status", "written", "drive", "seconds", "target"):
        t.add_column(col, justify="right" if col in ("generation", "written", "seconds") else "left")
    for v in done:
        t.add_row(
            v.volume,
            str(v.generation or ""),
            v.to_json()["status"],  # type: ignore[arg-type]
            format_size(v.result.bytes_written) if v.result is not None else "",
            os.path.basename(v.drive) if v.drive and v.drive.startswith("sim:") else (v.drive or ""),
            f"{v.seconds:.1f}",
            v.target,
        )
    ok = sum(1 for v in done if v.exit_error() is None and v.result is not None)
    say(f"restored {ok} of {len(done)} volumes")
    out_console.print(t)
    for v in done:
        e = v.exit_error()
        if e is not None:
            say(f"  {v.volume}: exit {e.exit_code} {e.kind}: {e}")
