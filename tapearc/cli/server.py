"""The tapearc command server: commands handed over by the ``tapearc`` command of the same user
(:mod:`tapearc.cli.client`) run in a process forked from one that has imported tapearc already.

Run as ``python -m tapearc.cli.server --socket PATH`` by ``tapearc server start|run``
(docs/server.md). It imports every module of tapearc, then, for each connection of this user
whose code has not changed since: forks a process which reads the request (arguments, working
folder, environment, umask, the standard descriptors passed over the socket), checks that the
client runs the same tapearc with the same groups, sends its process id and runs the command
as ``tapearc`` would (:func:`tapearc.cli.entry.run_here`). The server waits for each such
process and sends the client its exit status, or the signal that killed it.

The server itself runs nothing but this loop: no command is ever run in it, so every command
starts from the state of a fresh import. It has no threads (each child starts its own). It
stops on SIGTERM or SIGINT, on ``tapearc server stop``, after ``--idle-timeout`` seconds
without a command, or when a file of its code changed (the client that noticed runs its
command itself); it then waits for the commands still running and reports their ends.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import pkgutil
import selectors
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field

from tapearc.cli import client
from tapearc.env import default_server_socket

REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request once connected
MAX_FDS = 4  # standard input, output, error and the terminal


class ServerStartError(Exception):
    """The server cannot listen (the message is its one line)."""


def log(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"{time.strftime('%Y-%m-%d %H:%M:%S')} tapearc server[{os.getpid()}]: {text}\n".encode())


# ---------------------------------------------------------------- what the server runs


def preload() -> list[str]:
    """Import every module of tapearc and every module its code imports (at the top or inside
    a function: libnbd, the simulator, ...), so that a command imports nothing, and make the
    click commands: the names of those that could not be imported (an optional dependency
    missing, e.g. psycopg: a command that needs it fails as it would without a server)."""
    import tapearc

    skipped = []
    names = [info.name for info in pkgutil.walk_packages(tapearc.__path__, "tapearc.")]
    for name in [*names, *sorted(imported_by(tapearc.__path__))]:
        if name == __name__ or name.endswith(".__main__") or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # an optional part: the command that needs it imports it (and fails) itself
            skipped.append(f"{name} ({type(e).__name__})")
    from tapearc.cli import app

    app.prepare_commands()
    return skipped


def imported_by(paths: list[str]) -> set[str]:
    """The absolute module names that the Python files under ``paths`` import anywhere."""
    import ast

    found: set[str] = set()
    for top in paths:
        for folder, _, files in os.walk(top):
            for name in files:
                if not name.endswith(".py"):
                    continue
                with open(os.path.join(folder, name), "rb") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        found.update(alias.name for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                        found.add(node.module)
    return found


@dataclass
class CodeStamp:
    """The modification time and size of every file of the code the server has imported: a
    file changed (tapearc upgraded, a dependency reinstalled, an edited checkout) means the
    server no longer runs what a fresh ``tapearc`` would."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def now(cls) -> CodeStamp:
        stamp = cls()
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                stamp.files[path] = cls.of(path)
        return stamp

    @staticmethod
    def of(path: str) -> tuple[int, int]:
        try:
            st = os.stat(path)
        except OSError:
            return (-1, -1)
        return (st.st_mtime_ns, st.st_size)

    def changed(self) -> str | None:
        """The first file that changed, or None."""
        for path, was in self.files.items():
            if self.of(path) != was:
                return path
        return None


# ---------------------------------------------------------------- the listening socket


