"""What every ``tapearc`` command shares: options, consoles, JSON output and the error boundary.

The command modules (backup_cmd, restore_cmd, ...) import from here and from
:mod:`tapearc.cli.render` and :mod:`tapearc.cli.progress`; nothing here imports a command
module, so the imports run one way (app -> commands -> common). Engine modules are imported
inside the small functions that need them: importing the engine costs start-up time that
``--help`` and a usage error should not pay.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import select
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO, TypeVar, cast

import typer

from tapearc import interrupts
from tapearc.errors import InternalError, Interrupted, OutputError, TapearcError, UsageError
from tapearc.units import parse_size

if TYPE_CHECKING:
    from rich.console import Console

    from tapearc import format as fmt
    from tapearc.catalog.db import Catalog
    from tapearc.crypto.keys import Key
    from tapearc.engine.encryption import BackupKey
    from tapearc.engine.mediasource import MediaSource
    from tapearc.media.changer import Changer

T = TypeVar("T")

EPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`'s yes
BUG_HINT = "this is a bug in tapearc; please report it with the command you ran"


class StdoutClosed(Exception):
    """Standard output's reader went away (raised where rich would exit with status 1)."""


def out_console_class() -> type[Console]:
    """The console of standard output: a write to a closed pipe raises StdoutClosed."""
    from rich.console import Console

    class OutConsole(Console):
        def on_broken_pipe(self) -> None:
            raise StdoutClosed

    return OutConsole


def err_console_class() -> type[Console]:
    from rich.console import Console

    return Console


CONSOLE_LOCK = threading.Lock()


class LazyConsole:
    """A rich Console made at its first use: importing rich.console costs ~15 ms of start-up,
    which a command printing only JSON (or nothing) need not pay. The first attribute looked up
    (or set) turns this object into the console itself: the console is made with the arguments
    given here, and this object takes its state, then its class, so from then on it is that
    Console (rich, isinstance and the methods see nothing else). Threads that use it first at
    the same time wait for one of them to make it (a lock); a rich Console keeps no reference to
    itself in its state, so the state can move to this object."""

    def __init__(self, make_class: Callable[[], type[Console]], **kwargs: object) -> None:
        object.__setattr__(self, "lazy_args", (make_class, kwargs))

    @staticmethod
    def is_lazy(console: object) -> bool:
        """Whether ``console`` is a LazyConsole not made into its console yet."""
        return type(console) is LazyConsole

    def become_console(self) -> None:
        with CONSOLE_LOCK:
            if type(self) is not LazyConsole:  # another thread made it meanwhile
                return
            make_class, kwargs = self.__dict__["lazy_args"]
            # one section a Ctrl-C cannot cut (it is raised once the console is whole): between
            # the state and the class moving over, this object would be neither
            with interrupts.deferred():
                cls = make_class()
                made = cls(**kwargs)
                # its state, then its class (until then, a method looked up waits on the lock)
                object.__setattr__(self, "__dict__", made.__dict__)
                object.__setattr__(self, "__class__", cls)

    def __getattr__(self, name: str) -> object:  # (only for names not found otherwise)
        if name == "lazy_args":
            raise AttributeError(name)
        self.become_console()
        return getattr(self, name)

    def __setattr__(self, name: str, value: object) -> None:
        self.become_console()
        setattr(self, name, value)

    def __enter__(self) -> object:
        self.become_console()
        return self.__enter__()

    def __exit__(self, *exc: object) -> object:  # (`with` took this one before __enter__ ran)
        exit_method: Callable[..., object] = type(self).__exit__
        return exit_method(self, *exc)


# (their arguments are taken now, as when they were made at import). Neither takes what it prints
# for rich markup or emoji codes: a file, volume or medium name in a message or a table cell
# ("x:smile:[bold].img") is printed as it is, never as an emoji or without its brackets.
err_console = cast("Console", LazyConsole(err_console_class, stderr=True, highlight=False, markup=False, emoji=False))
out_console = cast(
    "Console",
    LazyConsole(
        out_console_class,
        highlight=False,
        markup=False,
        emoji=False,
        width=None if sys.stdout.isatty() else 200,
    ),
)


@dataclass
class GlobalOptions:
    """The options given before the command (``tapearc --debug --progress json backup ...``)."""

    debug: bool = False
    verbose: int = 0
    progress: str = "auto"


options = GlobalOptions()


# ---------------------------------------------------------------- output


