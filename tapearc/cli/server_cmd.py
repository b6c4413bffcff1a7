"""``tapearc server start|run|stop|status``: this user's command server, which runs tapearc
commands without the ~0.13 s each spends starting Python and importing tapearc (docs/server.md;
how it runs them: tapearc.cli.server and tapearc.cli.client)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Annotated

import typer

from tapearc.cli.common import JsonOpt, emit_json, run, say
from tapearc.errors import ServerError, UsageError

DEFAULT_IDLE_TIMEOUT = 3 * 3600
START_TIMEOUT = 60.0

server_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="This user's command server: tapearc commands without the start-up of a new process.",
)


@server_app.callback()
def _server_group() -> None:
    """This user's command server: tapearc commands without the start-up of a new process."""


SocketOpt = Annotated[
    str | None,
    typer.Option(
        "--socket",
        metavar="PATH",
        help="The server's Unix socket (default: $TAPEARC_SERVER, else $XDG_RUNTIME_DIR/tapearc/server.sock "
        "or /tmp/tapearc-UID/server.sock).",
    ),
]
IdleOpt = Annotated[
    int,
    typer.Option("--idle-timeout", metavar="SECONDS", help="Stop after this long without a command (0: never)."),
]


def _check_idle(seconds: int) -> None:
    if seconds < 0:
        raise UsageError(f"--idle-timeout {seconds}: give 0 (never) or more seconds")


def socket_path(given: str | None) -> str:
    from tapearc import env

    if given:
        return given
    return env.server_socket() or env.default_server_socket()


def _server_argv(path: str, idle: int) -> list[str]:
    return [sys.executable, "-m", "tapearc.cli.server", "--socket", path, "--idle-timeout", str(idle)]


def start(socket: SocketOpt = None, idle_timeout: IdleOpt = DEFAULT_IDLE_TIMEOUT, json_out: JsonOpt = False) -> None:
    """Start the server in the background; it logs to PATH.log beside its socket."""

    def go() -> dict[str, object]:
        from tapearc import env
        from tapearc.cli.server import ServerStartError, secure_folder

        _check_idle(idle_timeout)
        path = os.path.abspath(socket_path(socket))
        try:
            secure_folder(path, create=path == os.path.abspath(env.default_server_socket()))
        except ServerStartError as e:
            raise ServerError(f"the server did not start: {e}") from None
        ready_r, ready_w = os.pipe()
        log_path = f"{path}.log"
        with open(os.devnull, "rb") as null_in, open(log_path, "ab") as log:
            child = subprocess.Popen(
                [*_server_argv(path, idle_timeout), "--ready-fd", str(ready_w)],
                stdin=null_in,
                stdout=log,
                stderr=log,
                pass_fds=(ready_w,),
                start_new_session=True,
                env=_server_env(),
            )
        os.close(ready_w)
        answer = _read_ready(ready_r, child)
        if not answer.startswith("ok"):
            raise ServerError(f"the server did not start: {answer.removeprefix('error: ')}")
        return {"socket": path, "pid": child.pid, "log": log_path}

    r = run(json_out, go)
    if json_out:
        emit_json(r)
    else:
        say(f"tapearc server pid {r['pid']} listens on {r['socket']} (log {r['log']})")
        if socket and os.path.abspath(socket) != os.path.abspath(socket_path(None)):
            say(f"commands use it with: export TAPEARC_SERVER={r['socket']}")


def _server_env() -> dict[str, str]:
    """The server's own environment (each command gets its client's): without TAPEARC_SERVER."""
    return {k: v for k, v in os.environ.items() if k != "TAPEARC_SERVER"}


def _read_ready(fd: int, child: subprocess.Popen[bytes]) -> str:
    """The server's first word: ``ok PID`` once it listens, ``error: ...`` if it cannot."""
    import select

    data = b""
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while b"\n" not in data and time.monotonic() < deadline:
            if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(fd)
    if b"\n" not in data:
        code = child.poll()
        how = f"exited with status {code}" if code is not None else "did not answer"
        return f"error: it {how} before listening"
    return data.split(b"\n", 1)[0].decode(errors="replace")


def run_foreground(socket: SocketOpt = None, idle_timeout: IdleOpt = 0) -> None:
    """Run the server in this process until SIGTERM or Ctrl-C (for systemd and the like)."""
    run(False, lambda: _check_idle(idle_timeout))
    path = os.path.abspath(socket_path(socket))
    sys.stdout.flush()
    os.execve(sys.executable, _server_argv(path, idle_timeout), _server_env())


def _ask(path: str, control: str) -> dict[str, object] | None:
    from tapearc.cli import client

    sock = client.connect(path)
    if sock is None:
        return None
    try:
        client.send_message(sock, {"control": control})
        return client.Messages(sock).next()
    except OSError:
        return None
    finally:
        sock.close()


def status(socket: SocketOpt = None, json_out: JsonOpt = False) -> None:
    """Whether a server listens, and what it has done."""

    def go() -> dict[str, object]:
        path = os.path.abspath(socket_path(socket))
        answer = _ask(path, "status") or {}
        state = answer.get("status")
        if not isinstance(state, dict):
            return {"socket": path, "running": False, "why": str(answer.get("refused") or "no server answers")}
        return {"socket": path, "running": True, **state}

    r = run(json_out, go)
    if json_out:
        emit_json(r)
    elif not r["running"]:
        say(f"no tapearc server listens on {r['socket']} ({r['why']})")
    else:
        up = time.time() - float(str(r["started"]))
        say(
            f"tapearc server pid {r['pid']} listens on {r['socket']}: up {up:.0f} s, "
            f"{r['commands_served']} commands served, {r['commands_running']} running"
        )


def stop(socket: SocketOpt = None, json_out: JsonOpt = False) -> None:
    """Stop the server: it takes no more commands and ends once those running have ended."""

    def go() -> dict[str, object]:
        path = os.path.abspath(socket_path(socket))
        answer = _ask(path, "stop") or {}
        state = answer.get("stopping")
        if answer.get("refused"):  # a server whose code changed stops by itself when asked anything
            return {"socket": path, "stopped": True, "pid": None, "commands_running": None, "why": answer["refused"]}
        if not isinstance(state, dict):
            raise ServerError(f"no tapearc server listens on {path}", hint="'tapearc server status' tells")
        return {
            "socket": path,
            "stopped": True,
            "pid": state.get("pid"),
            "commands_running": state.get("commands_running"),
        }

    r = run(json_out, go)
    if json_out:
        emit_json(r)
    else:
        if r["pid"] is None:
            say(f"the tapearc server on {r['socket']} stopped by itself: {r['why']}")
        else:
            say(f"tapearc server pid {r['pid']} stops ({r['commands_running']} commands still running finish first)")


server_app.command("start")(start)
server_app.command("run")(run_foreground)
server_app.command("status")(status)
server_app.command("stop")(stop)


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server", help="This user's command server: start, run, status, stop.")