def secure_folder(path: str, *, create: bool) -> None:
    """The socket's folder must be this user's and closed to others (the environment of every
    command goes through it, passwords included); the default folder is made so."""
    folder = os.path.dirname(os.path.abspath(path))
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
    try:
        st = os.lstat(folder)
    except OSError as e:
        raise ServerStartError(f"socket folder {folder}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ServerStartError(f"socket folder {folder} is not a folder")
    if st.st_uid != os.getuid():
        raise ServerStartError(f"socket folder {folder} belongs to user {st.st_uid}, not to this user")
    if st.st_mode & 0o022:
        raise ServerStartError(f"socket folder {folder} can be written by other users (mode {st.st_mode & 0o777:o})")


def running_server(path: str) -> dict[str, object] | None:
    """The status of the server listening at ``path``; None when none answers, or when the one
    there runs other code (it then stops)."""
    sock = client.connect(path, timeout=2.0)
    if sock is None:
        return None
    try:
        client.send_message(sock, {"control": "status"})
        answer = client.Messages(sock).next() or {}
    except OSError:
        return None
    finally:
        sock.close()
    state = answer.get("status")
    return state if isinstance(state, dict) else None


def listen(path: str) -> socket.socket:
    """A socket listening at ``path`` (mode 0600). A socket file left by a server that is gone is
    replaced; one a server answers on, or any other file, is refused."""
    secure_folder(path, create=os.path.abspath(path) == os.path.abspath(default_server_socket()))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerStartError(f"{path} exists and is not a socket: not replaced")
        if running_server(path) is not None:
            raise ServerStartError(f"a tapearc server listens on {path} already ('tapearc server status')")
        os.unlink(path)  # (a server whose code changed stops when asked; it leaves a new socket alone)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise ServerStartError(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


# ---------------------------------------------------------------- the server's loop


@dataclass
class Pending:
    """A connection whose request has not all come yet (read as it comes: a client slow to send
    it never holds up the others)."""

    conn: socket.socket
    deadline: float  # (time.monotonic()) closed if the request has not come by then
    data: bytes = b""
    fds: list[int] = field(default_factory=list)

    def complete(self) -> bool:
        return len(self.data) >= 4 and len(self.data) >= 4 + int.from_bytes(self.data[:4], "little")

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.conn.close()


@dataclass
class Server:
    path: str
    sock: socket.socket
    stamp: CodeStamp
    idle_timeout: float
    started: float = field(default_factory=time.time)
    served: int = 0
    running: dict[int, tuple[socket.socket, int, float]] = field(default_factory=dict)  # pidfd -> (conn, pid, t0)
    stopping: str | None = None
    pid: int = field(default_factory=os.getpid)
    inode: tuple[int, int] = (0, 0)  # the socket file's (st_dev, st_ino)
    closing: list[int] = field(default_factory=list)  # the loop's own descriptors (closed in a child)
    pending: dict[int, Pending] = field(default_factory=dict)  # connection's descriptor -> its request so far

    def status(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "socket": self.path,
            "started": self.started,
            "commands_served": self.served,
            "commands_running": len(self.running),
            "executable": client.installation(),
            "package": client.package_folder(),
        }

    def stop(self, why: str) -> None:
        """Take no more commands; the socket file goes (if it is still this server's)."""
        if self.stopping is None:
            self.stopping = why
            log(f"stopping: {why}")
            with contextlib.suppress(OSError):
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self.inode:
                    os.unlink(self.path)

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        wake_r, wake_w = os.pipe()
        self.closing = [sel.fileno(), wake_r, wake_w]
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: self.stop(f"signal {signal.Signals(signum).name}"))
        last = time.monotonic()
        while self.stopping is None or self.running or self.pending:
            if self.stopping is not None and self.sock.fileno() >= 0:
                sel.unregister(self.sock)
                self.sock.close()
            timeout = (
                None if self.running or not self.idle_timeout else max(0.0, last + self.idle_timeout - time.monotonic())
            )
            if self.pending:
                first = max(0.0, min(p.deadline for p in self.pending.values()) - time.monotonic())
                timeout = first if timeout is None else min(timeout, first)
            events = sel.select(timeout)
            self.expire(sel)
            idle = not (events or self.running or self.pending)
            if idle and self.idle_timeout and time.monotonic() >= last + self.idle_timeout:
                self.stop(f"no command for {self.idle_timeout:g} s")
            for key, _ in events:
                if key.data == "wake":
                    with contextlib.suppress(OSError):
                        os.read(wake_r, 512)
                elif key.data is None:
                    if self.stopping is None:
                        self.accept(sel)
                elif key.data == "request":
                    if key.fd in self.pending:
                        self.read(sel, key.fd)
                else:
                    self.reap(sel, key.fd)
                    last = time.monotonic()  # (idle counts from the last command's end)
            last = time.monotonic() if self.running else last
        log("stopped")

    def accept(self, sel: selectors.BaseSelector) -> None:
        """One connection: its request is read as it comes (:meth:`read`)."""
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        if client.peer_uid(conn) != os.getuid():  # the socket's mode lets no one else in; still
            conn.close()
            return
        conn.setblocking(False)
        # (a client sends its request as soon as it connects)
        self.pending[conn.fileno()] = Pending(conn, time.monotonic() + REQUEST_TIMEOUT)
        sel.register(conn, selectors.EVENT_READ, "request")

    def expire(self, sel: selectors.BaseSelector) -> None:
        """Close the connections whose request did not come in time."""
        now = time.monotonic()
        for fd, p in list(self.pending.items()):
            if p.deadline <= now:
                del self.pending[fd]
                sel.unregister(p.conn)
                p.close()

    def read(self, sel: selectors.BaseSelector, fd: int) -> None:
        """More of a connection's request; once it is all there: a control request is answered
        here, a command runs in a fork."""
        p = self.pending[fd]
        try:
            data, ancdata, _, _ = p.conn.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancdata = b"", []
        p.fds += passed_fds(ancdata)
        p.data += data
        if data and not p.complete() and len(p.data) <= 4 + client.MAX_MESSAGE:
            return
        del self.pending[fd]
        sel.unregister(p.conn)
        conn, fds = p.conn, p.fds
        conn.settimeout(REQUEST_TIMEOUT)  # (for the answer)
        request = client.Messages(conn, p.data).next() if p.complete() else None
        try:
            pid = self.answer(conn, request, fds)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if pid is None:
            conn.close()
            return
        pidfd = os.pidfd_open(pid)
        self.running[pidfd] = (conn, pid, time.monotonic())
        sel.register(pidfd, selectors.EVENT_READ, "child")

    def answer(self, conn: socket.socket, request: dict[str, object] | None, fds: list[int]) -> int | None:
        """Answer ``request``: the process id of the fork that runs its command, or None."""
        changed = self.stamp.changed()
        control = None if request is None else request.get("control")
        if changed is not None:
            self.stop(f"{changed} changed since the server started")
            self.reply(conn, {"refused": f"tapearc's code changed since the server started ({changed})"})
        elif control == "status":
            self.reply(conn, {"status": self.status()})
        elif control == "stop":
            self.reply(conn, {"stopping": self.status()})
            self.stop("asked to by tapearc server stop")
        elif request is not None:
            why = refusal(request, conn, fds) or (
                f"the server is stopping ({self.stopping})" if self.stopping else None
            )
            if why is None:
                self.served += 1
                pid = os.fork()
                if pid == 0:
                    child(conn, self, request, fds)  # never returns
                return pid
            self.reply(conn, {"refused": why})
        return None

    @staticmethod
    def reply(conn: socket.socket, message: dict[str, object]) -> None:
        with contextlib.suppress(OSError):
            client.send_message(conn, message)

    def reap(self, sel: selectors.BaseSelector, pidfd: int) -> None:
        sel.unregister(pidfd)
        conn, pid, t0 = self.running.pop(pidfd)
        os.close(pidfd)
        _, status, usage = os.wait4(pid, 0)
        if os.WIFSIGNALED(status):
            end: dict[str, object] = {"signal": os.WTERMSIG(status)}
        else:
            end = {"exit": os.waitstatus_to_exitcode(status)}
        self.reply(conn, end)
        conn.close()
        cpu = usage.ru_utime + usage.ru_stime
        log(f"pid {pid}: {end} after {time.monotonic() - t0:.3f} s, cpu {cpu:.3f} s")