def say(text: str, *, stderr: bool = False) -> None:
    """One line of plain text (no rich markup) on standard output, or standard error."""
    console = err_console if stderr else out_console
    stream = _plain_stream(console, stderr, text)
    if stream is not None:
        try:
            stream.write(text + "\n")
            stream.flush()
            return
        except BrokenPipeError:
            console.on_broken_pipe()  # as rich ends it (the console is made for it: StdoutClosed, or exit 1)
            return
        except UnicodeEncodeError:
            pass  # (nothing written) a character the stream's encoding lacks: rich's own error for it
    console.print(text, markup=False, emoji=False, soft_wrap=True)


def _plain_stream(console: Console, stderr: bool, text: str) -> TextIO | None:
    """Where :func:`say` writes ``text`` itself, without importing rich (~15 ms of a command's
    start): the console's stream when the console is not made yet, the stream is not a terminal
    (nor a rich proxy of one, nor Jupyter's), and ``text`` is one line that rich would print as
    it is, with the newline after it and a flush (printable characters only: no tab or control
    character, which rich expands or strips). Else None: the console prints it."""
    if not LazyConsole.is_lazy(console) or not text.isprintable():
        return None
    stream = sys.stderr if stderr else sys.stdout
    if stream is None or hasattr(stream, "rich_proxied_file") or hasattr(builtins, "get_ipython"):
        return None
    try:
        return None if stream.isatty() else stream
    except ValueError:  # closed
        return None


def warn(warnings: list[str]) -> None:
    """The warnings of a result, one ``tapearc: warning:`` line each, on standard error."""
    for w in warnings:
        say(f"tapearc: warning: {w}", stderr=True)


def emit_json(obj: object) -> None:
    """A result as indented JSON on standard output."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit_json_stderr(obj: object) -> None:
    """A result as JSON on standard error (when standard output carries data: ``--to -``)."""
    err_console.print_json(json.dumps(obj, default=str))


def fail(err: TapearcError, json_out: bool) -> typer.Exit:
    """Print ``err`` as one line (and its hint), and as a JSON object with --json; return the
    exit to raise."""
    say(f"tapearc: error: {err}", stderr=True)
    if err.hint:
        say(f"tapearc: hint: {err.hint}", stderr=True)
    if json_out and not isinstance(err, OutputError):
        try:
            emit_json(err.to_json())
        except OSError:  # standard output failed too: the line above says what happened
            stdout_to_devnull()
    return typer.Exit(err.exit_code)


#: Where a write to standard output happens: tapearc's writers and rich's console.
_OUTPUT_WRITERS = frozenset({"emit_json", "say", "_show_version", "_paper"})


def output_failure(e: OSError, done: str) -> OutputError | None:
    """The OutputError for ``e`` when it was raised writing standard output (a frame of
    tapearc's writers or of rich's console in its traceback), else None. ``done`` says what
    the command did before (its work is done before its report is written)."""
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name in _OUTPUT_WRITERS or code.co_filename.endswith(os.path.join("rich", "console.py")):
            stdout_to_devnull()
            reason = e.strerror or str(e)
            return OutputError(
                f"cannot write to standard output ({reason}): {done}",
                hint="give standard output room, or another place: a file on a file system with space, a pipe, a terminal",
            )
        tb = tb.tb_next
    return None


def stdout_to_devnull() -> None:
    """Standard output failed: what is still buffered for it goes to /dev/null at exit, so
    Python does not fail again (with a traceback) when it flushes it."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass


# ---------------------------------------------------------------- option parsers and options


