"""The TALP/1 host side (serial:URL): against hw-sim's device side over a real pty and over
socket://, and against scripted fake devices for the corner cases (stale lines, BUSY,
silence, wrong protocol, a peer that closes)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import pytest

from tapearc.media.changer import Changer, ChangerError, DriveBayStatus, SlotStatus
from tapearc.media.changers.serial import SerialChanger

library = pytest.importorskip("tapesim.library")
autoloader = pytest.importorskip("tapesim.autoloader")


@pytest.fixture
def libdir(tmp_path):
    d = tmp_path / "lib"
    library.create_library(d, 4, 1 << 20)
    return d


@pytest.fixture
def pty_url(libdir):
    path, stop = autoloader.serve_pty(libdir)
    yield path
    stop()


@pytest.fixture
def tcp_url(libdir):
    port, stop = autoloader.serve_tcp(libdir, "127.0.0.1", 0)
    yield f"socket://127.0.0.1:{port}"
    stop()


@pytest.fixture(params=["pty", "tcp"])
def url(request):
    return request.getfixturevalue(f"{request.param}_url")


# ------------------------------------------------------------------------- against hw-sim


def test_hello_status_load_unload(url):
    ch = SerialChanger(url, timeout=2, motion_timeout=5)
    try:
        assert isinstance(ch, Changer)
        assert ch.name == f"serial:{url}"
        assert (ch.num_slots, ch.num_drives, ch.vendor) == (4, 1, "tapesim")
        st = ch.status()
        assert st.slots == tuple(SlotStatus(k, True, f"TAP00{k}") for k in range(1, 5))
        assert st.drives == (DriveBayStatus(0, False),)
        assert st.details["vendor"] == "tapesim"
        ch.load(2, 0)
        st = ch.status()
        assert st.drives == (DriveBayStatus(0, True, "TAP002", 2),)
        assert st.slots[1] == SlotStatus(2, False)
        ch.unload(0)  # UNLOAD 0 -: back where it came from
        assert ch.status().slot_of("TAP002") == 2
        ch.load(1, 0)
        ch.unload(0, 1)
        assert ch.status().slot_of("TAP001") == 1
    finally:
        ch.close()
    ch.close()  # idempotent
    with pytest.raises(ChangerError, match="closed"):
        ch.status()


def test_device_errors(url, libdir):
    library.Library(libdir).remove_tape(4)
    ch = SerialChanger(url, timeout=2, motion_timeout=5)
    try:
        with pytest.raises(ChangerError) as info:
            ch.load(4, 0)
        assert str(info.value) == f"serial:{url}: slot 4 is empty (E102: source slot empty)"
        assert info.value.details["code"] == "E102"
        with pytest.raises(ChangerError, match=r"drive 0 is empty \(E104: drive empty\)"):
            ch.unload(0)
        ch.load(1, 0)
        with pytest.raises(ChangerError, match=r"drive 0 is full \(E103: drive full\)"):
            ch.load(2, 0)
        with pytest.raises(ChangerError, match=r"slot 2 is full \(E105: destination slot full\)"):
            ch.unload(0, 2)
        with pytest.raises(ChangerError, match=r"no slot 9 .*\(E101: no such slot or drive\)"):
            ch.load(9, 0)
        with pytest.raises(ChangerError, match=r"\(E101: no such slot or drive\)"):
            ch.unload(3, 4)
        with pytest.raises(ChangerError, match=r"E100"):
            ch.load(-1, 0)
        ch.unload(0, 4)  # to another slot
        assert ch.status().slot_of("TAP001") == 4
    finally:
        ch.close()


def test_two_hosts_one_after_the_other(pty_url):
    for _ in range(2):
        ch = SerialChanger(pty_url, timeout=2)
        assert len(ch.status().slots) == 4
        ch.close()


def test_pty_peer_goes_away(libdir):
    path, stop = autoloader.serve_pty(libdir)
    ch = SerialChanger(path, timeout=1)
    try:
        stop()  # closes the pty master
        t0 = time.monotonic()
        with pytest.raises(ChangerError):
            ch.status()
        assert time.monotonic() - t0 < 5
    finally:
        ch.close()


def test_tcp_peer_goes_away(libdir):
    port, stop = autoloader.serve_tcp(libdir, "127.0.0.1", 0)
    ch = SerialChanger(f"socket://127.0.0.1:{port}", timeout=1)
    try:
        stop()
        with pytest.raises(ChangerError):
            for _ in range(3):  # a write may still succeed once; the read then fails
                ch.status()
    finally:
        ch.close()


# ------------------------------------------------------------------------- a scripted device

Handler = Callable[[str, str, "Fake"], None]


class Fake:
    """A TCP device: ``handler(tag, command, fake)`` answers each non-empty line with
    ``fake.send(...)``; the lines received are in ``received``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[str] = []
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.conn: socket.socket | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def send(self, text: str) -> None:
        if self.conn is not None:
            self.conn.sendall(text.encode())

    def hang_up(self) -> None:
        if self.conn is not None:
            self.conn.shutdown(socket.SHUT_RDWR)
            self.conn.close()
            self.conn = None

    def _run(self) -> None:
        self.srv.settimeout(10)
        try:
            self.conn, _ = self.srv.accept()
        except OSError:
            return
        buf = b""
        while not self.stopped.is_set() and self.conn is not None:
            try:
                self.conn.settimeout(0.1)
                chunk = self.conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode()
                self.received.append(text)
                if text:
                    tag, _, cmd = text.partition(" ")
                    self.handler(tag, cmd, self)

    def close(self) -> None:
        self.stopped.set()
        self.srv.close()
        if self.conn is not None:
            self.conn.close()
        self.thread.join(5)


