"""``tapearc copy`` and ``tapearc compare``: copy a whole medium exactly, compare two media.

Registered by the main app with :func:`register` (``register(app)`` adds the ``copy`` and
``compare`` commands; calling it twice does nothing). Until then the whole command line,
these two commands included, runs as ``python -m tapearc.cli.copy_cmd ...``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tapearc.cli.app import _emit_json, _progress, _run, err_console, out_console
from tapearc.units import format_size

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


def _say(to_stdout_ok: bool, text: str) -> None:
    (out_console if to_stdout_ok else err_console).print(text, markup=False, soft_wrap=True)


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
    json_out: JsonOpt = False,
) -> None:
    """Copy a whole medium exactly, every tape file, record and filemark, from its beginning to its
    end of data: tape to image (a dump), image to tape, tape to tape, or through a pipe (-).
    The copy must fit on the target (it does not span media)."""

    def go() -> None:
        from tapearc.engine.copy import copy_medium, ensure_not_self
        from tapearc.errors import UsageError
        from tapearc.media import open_medium

        if target == "-" and sys.stdout.isatty():
            raise UsageError(
                "--to -: standard output is a terminal; a copy writes the medium's records there",
                hint="redirect it to a file or a pipe (--to - > dump, --to - | ...)",
            )
        ensure_not_self(source, target)
        src = open_medium(source, write=False)
        try:
            dst = open_medium(target, write=True)
            try:
                res = copy_medium(src, dst, force=force, progress=_progress(json_out))  # on standard error
            finally:
                dst.close()
        finally:
            src.close()
        stdout_ok = target != "-"
        if json_out:
            if stdout_ok:
                _emit_json(res.to_json())
            else:
                import json

                err_console.print_json(json.dumps(res.to_json(), default=str))
            return
        speed = f", {res.bytes / res.seconds / 1e6:.1f} MB/s" if res.seconds > 0 else ""
        _say(stdout_ok, f"copied {res.source} to {res.target}: {res.summary()} ({format_size(res.bytes)}{speed})")
        if res.label is not None:
            lab = res.label
            _say(
                stdout_ok,
                f"  tapearc medium {lab['medium_uuid']}, sequence {lab['sequence']} of media set {lab['media_set']}"
                + (f", text {lab['text']!r}" if lab["text"] else "")
                + "; the copy carries the same label (use it instead of the original, not beside it)",
            )
        for w in res.warnings:
            _say(stdout_ok, f"  warning: {w}")

    _run(json_out, go)


def compare(
    a: Annotated[
        str, typer.Argument(help="First medium: /dev/nstN, sim:IMAGE, dir:FOLDER, or - (standard input).", metavar="A")
    ],
    b: Annotated[str, typer.Argument(help="Second medium (same forms).", metavar="B")],
    json_out: JsonOpt = False,
) -> None:
    """Compare two media record by record and filemark by filemark; name the first difference and
    count the differing records. Exit code 0 when they are identical, 20 when they differ."""

    def go() -> None:
        from tapearc.engine.compare import compare_media
        from tapearc.engine.copy import same_medium
        from tapearc.errors import UsageError
        from tapearc.media import open_medium

        if a == "-" and b == "-":
            raise UsageError("only one of A and B can be the stream on standard input (-)")
        if same_medium(a, b):
            raise UsageError(f"{a} and {b} are the same medium")
        da = open_medium(a, write=False)
        try:
            db = open_medium(b, write=False)
            try:
                res = compare_media(da, db)
            finally:
                db.close()
        finally:
            da.close()
        if json_out and res.identical:
            _emit_json(res.to_json())
            return
        if res.identical:
            out_console.print(res.summary(), markup=False, soft_wrap=True)
            return
        if not json_out:
            for d in res.divergences[1:]:
                extra = f" (x{d.count})" if d.count > 1 else ""
                out_console.print(f"  {d.kind}{extra}: {d.detail}", markup=False, soft_wrap=True)
            if res.divergence_count > len(res.divergences):
                out_console.print(f"  ... {res.divergence_count - len(res.divergences)} more differences", markup=False)
        raise res.error()

    _run(json_out, go)


def register(app: typer.Typer) -> None:
    """Add ``copy`` and ``compare`` to ``app`` (once)."""
    have = {c.name for c in app.registered_commands}
    if "copy" not in have:
        app.command("copy")(copy)
    if "compare" not in have:
        app.command("compare")(compare)


def main(argv: list[str] | None = None) -> Any:
    from tapearc.cli.app import app

    register(app)
    return app(args=argv, prog_name="tapearc")


if __name__ == "__main__":
    main(sys.argv[1:])
