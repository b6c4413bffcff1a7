"""The command server (``tapearc server``, tapearc.cli.server and tapearc.cli.client): a command
handed to it behaves as the same command run in its own process -- output, exit status, files,
working folder, environment, standard streams, signals -- and nothing is handed to a server that
is not this user's, runs other code, or is gone. Real processes throughout; nothing is timed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapearc.cli import client, server

PY = sys.executable


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPEARC_")}
    env.update(extra)
    return env


def tapearc(*args: str, sock: Path | None, cwd: Path | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    """``python -m tapearc ARGS``, handed to the server at ``sock`` (None: run in its own process)."""
    env = env_with(TAPEARC_SERVER=str(sock) if sock else "off", **kw.pop("env", {}))  # type: ignore[arg-type]
    return subprocess.run(
        [PY, "-m", "tapearc", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120, **kw
    )  # type: ignore[call-overload,no-any-return]


def status(sock: Path) -> dict[str, object]:
    p = tapearc("server", "status", "--socket", str(sock), "--json", sock=None)
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout))


def served(sock: Path) -> int:
    return int(str(status(sock).get("commands_served", -1)))


@pytest.fixture(scope="module")
def sock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("srv")
    folder.chmod(0o700)
    path = folder / "s.sock"
    p = tapearc("server", "start", "--socket", str(path), "--idle-timeout", "600", sock=None)
    assert p.returncode == 0, p.stderr
    assert "listens on" in p.stdout
    yield path
    tapearc("server", "stop", "--socket", str(path), sock=None)


def wait_until(cond: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- the same command, the same result


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["list", "--media", "sim:no-such.tap"],  # exit 10, one line
        ["backup"],  # a usage error, exit 2
        ["bakup", "x"],  # an unknown command
        ["list", "--media", "sim:no-such.tap", "--json"],
        ["server"],  # (a group's help is printed in the client's own process)
    ],
)
def test_served_output_and_status_are_the_same(sock: Path, tmp_path: Path, args: list[str]) -> None:
    before = served(sock)
    mine = tapearc(*args, sock=None, cwd=tmp_path)
    theirs = tapearc(*args, sock=sock, cwd=tmp_path)
    assert (theirs.returncode, theirs.stdout, theirs.stderr) == (mine.returncode, mine.stdout, mine.stderr)
    assert served(sock) == before + (0 if args[0] == "server" else 1)


def test_backup_and_restore_through_the_server(sock: Path, tmp_path: Path) -> None:
    """Relative paths are the client's working folder's; TAPEARC_CATALOG is the client's."""
    (tmp_path / "vol.img").write_bytes(os.urandom(300_000) + bytes(200_000))
    before = served(sock)
    cat = {"env": {"TAPEARC_CATALOG": "cat.sqlite"}}
    p = tapearc("backup", "vol.img", "--media", "sim:t.tap", "--json", sock=sock, cwd=tmp_path, **cat)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["kind"] == "full"
    assert (tmp_path / "t.tap").exists() and (tmp_path / "cat.sqlite").exists()
    p = tapearc(
        "restore", "--media", "sim:t.tap", "--volume", "vol.img", "--to", "out.img", sock=sock, cwd=tmp_path, **cat
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out.img").read_bytes() == (tmp_path / "vol.img").read_bytes()
    mine = tapearc("list", "--media", "sim:t.tap", "--json", sock=None, cwd=tmp_path, **cat)
    theirs = tapearc("list", "--media", "sim:t.tap", "--json", sock=sock, cwd=tmp_path, **cat)
    assert theirs.stdout == mine.stdout and theirs.returncode == mine.returncode == 0
    assert served(sock) == before + 3


def test_standard_output_is_the_clients(sock: Path, tmp_path: Path) -> None:
    """``--to -`` writes the volume into the client's standard output (a pipe here); umask too."""
    data = os.urandom(70_000)
    (tmp_path / "v.img").write_bytes(data)
    assert tapearc("backup", "v.img", "--media", "sim:t.tap", sock=sock, cwd=tmp_path).returncode == 0
    p = subprocess.run(
        [PY, "-m", "tapearc", "restore", "--media", "sim:t.tap", "--volume", "v.img", "--to", "-"],
        capture_output=True,
        cwd=tmp_path,
        env=env_with(TAPEARC_SERVER=str(sock), TAPEARC_CATALOG=str(tmp_path / "c.sqlite")),
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == data


def test_umask_is_the_clients(sock: Path, tmp_path: Path) -> None:
    (tmp_path / "v.img").write_bytes(os.urandom(70_000))
    code = "import os, sys, runpy; os.umask(0o077); sys.argv = ['tapearc'] + sys.argv[1:]; runpy.run_module('tapearc', run_name='__main__')"
    p = subprocess.run(
        [PY, "-c", code, "backup", "v.img", "--media", "sim:u.tap"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env_with(TAPEARC_SERVER=str(sock), TAPEARC_CATALOG=str(tmp_path / "c.sqlite")),
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE((tmp_path / "u.tap").stat().st_mode) & 0o077 == 0


# ---------------------------------------------------------------- signals and ends


def _blocked_backup(
    sock: Path, tmp_path: Path, prefix: tuple[str, ...] = (), **popen: object
) -> tuple[subprocess.Popen[str], int]:
    """A served command that waits (for a minute): ``list`` of a tape whose lock this test holds
    (``prefix``: a command that runs it, e.g. ``nice``)."""
    (tmp_path / "v.img").write_bytes(os.urandom(70_000))
    env = env_with(TAPEARC_CATALOG=str(tmp_path / "c.sqlite"))
    p = tapearc("backup", str(tmp_path / "v.img"), "--media", f"sim:{tmp_path / 't.tap'}", sock=None, env=env)
    assert p.returncode == 0, p.stderr
    lock = os.open(tmp_path / "t.tap.tapearc-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    before = status(sock)["commands_running"]
    proc = subprocess.Popen(  # type: ignore[call-overload]
        [*prefix, PY, "-m", "tapearc", "list", "--media", f"sim:{tmp_path / 't.tap'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env | {"TAPEARC_SERVER": str(sock), "TAPEARC_LOCK_TIMEOUT": "60"},
        **popen,
    )
    BLOCKED.append((proc, lock))
    assert wait_until(lambda: status(sock)["commands_running"] == before + 1)  # type: ignore[operator]
    time.sleep(0.3)  # (past the command's start-up: it waits for the lock)
    return proc, lock


BLOCKED: list[tuple[subprocess.Popen[str], int]] = []


@pytest.fixture(autouse=True)
def _end_blocked_commands() -> Iterator[None]:
    """A test that failed half-way leaves no client (nor its command) waiting for the next one."""
    yield
    while BLOCKED:
        proc, lock = BLOCKED.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.communicate(timeout=30)
        with contextlib.suppress(OSError):
            os.close(lock)


def test_ctrl_c_reaches_the_command(sock: Path, tmp_path: Path) -> None:
    proc, _ = _blocked_backup(sock, tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.startswith("tapearc: error: interrupted")
    assert wait_until(lambda: status(sock)["commands_running"] == 0)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _command_pid(sock: Path) -> int:
    """The process running the one served command (a child of the server)."""
    server_pid = int(str(status(sock)["pid"]))
    with open(f"/proc/{server_pid}/task/{server_pid}/children") as f:
        kids = [int(p) for p in f.read().split()]
    assert len(kids) == 1, kids
    return kids[0]


def test_ctrl_z_stops_both_and_fg_continues_both(sock: Path, tmp_path: Path) -> None:
    """(The client gets a process group of its own, as a shell's job has: in a group with no
    parent outside it -- an orphaned group, e.g. under a non-interactive script -- the kernel
    discards a SIGTSTP, for the client and for a command in its own process alike.)"""
    proc, _ = _blocked_backup(sock, tmp_path, process_group=0)
    command = _command_pid(sock)
    proc.send_signal(signal.SIGTSTP)
    assert wait_until(lambda: _state(proc.pid) == "T" and _state(command) == "T")
    proc.send_signal(signal.SIGCONT)
    assert wait_until(lambda: _state(proc.pid) != "T" and _state(command) != "T")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err


def test_sigterm_ends_both_as_it_would_one(sock: Path, tmp_path: Path) -> None:
    proc, _ = _blocked_backup(sock, tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert wait_until(lambda: status(sock)["commands_running"] == 0)


def test_a_killed_client_interrupts_its_command(sock: Path, tmp_path: Path) -> None:
    """kill -9 of the waiting client: the command is interrupted (exit 130), not left running."""
    proc, _ = _blocked_backup(sock, tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    assert wait_until(lambda: status(sock)["commands_running"] == 0)


def test_a_killed_client_ends_its_command_that_ignores_ctrl_c(sock: Path, tmp_path: Path) -> None:
    """A client started with SIGINT ignored (a script's background job): its command ignores
    Ctrl-C too, so kill -9 of the client must still end it, as it would end the command in its
    own process."""
    proc, _ = _blocked_backup(sock, tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    command = _command_pid(sock)
    proc.kill()
    proc.wait(timeout=30)  # (not communicate: the command holds the same pipes)
    ended = wait_until(lambda: not os.path.exists(f"/proc/{command}"), timeout=10)
    if not ended:
        os.kill(command, signal.SIGKILL)
    assert ended
    assert wait_until(lambda: status(sock)["commands_running"] == 0)


def test_the_command_runs_at_the_clients_priority(sock: Path, tmp_path: Path) -> None:
    """``nice -n 15 ionice -c3 tapearc backup ...`` (a cron job's): the served command runs at
    nice 15 and idle I/O priority too."""
    proc, _ = _blocked_backup(sock, tmp_path, prefix=("nice", "-n", "15", "ionice", "-c3"))
    command = _command_pid(sock)
    try:
        assert os.getpriority(os.PRIO_PROCESS, command) == os.getpriority(os.PRIO_PROCESS, proc.pid) == 15
        assert server.priority(command) == server.priority(proc.pid) != server.priority(0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_idle_timeout_counts_from_the_last_commands_end(tmp_path: Path) -> None:
    """A command that ran longer than the idle timeout does not leave the server idle at its end."""
    folder = tmp_path / "srv"
    folder.mkdir(mode=0o700)
    path = folder / "s.sock"
    p = tapearc("server", "start", "--socket", str(path), "--idle-timeout", "2", sock=None)
    assert p.returncode == 0, p.stderr
    proc, lock = _blocked_backup(path, tmp_path)
    time.sleep(2.5)
    os.close(lock)  # the command gets the lock and ends
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    time.sleep(0.5)
    assert status(path)["running"] is True  # 0.5 s after the command: not idle for 2 s
    tapearc("server", "stop", "--socket", str(path), sock=None)


def test_server_gone_mid_command_is_exit_46(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    folder.mkdir(mode=0o700)
    path = folder / "s.sock"
    p = tapearc("server", "start", "--socket", str(path), "--json", sock=None)
    assert p.returncode == 0, p.stderr
    pid = int(json.loads(p.stdout)["pid"])
    proc, _ = _blocked_backup(path, tmp_path)
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the server and the command's process (its group)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 46, err
    assert err.splitlines()[0] == (
        f"tapearc: error: the command server ({path}) ended before the command did: its outcome is unknown"
    )


def test_a_silent_connection_does_not_hold_up_other_commands(sock: Path, tmp_path: Path) -> None:
    """A client that connected and sent nothing yet (stopped with Ctrl-Z at that moment, hung)
    does not make the other commands wait for it (the server read requests one at a time,
    waiting up to 5 s for each); its own request is still read when it comes."""
    before = served(sock)
    silent = client.connect(str(sock))
    assert silent is not None
    try:
        time.sleep(0.2)  # (accepted by now)
        t0 = time.monotonic()
        p = tapearc("--version", sock=sock, cwd=tmp_path)
        assert p.returncode == 0
        assert time.monotonic() - t0 < 3.0
        assert served(sock) == before + 1
        silent.settimeout(10)
        client.send_message(silent, {"control": "status"})
        answer = client.Messages(silent).next()
        assert answer is not None and isinstance(answer.get("status"), dict)
    finally:
        silent.close()


# ---------------------------------------------------------------- what is never handed over


def test_no_server_there_runs_here(tmp_path: Path) -> None:
    """A socket file left behind (no one listens), or none at all: the command runs here."""
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    for path in (stale, tmp_path / "none.sock"):
        p = tapearc("--version", sock=path)
        assert p.returncode == 0 and p.stdout.startswith("tapearc ")


def test_closed_standard_input_runs_here(sock: Path, tmp_path: Path) -> None:
    before = served(sock)
    p = subprocess.run(
        [PY, "-m", "tapearc", "list", "--media", "sim:none.tap"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env_with(TAPEARC_SERVER=str(sock)),
        cwd=tmp_path,
        preexec_fn=lambda: os.close(0),
    )
    assert p.returncode == 10
    assert served(sock) == before


def test_refusals(sock: Path) -> None:
    ok = {
        "run": ["tapearc", "--version"],
        "cwd": "/",
        "env": {},
        "executable": client.installation(),
        "package": client.package_folder(),
    }
    a, b = socket.socketpair()
    with a, b:
        assert server.refusal(ok, a, [0, 1, 2]) is None
        assert "another tapearc" in str(server.refusal(ok | {"package": "/elsewhere"}, a, [0, 1, 2]))
        assert "another tapearc" in str(server.refusal(ok | {"executable": "/usr/bin/python3"}, a, [0, 1, 2]))
        other_venv = f"{PY} (prefix /srv/other-venv)"  # the same interpreter, another environment
        assert "another tapearc" in str(server.refusal(ok | {"executable": other_venv}, a, [0, 1, 2]))
        assert "descriptors" in str(server.refusal(ok, a, [0]))
        assert "command line" in str(server.refusal({k: v for k, v in ok.items() if k != "run"}, a, [0, 1, 2]))


def test_a_message_of_another_python_is_not_read() -> None:
    a, b = socket.socketpair()
    with a, b:
        body = b"tapearc-server/1 python 2.7\n" + b"x"
        a.sendall(len(body).to_bytes(4, "little") + body)
        assert client.Messages(b).next() is None


def test_code_changed_since_start(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    stamp = server.CodeStamp({str(f): server.CodeStamp.of(str(f))})
    assert stamp.changed() is None
    f.write_text("x = 22\n")
    assert stamp.changed() == str(f)


# ---------------------------------------------------------------- the server's own commands


def test_start_refuses_an_open_folder_and_a_file(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    p = tapearc("server", "start", "--socket", str(open_folder / "s.sock"), sock=None)
    assert p.returncode == 46
    assert p.stderr.splitlines()[0] == (
        f"tapearc: error: the server did not start: socket folder {open_folder} can be written by other users (mode 777)"
    )
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    (mine / "s.sock").write_text("not a socket")
    p = tapearc("server", "start", "--socket", str(mine / "s.sock"), sock=None)
    assert p.returncode == 46
    assert "exists and is not a socket: not replaced" in p.stderr
    assert (mine / "s.sock").read_text() == "not a socket"


def test_second_start_stop_and_status(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    folder.mkdir(mode=0o700)
    path = folder / "s.sock"
    assert tapearc("server", "start", "--socket", str(path), sock=None).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    p = tapearc("server", "start", "--socket", str(path), sock=None)
    assert p.returncode == 46 and "listens on" in p.stderr and "already" in p.stderr
    assert status(path)["running"] is True
    p = tapearc("server", "stop", "--socket", str(path), sock=None)
    assert p.returncode == 0, p.stderr
    assert wait_until(lambda: not path.exists())
    assert status(path)["running"] is False
    p = tapearc("server", "stop", "--socket", str(path), sock=None)
    assert p.returncode == 46 and f"no tapearc server listens on {path}" in p.stderr


def test_passphrase_prompt_on_the_clients_terminal(sock: Path, tmp_path: Path) -> None:
    """A served command has no terminal of its own: it asks on the client's (passed over the
    socket), without echo, as getpass would."""
    key = tmp_path / "k.key"
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own with the pty as its terminal
        os.chdir(tmp_path)
        os.execve(PY, [PY, "-m", "tapearc", "key", "create", str(key)], env_with(TAPEARC_SERVER=str(sock)))
    seen = b""
    answered = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            while seen.count(b"Passphrase for") > answered:
                os.write(fd, b"correct horse\n")
                answered += 1
    ended = wait_until(lambda: os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None, 10)
    if not ended:  # (stuck: fail, never hang)
        os.kill(pid, signal.SIGKILL)
    _, st = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(st) == 0, seen
    assert answered == 2
    assert b"correct horse" not in seen  # not echoed
    p = tapearc("key", "show", str(key), sock=None)
    assert p.returncode == 0


def test_an_answer_typed_as_soon_as_the_prompt_shows_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone (or a script on a pty) typing the passphrase the moment the prompt appears: the
    answer is read, not thrown away by the prompt turning echo off (TCSAFLUSH) after it showed
    the prompt (the command then waited for good)."""
    import termios
    import threading

    from tapearc.crypto import keyfile

    master, slave = pty.openpty()
    real = termios.tcsetattr

    def fast_typist(fd: int, when: int, attrs: list[object]) -> None:
        if select.select([master], [], [], 0)[0] and b"Passphrase" in os.read(master, 4096):
            os.write(master, b"correct horse\n")  # typed before echo is off: the flush must not eat it
        real(fd, when, attrs)

    monkeypatch.setattr(termios, "tcsetattr", fast_typist)
    got: list[str] = []
    asking = threading.Thread(target=lambda: got.append(keyfile._prompt_on(slave)("Passphrase: ")), daemon=True)
    asking.start()
    deadline = time.monotonic() + 5
    while asking.is_alive() and time.monotonic() < deadline:
        if select.select([master], [], [], 0.05)[0] and b"Passphrase" in os.read(master, 4096):
            os.write(master, b"correct horse\n")
    asking.join(1)
    if asking.is_alive():
        os.write(master, b"\n")  # (let the thread end)
    os.close(master)
    assert got == ["correct horse"]
