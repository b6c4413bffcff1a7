"""The device side of TALP/1, the tapearc autoloader line protocol (``docs/serial-autoloader.md``).

:class:`TalpDevice` answers command lines for a :class:`~tapesim.library.Library`;
:func:`serve_connection` runs it over one byte stream (a file descriptor: a pty master or a
socket). Two transports:

* a **pty** (:class:`PtyServer`, :func:`serve_pty`): the host opens the slave's path (e.g.
  ``/dev/pts/5``) like a serial port, with pyserial. The server keeps the slave open too, so
  the pty does not hang up between host connections.
* **TCP** (:class:`TcpServer`, :func:`serve_tcp`): for pyserial's ``socket://HOST:PORT``;
  one client at a time, clients served one after the other.

The server never dies of what the host sends: malformed lines get ``ERR E100``, lines over
200 bytes are discarded up to their LF (then ``ERR E100``), a closed peer ends the
connection (TCP) or is waited out (pty). The simulator never imports tapearc.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import socket
import threading
import tty
from collections.abc import Callable, Iterator

from .library import Library, LibraryError

__all__ = [
    "MAX_LINE",
    "PtyServer",
    "TalpDevice",
    "TcpServer",
    "serve_connection",
    "serve_pty",
    "serve_tcp",
]

MAX_LINE = 200  # bytes of a line, without its CR LF
NO_TAG = "-"  # the tag of answers to lines without a valid tag ("-" is never a valid tag)
VENDOR = "tapesim"

_TAG_RE = re.compile(rb"^[A-Za-z0-9]{1,8}$")
_NUM_RE = re.compile(rb"^[0-9]{1,9}$")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")

Log = Callable[[str], None]


class _Malformed(Exception):
    pass


class TalpDevice:
    """Answers TALP/1 command lines for the library in ``library``.

    ``handle_line(line)`` takes one line without its LF (a trailing CR is ignored) and
    returns the response lines (without LF): none for an empty line, else zero or more data
    lines and one final ``<tag> OK`` or ``<tag> ERR <code> <text>``.
    """

    def __init__(self, library: Library, *, vendor: str = VENDOR) -> None:
        self.library = library
        self.vendor = vendor

    def handle_line(self, line: bytes) -> list[str]:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return []  # an empty line: nothing to answer (lets a host resynchronise)
        head = line.split(b" ", 1)[0]
        tag = head.decode("ascii") if _TAG_RE.match(head) else None
        if len(line) > MAX_LINE:
            return [self._err(tag, "E100", f"line longer than {MAX_LINE} bytes")]
        if tag is None:
            return [self._err(None, "E100", "missing or invalid tag")]
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return [self._err(tag, "E100", "line is not ASCII")]
        fields = text.split(" ")
        try:
            if any(not f for f in fields) or any(_PRINTABLE.search(f) for f in fields):
                raise _Malformed("malformed line (fields are separated by single spaces)")
            if len(fields) < 2:
                raise _Malformed("missing command")
            return self._command(tag, fields[1], fields[2:])
        except _Malformed as e:
            return [self._err(tag, "E100", str(e))]
        except LibraryError as e:
            return [self._err(tag, e.code, e.message)]
        except Exception as e:
            return [self._err(tag, "E200", f"internal error: {type(e).__name__}: {e}")]

    def overlong_line(self, head: bytes) -> list[str]:
        """The answer to a line that was too long (``head``: its first bytes)."""
        first = head.split(b" ", 1)
        tag = first[0].decode("ascii") if len(first) == 2 and _TAG_RE.match(first[0]) else None
        return [self._err(tag, "E100", f"line longer than {MAX_LINE} bytes")]

    # ------------------------------------------------------------------ commands

    def _command(self, tag: str, cmd: str, args: list[str]) -> list[str]:
        if cmd == "HELLO":
            self._nargs(cmd, args, 0)
            lib = self.library
            return [
                f"{tag} TALP 1 SLOTS {lib.num_slots} DRIVES {lib.num_drives} VENDOR {self.vendor}",
                f"{tag} OK",
            ]
        if cmd == "STATUS":
            self._nargs(cmd, args, 0)
            st = self.library.status()
            out = [
                f"{tag} SLOT {s.number} FULL {s.barcode}" if s.barcode else f"{tag} SLOT {s.number} EMPTY"
                for s in st.slots
            ]
            for d in st.drives:
                if d.barcode is None:
                    out.append(f"{tag} DRIVE {d.number} EMPTY")
                else:
                    out.append(f"{tag} DRIVE {d.number} FULL {d.barcode} FROM {d.source_slot}")
            out.append(f"{tag} OK")
            return out
        if cmd == "LOAD":
            self._nargs(cmd, args, 2)
            slot, drive = self._num(args[0]), self._num(args[1])
            self.library.load(slot, drive)
            return [f"{tag} OK"]
        if cmd == "UNLOAD":
            self._nargs(cmd, args, 2)
            drive = self._num(args[0])
            to_slot = None if args[1] == "-" else self._num(args[1])
            self.library.unload(drive, to_slot)
            return [f"{tag} OK"]
        raise _Malformed(f"unknown command {cmd[:20]}")

    @staticmethod
    def _nargs(cmd: str, args: list[str], n: int) -> None:
        if len(args) != n:
            raise _Malformed(f"{cmd} takes {n} argument{'s' if n != 1 else ''}, not {len(args)}")

    @staticmethod
    def _num(text: str) -> int:
        if not _NUM_RE.match(text.encode("ascii")):
            raise _Malformed(f"{text[:20]} is not a number")
        return int(text)

    @staticmethod
    def _err(tag: str | None, code: str, text: str) -> str:
        line = f"{tag or NO_TAG} ERR {code} {_PRINTABLE.sub('?', text) or 'error'}"
        return line[:MAX_LINE]


# ---------------------------------------------------------------------- byte streams


class _Stopped(Exception):
    pass


class _Closed(Exception):
    pass


class _Stopper:
    """A pipe that becomes (and stays) readable when :meth:`stop` is called."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.event = threading.Event()

    def stop(self) -> None:
        self.event.set()
        with contextlib.suppress(OSError):
            os.write(self.wfd, b"x")

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.rfd = self.wfd = -1