# ---------------------------------------------------------------- one command, in a forked process


def child(conn: socket.socket, server: Server, request: dict[str, object], fds: list[int]) -> None:
    """The forked process: become the client's process, run its command; exit with its status."""
    code = 1
    try:
        server.sock.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in [*server.running, *server.closing]:
            with contextlib.suppress(OSError):
                os.close(fd)
        for other, _, _ in server.running.values():  # the other commands' clients
            other.close()
        for pending in server.pending.values():  # requests still coming, their descriptors
            pending.close()
        code = run_for(conn, request, fds)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # a bug here: one line, never a traceback
        with contextlib.suppress(OSError):
            os.write(2, f"tapearc: error: internal error in the command server: {type(e).__name__}: {e}\n".encode())
    finally:
        os._exit(code)


def run_for(conn: socket.socket, request: dict[str, object], fds: list[int]) -> int:
    """Tell the client this process's id (signals go to it), take its descriptors, folder and
    environment, run the command, tell the client its status (before this process's teardown).
    A client whose priority this process cannot take is told to run the command itself."""
    why = adopt_priority(request)
    if why is not None:
        client.send_message(conn, {"refused": why})
        return 0
    client.send_message(conn, {"pid": os.getpid()})
    conn.settimeout(None)
    adopt(request, fds)
    done = threading.Event()
    ignored = request.get("ignored")
    watch_client(conn, done, interrupt=not (isinstance(ignored, list) and int(signal.SIGINT) in ignored))
    argv = request["run"]
    assert isinstance(argv, list)
    code = run_command([str(a) for a in argv])
    done.set()
    with contextlib.suppress(OSError):
        client.send_message(conn, {"exit": code})
    return code


