"""Handing a command to this user's tapearc command server (``tapearc server``, docs/server.md).

A command's own work can take less time than starting Python and importing tapearc (~0.13 s:
typer, construct, libnbd, the engine), e.g. an incremental with a dirty bitmap that reads 20
MiB. A command server has them imported already; for each command it forks a process that
runs the command exactly as this process would: with this process's arguments, working
folder, environment, umask and standard input, output and error (the descriptors themselves
are passed over the socket), so a relative path, ``TAPEARC_CATALOG``, ``> file``, a pipe and a
terminal mean what they mean here. This process waits, passes on the signals it gets (Ctrl-C,
SIGTERM, SIGHUP, Ctrl-Z) and ends with the command's exit status.

Nothing is handed over unless it is sure to run the same: the socket and the process listening
on it belong to this user (its owner and SO_PEERCRED), the server runs the same tapearc (the
same interpreter and package folder) with the same groups, none of its code changed since it
started, and standard input, output and error are open; otherwise the command runs in this
process, as without a server. Once handed over, a server that ends before the command is exit
46 (``server``): the command's outcome is unknown.

This module is imported on every start of the ``tapearc`` command: the standard library's
cheapest modules only (no typer, no tapearc module but :mod:`tapearc.env`).
"""

from __future__ import annotations

import _socket
import marshal
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

PROTOCOL = 1
SERVER_LOST_EXIT = 46  # tapearc.errors.ServerError's
MAX_MESSAGE = 1 << 22
#: the signals passed on to the command (SIGTSTP: see _Forwarder.stop)
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
#: every message starts so: a server of another protocol or Python never reads the rest
MAGIC = f"tapearc-server/{PROTOCOL} python {sys.version}".encode()

Socket = _socket.socket  # (the C module: ``socket`` imports selectors, enum, ... ~3 ms a start)


def package_folder() -> str:
    """The folder of the tapearc package this process runs (a server runs only its own)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def installation() -> str:
    """The interpreter and environment this process runs in: a virtual environment's python is
    a link to the same interpreter as another's, but imports that environment's packages."""
    return f"{sys.executable} (prefix {sys.prefix})"


def peer_uid(sock: Socket) -> int:
    """The user id of the process at the other end of a Unix socket (SO_PEERCRED)."""
    return peer_creds(sock)[1]


def peer_creds(sock: Socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    pid, uid, gid = (int.from_bytes(raw[i : i + 4], sys.byteorder, signed=True) for i in (0, 4, 8))
    return pid, uid, gid


def send_message(sock: Socket, message: dict[str, object], fds: list[int] | None = None) -> None:
    """One message: its length (4 bytes), MAGIC and the message (marshal: the same Python on both
    ends, which MAGIC checks); ``fds`` go with its first byte (SCM_RIGHTS)."""
    body = MAGIC + b"\n" + marshal.dumps(message)
    data = len(body).to_bytes(4, "little") + body
    if fds:
        rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        data = data[sent:]
    while data:
        data = data[sock.send(data) :]


def decode(body: bytes) -> dict[str, object] | None:
    """A message's dict (see send_message), or None: not a message of this protocol and Python."""
    magic, _, rest = body.partition(b"\n")
    if magic != MAGIC:
        return None
    try:
        message = marshal.loads(rest)
    except (ValueError, EOFError, TypeError):
        return None
    return message if isinstance(message, dict) else None


class Messages:
    """The messages read from a socket, one at a time."""

    def __init__(self, sock: Socket, buf: bytes = b"") -> None:
        self.sock, self.buf = sock, buf

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                return False
            self.buf += data
        return True

    def next(self) -> dict[str, object] | None:
        """The next message; None at the end of the connection or for one not understood."""
        if not self._fill(4):
            return None
        size = int.from_bytes(self.buf[:4], "little")
        if size > MAX_MESSAGE or not self._fill(4 + size):
            return None
        body, self.buf = self.buf[4 : 4 + size], self.buf[4 + size :]
        return decode(body)


