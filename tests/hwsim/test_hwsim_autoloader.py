"""The TALP/1 device side (tapesim.autoloader) over a real pty and over TCP, driven by pyserial."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import serial

from tapesim.autoloader import MAX_LINE, PtyServer, TalpDevice, TcpServer, serve_pty, serve_tcp
from tapesim.drive import SimDrive
from tapesim.library import Library, create_library

MiB = 1 << 20


@pytest.fixture
def libdir(tmp_path: Path) -> Path:
    d = tmp_path / "lib"
    create_library(d, 4, MiB, early_warning=64 << 10)
    return d


class Host:
    """A minimal TALP/1 host over a pyserial port."""

    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port

    def send(self, raw: bytes) -> None:
        self.port.write(raw)
        self.port.flush()

    def readline(self, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete line, got {buf!r}")
            buf += self.port.readline()
        return buf.decode("ascii").removesuffix("\n")

    def response(self, timeout: float = 5.0) -> list[str]:
        """Lines up to and including the final OK / ERR line."""
        lines = []
        while True:
            line = self.readline(timeout)
            lines.append(line)
            parts = line.split(" ")
            if len(parts) >= 2 and parts[1] in ("OK", "ERR"):
                return lines

    def cmd(self, line: str, eol: bytes = b"\n") -> list[str]:
        self.send(line.encode("ascii") + eol)
        return self.response()

    def nothing_pending(self, wait: float = 0.2) -> bool:
        time.sleep(wait)
        return self.port.in_waiting == 0


@pytest.fixture(params=["pty", "tcp"])
def host(request, libdir):
    """A host connected to a device serving ``libdir``, over a pty or TCP."""
    if request.param == "pty":
        path, stop = serve_pty(libdir)
        port = serial.Serial(path, timeout=5)
    else:
        tcp_port, stop = serve_tcp(libdir)
        port = serial.serial_for_url(f"socket://127.0.0.1:{tcp_port}", timeout=5)
    try:
        yield Host(port)
    finally:
        port.close()
        stop()


def err_code(lines: list[str], tag: str) -> str:
    assert len(lines) == 1, lines
    parts = lines[0].split(" ")
    assert parts[0] == tag and parts[1] == "ERR" and len(parts) >= 4, lines
    return parts[2]


# ---------------------------------------------------------------- over a transport


def test_hello_status_load_unload(host, libdir):
    assert host.cmd("1 HELLO") == ["1 TALP 1 SLOTS 4 DRIVES 1 VENDOR tapesim", "1 OK"]
    assert host.cmd("2 STATUS") == [
        "2 SLOT 1 FULL TAP001",
        "2 SLOT 2 FULL TAP002",
        "2 SLOT 3 FULL TAP003",
        "2 SLOT 4 FULL TAP004",
        "2 DRIVE 0 EMPTY",
        "2 OK",
    ]
    assert host.cmd("3 LOAD 1 0") == ["3 OK"]
    assert host.cmd("4 STATUS") == [
        "4 SLOT 1 EMPTY",
        "4 SLOT 2 FULL TAP002",
        "4 SLOT 3 FULL TAP003",
        "4 SLOT 4 FULL TAP004",
        "4 DRIVE 0 FULL TAP001 FROM 1",
        "4 OK",
    ]
    lib = Library(libdir)
    with SimDrive(lib.drive_path(0)) as dr:
        assert dr.barcode == "TAP001"
        dr.write(b"via talp")
    assert host.cmd("5 UNLOAD 0 3") == ["5 ERR E105 slot 3 is full"]
    assert host.cmd("6 UNLOAD 0 -") == ["6 OK"]
    assert lib.status().slots[0].barcode == "TAP001"
    assert host.cmd("7 LOAD 1 0") == ["7 OK"]
    assert host.cmd("8 REMOVE")[0].startswith("8 ERR E100")
    lib.remove_tape(2)
    assert host.cmd("9 UNLOAD 0 2") == ["9 OK"]
    assert host.cmd("10 STATUS")[:2] == ["10 SLOT 1 EMPTY", "10 SLOT 2 FULL TAP001"]
    with SimDrive(lib.tape_path("TAP001")) as dr:
        assert dr.read(dr.max_record) == b"via talp"


def test_every_error_code(host, libdir):
    lib = Library(libdir)
    assert err_code(host.cmd("a LOAD 5 0"), "a") == "E101"
    assert err_code(host.cmd("a LOAD 0 0"), "a") == "E101"
    assert err_code(host.cmd("a LOAD 1 1"), "a") == "E101"
    assert err_code(host.cmd("a UNLOAD 1 -"), "a") == "E101"
    assert err_code(host.cmd("a UNLOAD 0 5"), "a") == "E101"
    assert err_code(host.cmd("b UNLOAD 0 -"), "b") == "E104"
    assert host.cmd("c LOAD 2 0") == ["c OK"]
    assert err_code(host.cmd("d LOAD 2 0"), "d") == "E102"
    assert err_code(host.cmd("e LOAD 3 0"), "e") == "E103"
    assert err_code(host.cmd("f UNLOAD 0 1"), "f") == "E105"
    lib.add_tape(2, "FILLER")
    assert err_code(host.cmd("g UNLOAD 0 -"), "g") == "E105"  # source full, no empty slot
    lib.remove_tape(2)
    dr = SimDrive(lib.drive_path(0))
    try:
        lines = host.cmd("h UNLOAD 0 -")
        assert err_code(lines, "h") == "E200" and "busy" in lines[0]
    finally:
        dr.close()
    assert host.cmd("i UNLOAD 0 -") == ["i OK"]
    assert err_code(host.cmd("j NOPE"), "j") == "E100"


@pytest.mark.parametrize("tag", ["0", "Z", "abcdEFG8", "12345678"])
def test_tags_echoed(host, tag):
    lines = host.cmd(f"{tag} STATUS")
    assert len(lines) == 6 and all(line.startswith(tag + " ") for line in lines)
    assert host.cmd(f"{tag} HELLO")[-1] == f"{tag} OK"


def test_crlf(host):
    assert host.cmd("1 HELLO", eol=b"\r\n") == ["1 TALP 1 SLOTS 4 DRIVES 1 VENDOR tapesim", "1 OK"]
    assert host.cmd("2 LOAD 1 0", eol=b"\r\n") == ["2 OK"]
    assert host.cmd("3 UNLOAD 0 -", eol=b"\r\n") == ["3 OK"]


GARBAGE = [
    (b"garbage", "garbage"),  # a valid tag, no command
    (b"1 FOO", "1"),
    (b"1 hello", "1"),
    (b"1  HELLO", "1"),
    (b"1 HELLO ", "1"),
    (b"1 HELLO x", "1"),
    (b"1 STATUS 1", "1"),
    (b"1 LOAD 1", "1"),
    (b"1 LOAD 1 0 0", "1"),
    (b"1 LOAD a 0", "1"),
    (b"1 LOAD -1 0", "1"),
    (b"1 LOAD +1 0", "1"),
    (b"1 UNLOAD - 1", "1"),
    (b"1 UNLOAD 0", "1"),
    (b"1 HELLO\xff", "1"),
    (b"1 ST\x00ATUS", "1"),
    (b"1 LOAD\t1 0", "1"),
    (b"1 HELLO\r\r", "1"),
    (b"123456789 HELLO", "-"),
    (b"a-b HELLO", "-"),
    (b" 1 HELLO", "-"),
    (b"1\tHELLO", "-"),
    (b"\xff\xfe HELLO", "-"),
    (b"- HELLO", "-"),
    (b"\x1b[A", "-"),
]


def test_garbage_lines(host):
    for raw, tag in GARBAGE:
        host.send(raw + b"\n")
        lines = host.response()
        assert err_code(lines, tag) == "E100", raw
    assert host.cmd("ok HELLO")[-1] == "ok OK"


def test_empty_lines_ignored(host):
    host.send(b"\n\r\n\n")
    assert host.nothing_pending()
    assert host.cmd("1 HELLO")[-1] == "1 OK"


def test_long_lines(host):
    host.send(b"x" * 10_000 + b"\n")
    lines = host.response()
    assert err_code(lines, "-") == "E100" and "longer" in lines[0]
    host.send(b"7 " + b"y" * 10_000 + b"\r\n")
    assert err_code(host.response(), "7") == "E100"
    # exactly 200 bytes (+ CR) is a line; 201 is too long
    host.send(b"8 " + b"X" * (MAX_LINE - 2) + b"\r\n")
    lines = host.response()
    assert err_code(lines, "8") == "E100" and "unknown command" in lines[0]
    host.send(b"9 " + b"X" * (MAX_LINE - 1) + b"\n")
    lines = host.response()
    assert err_code(lines, "9") == "E100" and "longer" in lines[0]
    assert host.cmd("10 HELLO")[-1] == "10 OK"
    # a long line in pieces
    for _ in range(5):
        host.send(b"z" * 3000)
    assert host.nothing_pending(0.1)
    host.send(b"\n11 HELLO\n")
    assert err_code(host.response(), "-") == "E100"
    assert host.response()[-1] == "11 OK"


def test_pipelined_and_split_commands(host):
    host.send(b"1 HELLO\n2 LOAD 1 0\n3 UNLOAD 0 -\n")
    assert host.response()[-1] == "1 OK"
    assert host.response() == ["2 OK"]
    assert host.response() == ["3 OK"]
    for piece in (b"4 ST", b"AT", b"US\r", b"\n"):
        host.send(piece)
        time.sleep(0.02)
    assert host.response()[-1] == "4 OK"


# ---------------------------------------------------------------- transports


def test_pty_reconnect(libdir):
    path, stop = serve_pty(libdir)
    try:
        for i in range(3):
            with serial.Serial(path, timeout=5) as port:
                h = Host(port)
                assert h.cmd(f"{i} HELLO")[-1] == f"{i} OK"
        # a host that leaves half a line and goes: the next line after it is garbage, then fine
        with serial.Serial(path, timeout=5) as port:
            port.write(b"5 HEL")
            port.flush()
        with serial.Serial(path, timeout=5) as port:
            h = Host(port)
            h.send(b"6 HELLO\n")
            assert err_code(h.response(), "5") == "E100"
            assert h.cmd("7 HELLO")[-1] == "7 OK"
    finally:
        t0 = time.monotonic()
        stop()
        assert time.monotonic() - t0 < 3


def test_pty_server_object(libdir):
    server = PtyServer(libdir, vendor="acme")
    server.start()
    try:
        with serial.Serial(server.path, timeout=5) as port:
            assert Host(port).cmd("1 HELLO")[0].endswith("VENDOR acme")
    finally:
        server.shutdown()
    assert server.master == -1


def test_tcp_sequential_clients(libdir):
    port, stop = serve_tcp(libdir)
    try:
        c1 = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5)
        h1 = Host(c1)
        assert h1.cmd("1 HELLO")[-1] == "1 OK"
        c2 = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.3)
        h2 = Host(c2)
        h2.send(b"2 HELLO\n")
        assert h2.nothing_pending(0.3)  # one client at a time
        assert h1.cmd("3 STATUS")[-1] == "3 OK"
        c1.close()
        assert h2.response(timeout=5)[-1] == "2 OK"
        c2.close()
    finally:
        stop()


def test_tcp_peer_closes_abruptly(libdir):
    port, stop = serve_tcp(libdir)
    try:
        # half a line, then gone
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"1 HEL")
        s.close()
        # many commands, never reading the answers, then gone (EPIPE / ECONNRESET on the server)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(b"2 STATUS\n" * 2000)
        s.close()
        with serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5) as c:
            assert Host(c).cmd("3 HELLO")[-1] == "3 OK"
    finally:
        stop()


def test_stop_with_client_connected(libdir):
    port, stop = serve_tcp(libdir)
    c = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5)
    try:
        assert Host(c).cmd("1 HELLO")[-1] == "1 OK"
        before = {t.name for t in threading.enumerate()}
        assert "TcpServer" in before
        t0 = time.monotonic()
        stop()
        assert time.monotonic() - t0 < 3
        assert "TcpServer" not in {t.name for t in threading.enumerate()}
    finally:
        c.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_tcp_server_object_port(libdir):
    server = TcpServer(libdir, "127.0.0.1", 0)
    try:
        assert server.port > 0
    finally:
        server.close()


def test_server_on_non_library(tmp_path):
    from tapesim.library import LibraryError

    with pytest.raises(LibraryError):
        serve_pty(tmp_path)
    with pytest.raises(LibraryError):
        serve_tcp(tmp_path)


# ---------------------------------------------------------------- the protocol object


def test_device_handle_line(libdir):
    dev = TalpDevice(Library(libdir))
    assert dev.handle_line(b"") == []
    assert dev.handle_line(b"\r") == []
    assert dev.handle_line(b"1 HELLO\r") == ["1 TALP 1 SLOTS 4 DRIVES 1 VENDOR tapesim", "1 OK"]
    assert dev.handle_line(b"2 " + b"X" * 300)[0].startswith("2 ERR E100 line longer")
    assert dev.overlong_line(b"abc defgh")[0].startswith("abc ERR E100")
    assert dev.overlong_line(b"abcdefghijklmnop")[0].startswith("- ERR E100")
    # the library vanishing under the device: E200, the device keeps going
    (libdir / "library.json").rename(libdir / "gone.json")
    assert dev.handle_line(b"3 STATUS")[0].startswith("3 ERR E200")
    (libdir / "gone.json").rename(libdir / "library.json")
    assert dev.handle_line(b"4 STATUS")[-1] == "4 OK"
    # every answer is one printable ASCII line of at most 200 bytes
    for raw, _ in GARBAGE:
        for line in dev.handle_line(raw):
            assert len(line) <= MAX_LINE and line.isascii() and line.isprintable()