def _wait(fd: int, events: int, stop_fd: int) -> int:
    """Wait until ``fd`` has ``events``; raises :class:`_Stopped` when ``stop_fd`` is readable."""
    p = select.poll()
    p.register(fd, events)
    p.register(stop_fd, select.POLLIN)
    while True:
        ready = dict(p.poll())
        if stop_fd in ready:
            raise _Stopped
        if fd in ready:
            return ready[fd]


def _write_all(fd: int, data: bytes, stop_fd: int) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            _wait(fd, select.POLLOUT, stop_fd)
            continue
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.EIO, errno.ENOTCONN):
                raise _Closed from None
            raise
        view = view[n:]


def _lines(fd: int, stop_fd: int) -> Iterator[tuple[bool, bytes]]:
    """Lines read from ``fd``: ``(False, line)`` without its LF, or ``(True, head)`` for a
    line over :data:`MAX_LINE` bytes (discarded up to its LF; ``head`` = its first bytes).
    Ends at end of file; raises :class:`_Stopped` / :class:`_Closed`."""
    buf = bytearray()
    overlong: bytes | None = None
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            _wait(fd, select.POLLIN, stop_fd)
            continue
        except OSError as e:
            if e.errno in (errno.EIO, errno.ECONNRESET, errno.ENOTCONN):
                raise _Closed from None  # a pty whose slave side is gone, a reset socket
            raise
        if not chunk:
            return
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE + 1:  # + 1: room for a CR
                    if overlong is None:
                        overlong = bytes(buf[:16])
                    del buf[:]
                break
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if overlong is not None:
                yield True, overlong
                overlong = None
            elif len(line.removesuffix(b"\r")) > MAX_LINE:
                yield True, line[:16]
            else:
                yield False, line


