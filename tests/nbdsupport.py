"""NBD exports for tests, served by the real tools: qemu-nbd (a raw or qcow2 image, on a Unix
socket, optionally exposing a qemu dirty bitmap) and nbdkit (a file over TCP on 127.0.0.1).

Each is a context manager yielding the export's NBD URI; the server is stopped (and waited for)
on exit. ``needs_qemu_nbd`` / ``needs_nbdkit`` / ``needs_libnbd`` skip a test, saying why, on a
machine without them (``make tools`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _have_libnbd() -> bool:
    try:
        import nbd  # noqa: F401
    except ImportError:
        return False
    return True


needs_libnbd = pytest.mark.skipif(not _have_libnbd(), reason="libnbd's Python module (python3-libnbd) is missing")
needs_qemu_nbd = pytest.mark.skipif(
    not (shutil.which("qemu-nbd") and shutil.which("qemu-img") and _have_libnbd()),
    reason="qemu-nbd/qemu-img (qemu-utils) or libnbd is missing",
)
needs_nbdkit = pytest.mark.skipif(not (shutil.which("nbdkit") and _have_libnbd()), reason="nbdkit or libnbd is missing")


def _wait_for(check: object, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {err.strip()}")
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not start within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def qemu_nbd(
    image: Path,
    fmt: str = "raw",
    *,
    bitmap: str | None = None,
    read_only: bool = True,
    export: str = "disk",
    shared: int = 8,
) -> Iterator[str]:
    """Serve ``image`` with qemu-nbd on a Unix socket beside it; yields the ``nbd+unix`` URI.

    ``bitmap``: also expose the qcow2 persistent dirty bitmap of that name (``qemu-nbd -B``), as
    the NBD metadata context ``qemu:dirty-bitmap:NAME``. ``shared``: clients served at once
    (qemu-nbd's own default is 1). Not read-only: the export is writable
    (a restore target). qemu-nbd keeps the image open until the block ends."""
    sock = image.parent / f".{image.name}.{os.getpid()}.sock"
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    cmd = ["qemu-nbd", "--persistent", f"--shared={shared}", "-f", fmt, "-x", export, "-k", str(sock), "--cache=none"]
    if fmt == "raw" or fmt == "qcow2":
        cmd.append("--aio=threads")
    if read_only:
        cmd.append("--read-only")
    if bitmap:
        cmd += ["-B", bitmap]
    cmd.append(str(image))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _accepts(sock), proc, "qemu-nbd")
        yield f"nbd+unix:///{export}?socket={sock}"
    finally:
        _stop(proc)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


def _accepts(sock: Path) -> bool:
    """The Unix socket exists and a server listens on it (qemu-nbd makes the file before it
    listens: a connection in between is refused)."""
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (for a server started more than once on one port)."""
    return _free_port()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def nbdkit_file(
    path: Path, *, read_only: bool = True, filters: tuple[str, ...] = (), params: tuple[str, ...] = ()
) -> Iterator[str]:
    """Serve the file (or block device) ``path`` with nbdkit's file plugin over TCP on
    127.0.0.1 (as a disk on another host would be); yields the ``nbd://`` URI. ``filters``:
    nbdkit filters in front of it (``nozero``: an export without WRITE_ZEROES), ``params``
    their KEY=VALUE parameters."""
    args = ["--readonly"] if read_only else []
    args += [f"--filter={f}" for f in filters]
    with nbdkit_server(*args, "file", str(path), *params) as (port, _):
        yield f"nbd://127.0.0.1:{port}/"


def qemu_img(*args: str) -> None:
    """Run qemu-img (create, bitmap, convert), failing the test with its message."""
    r = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"qemu-img {' '.join(args)}: {r.stderr.strip()}")


def qemu_io(image: Path, fmt: str, *commands: str) -> None:
    """Write into an image with qemu-io (e.g. ``write -P 0x5a 1M 64k``): qcow2 dirty bitmaps
    record these writes."""
    cmd = ["qemu-io", "-f", fmt]
    for c in commands:
        cmd += ["-c", c]
    r = subprocess.run([*cmd, str(image)], capture_output=True, text=True)
    if r.returncode or "error" in r.stdout.lower() or "failed" in r.stdout.lower():
        raise RuntimeError(f"qemu-io {commands}: {r.stdout.strip()} {r.stderr.strip()}")