def whole(what: str, minimum: int = 1) -> Callable[[str], int]:
    """A parser for an option holding a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise UsageError(f"{what} {text!r}: not a whole number") from None
        if value < minimum:
            raise UsageError(f"{what} {text}: must be {minimum} or more")
        return value

    return parse


def seconds(text: str) -> float:
    """The parser of --wait: a finite number of seconds, 0 or more."""
    try:
        value = float(text.strip())
    except ValueError:
        raise UsageError(f"--wait {text!r}: not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--wait {text}: seconds must be a finite number, 0 or more")
    return value


def parse_uuid(text: str | None, what: str) -> uuid.UUID | None:
    """``text`` as a UUID (None stays None); anything else is a usage error naming ``what``."""
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError(f"{what}: not a UUID: {text!r}") from None


def parse_size_opt(text: str | None, what: str) -> int | None:
    """A size option (``64K``, ``1M``) as bytes, more than 0 (None stays None)."""
    if text is None:
        return None
    try:
        value = parse_size(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None
    if value <= 0:
        raise UsageError(f"{what} {text}: must be more than 0")
    return value


COMPRESSIONS = ("zstd", "none")


def check_compress(text: str) -> str:
    """The value of --compress, checked (the one place it is)."""
    if text not in COMPRESSIONS:
        raise UsageError(f"--compress {text!r}: use zstd or none")
    return text


MediaOpt = Annotated[
    str,
    typer.Option(
        "--media",
        "-m",
        help="Medium: sim:IMAGE (simulated tape, made if missing), sim:LIBRARY, dir:FOLDER (removable disk), /dev/nstN, - (a record stream on stdin/stdout).",
        metavar="MEDIUM",
    ),
]
#: --media of the commands that only read a medium: they never make one.
ReadMediaOpt = Annotated[
    str,
    typer.Option(
        "--media",
        "-m",
        help="Medium: sim:IMAGE (simulated tape), sim:LIBRARY, dir:FOLDER (removable disk), /dev/nstN, - (a record stream on stdin).",
        metavar="MEDIUM",
    ),
]
DriveOpt = Annotated[
    str,
    typer.Option(
        "--media", "-m", help="Drive or medium: /dev/nstN, st:/dev/nstN, sim:IMAGE, dir:FOLDER.", metavar="MEDIUM"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
ChangerOpt = Annotated[
    str | None,
    typer.Option(
        "--changer",
        help="What changes media: sim:DIR (simulated library), mtx:/dev/sgN, serial:PORT or serial:socket://HOST:PORT, operator.",
        metavar="CHANGER",
    ),
]
ChangerDriveOpt = Annotated[
    int | None,
    typer.Option(
        "--changer-drive",
        help="Which drive of the changer --media is, as the changer numbers them (mtx status: Data Transfer "
        "Element N): the changer loads that drive. Default: N of sim:DIR/drive-N.tap, else 0.",
        metavar="N",
        parser=whole("--changer-drive", 0),
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--wait",
        help="With --changer operator: give up after this many seconds (default: wait forever); "
        "also how long to wait for a library's drive, medium or changer another tapearc holds.",
        metavar="SECONDS",
        parser=seconds,
    ),
]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="Catalog: an SQLite file, or a postgresql://user@host/dbname URL (docs/catalog.md). Default: $TAPEARC_CATALOG, else ~/.local/share/tapearc/catalog.sqlite.",
        metavar="PATH",
    ),
]


# ---------------------------------------------------------------- keys (docs/encryption.md)

KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Key file of encrypted media (tapearc key create); its passphrase from --passphrase-file, "
        "else asked on the terminal.",
        metavar="FILE",
    ),
]
EncryptOpt = Annotated[
    Path | None,
    typer.Option(
        "--encrypt",
        help="Encrypt the generation (AES-256-GCM per chunk) with the key of this key file (tapearc key create); "
        "a media set has one key: a blank medium starts an encrypted set.",
        metavar="KEYFILE",
    ),
]
PassphraseFileOpt = Annotated[
    str | None,
    typer.Option(
        "--passphrase-file",
        help="Read the key file's passphrase from the first line of this file (else it is asked for on the terminal).",
        metavar="FILE",
    ),
]


def check_passphrase_file(key_file: Path | None, passphrase_file: str | None, option: str) -> None:
    """--passphrase-file without the key option it opens: a usage error."""
    if key_file is None and passphrase_file is not None:
        raise UsageError(f"--passphrase-file goes with {option} FILE")


def _opening(key_file: Path, passphrase_file: str | None) -> tuple[fmt.WrappedKey, Callable[[], Key]]:
    """Read the key file and the passphrase (asked on the terminal now), and start opening the
    key: scrypt, a third of a second by design, runs in a child process on another CPU
    (crypto.wrap.start_unwrap; started before the command line was parsed when the entry point
    could: crypto.prefetch), so that the engine's imports and the catalog's and medium's
    opening go on meanwhile. Returns the key record and the function that waits for the key
    (WrongPassphraseError, exit 31)."""
    from tapearc.crypto import prefetch
    from tapearc.crypto.keyfile import get_passphrase, read_key_file
    from tapearc.crypto.wrap import start_unwrap

    wrapped = read_key_file(key_file)
    what = f"key file {key_file}"
    passphrase = get_passphrase(passphrase_file, what=what)
    early = None if passphrase_file is None else prefetch.take(key_file, passphrase_file, wrapped, passphrase)
    return wrapped, start_unwrap(wrapped, passphrase, where=what, kek=early)


def start_key_arg(
    key_file: Path | None, passphrase_file: str | None, option: str = "--key"
) -> Callable[[], Key | None]:
    """``--key FILE``: start opening the key (:func:`_opening`); the function returned waits for
    it (None when no key file was given). Exits 31 (wrong passphrase), 32 (not a key file), 2
    (--passphrase-file alone). Called before any medium or target is touched, and waited for
    before one is."""
    check_passphrase_file(key_file, passphrase_file, option)
    if key_file is None:
        return lambda: None
    return _opening(key_file, passphrase_file)[1]


def start_encrypt_arg(key_file: Path | None, passphrase_file: str | None) -> Callable[[], BackupKey | None]:
    """``backup --encrypt FILE``: :func:`start_key_arg` for the key and its key record (written
    on the set's media)."""
    check_passphrase_file(key_file, passphrase_file, "--encrypt")
    if key_file is None:
        return lambda: None
    from tapearc.engine.encryption import BackupKey

    wrapped, key = _opening(key_file, passphrase_file)
    return lambda: BackupKey(wrapped, key())


# ---------------------------------------------------------------- catalog and media


@contextmanager
def open_catalog(path: str | None, *, read_only: bool = False) -> Iterator[Catalog]:
    """The catalog (--catalog, else the default), closed at the end. ``read_only``: for a
    command that only reads it (nothing written, not even a migration: docs/catalog.md)."""
    from tapearc.catalog.db import Catalog

    cat = Catalog(path, read_only=read_only)
    try:
        yield cat
    finally:
        cat.close()


def lease_purpose() -> str:
    """What a command's leases say it is doing: its command line (``tapearc backup vm1.img
    --media sim:lib``), cut at 200 characters."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if not (name.startswith("tapearc") or name == "__main__.py"):
        return "tapearc"  # called in-process (a test's runner): its command line is not ours
    return " ".join(["tapearc", *sys.argv[1:]])[:200]


def check_changer_drive(spec: str, changer: str | None, drive: int | None) -> None:
    """``--changer-drive N`` goes with a changer that numbers its drives: ``--changer`` (not the
    operator), or ``--media sim:DIR`` of a simulated library (UsageError otherwise)."""
    from tapearc.engine.mediasource import library_dir

    if drive is None:
        return
    if changer is None and library_dir(spec) is None:
        raise UsageError(
            f"--changer-drive {drive}: goes with --changer (the changer whose drive {spec} is), "
            "or with --media sim:DIR of a simulated library"
        )
    if changer is not None and changer.strip().lower() == "operator":
        raise UsageError(f"--changer-drive {drive}: the operator has no numbered drives (leave it out)")


@contextmanager
def open_media(
    spec: str,
    changer: str | None,
    *,
    write: bool,
    catalog: Catalog | None = None,
    timeout: float | None = None,
    changer_drive: int | None = None,
) -> Iterator[MediaSource]:
    """A MediaSource: the drive named by --media and the changer named by --changer, its drive
    locked against other tapearc processes for the whole command: by a lease in the catalog for
    the drives of a library (any free drive of ``sim:DIR``), else by a file lock (tapearc.locks).
    ``changer_drive`` (--changer-drive): the changer's number of that drive (default: N of
    ``sim:DIR/drive-N.tap``, else 0), checked against the changer's inventory."""
    from tapearc import format as fmt
    from tapearc.engine.mediasource import MediaSource, leased_media, uses_leases
    from tapearc.locks import medium_lock

    fmt.import_media_modules()  # before the command's timed work
    check_changer_drive(spec, changer, changer_drive)
    if catalog is not None and uses_leases(spec, changer, catalog):  # the drives of a library: docs/leases.md
        with leased_media(
            spec, changer, write=write, catalog=catalog, purpose=lease_purpose(), wait=timeout, drive=changer_drive
        ) as leased:
            yield leased
        return
    with medium_lock(spec, write=write):
        ch: Changer | None = None
        if changer is not None:
            from tapearc.media.changers import open_changer

            ch = open_changer(changer)
        src = MediaSource(
            spec,
            write=write,
            changer=ch,
            catalog=catalog,
            operator_timeout=timeout,
            drive_index=changer_drive,
            check_drive=changer_drive is not None,
        )
        try:
            yield src
        finally:
            src.close()


