"""The ``tapearc`` command: the app, its global options, and the command modules it registers.

Each command lives in its own module (backup_cmd, restore_cmd, list_cmd, verify_cmd,
label_cmd, scan_cmd, plan_cmd, drive_cmd, copy_cmd, run_cmd) and registers itself with ``register(app)``; what
they share (options, consoles, JSON output, the error boundary) is in :mod:`tapearc.cli.common`,
the text rendering of results in :mod:`tapearc.cli.render`, the progress printers in
:mod:`tapearc.cli.progress`. Imports run one way: app -> command modules -> common.

Errors are one line on standard error, ``tapearc: error: ...`` (and a JSON object on standard
output with ``--json``), whether the engine refused something or the command line did not parse
(exit 2); no traceback reaches the user (an internal error's is kept, see ``--debug``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from tapearc.cli import (
    backup_cmd,
    catalog_cmd,
    copy_cmd,
    drive_cmd,
    key_cmd,
    label_cmd,
    lease_cmd,
    list_cmd,
    plan_cmd,
    pool_cmd,
    restore_cmd,
    run_cmd,
    scan_cmd,
    verify_cmd,
)
from tapearc.cli.common import EPIPE_EXIT, fail, options
from tapearc.cli.progress import PROGRESS_MODES
from tapearc.errors import TapearcError, UsageError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Archive block volumes to tape (or a simulated tape, or a removable-disk folder) and restore them exactly.",
)


def package_version() -> str:
    """tapearc's version, as installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tapearc")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"tapearc {package_version()}\n")
        raise typer.Exit(0)


def _progress_mode(text: str) -> str:
    if text not in PROGRESS_MODES:
        raise UsageError(f"--progress {text!r}: use {', '.join(PROGRESS_MODES)}")
    return text


@app.callback()
def global_options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print tapearc's version and exit.", callback=_show_version, is_eager=True),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log what tapearc does on standard error (-vv: more).",
        ),
    ] = 0,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Debug log on standard error; an internal error prints its traceback there."),
    ] = False,
    progress: Annotated[
        str,
        typer.Option(
            "--progress",
            help="Progress display: auto (a bar on a terminal), text, json (JSON lines on standard error), none.",
            metavar="MODE",
            parser=_progress_mode,
        ),
    ] = "auto",
) -> None:
    """Archive block volumes to tape (or a simulated tape, or a removable-disk folder) and restore them exactly."""
    options.debug, options.verbose, options.progress = debug, verbose, progress
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else None
    if level is not None:
        logging.basicConfig(level=level, stream=sys.stderr, format="tapearc: %(levelname)s: %(name)s: %(message)s")


for _module in (
    backup_cmd,
    restore_cmd,
    list_cmd,
    verify_cmd,
    label_cmd,
    scan_cmd,
    plan_cmd,
    drive_cmd,
    copy_cmd,
    key_cmd,
    catalog_cmd,
    run_cmd,
    pool_cmd,
    lease_cmd,
):
    _module.register(app)


def click_exception_type() -> type[Exception]:
    """click's ClickException (typer vendors click; of its errors it exports BadParameter, whose
    base this is)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def usage_error(exc: Exception, args: list[str]) -> int:
    """A command line that does not parse: one line (and a JSON object with --json), exit 2."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `tapearc` alone: the help is printed already
        return int(getattr(exc, "exit_code", 2))
    message = str(getattr(exc, "format_message", lambda: str(exc))()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    path = str(getattr(ctx, "command_path", "") or "tapearc")
    where = path.removeprefix("tapearc").strip()
    err = UsageError(f"{where + ': ' if where else ''}{message} (see '{path} -h')")
    json_out = "--json" in (args[: args.index("--")] if "--" in args else args)
    return fail(err, json_out).exit_code


def main() -> None:
    """Run the command line (the console script goes through tapearc.cli.entry first)."""
    args = sys.argv[1:]
    before = _stdout_id()
    try:
        rv = app(args=args, prog_name="tapearc", standalone_mode=False)
    except TapearcError as e:  # an option value our parsers refused while typer read the command line
        raise SystemExit(fail(e, "--json" in args).exit_code) from None
    except typer.Abort:
        fail(TapearcError("aborted"), False)
        raise SystemExit(1) from None
    except click_exception_type() as e:
        raise SystemExit(usage_error(e, args)) from None
    except SystemExit as e:
        # outside a command (--help | head -1) typer and rich end a write to a closed standard
        # output with status 1, standard output then pointed at /dev/null: the same quiet
        # status as inside a command
        if e.code == 1 and before != _stdout_id() and _stdout_id() == _devnull_id():
            raise SystemExit(EPIPE_EXIT) from None
        raise
    raise SystemExit(rv if isinstance(rv, int) else 0)


def _stdout_id() -> tuple[int, int] | None:
    try:
        st = os.fstat(1)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _devnull_id() -> tuple[int, int] | None:
    try:
        st = os.stat(os.devnull)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


if __name__ == "__main__":
    main()
