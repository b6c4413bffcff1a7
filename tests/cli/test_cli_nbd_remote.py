"""Backups of another host's disk over NBD with TLS, from the command line, with the real parts:
nbdkit ``--tls=require`` on 127.0.0.1 (a pre-shared key, or X.509 certificates of a test CA
made with openssl) and ``tapearc backup nbds://USER@127.0.0.1:PORT/EXPORT?tls-psk-file=FILE``.

A full and an incremental after a changed region restore byte-identical. A handshake that fails
(another key, a plain client against a server that requires TLS, a TLS client against a plain
server) is one line naming the URI (never the key), exit 3 (a source error), and nothing new on
the medium or in the catalog. A server that goes away in the middle of a backup (killed while
its reads are held back by nbdkit's delay filter) is one error line naming the URI (and a hint
saying the generation is marked incomplete), exit 3, the generation is not complete, and the
medium takes the next backup, which restores.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.nbdsupport import (
    free_port,
    nbdkit_server,
    needs_nbdkit,
    needs_qemu_nbd,
    needs_x509_tool,
    psk_file,
    qemu_img,
    qemu_io,
    qemu_nbd_tls,
    x509_dirs,
)

MiB = 1024 * 1024

pytestmark = needs_nbdkit


def tapearc(*args: str, catalog: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", "--progress", "none", *args, "--catalog", str(catalog)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(p: subprocess.CompletedProcess[str]) -> Any:
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def make_disk(path: Path, size: int = 16 * MiB) -> None:
    """A sparse disk with data at 0, 5 MiB and near its end."""
    with open(path, "wb") as f:
        f.truncate(size)
        for at, byte in ((0, 0x11), (5 * MiB, 0x22), (size - 200_000, 0x33)):
            f.seek(at)
            f.write(bytes([byte]) * 150_000)


def change(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(9 * MiB + 4096)
        f.write(b"\x5a" * 70_000)


def restored(spec: str, catalog: Path, out: Path, generation: int) -> bytes:
    args = ("restore", "--media", spec, "--to", str(out), "--force", "--generation", str(generation), "--json")
    ok(tapearc(*args, catalog=catalog))
    data = out.read_bytes()
    out.unlink()
    return data


def round_trip(tmp_path: Path, disk: Path, uri: str) -> None:
    """Full, a changed region, incremental (the server keeps running: the same URI); both restore."""
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    gen1 = disk.read_bytes()
    r1 = ok(tapearc("backup", uri, "--media", spec, "--json", catalog=cat))
    assert r1["kind"] == "full" and r1["volume"] == "disk" and r1["source_path"] == uri
    assert r1["source_bytes_read"] < 2 * MiB  # the holes are not read
    change(disk)
    r2 = ok(tapearc("backup", uri, "--media", spec, "--json", catalog=cat))
    assert r2["kind"] == "incremental" and r2["generation"] == 2 and r2["volume"] == "disk"
    assert restored(spec, cat, tmp_path / "out.img", 2) == disk.read_bytes()
    assert restored(spec, cat, tmp_path / "out.img", 1) == gen1


def test_psk_full_and_incremental_restore(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    make_disk(disk)
    keys = psk_file(tmp_path / "keys.psk", "tapearc")
    tls = ("--tls=require", f"--tls-psk={keys}")
    with nbdkit_server("file", str(disk), tls_args=tls) as (port, _):
        round_trip(tmp_path, disk, f"nbds://tapearc@127.0.0.1:{port}/disk?tls-psk-file={keys}")


@needs_x509_tool
def test_x509_full_and_incremental_restore(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    make_disk(disk)
    server, client = x509_dirs(tmp_path / "pki")
    tls = ("--tls=require", f"--tls-certificates={server}")
    with nbdkit_server("file", str(disk), tls_args=tls) as (port, _):
        round_trip(tmp_path, disk, f"nbds://127.0.0.1:{port}/disk?tls-certificates={client}")


def _medium_state(tmp_path: Path, cat: Path) -> tuple[str, list[tuple[Any, ...]]]:
    digest = hashlib.sha256((tmp_path / "t.tap").read_bytes()).hexdigest()
    with sqlite3.connect(cat) as db:
        rows = db.execute("SELECT number, state FROM generations ORDER BY id").fetchall()
    return digest, rows


@pytest.mark.parametrize("case", ["wrong-key", "plain-to-tls", "tls-to-plain"])
def test_a_failed_handshake_writes_nothing(tmp_path: Path, case: str) -> None:
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * MiB)
    keys = psk_file(tmp_path / "keys.psk", "tapearc")
    wrong = psk_file(tmp_path / "wrong.psk", "tapearc")
    secrets = [p.read_text().split(":")[1].strip() for p in (keys, wrong)]
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    ok(tapearc("backup", str(disk), "--media", spec, "--json", catalog=cat))  # the medium holds something
    before = _medium_state(tmp_path, cat)
    tls = ("--tls=off",) if case == "tls-to-plain" else ("--tls=require", f"--tls-psk={keys}")
    with nbdkit_server("--readonly", "file", str(disk), tls_args=tls) as (port, _):
        uri = {
            "wrong-key": f"nbds://tapearc@127.0.0.1:{port}/disk?tls-psk-file={wrong}",
            "plain-to-tls": f"nbd://127.0.0.1:{port}/disk",
            "tls-to-plain": f"nbds://tapearc@127.0.0.1:{port}/disk?tls-psk-file={keys}",
        }[case]
        p = tapearc("backup", uri, "--media", spec, "--json", catalog=cat)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and uri in lines[0] and lines[0].startswith("tapearc: "), p.stderr
    assert not any(s in p.stderr for s in secrets)
    assert _medium_state(tmp_path, cat) == before


def test_a_server_that_goes_away_mid_backup(tmp_path: Path) -> None:
    """nbdkit's delay filter holds every read back 1 s (8 reads of 512 KiB in flight: 48 MiB
    take 12 s): the kill lands after the first progress report, with reads outstanding."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(hashlib.shake_256(b"remote").digest(48 * MiB))
    keys = psk_file(tmp_path / "keys.psk", "tapearc")
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    tls = ("--tls=require", f"--tls-psk={keys}")
    with nbdkit_server("--filter=delay", "file", str(disk), "delay-read=1", tls_args=tls) as (port, server):
        uri = f"nbds://tapearc@127.0.0.1:{port}/disk?tls-psk-file={keys}"
        cmd = [sys.executable, "-m", "tapearc", "--progress", "json", "backup", uri, "--media", spec]
        proc = subprocess.Popen(
            [*cmd, "--catalog", str(cat)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            event = json.loads(line)
            if event["message_type"] == "status" and event["bytes_done"] > 0:
                assert event["bytes_done"] < 48 * MiB
                break
        server.send_signal(signal.SIGKILL)
        server.wait()
        rest = proc.stderr.read()
        proc.wait(timeout=120)
    errors = [ln for ln in rest.splitlines() if ln.startswith("tapearc: error:")]
    assert proc.returncode == 3, rest
    assert len(errors) == 1 and uri in errors[0] and "Traceback" not in rest, rest
    assert "generation 1 of volume disk is marked incomplete" in rest  # the hint line
    assert keys.read_text().split(":")[1].strip() not in rest
    with sqlite3.connect(cat) as db:
        states = db.execute("SELECT state FROM generations").fetchall()
    assert ("complete",) not in states, states
    # the medium takes the next backup (the same disk, the server back on its port), which restores
    with nbdkit_server("file", str(disk), tls_args=tls, port=port):
        r = ok(tapearc("backup", uri, "--media", spec, "--json", catalog=cat))
    assert r["complete"] and r["kind"] == "full", r
    assert restored(spec, cat, tmp_path / "out.img", r["generation"]) == disk.read_bytes()
    listing = ok(tapearc("list", "--media", spec, "--json", catalog=cat))
    assert [g["complete"] for g in listing["generations"]][-1] is True, listing["generations"]


def test_a_job_file_of_two_hosts_over_tls(tmp_path: Path) -> None:
    """A per-host job file names each host's export by its nbds:// URI (the key file's path in
    the URI is absolute: a URI is taken as written, not relative to the job file)."""
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    disks = [tmp_path / "web.img", tmp_path / "db.img"]
    for d in disks:
        make_disk(d, 4 * MiB)
    keys = [psk_file(tmp_path / "web.psk", "tapearc"), psk_file(tmp_path / "db.psk", "tapearc")]
    with (
        nbdkit_server("--readonly", "file", str(disks[0]), tls_args=("--tls=require", f"--tls-psk={keys[0]}")) as (
            p0,
            _,
        ),
        nbdkit_server("--readonly", "file", str(disks[1]), tls_args=("--tls=require", f"--tls-psk={keys[1]}")) as (
            p1,
            _,
        ),
    ):
        uris = [f"nbds://tapearc@127.0.0.1:{p}/disk?tls-psk-file={k}" for p, k in ((p0, keys[0]), (p1, keys[1]))]
        job = tmp_path / "hosts.toml"
        job.write_text(
            f'[job]\nname = "hosts"\nmedia = "{spec}"\n\n'
            f'[[volume]]\nname = "web"\nsource = "{uris[0]}"\n\n'
            f'[[volume]]\nname = "db"\nsource = "{uris[1]}"\n'
        )
        summary = ok(tapearc("run", str(job), "--json", catalog=cat))
    outcomes = {v["volume"]: v["outcome"] for v in summary["volumes"]}
    assert outcomes == {"web": "ok", "db": "ok"}, summary
    for name, disk in (("web", disks[0]), ("db", disks[1])):
        out = tmp_path / f"{name}.out"
        ok(tapearc("restore", "--media", spec, "--volume", name, "--to", str(out), "--json", catalog=cat))
        assert out.read_bytes() == disk.read_bytes()


def qcow2_rounds(tmp_path: Path, creds: str, uri_of: Any) -> None:
    """A qcow2 with a persistent dirty bitmap served by qemu-nbd over TLS: a full, 64 KiB
    written, an incremental that reads only the dirty 64 KiB; both restore as qemu-img convert."""
    disk = tmp_path / "vm1.qcow2"
    qemu_img("create", "-f", "qcow2", str(disk), "32M")
    qemu_io(disk, "qcow2", "write -P 0x11 0 1M", "write -P 0x22 30M 64k")
    qemu_img("bitmap", "--add", str(disk), "tapearc")
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    raws, port = [], free_port()  # the same URI each night: the same port
    for round_ in (1, 2):
        if round_ == 2:
            qemu_io(disk, "qcow2", "write -P 0x44 12M 64k")
        qemu_img("convert", "-f", "qcow2", "-O", "raw", str(disk), str(tmp_path / "raw"))
        raws.append((tmp_path / "raw").read_bytes())
        with qemu_nbd_tls(disk, "qcow2", creds, bitmap="tapearc", export="vm1", port=port):
            uri = uri_of(port)
            r = ok(tapearc("backup", uri, "--media", spec, "--dirty-bitmap", "tapearc", "--json", catalog=cat))
        assert r["volume"] == "vm1" and r["generation"] == round_, r
    assert r["kind"] == "incremental" and r["change"]["trusted"] is True, r
    assert r["source_bytes_read"] == 65536, r
    assert restored(spec, cat, tmp_path / "out.img", 2) == raws[1]
    assert restored(spec, cat, tmp_path / "out.img", 1) == raws[0]


@needs_qemu_nbd
def test_qemu_nbd_psk_with_a_dirty_bitmap(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    keys = psk_file(tls / "keys.psk", "tapearc")  # qemu reads DIR/keys.psk
    creds = f"tls-creds-psk,id=tls0,endpoint=server,dir={tls}"
    qcow2_rounds(tmp_path, creds, lambda port: f"nbds://tapearc@127.0.0.1:{port}/vm1?tls-psk-file={keys}")


@needs_qemu_nbd
@needs_x509_tool
def test_qemu_nbd_x509_verifying_its_client(tmp_path: Path) -> None:
    """qemu-nbd's tls-creds-x509 verifies the client by default: the tape server's folder holds
    a client certificate of the CA beside the CA's (docs/remote-sources.md)."""
    server, client = x509_dirs(tmp_path / "pki", client_cert=True)
    creds = f"tls-creds-x509,id=tls0,endpoint=server,dir={server}"
    qcow2_rounds(tmp_path, creds, lambda port: f"nbds://127.0.0.1:{port}/vm1?tls-certificates={client}")


@needs_x509_tool
def test_tls_without_a_ca_folder_warns_that_the_server_is_not_checked(tmp_path: Path) -> None:
    """libnbd encrypts an nbds:// URI naming no tls-certificates= folder but does not check the
    server's certificate: the backup says so (a warning naming the URI), and says nothing when the
    URI names the CA folder."""
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * MiB)
    server, client = x509_dirs(tmp_path / "pki")
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    tls = ("--tls=require", f"--tls-certificates={server}")
    with nbdkit_server("file", str(disk), tls_args=tls) as (port, _):
        bare = f"nbds://127.0.0.1:{port}/disk"
        p = tapearc("backup", bare, "--media", spec, "--volume", "disk", "--json", catalog=cat)
        if p.returncode != 0:
            pytest.skip(f"this libnbd refuses a server it cannot check (exit {p.returncode}): nothing to warn of")
        warned = [w for w in json.loads(p.stdout)["warnings"] if "identity is not checked" in w]
        assert len(warned) == 1 and bare in warned[0]
        checked = f"{bare}?tls-certificates={client}"
        r = ok(tapearc("backup", checked, "--media", spec, "--volume", "disk", "--json", catalog=cat))
        assert not any("identity is not checked" in w for w in r["warnings"])