@contextmanager
def open_free_drive(
    drives: tuple[str, ...], changer: str, *, write: bool, catalog: Catalog, timeout: float | None = None
) -> Iterator[MediaSource]:
    """Any free drive of a library whose drives ``drives`` lists in the changer's drive order
    (restore's several --media, a job's list of media): the first whose lease is free, waiting
    up to ``timeout`` seconds (None: as long as it takes) while every one is held, as
    ``--media sim:DIR`` does. More drives than the changer has: UsageError naming its drives."""
    from tapearc.catalog.leases import Leases
    from tapearc.engine.mediasource import MediaSource, catalog_spec, check_drive_number
    from tapearc.media.changers import open_changer

    ch = open_changer(changer)
    try:
        check_drive_number(ch, len(drives) - 1)
    finally:
        ch.close()
    leases = Leases(catalog_spec(catalog))
    try:
        src = MediaSource.for_free_drive(
            changer,
            write=write,
            leases=leases,
            purpose=lease_purpose(),
            catalog=catalog,
            drive_specs=list(drives),
            wait=timeout,
        )
        try:
            yield src
        finally:
            src.close()
    finally:
        leases.close()


# ---------------------------------------------------------------- the error boundary


def stdout_closed() -> bool:
    """Standard output is a pipe (or socket) whose reader has gone (``tapearc list | head -1``)."""
    try:
        p = select.poll()
        p.register(1, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))
    except (OSError, ValueError):
        return False


