"""``tapearc scan``: rebuild the catalog's knowledge of a medium from the medium alone."""

from __future__ import annotations

from typing import Annotated

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerDriveOpt,
    ChangerOpt,
    JsonOpt,
    ReadMediaOpt,
    TimeoutOpt,
    emit_json,
    fail,
    open_catalog,
    open_media,
    run,
)
from tapearc.cli.progress import make_progress
from tapearc.cli.render import render_scan
from tapearc.errors import DamagedDataError


def scan(
    media: ReadMediaOpt,
    deep: Annotated[
        bool, typer.Option("--deep", help="Read every chunk (recovers a generation whose trailer is missing).")
    ] = False,
    changer: ChangerOpt = None,
    changer_drive: ChangerDriveOpt = None,
    wait: TimeoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the catalog's knowledge of MEDIUM from the medium alone (from the trailers, or with
    --deep from every chunk)."""
    run(json_out, lambda: _scan(media, deep, changer, wait, catalog, json_out, changer_drive))


def _scan(
    media: str,
    deep: bool,
    changer: str | None,
    wait: float | None,
    catalog: str | None,
    json_out: bool,
    changer_drive: int | None = None,
) -> None:
    from tapearc.engine.layout import read_label
    from tapearc.engine.scan import follow_set, scan_medium

    with (
        open_catalog(catalog) as cat,
        open_media(media, changer, write=False, catalog=cat, timeout=wait, changer_drive=changer_drive) as src,
    ):
        results = [scan_medium(src.current(), cat, deep=deep, progress=make_progress(json_out))]
        if src.can_change:  # follow generations that span media onto the set's other media
            results += follow_set(src, cat, read_label(src.current()), deep=deep, rescan=True)
    if json_out:
        emit_json(results[0].to_json() if len(results) == 1 else {"media": [r.to_json() for r in results]})
    else:
        for res in results:
            render_scan(res)
    found = [line for res in results for line in res.findings]
    if found:  # the catalog learnt the rest; the report above says what each is
        raise fail(
            DamagedDataError(
                f"scan found {len(found)} damaged, foreign or duplicate tape file"
                + ("s" if len(found) > 1 else "")
                + f" or generation{'s' if len(found) > 1 else ''}: {found[0]}"
                + (f" (and {len(found) - 1} more, listed above)" if len(found) > 1 else ""),
                hint="tapearc verify --media MEDIUM says what is wrong in each (docs/verify.md)",
            ),
            False,  # the report above is the JSON output
        )


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