@pytest.fixture
def fake():
    made: list[Fake] = []

    def make(handler: Handler) -> Fake:
        f = Fake(handler)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def hello(tag: str, fake: Fake) -> None:
    fake.send(f"{tag} TALP 1 SLOTS 2 DRIVES 1 VENDOR fake loader 2000\n{tag} OK\n")


def basic(extra: Handler | None = None) -> Handler:
    def handler(tag: str, cmd: str, fake: Fake) -> None:
        if cmd == "HELLO":
            hello(tag, fake)
        elif extra is not None:
            extra(tag, cmd, fake)
        else:
            fake.send(f"{tag} OK\n")

    return handler


def test_tags_increment_and_the_empty_line_first(fake):
    f = fake(
        basic(
            lambda tag, cmd, fk: fk.send(
                f"{tag} SLOT 1 EMPTY\n{tag} SLOT 2 FULL -\n{tag} DRIVE 0 FULL AB_-9 FROM -\n{tag} OK\n"
            )
        )
    )
    ch = SerialChanger(f.url, timeout=2)
    st = ch.status()
    ch.status()
    ch.close()
    assert ch.vendor == "fake loader 2000"
    assert st.slots == (SlotStatus(1, False), SlotStatus(2, True, None))  # "-": no label
    assert st.drives == (DriveBayStatus(0, True, "AB_-9", None),)
    assert f.received[0] == ""
    tags = [int(line.split()[0]) for line in f.received[1:]]
    assert [line.split(" ", 1)[1] for line in f.received[1:]] == ["HELLO", "STATUS", "STATUS"]
    assert tags == [tags[0], tags[0] + 1, tags[0] + 2]


def test_stale_lines_and_noise_are_discarded(fake):
    def status(tag, cmd, fk):
        fk.send(
            f"{int(tag) - 1} OK\nnoise without a tag\n{tag}7 SLOT 1 FULL WRONG\n"
            f"- ERR E100 something\n{tag} SLOT 1 FULL GOOD\r\n{tag} DRIVE 0 EMPTY\r\n{tag} OK\r\n"
        )

    f = fake(basic(status))
    ch = SerialChanger(f.url, timeout=2)
    assert ch.status().slots == (SlotStatus(1, True, "GOOD"),)
    ch.close()


