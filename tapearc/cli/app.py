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

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Annotated, Any

import typer

from tapearc.cli.common import EPIPE_EXIT, fail, options, output_failure
from tapearc.cli.progress import PROGRESS_MODES
from tapearc.errors import TapearcError, UsageError

APP_HELP = "Archive block volumes to tape (or a simulated tape, or a removable-disk folder) and restore them exactly."


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
            metavar="",
            show_default=False,
            help="Say what tapearc does, step by step, on standard error (-vv: each chunk too).",
        ),
    ] = 0,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="An internal error prints its traceback on standard error; debug log messages too."
        ),
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
    import logging

    if debug or verbose:
        level = logging.DEBUG if debug or verbose > 1 else logging.INFO
        logging.basicConfig(level=level, stream=sys.stderr, format="tapearc: %(levelname)s: %(name)s: %(message)s")
    else:  # a warning logged on the way (none is printed otherwise): one line, as the errors are
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="tapearc: warning: %(message)s")


# The command modules in the order `tapearc --help` lists their commands' registration, and
# the top-level commands each registers (its ``register(app)``).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "backup_cmd": ("backup",),
    "restore_cmd": ("restore",),
    "list_cmd": ("list",),
    "verify_cmd": ("verify",),
    "label_cmd": ("label",),
    "scan_cmd": ("scan",),
    "plan_cmd": ("plan",),
    "drive_cmd": ("drive",),
    "copy_cmd": ("copy", "compare"),
    "key_cmd": ("key",),
    "catalog_cmd": ("catalog",),
    "run_cmd": ("run",),
    "pool_cmd": ("pool", "media"),
    "lease_cmd": ("lease",),
    "server_cmd": ("server",),
}
MODULE_OF = {command: module for module, commands in COMMAND_MODULES.items() for command in commands}
# the global options before the command (the value of --progress is the next argument)
GLOBAL_FLAGS = frozenset({"--version", "--verbose", "--debug"})


def make_app(modules: tuple[str, ...] | None = None) -> typer.Typer:
    """The ``tapearc`` app with the commands of ``modules`` (names of COMMAND_MODULES; None: every
    command). Each command module costs start-up time (its imports, and typer turning its
    commands into click commands), so a command line gets only what it runs: see
    :func:`needed_modules`."""
    app = typer.Typer(
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        help=APP_HELP,
    )
    app.callback()(global_options)
    for name in COMMAND_MODULES:
        if modules is None or name in modules:
            module: ModuleType = importlib.import_module(f"tapearc.cli.{name}")
            module.register(app)
    return app


#: click commands made in advance by a command server (tapearc.cli.server), per needed_modules()
#: key: typer turning a command module's functions into click commands takes ~8 ms of a start
_PREPARED: dict[tuple[str, ...] | None, Callable[..., Any]] = {}


def prepare_commands() -> None:
    """Make every command line's click command now (a command server, before it forks)."""
    for key in (None, (), *((name,) for name in COMMAND_MODULES)):
        _PREPARED[key] = typer.main.get_command(make_app(key))


def full_app() -> typer.Typer:
    """The app with every command (the man page, the help)."""
    return make_app()


def needed_modules(args: list[str]) -> tuple[str, ...] | None:
    """The command modules the command line ``args`` needs: the named command's own; none for
    ``--version`` without a command; None (every module) for anything else: the top-level help,
    shell completion (its words are not in ``args``), an unknown command or option, ``--``.
    Every command the app gets behaves as with the whole tree: a command's help, parsing and
    errors do not depend on its siblings (those of the top level do, hence every module there)."""
    version, i = False, 0
    while i < len(args):
        arg = args[i]
        if arg == "--progress":
            i += 2
            continue
        if arg in GLOBAL_FLAGS or arg.startswith("--progress=") or _is_v(arg):
            version = version or arg == "--version"
            i += 1
            continue
        if arg.startswith("-") or arg not in MODULE_OF:
            return None
        return (MODULE_OF[arg],)
    return () if version else None


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


def _is_v(arg: str) -> bool:
    """-v, -vv, ...: --verbose given once or more."""
    return len(arg) > 1 and arg[0] == "-" and set(arg[1:]) == {"v"}


def main() -> None:
    """Run the command line (the console script goes through tapearc.cli.entry first)."""
    args = sys.argv[1:]
    before = _stdout_id()
    try:
        modules = needed_modules(args)
        command = _PREPARED.get(modules) or make_app(modules)
        rv = command(args=args, prog_name="tapearc", standalone_mode=False)
    except TapearcError as e:  # an option value our parsers refused while typer read the command line
        raise SystemExit(fail(e, "--json" in args).exit_code) from None
    except typer.Abort:
        fail(TapearcError("aborted"), False)
        raise SystemExit(1) from None
    except click_exception_type() as e:
        raise SystemExit(usage_error(e, args)) from None
    except OSError as e:  # --version or --help written to a full disk (a command's own: in run())
        lost = output_failure(e, "nothing else was done")
        if lost is None:
            raise
        raise SystemExit(fail(lost, False).exit_code) from None
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