def passed_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors a message brought (SCM_RIGHTS)."""
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [
                int.from_bytes(payload[i : i + 4], sys.byteorder, signed=True) for i in range(0, len(payload) - 3, 4)
            ]
    return fds


def peer_groups(conn: socket.socket) -> tuple[int, frozenset[int]] | None:
    """The effective group and supplementary groups of the client (from /proc), or None."""
    pid = client.peer_creds(conn)[0]
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["Gid"].split()[1]), frozenset(int(g) for g in fields["Groups"].split())
    except (OSError, KeyError, ValueError, IndexError):
        return None


def refusal(request: dict[str, object], conn: socket.socket, fds: list[int]) -> str | None:
    """Why this server must not run the request (the client then runs it), or None."""
    if not isinstance(request.get("run"), list):
        return "a request without a command line"
    if len(fds) not in (3, 4):
        return "the standard descriptors did not come"
    if request.get("executable") != client.installation() or request.get("package") != client.package_folder():
        return f"another tapearc (this server runs {client.package_folder()} with {sys.executable})"
    if not isinstance(request.get("env"), dict) or not isinstance(request.get("cwd"), str):
        return "a request without environment or working folder"
    groups = peer_groups(conn)
    if groups is None or groups != (os.getegid(), frozenset(os.getgroups())):
        return "the client's groups are not the server's"
    theirs, mine = peer_priority(conn), priority(0)
    if theirs is None:
        return "the client's priority cannot be read"
    if theirs[0] < mine[0]:
        return f"the client runs at nice {theirs[0]}, the server at {mine[0]}"
    if theirs[1] != mine[1] and theirs[1] not in (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE):
        return "the client runs with a real-time scheduling policy, the server not"
    if theirs[2] != mine[2] and theirs[2] >> IOPRIO_CLASS_SHIFT == IOPRIO_CLASS_RT:
        return "the client has a real-time I/O priority, the server not"
    request["priority"] = list(theirs)
    return None


IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASS_RT = 1
#: ioprio_get and ioprio_set (no Python function calls them); elsewhere the I/O priority is not
#: compared nor passed on
_IOPRIO_SYSCALLS = {"x86_64": (252, 251), "aarch64": (31, 30)}


def _ioprio(op: int, *args: int) -> int:
    import ctypes

    numbers = _IOPRIO_SYSCALLS.get(os.uname().machine)
    if numbers is None:
        return -1
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.syscall(numbers[op], IOPRIO_WHO_PROCESS, *args))
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def priority(pid: int) -> tuple[int, int, int]:
    """(nice value, scheduling policy, I/O priority or -1) of process ``pid`` (0: this one)."""
    return os.getpriority(os.PRIO_PROCESS, pid), os.sched_getscheduler(pid), _ioprio(0, pid)


def peer_priority(conn: socket.socket) -> tuple[int, int, int] | None:
    """The client's priority (see :func:`priority`): ``nice``, ``ionice`` and ``chrt`` apply to
    its command as to one run in its own process."""
    try:
        return priority(client.peer_creds(conn)[0])
    except OSError:
        return None


def adopt_priority(request: dict[str, object]) -> str | None:
    """Take the client's priority (:func:`refusal` put it in ``request``); why not, or None."""
    theirs = request.get("priority")
    if not (isinstance(theirs, list) and len(theirs) == 3):
        return "no priority of the client"
    nice, policy, ioprio = (int(x) for x in theirs)
    mine = priority(0)
    try:
        if nice != mine[0]:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        if policy != mine[1]:
            os.sched_setscheduler(0, policy, os.sched_param(0))
        if ioprio != mine[2] and ioprio >= 0:
            _ioprio(1, 0, ioprio)
    except OSError as e:
        return f"the client's priority cannot be taken: {e.strerror}"
    return None


