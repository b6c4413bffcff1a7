"""NBD exports of another host, as the tape server reads them: nbdkit over TCP with TLS on
127.0.0.1 (a pre-shared key, or X.509 certificates of a test CA), through libnbd's URI
parameters (``nbds://USER@HOST:PORT/EXPORT?tls-psk-file=FILE``, ``?tls-certificates=DIR``).

The export reads back as the file it serves, with its holes as extents; every way the TLS
handshake can go wrong (another key, an unknown user, a plain client against a server that
requires TLS, a TLS client against a plain server, a CA that did not sign the server's
certificate) is a SourceError naming the URI, never the key, and never a traceback or hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tapearc.errors import SourceError
from tapearc.sources.nbd import NbdSource, uri_volume_name
from tests.nbdsupport import nbdkit_server, needs_nbdkit, needs_x509_tool, psk_file, x509_dirs

MiB = 1024 * 1024

pytestmark = needs_nbdkit


def _disk(path: Path) -> bytes:
    """4 MiB with data at 0 and 3 MiB, a hole between (sparse on the file system)."""
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
        f.write(bytes(range(256)) * 1024)
        f.seek(3 * MiB)
        f.write(b"\xa5" * 65536)
    return path.read_bytes()


def _read_all(src: NbdSource) -> bytes:
    buf = bytearray(src.size)
    pos = 0
    while pos < src.size:
        n = src.readinto_at(memoryview(buf)[pos:], pos)
        assert n > 0
        pos += n
    return bytes(buf)


def test_psk_export_reads_back_with_its_holes(tmp_path: Path) -> None:
    want = _disk(tmp_path / "disk.img")
    keys = psk_file(tmp_path / "keys.psk", "alice")
    with nbdkit_server("file", str(tmp_path / "disk.img"), tls_args=("--tls=require", f"--tls-psk={keys}")) as (
        port,
        _,
    ):
        uri = f"nbds://alice@127.0.0.1:{port}/disk?tls-psk-file={keys}"
        assert uri_volume_name(uri) == "disk"
        with NbdSource(uri) as src:
            assert src.size == 4 * MiB
            data = [(e.offset, e.length) for e in src.extents(0, src.size) if e.data]
            assert _read_all(src) == want
    # the file plugin reports the file system's holes: the middle is not data
    assert data and sum(n for _, n in data) < 2 * MiB, data


@needs_x509_tool
def test_x509_export_reads_back(tmp_path: Path) -> None:
    want = _disk(tmp_path / "disk.img")
    server, client = x509_dirs(tmp_path / "pki")
    with nbdkit_server(
        "file", str(tmp_path / "disk.img"), tls_args=("--tls=require", f"--tls-certificates={server}")
    ) as (port, _):
        with NbdSource(f"nbds://127.0.0.1:{port}/disk?tls-certificates={client}") as src:
            assert _read_all(src) == want


def _refused(uri: str, secret: str | None = None) -> str:
    with pytest.raises(SourceError) as exc:
        NbdSource(uri)
    text = str(exc.value)
    assert uri in text and "\n" not in text and "Traceback" not in text, text
    if secret:
        assert secret not in text
    return text


def test_tls_handshakes_that_fail_name_the_uri_never_the_key(tmp_path: Path) -> None:
    _disk(tmp_path / "disk.img")
    keys = psk_file(tmp_path / "keys.psk", "alice")
    wrong = psk_file(tmp_path / "wrong.psk", "alice")
    tls = ("--tls=require", f"--tls-psk={keys}")
    with nbdkit_server("--readonly", "file", str(tmp_path / "disk.img"), tls_args=tls) as (port, _):
        base = f"127.0.0.1:{port}/disk"
        _refused(f"nbds://alice@{base}?tls-psk-file={wrong}", wrong.read_text().split(":")[1].strip())
        assert "bob" in _refused(f"nbds://bob@{base}?tls-psk-file={keys}")  # libnbd: user not in the file
        assert "TLS" in _refused(f"nbd://{base}")  # plain against TLS required: the server says so
        with NbdSource(f"nbds://alice@{base}?tls-psk-file={keys}") as src:  # the server is still fine
            assert src.size == 4 * MiB
    with nbdkit_server("--readonly", "file", str(tmp_path / "disk.img"), tls_args=("--tls=off",)) as (port, _):
        _refused(f"nbds://alice@127.0.0.1:{port}/disk?tls-psk-file={keys}")  # the server has no TLS


@needs_x509_tool
def test_a_certificate_of_another_ca_is_refused(tmp_path: Path) -> None:
    _disk(tmp_path / "disk.img")
    server, _ = x509_dirs(tmp_path / "pki")
    _, other = x509_dirs(tmp_path / "other")
    tls = ("--tls=require", f"--tls-certificates={server}")
    with nbdkit_server("--readonly", "file", str(tmp_path / "disk.img"), tls_args=tls) as (port, _):
        assert "certificate" in _refused(f"nbds://127.0.0.1:{port}/disk?tls-certificates={other}")


@pytest.mark.parametrize(
    ("uri", "warns"),
    [
        ("nbds://host/disk", True),
        ("NBDS://host:10809/disk?tls-verify-peer=true", True),
        ("nbds+unix:///disk?socket=/run/s.sock", True),
        ("nbds://host/disk?tls-certificates=/etc/pki/tapearc", False),
        ("nbds://tapearc@host/disk?tls-psk-file=/etc/tapearc/host.psk", False),
        ("nbd://host/disk", False),
        ("nbd+unix:///disk?socket=/run/s.sock", False),
        ("/dev/vg0/lv", False),
    ],
)
def test_tls_warning_for_a_server_that_is_not_checked(uri: str, warns: bool) -> None:
    from tapearc.nbdclient import tls_warning

    w = tls_warning(uri)
    assert (w is not None) == warns
    if w:
        assert uri in w and "identity is not checked" in w
