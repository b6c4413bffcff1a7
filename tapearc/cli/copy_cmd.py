"""``tapearc copy`` and ``tapearc compare``: copy a whole medium exactly, compare two media.

Registered by the main app with :func:`register` (``register(app)`` adds the ``copy`` and
``compare`` commands; calling it twice does nothing). ``python -m tapearc.cli.copy_cmd ...``
runs the whole command line, these two commands included (as ``python -m tapearc`` does).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tapearc.cli.common import CatalogOpt, JsonOpt, emit_json, emit_json_stderr, open_catalog, run, say
from tapearc.cli.progress import make_progress
from tapearc.cli.render import render_compare_differences, render_copy
from tapearc.errors import UsageError

if TYPE_CHECKING:
    import uuid

    from tapearc.catalog.db import Catalog


def copy(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Medium to copy: /dev/nstN, sim:IMAGE, dir:FOLDER, or - (a stream on standard input).",
            metavar="MEDIUM",
        ),
    ],
    target: Annotated[
        str,
        typer.Option(
            "--to",
            help="Blank medium to copy onto: /dev/nstN, sim:IMAGE (made if missing), dir:FOLDER, or - (standard output).",
            metavar="MEDIUM",
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="Copy onto a target that is not blank (erasing it).")] = False,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy a whole medium exactly, every tape file, record and filemark, from its beginning to its
    end of data: tape to image (a dump), image to tape, tape to tape, or through a pipe (-).
    The copy must fit on the target (it does not span media)."""

    run(json_out, lambda: _copy(source, target, force, json_out, catalog))


def _copy(source: str, target: str, force: bool, json_out: bool, catalog: str | None = None) -> None:
    from tapearc.engine.copy import copy_medium, ensure_not_self
    from tapearc.media import open_medium

    if target == "-" and sys.stdout.isatty():
        raise UsageError(
            "--to -: standard output is a terminal; a copy writes the medium's records there",
            hint="redirect it to a file or a pipe (--to - > dump, --to - | ...)",
        )
    ensure_not_self(source, target)
    with closing(open_medium(source, write=False)) as src, closing(open_medium(target, write=True)) as dst:
        res = copy_medium(
            src,
            dst,
            force=force,
            progress=make_progress(json_out),  # (on standard error)
            erasing=lambda lab: _forget(lab, catalog),
            rewritten=lambda lab, whole: _forget_after(lab, whole, catalog),
        )
    stdout_ok = target != "-"
    if json_out:
        (emit_json if stdout_ok else emit_json_stderr)(res.to_json())
    else:
        render_copy(res, to_stderr=not stdout_ok)


def _forget(erased: dict[str, Any], catalog: str | None) -> None:
    """``copy --force`` is about to erase the tapearc medium ``erased`` (its label): a catalog
    that knows it forgets its data first -- the medium and every generation with a part on it are
    marked recycled, as ``label --force`` does -- so the catalog never offers a restore from data
    that is gone."""
    from tapearc.catalog.pools import retire

    _in_catalog(catalog, lambda cat, now: retire(cat, _uuid(erased), now))


def _forget_after(written: dict[str, Any], whole: int, catalog: str | None) -> None:
    """``copy --force`` wrote medium ``written`` (its label) over itself -- an older copy of it
    written back, say: it holds its first ``whole`` tape files and nothing after them. A catalog
    that knows it forgets its tape files from there on and marks the generations with a part
    there recycled, as a backup appending to a medium put back does (Catalog.forget_gone_files),
    so no restore counts on them. The medium is not recycled: its label and the rest stay."""
    _in_catalog(catalog, lambda cat, now: cat.forget_gone_files(_uuid(written), max(1, whole), now))


def _in_catalog(catalog: str | None, change: Callable[[Catalog, int], None]) -> None:
    """``change(catalog, now)`` in the catalog, when it exists (copy makes none)."""
    import time

    from tapearc.catalog.db import catalog_exists

    if catalog_exists(catalog):
        with open_catalog(catalog) as cat:
            change(cat, int(time.time()))


def _uuid(label: dict[str, Any]) -> uuid.UUID:
    import uuid

    return uuid.UUID(str(label["medium_uuid"]))


def compare(
    a: Annotated[
        str, typer.Argument(help="First medium: /dev/nstN, sim:IMAGE, dir:FOLDER, or - (standard input).", metavar="A")
    ],
    b: Annotated[str, typer.Argument(help="Second medium (same forms).", metavar="B")],
    json_out: JsonOpt = False,
) -> None:
    """Compare two media record by record and filemark by filemark; name the first difference and
    count the differing records. Exit code 0 when they are identical, 20 when they differ."""

    run(json_out, lambda: _compare(a, b, json_out))


def _compare(a: str, b: str, json_out: bool) -> None:
    from tapearc.engine.compare import compare_media
    from tapearc.engine.copy import same_medium
    from tapearc.media import open_medium

    if a == "-" and b == "-":
        raise UsageError("only one of A and B can be the stream on standard input (-)")
    if same_medium(a, b):
        raise UsageError(f"{a} and {b} are the same medium")
    with closing(open_medium(a, write=False)) as da, closing(open_medium(b, write=False)) as db:
        res = compare_media(da, db)
    if res.identical:
        if json_out:
            emit_json(res.to_json())
        else:
            say(res.summary())
        return
    if not json_out:
        render_compare_differences(res)
    raise res.error()


def register(app: typer.Typer) -> None:
    """Add ``copy`` and ``compare`` to ``app`` (once)."""
    have = {c.name for c in app.registered_commands}
    if "copy" not in have:
        app.command("copy")(copy)
    if "compare" not in have:
        app.command("compare")(compare)


if __name__ == "__main__":
    import runpy

    runpy.run_module("tapearc", run_name="__main__", alter_sys=True)