@contextlib.contextmanager
def nbdkit_server(
    *args: str, tls_args: tuple[str, ...] = (), port: int | None = None
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """nbdkit with ``args`` (filters, plugin and its parameters) and ``tls_args`` (``--tls=require``,
    ``--tls-psk=FILE``, ``--tls-certificates=DIR``) on 127.0.0.1; yields its port and process (a
    test may kill it: a server that goes away). ``port``: the one to listen on (a server started
    again where a client found the one before)."""
    port = port or _free_port()
    cmd = ["nbdkit", "--foreground", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port), *tls_args, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        _wait_for(up, proc, "nbdkit")
        yield port, proc
    finally:
        _stop(proc)


def psk_file(path: Path, user: str = "tapearc") -> Path:
    """A TLS pre-shared key file as nbdkit and libnbd read it (``USER:HEXKEY``, 256 bits), mode 0600."""
    path.write_text(f"{user}:{os.urandom(32).hex()}\n")
    path.chmod(0o600)
    return path


needs_x509_tool = pytest.mark.skipif(
    not shutil.which("openssl"), reason="openssl is missing (needed to make a test CA and server certificate)"
)


def x509_dirs(base: Path, host: str = "127.0.0.1", *, client_cert: bool = False) -> tuple[Path, Path]:
    """A CA and a server certificate for ``host`` made with openssl: (the server's folder for
    ``nbdkit --tls-certificates`` or qemu's ``tls-creds-x509,dir=`` with ca-cert.pem,
    server-cert.pem, server-key.pem; the client's folder for libnbd's ``tls-certificates=`` with
    ca-cert.pem, and with ``client_cert`` a client certificate of the CA: client-cert.pem,
    client-key.pem)."""
    server, client = base / "server", base / "client"
    server.mkdir(parents=True)
    client.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=server)
        if r.returncode:
            raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr.strip()}")

    run("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca-cert.pem", "-days", "30", "-subj", "/CN=test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "server-key.pem", "-out", "server.csr", "-subj", f"/CN={host}")
    (server / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{host},DNS:localhost\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
        "-out", "server-cert.pem", "-days", "30", "-extfile", "ext.cnf")  # fmt: skip
    (server / "server-key.pem").chmod(0o600)
    (client / "ca-cert.pem").write_bytes((server / "ca-cert.pem").read_bytes())
    if client_cert:
        run("req", *ec, "-keyout", str(client / "client-key.pem"), "-out", "client.csr", "-subj", "/CN=tapearc client")
        (server / "client.cnf").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        )
        run("x509", "-req", "-in", "client.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-out", str(client / "client-cert.pem"), "-days", "30", "-extfile", "client.cnf")  # fmt: skip
        (client / "client-key.pem").chmod(0o600)
    return server, client


@contextlib.contextmanager
def qemu_nbd_tls(
    image: Path, fmt: str, creds: str, *, bitmap: str | None = None, export: str = "disk", port: int | None = None
) -> Iterator[int]:
    """Serve ``image`` read-only with qemu-nbd over TCP on 127.0.0.1 with TLS: ``creds`` is the
    ``--object`` of its credentials (``tls-creds-psk,id=tls0,endpoint=server,dir=DIR`` with
    DIR/keys.psk, or ``tls-creds-x509,id=tls0,endpoint=server,dir=DIR``; the id must be tls0).
    Yields the port (``port``: the one to listen on, as the server of the night before did)."""
    port = port or _free_port()
    cmd = ["qemu-nbd", "--read-only", "--persistent", "--shared=4", "-f", fmt, "-x", export, "-b", "127.0.0.1"]
    cmd += ["-p", str(port), "--object", creds, "--tls-creds", "tls0"]
    if bitmap:
        cmd += ["-B", bitmap]
    proc = subprocess.Popen([*cmd, str(image)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        _wait_for(up, proc, "qemu-nbd")
        yield port
    finally:
        _stop(proc)