def adopt(request: dict[str, object], fds: list[int]) -> None:
    """Become the client's process: its descriptors, folder, environment, umask."""
    for i, fd in enumerate(fds[:3]):
        os.dup2(fd, i)
    terminal = os.dup(fds[3]) if len(fds) > 3 else None
    for fd in fds:
        os.close(fd)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    umask = request.get("umask")
    os.umask(umask if isinstance(umask, int) else 0o022)
    ignored = request.get("ignored")
    for signum in ignored if isinstance(ignored, list) else []:
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(signum, signal.SIG_IGN)
    streams = request.get("streams")
    enc = streams if isinstance(streams, list) and len(streams) == 3 else [["utf-8", "strict"]] * 3
    sys.stdin = open(0, encoding=enc[0][0], errors=enc[0][1], closefd=False)  # noqa: SIM115
    line = 1 if os.isatty(1) else -1
    sys.stdout = open(1, "w", line, enc[1][0], enc[1][1], closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", 1, enc[2][0], enc[2][1], closefd=False)  # noqa: SIM115
    if terminal is not None:
        from tapearc.crypto import keyfile

        keyfile.PASSED_TERMINAL = terminal


def watch_client(conn: socket.socket, done: threading.Event, *, interrupt: bool = True) -> None:
    """A client that goes away (killed, its terminal closed) before the command is ``done``
    interrupts it, as Ctrl-C would (the command ends cleanly, exit 130), rather than leaving it
    running unseen. A command that ignores Ctrl-C (``interrupt`` False: its client was started
    so) is killed instead, as it would have died with its client in its own process."""

    def watch() -> None:
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGINT if interrupt else signal.SIGKILL)

    threading.Thread(target=watch, name="client-watch", daemon=True).start()


def run_command(argv: list[str]) -> int:
    from tapearc.cli import entry

    sys.argv = argv
    try:
        entry.run_here()
        code: object = 0
    except SystemExit as e:
        code = e.code
    status = code if isinstance(code, int) else (0 if code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        import atexit

        atexit._run_exitfuncs()
    return status


# ---------------------------------------------------------------- python -m tapearc.cli.server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tapearc.cli.server")
    parser.add_argument("--socket", default=default_server_socket())
    parser.add_argument("--idle-timeout", type=float, default=0.0)
    parser.add_argument("--ready-fd", type=int, default=-1)
    args = parser.parse_args(argv)

    def ready(text: str) -> None:
        if args.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(args.ready_fd, text.encode() + b"\n")
                os.close(args.ready_fd)

    try:
        sock = listen(args.socket)
    except ServerStartError as e:
        ready(f"error: {e}")
        log(f"error: {e}")
        return 1
    try:
        skipped = preload()
        if threading.active_count() != 1:
            raise ServerStartError("a thread was started while tapearc was imported: not forking from it")
        server = Server(os.path.abspath(args.socket), sock, CodeStamp.now(), args.idle_timeout)
        st = os.lstat(server.path)
        server.inode = (st.st_dev, st.st_ino)
        gc.collect()
        gc.freeze()  # the imported objects stay shared with the children (no copy on write by the collector)
    except ServerStartError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(args.socket)
        ready(f"error: {e}")
        log(f"error: {e}")
        return 1
    log(
        f"listening on {server.path}; {len(sys.modules)} modules imported"
        + "".join(f"; not imported: {s}" for s in skipped)
    )
    ready(f"ok {os.getpid()}")
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