def quiet_epipe() -> typer.Exit:
    """The reader of standard output went away: end quietly, as Unix tools do (no message; the
    exit status a shell shows for a tool ended by SIGPIPE). Standard output is pointed at
    /dev/null so nothing complains when Python flushes it at exit."""
    stdout_to_devnull()
    return typer.Exit(EPIPE_EXIT)


def error_log_path() -> Path:
    """Where an internal error's traceback is kept: $XDG_STATE_HOME/tapearc/errors.log (else
    ~/.local/state/tapearc/errors.log)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "tapearc" / "errors.log"


def keep_traceback(exc: BaseException) -> str:
    """Keep ``exc``'s traceback: on standard error with --debug (returns ""), else appended to
    the error log; returns where it went, for the hint ("" when it could not be written)."""
    text = "".join(traceback.format_exception(exc))
    if options.debug:
        sys.stderr.write(text)
        sys.stderr.flush()
        return "above"
    path = error_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"--- pid {os.getpid()}: tapearc {' '.join(sys.argv[1:])}\n{text}")
    except OSError:
        return ""
    return str(path)


def internal_error(exc: BaseException, message: str | None = None) -> InternalError:
    """An unexpected exception as the one-line InternalError; its traceback is kept, not lost,
    and the line says where (the error log, or above with --debug)."""
    where = keep_traceback(exc)
    text = message or f"internal error: {type(exc).__name__}: {exc}"
    if where == "above":
        text += " (traceback above)"
    elif where:
        text += f" (traceback in {where})"
    return InternalError(text, hint=BUG_HINT + ("" if options.debug else " (--debug prints the traceback)"))


def run(json_out: bool, fn: Callable[[], T]) -> T:
    """The error boundary around one command. Ctrl-C raises KeyboardInterrupt only inside it
    (tapearc.interrupts); once it is left, the result is decided and Ctrl-C is ignored."""
    from tapearc import interrupts, settings

    interrupts.clear_notes()
    try:
        with interrupts.raising():
            settings.check_all()  # a bad TAPEARC_* value is a usage error whatever the command
            return fn()
    except TapearcError as e:
        raise fail(e, json_out) from None
    except KeyboardInterrupt:
        raise fail(Interrupted(interrupts.message()), json_out) from None
    except (typer.Exit, typer.Abort):
        raise
    except StdoutClosed:
        raise quiet_epipe() from None
    except BrokenPipeError as e:
        if not stdout_closed():
            raise fail(internal_error(e, "internal error: BrokenPipeError"), json_out) from None
        raise quiet_epipe() from None
    except OSError as e:
        lost = output_failure(e, "the command's work is done; what it printed there is lost")
        if lost is not None:
            raise fail(lost, False) from None
        raise fail(internal_error(e), json_out) from None
    except Exception as e:  # a bug: still one line, never a traceback on the terminal
        raise fail(internal_error(e), json_out) from None