def test_a_late_answer_after_a_timeout_is_discarded(fake):
    def slow_load(tag, cmd, fk):
        if cmd.startswith("LOAD"):
            time.sleep(0.8)  # answers after the host gave up
            fk.send(f"{tag} OK\n")
        else:
            fk.send(f"{tag} SLOT 1 EMPTY\n{tag} DRIVE 0 FULL T1 FROM 1\n{tag} OK\n")

    f = fake(basic(slow_load))
    ch = SerialChanger(f.url, timeout=2, motion_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(ChangerError) as info:
        ch.load(1, 0)
    assert time.monotonic() - t0 < 2
    assert str(info.value) == f"serial:{f.url}: no answer to LOAD 1 0 within 0.3 s"
    assert ch.status().drives == (DriveBayStatus(0, True, "T1", 1),)
    ch.close()


def test_busy_lines_extend_the_wait(fake):
    def busy_load(tag, cmd, fk):
        for _ in range(6):
            fk.send(f"{tag} BUSY\n")
            time.sleep(0.15)
        fk.send(f"{tag} OK\n")

    f = fake(basic(busy_load))
    ch = SerialChanger(f.url, timeout=2, motion_timeout=0.4)
    ch.load(1, 0)  # 0.9 s in all, never 0.4 s of silence
    ch.close()


def test_busy_forever_still_times_out(fake):
    stop = threading.Event()

    def busy_forever(tag, cmd, fk):
        while not stop.wait(0.05):
            try:
                fk.send(f"{tag} BUSY\n")
            except OSError:
                return

    f = fake(basic(busy_forever))
    ch = SerialChanger(f.url, timeout=2, motion_timeout=0.3)
    t0 = time.monotonic()
    try:
        with pytest.raises(ChangerError, match=r"no answer to LOAD 1 0 within 0.3 s"):
            ch.load(1, 0)
        assert time.monotonic() - t0 < 3  # capped at 4 x 0.3 s
    finally:
        stop.set()
        ch.close()


def test_err_lines(fake):
    def errs(tag, cmd, fk):
        if cmd.startswith("LOAD"):
            fk.send(f"{tag} ERR E200 gripper jammed at slot 3\n")
        elif cmd.startswith("UNLOAD"):
            fk.send(f"{tag} ERR E999\n")
        else:
            fk.send(f"{tag} SLOT x FULL\n{tag} OK\n")

    f = fake(basic(errs))
    ch = SerialChanger(f.url, timeout=2)
    with pytest.raises(ChangerError) as info:
        ch.load(3, 0)
    assert str(info.value) == f"serial:{f.url}: gripper jammed at slot 3 (E200: mechanical failure)"
    with pytest.raises(ChangerError, match=r": device error \(E999: device error\)$"):
        ch.unload(0, None)
    with pytest.raises(ChangerError, match=r"malformed STATUS line .*'SLOT x FULL'"):
        ch.status()
    ch.close()
    assert f.received[-2].endswith("UNLOAD 0 -")


def test_peer_closes_during_a_motion(fake):
    f = fake(basic(lambda tag, cmd, fk: fk.hang_up()))
    ch = SerialChanger(f.url, timeout=2, motion_timeout=5)
    t0 = time.monotonic()
    with pytest.raises(ChangerError, match="the autoloader line failed"):
        ch.load(1, 0)
    assert time.monotonic() - t0 < 3
    with pytest.raises(ChangerError):
        ch.status()
    ch.close()


def test_nothing_answers(fake):
    f = fake(lambda tag, cmd, fk: None)
    t0 = time.monotonic()
    with pytest.raises(ChangerError) as info:
        SerialChanger(f.url, timeout=0.4)
    assert time.monotonic() - t0 < 3
    assert str(info.value) == f"no TALP/1 autoloader answers on {f.url}"
    assert "no answer to HELLO" in info.value.hint


def test_wrong_protocol_version(fake):
    f = fake(lambda tag, cmd, fk: fk.send(f"{tag} TALP 2 SLOTS 2 DRIVES 1 VENDOR x\n{tag} OK\n"))
    with pytest.raises(ChangerError, match="no TALP/1 autoloader answers on") as info:
        SerialChanger(f.url, timeout=1)
    assert "TALP 2" in info.value.hint


def test_hello_refused(fake):
    f = fake(lambda tag, cmd, fk: fk.send(f"{tag} ERR E100 unknown command\n"))
    with pytest.raises(ChangerError, match="no TALP/1 autoloader answers on"):
        SerialChanger(f.url, timeout=1)


def test_an_echoing_line_is_not_an_autoloader():
    # loop:// sends back what is written: "N HELLO" comes back with the right tag, never OK
    with pytest.raises(ChangerError, match="no TALP/1 autoloader answers on loop://"):
        SerialChanger("loop://", timeout=0.3)


def test_a_chatty_tty_is_not_an_autoloader():
    master, slave = os.openpty()
    try:
        os.write(master, b"login: \n" * 3)
        with pytest.raises(ChangerError, match="no TALP/1 autoloader answers on"):
            SerialChanger(os.ttyname(slave), timeout=0.3)
    finally:
        os.close(master)
        os.close(slave)


def test_cannot_open():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there
    with pytest.raises(ChangerError, match=r"^serial:socket://127.0.0.1:\d+: cannot open the port"):
        SerialChanger(f"socket://127.0.0.1:{port}", timeout=1)
    with pytest.raises(ChangerError, match="cannot open the port"):
        SerialChanger("/nonexistent/ttyUSB9", timeout=1)
    with pytest.raises(ChangerError, match="no port given"):
        SerialChanger("")


# ------------------------------------------------------------------------- another process


@pytest.mark.parametrize("mode", ["--pty", "--listen"])
def test_against_the_tapesim_autoloader_command(libdir, mode):
    import select
    import subprocess
    import sys

    args = [mode] if mode == "--pty" else [mode, "127.0.0.1:0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapesim", "autoloader", str(libdir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "tapesim autoloader printed nothing"
        first = proc.stdout.readline().strip()
        url = first if mode == "--pty" else f"socket://127.0.0.1:{first}"
        ch = SerialChanger(url, timeout=3, motion_timeout=10)
        try:
            ch.load(3, 0)
            assert ch.status().drives == (DriveBayStatus(0, True, "TAP003", 3),)
            ch.unload(0)
        finally:
            ch.close()
        assert library.Library(libdir).status().slots[2].barcode == "TAP003"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
