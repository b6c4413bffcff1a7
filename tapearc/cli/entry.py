"""The ``tapearc`` command's entry point (the console script and ``python -m tapearc``).

It sets up Ctrl-C handling (tapearc.interrupts) before anything heavy is imported: importing
typer, rich and the engine takes ~100 ms, and a SIGINT then must still be one line and exit
130, never a KeyboardInterrupt traceback. Keep this module's imports to the standard library's
cheapest and tapearc.interrupts.
"""

from __future__ import annotations

import os
import signal
import sys


def _first(signum: int, frame: object) -> None:
    """Until tapearc.interrupts is imported (a millisecond): the same as its exit_now."""
    try:
        os.write(2, b"tapearc: error: interrupted\n")
    finally:
        os._exit(130)


if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # an inherited 'ignore' stays
    signal.signal(signal.SIGINT, _first)

from tapearc import interrupts  # noqa: E402  (after the handler, on purpose)

interrupts.install_startup()


def main() -> None:
    interrupts.install_startup()  # (again, for a caller that imported this module long before)
    _closed_streams()
    _to_server()
    run_here()


def _to_server() -> None:
    """Hand the command to this user's command server if one runs (docs/server.md): the
    process then ends with the command's status. Not the ``server`` commands themselves."""
    from tapearc import env

    path = env.server_socket()
    if path is None or _names_server_command(sys.argv[1:]):
        return
    from tapearc.cli import client

    status = client.run(path, sys.argv)
    if status is not None:
        _flush_and_exit(status)


def _names_server_command(args: list[str]) -> bool:
    """``tapearc [global options] server ...``: run here (a server does not start or stop itself)."""
    i = 0
    while i < len(args):
        if args[i] == "--progress":
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i] == "server"
    return False


def run_here() -> None:
    """Run the command line in this process (or in a command server's child, which comes here
    with the client's arguments, descriptors and environment)."""
    interrupts.install_startup()
    from tapearc.crypto import prefetch

    prefetch.start(sys.argv[1:])  # a key's scrypt in a child process while the rest is imported
    from tapearc.cli.app import main as app_main

    try:
        app_main()
    except SystemExit as e:
        if e.code == INTERRUPTED_EXIT:
            _exit_interrupted()
        _freeze_for_exit()
        raise


INTERRUPTED_EXIT = 130
OUTPUT_EXIT = 45  # tapearc.errors.OutputError's


def _closed_streams() -> None:
    """Started with standard error closed (``2>&-``): it is /dev/null (the messages are lost,
    the exit status stays). With standard output closed (``>&-``): one line, exit 45, nothing
    done -- a command's report could not be written (Python has no sys.stdout then)."""
    if sys.stderr is None:
        fd = os.open(os.devnull, os.O_WRONLY)
        if fd != 2:
            os.dup2(fd, 2)
            os.close(fd)
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115  (the process's, never closed)
    if sys.stdout is None:
        os.write(2, b"tapearc: error: standard output is closed (>&-): nothing was done\n")
        os.write(2, b"tapearc: hint: give the command a standard output (a file, /dev/null, a pipe)\n")
        os._exit(OUTPUT_EXIT)


def _freeze_for_exit() -> None:
    """The command is done: every object moves to the garbage collector's permanent generation
    (gc.freeze), so that the interpreter's shutdown does not scan them all again in each of its
    collections (~30 000 objects after a backup: ~17 ms of a command's end, more than a third of
    the time its modules take to import). They are still freed as the modules are cleared, by
    their reference counts; only reference cycles among them are left for the process's exit
    to release (everything the command opened is closed by then)."""
    import gc

    gc.freeze()


def _exit_interrupted() -> None:
    """End an interrupted command with exit 130, its one line already printed and everything
    unwound. Not through SystemExit: CPython 3.11 marks a KeyboardInterrupt that went through
    exec() of a string (dataclasses build their methods so, e.g. while a module is imported) as
    unhandled even when it was caught, and then ends the process by the signal at exit, after the
    message (seen: status -2 instead of 130 in about one Ctrl-C of four at that moment)."""
    _flush_and_exit(INTERRUPTED_EXIT)


def _flush_and_exit(status: int) -> None:
    """Flush standard output and error (whatever state they are in) and end the process now."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    main()