def connect(path: str, timeout: float = 5.0) -> Socket | None:
    """A connection to the server at ``path`` if it is this user's, else None."""
    try:
        if os.lstat(path).st_uid != os.getuid():
            return None
        sock = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        if peer_uid(sock) == os.getuid():
            return sock
    except OSError:
        pass
    sock.close()
    return None


def _request(argv: list[str]) -> dict[str, object] | None:
    """What the server needs to run ``argv`` as this process would; None when it cannot
    (a closed standard stream, no working folder)."""
    streams = (sys.stdin, sys.stdout, sys.stderr)
    try:
        cwd = os.getcwd()
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return None
    if any(s is None for s in streams):
        return None
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "run": argv,
        "cwd": cwd,
        "env": dict(os.environ),
        "umask": umask,
        "executable": installation(),
        "package": package_folder(),
        "streams": [[s.encoding, s.errors] for s in streams],
        "ignored": [int(sig) for sig in FORWARDED if signal.getsignal(sig) is signal.SIG_IGN],
    }


def run(path: str, argv: list[str]) -> int | None:
    """Run ``argv`` (``sys.argv``) in the server at ``path``: its exit status; None when the
    server is not there, not this user's, or refuses (the command then runs in this process)."""
    request = _request(argv)
    if request is None:
        return None
    sock = connect(path)
    if sock is None:
        return None
    try:
        tty = _terminal()
        try:
            send_message(sock, request, [0, 1, 2] if tty is None else [0, 1, 2, tty])
            sock.settimeout(None)
            messages = Messages(sock)
            first = messages.next()
        except OSError:
            return None
        finally:
            if tty is not None:
                os.close(tty)
        pid = None if first is None else first.get("pid")
        if not isinstance(pid, int):
            return None  # refused (another tapearc, changed code, other groups): run it here
        return _wait(messages, pid, path)
    finally:
        sock.close()


def _terminal() -> int | None:
    """This process's controlling terminal, for a passphrase prompt (as getpass reads one)."""
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None


def _wait(messages: Messages, pid: int, path: str) -> int:
    """Pass signals on to the command's process ``pid`` until the server reports its end."""
    forwarder = _Forwarder(pid)
    try:
        while True:
            try:
                message = messages.next()
            except OSError:
                message = None
            if message is None:
                os.write(
                    2,
                    f"tapearc: error: the command server ({path}) ended before the command did: "
                    "its outcome is unknown\n".encode(),
                )
                os.write(2, b"tapearc: hint: see what it did with 'tapearc list' and its catalog; run it again\n")
                return SERVER_LOST_EXIT
            code, signum = message.get("exit"), message.get("signal")
            if isinstance(code, int):
                return code
            if isinstance(signum, int):
                return forwarder.die_of(signum)
    finally:
        forwarder.restore()


class _Forwarder:
    """Signals this process gets go to the command's process; Ctrl-Z stops both."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # an inherited "ignore" (nohup, a script's background job) stays: the command ignores it too
        self.old = {
            sig: signal.signal(sig, self.forward) for sig in FORWARDED if signal.getsignal(sig) is not signal.SIG_IGN
        }
        self.old[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self.stop)

    def forward(self, signum: int, frame: FrameType | None) -> None:
        try:
            os.kill(self.pid, signum)
        except OSError:
            pass

    def stop(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-Z: the command stops, then this process (the shell's job); on ``fg`` both go on."""
        try:
            os.kill(self.pid, signal.SIGSTOP)
        except OSError:
            pass
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, self.stop)  # continued
        try:
            os.kill(self.pid, signal.SIGCONT)
        except OSError:
            pass

    def restore(self) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)

    def die_of(self, signum: int) -> int:
        """The command was killed by ``signum``: so is this process (the shell sees the same
        status); 128 + signum if that signal cannot end it."""
        self.restore()
        sys.stdout.flush()
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP
            pass
        os.kill(os.getpid(), signum)
        return 128 + signum
