"""``tapearc restore --volume A --volume B --to DIR [--drives N]``: several volumes at once.

Each volume's newest complete generation (or at ``--at``), from whichever media set holds it, is
restored to ``DIR/VOLUME.img`` (a ``/`` in a volume's name becomes ``_``); with ``--drives N``
the volumes are spread over N drives of the library (tapearc.engine.restoremany). The summary
names each volume's outcome; the exit status is the first failed volume's (0 when all are whole).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from tapearc.cli.common import emit_json, open_catalog, open_media, out_console, say, warn
from tapearc.errors import TapearcError, UsageError
from tapearc.units import format_size

if TYPE_CHECKING:
    from tapearc.engine.restore import RestoreOptions
    from tapearc.engine.restoremany import VolumeRestore


def target_of(folder: str, volume: str) -> str:
    return os.path.join(folder, volume.replace("/", "_") + ".img")


def restore_many(
    media: str,
    to: str,
    changer: str | None,
    catalog: str | None,
    json_out: bool,
    options: Callable[[], RestoreOptions],
    volumes: list[str],
    drives: int,
) -> None:
    from tapearc.engine.restoremany import restore_volumes

    if not os.path.isdir(to):
        raise UsageError(f"--to {to}: several volumes are restored into a folder, and {to} is not one")
    if len(set(volumes)) != len(volumes) or not volumes:
        raise UsageError("--volume: give each volume once (at least one)")
    from tapearc.catalog.db import Catalog

    opts = options()
    wanted = [(v, target_of(to, v)) for v in volumes]
    with open_catalog(catalog) as cat:
        if drives == 1:
            with open_media(media, changer, write=False, catalog=cat) as src:
                done = restore_volumes([src], cat, wanted, opts, open_catalog=lambda: Catalog(catalog))
        else:
            from tapearc.engine.drives import library_of, open_drives

            with open_drives(library_of(media, changer), drives, write=False, catalog=cat) as ds:
                done = restore_volumes(list(ds), cat, wanted, opts, open_catalog=lambda: Catalog(catalog))
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
