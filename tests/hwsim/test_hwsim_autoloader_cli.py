"""``tapesim autoloader DIR --pty | --listen HOST:PORT`` as a subprocess."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from tapesim.library import create_library


@pytest.fixture
def libdir(tmp_path: Path) -> Path:
    d = tmp_path / "lib"
    create_library(d, 2, 1 << 20)
    return d


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "tapesim", "autoloader", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], 20)
    if not ready:
        p.kill()
        p.communicate(timeout=10)
        pytest.fail("the autoloader printed nothing")
    return p, p.stdout.readline().strip()


def stop(p: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        pytest.fail("the autoloader did not stop")
    return p.returncode, err


def exchange(port: serial.SerialBase) -> list[bytes]:
    port.write(b"1 HELLO\n2 LOAD 1 0\n3 UNLOAD 0 -\n")
    return [port.readline() for _ in range(4)]


EXPECTED = [b"1 TALP 1 SLOTS 2 DRIVES 1 VENDOR tapesim\n", b"1 OK\n", b"2 OK\n", b"3 OK\n"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_pty(libdir, sig):
    p, path = start(str(libdir), "--pty")
    try:
        assert path.startswith("/dev/")
        with serial.Serial(path, timeout=5) as port:
            assert exchange(port) == EXPECTED
        with serial.Serial(path, timeout=5) as port:  # a second host session
            port.write(b"4 HELLO\n")
            assert port.readline().startswith(b"4 TALP 1")
    finally:
        rc, err = stop(p, sig)
    assert rc == 0 and "Traceback" not in err


def test_listen(libdir):
    p, port_text = start(str(libdir), "--listen", "127.0.0.1:0", "--verbose")
    try:
        port = int(port_text)
        assert port > 0
        with serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5) as s:
            assert exchange(s) == EXPECTED
    finally:
        rc, err = stop(p, signal.SIGTERM)
    assert rc == 0 and "Traceback" not in err
    assert "> 2 LOAD 1 0" in err and "< 2 OK" in err  # --verbose logs the lines


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--pty", "--listen", "127.0.0.1:0"], "exactly one"),
        ([], "exactly one"),
        (["--listen", "nonsense"], "invalid --listen"),
        (["--listen", "127.0.0.1:99999"], "invalid --listen"),
    ],
)
def test_usage_errors(libdir, args, needle):
    r = subprocess.run(
        [sys.executable, "-m", "tapesim", "autoloader", str(libdir), *args], capture_output=True, text=True, timeout=30
    )
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr


def test_not_a_library(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "tapesim", "autoloader", str(tmp_path), "--pty"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "not a tapesim library" in r.stderr


def test_port_in_use(libdir):
    p, port_text = start(str(libdir), "--listen", "127.0.0.1:0")
    try:
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "tapesim", "autoloader", str(libdir), "--listen", f"127.0.0.1:{port_text}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert time.monotonic() - t0 < 30
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot listen" in r.stderr
    finally:
        stop(p, signal.SIGTERM)