def serve_connection(fd: int, device: TalpDevice, stop_fd: int, *, log: Log | None = None) -> None:
    """Serve TALP/1 on the byte stream ``fd`` (made non-blocking) until end of file, a closed
    peer, or ``stop_fd`` becoming readable."""
    os.set_blocking(fd, False)
    try:
        for too_long, line in _lines(fd, stop_fd):
            if log:
                shown = line.decode("ascii", "replace")
                log(f"> {shown}..." if too_long else f"> {shown}")
            answer = device.overlong_line(line) if too_long else device.handle_line(line)
            if log:
                for a in answer:
                    log(f"< {a}")
            if answer:
                _write_all(fd, "".join(a + "\n" for a in answer).encode("ascii", "replace"), stop_fd)
    except (_Stopped, _Closed):
        pass


# ---------------------------------------------------------------------- servers


class _Server:
    def __init__(self, library_dir: str | os.PathLike[str], *, vendor: str, log: Log | None) -> None:
        self.device = TalpDevice(Library(library_dir), vendor=vendor)
        self.log = log
        self._stopper = _Stopper()
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return (thread- and signal-handler-safe)."""
        self._stopper.stop()

    def start(self) -> None:
        """Run :meth:`serve_forever` in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop, wait for the thread (if :meth:`start` ran one) and close everything."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.close()

    def close(self) -> None:
        self._stopper.close()

    def _log(self, text: str) -> None:
        if self.log:
            self.log(text)


class PtyServer(_Server):
    """TALP/1 on a new pseudo-terminal; ``path`` is the slave's path for the host."""

    def __init__(self, library_dir: str | os.PathLike[str], *, vendor: str = VENDOR, log: Log | None = None) -> None:
        super().__init__(library_dir, vendor=vendor, log=log)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing, no CR/LF translation
        self.path = os.ttyname(self.slave)

    def serve_forever(self) -> None:
        with contextlib.suppress(_Stopped):
            while not self._stopper.event.is_set():
                serve_connection(self.master, self.device, self._stopper.rfd, log=self.log)
                if not self._stopper.event.is_set():  # EIO: should not happen (slave held open)
                    self._stopper.event.wait(0.1)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1
        super().close()


class TcpServer(_Server):
    """TALP/1 over TCP on ``host:port`` (port 0: any free one; ``port`` is the bound one)."""

    def __init__(
        self,
        library_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        vendor: str = VENDOR,
        log: Log | None = None,
    ) -> None:
        super().__init__(library_dir, vendor=vendor, log=log)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, socktype, proto, _, addr = infos[0]
        self.sock = socket.socket(family, socktype, proto)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(addr)
            self.sock.listen(8)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.host = host
        self.port: int = self.sock.getsockname()[1]

    def serve_forever(self) -> None:
        with contextlib.suppress(_Stopped):
            while not self._stopper.event.is_set():
                _wait(self.sock.fileno(), select.POLLIN, self._stopper.rfd)
                try:
                    conn, peer = self.sock.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue
                with conn:
                    self._log(f"# connection from {peer[0]}:{peer[1]}")
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    serve_connection(conn.fileno(), self.device, self._stopper.rfd, log=self.log)
                    self._log("# connection closed")

    def close(self) -> None:
        self.sock.close()
        super().close()


def serve_pty(
    library_dir: str | os.PathLike[str], *, vendor: str = VENDOR, log: Log | None = None
) -> tuple[str, Callable[[], None]]:
    """Serve TALP/1 for the library in ``library_dir`` on a new pty, in a background thread.

    Returns the pty's path (open it with ``serial.Serial(path)``) and a function that stops
    the server and closes the pty.
    """
    server = PtyServer(library_dir, vendor=vendor, log=log)
    server.start()
    return server.path, server.shutdown


def serve_tcp(
    library_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    vendor: str = VENDOR,
    log: Log | None = None,
) -> tuple[int, Callable[[], None]]:
    """Serve TALP/1 for the library in ``library_dir`` on TCP ``host:port`` (0: a free port),
    in a background thread. Returns the bound port and a function that stops the server."""
    server = TcpServer(library_dir, host, port, vendor=vendor, log=log)
    server.start()
    return server.port, server.shutdown
