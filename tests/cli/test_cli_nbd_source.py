"""Backups of NBD exports from the command line: ``tapearc backup nbd+unix:///disk?socket=...``.

Every generation restores byte-identical to ``qemu-img convert -O raw`` of the disk at the time
of its backup; the unallocated parts of a qcow2 disk are not read; an incremental of the same URI
continues the volume; another export under the same name is another volume (exit 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.nbdsupport import nbdkit_file, needs_nbdkit, needs_qemu_nbd, qemu_img, qemu_io, qemu_nbd

MiB = 1024 * 1024


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120, check=False
    )


def ok(p: subprocess.CompletedProcess[str]) -> Any:
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def raw_of(image: Path, fmt: str, out: Path) -> bytes:
    qemu_img("convert", "-f", fmt, "-O", "raw", str(image), str(out))
    data = out.read_bytes()
    out.unlink()
    return data


def restore_gen(spec: str, out: Path, generation: int | None = None) -> bytes:
    args = ["restore", "--media", spec, "--to", str(out), "--force", "--json"]
    if generation is not None:
        args += ["--generation", str(generation)]
    ok(tapearc(*args))
    data = out.read_bytes()
    out.unlink()
    return data


@needs_qemu_nbd
def test_qcow2_export_full_and_incremental_round_trip(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", str(disk), "40M")
    qemu_io(disk, "qcow2", "write -P 0x11 0 1M", "write -P 0x22 7M 64k", "write -P 0x33 39M 100k")
    spec = f"sim:{tmp_path / 't.tap'}"
    raw1 = raw_of(disk, "qcow2", tmp_path / "raw1")
    with qemu_nbd(disk, "qcow2") as uri:
        r1 = ok(tapearc("backup", uri, "--media", spec, "--json"))
    assert r1["kind"] == "full" and r1["volume"] == "disk"
    assert r1["source_path"] == uri and r1["source_real"] == uri
    assert r1["source_bytes_read"] < 2 * MiB + 256 * 1024  # only the allocated clusters are read
    qemu_io(disk, "qcow2", "write -P 0x44 20M 64k", "write -z 0 64k")
    raw2 = raw_of(disk, "qcow2", tmp_path / "raw2")
    with qemu_nbd(disk, "qcow2") as uri2:
        assert uri2 == uri
        r2 = ok(tapearc("backup", uri2, "--media", spec, "--json"))
    assert r2["kind"] == "incremental" and r2["volume"] == "disk" and r2["generation"] == 2
    assert restore_gen(spec, tmp_path / "out.img") == raw2
    assert restore_gen(spec, tmp_path / "out.img", 1) == raw1
    text = tapearc("list", "--media", spec)
    assert text.returncode == 0 and uri in text.stdout


@needs_qemu_nbd
def test_raw_export_round_trip_text_output(tmp_path: Path) -> None:
    img = tmp_path / "vm.img"
    with open(img, "wb") as f:
        f.truncate(16 * MiB)
        f.seek(5 * MiB)
        f.write(b"\x5a" * 300_000)
    spec = f"sim:{tmp_path / 't.tap'}"
    with qemu_nbd(img, "raw", export="vm") as uri:
        p = tapearc("backup", uri, "--media", spec)
    assert p.returncode == 0, p.stderr
    assert f"backed up {uri}" in p.stdout and "volume 'vm'" in p.stdout and "read from the source" in p.stdout
    assert restore_gen(spec, tmp_path / "out.img") == img.read_bytes()


@needs_qemu_nbd
def test_another_export_under_the_same_name_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    a.write_bytes(b"\x01" * MiB)
    b.write_bytes(b"\x02" * MiB)
    spec = f"sim:{tmp_path / 't.tap'}"
    with qemu_nbd(a, "raw") as ua:
        ok(tapearc("backup", ua, "--media", spec, "--json"))
    size = (tmp_path / "t.tap").stat().st_size
    with qemu_nbd(b, "raw") as ub:
        assert ub != ua
        p = tapearc("backup", ub, "--media", spec)
        assert p.returncode == 7, p.stderr
        assert "volume 'disk' of media set" in p.stderr and ua in p.stderr and ub in p.stderr
        assert (tmp_path / "t.tap").stat().st_size == size  # nothing written
        r = ok(tapearc("backup", ub, "--media", spec, "--new-volume", "--json"))
    assert r["volume"] != "disk" and r["kind"] == "full"


@needs_nbdkit
def test_nbdkit_tcp_export_round_trip(tmp_path: Path) -> None:
    img = tmp_path / "remote.img"
    img.write_bytes(bytes(range(256)) * 4096 * 3 + b"tail")
    spec = f"sim:{tmp_path / 't.tap'}"
    with nbdkit_file(img) as uri:
        r = ok(tapearc("backup", uri, "--media", spec, "--compress", "zstd", "--json"))
    assert r["source_path"] == uri and r["volume_size"] == img.stat().st_size
    assert restore_gen(spec, tmp_path / "out.img") == img.read_bytes()


def test_an_export_that_does_not_answer(tmp_path: Path) -> None:
    uri = f"nbd+unix:///disk?socket={tmp_path / 'none.sock'}"
    p = tapearc("backup", uri, "--media", f"sim:{tmp_path / 't.tap'}")
    assert p.returncode == 3, p.stderr
    assert uri in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "t.tap").exists() or (tmp_path / "t.tap").stat().st_size == 0


@needs_qemu_nbd
def test_verify_against_an_nbd_export(tmp_path: Path) -> None:
    """verify --against takes an NBD URI too: equal to the export it was backed up from, and
    the blocks written since named; the export's unallocated ranges are not read."""
    disk = tmp_path / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", str(disk), "64M")
    qemu_io(disk, "qcow2", "write -P 0x11 0 1M", "write -P 0x22 40M 64k")
    spec = f"sim:{tmp_path / 't.tap'}"
    with qemu_nbd(disk, "qcow2") as uri:
        ok(tapearc("backup", uri, "--media", spec, "--json"))
        same = ok(tapearc("verify", "--media", spec, "--against", uri, "--json"))
    assert same["against"]["equal"] is True, same["against"]
    qemu_io(disk, "qcow2", "write -P 0x33 20M 64k")
    with qemu_nbd(disk, "qcow2") as uri:
        p = tapearc("verify", "--media", spec, "--against", uri, "--json")
    assert p.returncode != 0
    rep = json.loads(p.stdout)["against"]
    assert rep["equal"] is False and rep["differing_ranges"] == [[320, 320]], rep


def test_verify_against_a_sparse_file(tmp_path: Path) -> None:
    """A sparse source's holes compare as zeros without being read, and a block written inside
    a hole after the backup is named."""
    src = tmp_path / "sparse.img"
    with open(src, "wb") as f:
        f.truncate(256 * MiB)
        f.seek(100 * MiB)
        f.write(b"\x5a" * MiB)
    spec = f"sim:{tmp_path / 't.tap'}"
    ok(tapearc("backup", str(src), "--media", spec, "--json"))
    assert ok(tapearc("verify", "--media", spec, "--against", str(src), "--json"))["against"]["equal"] is True
    with open(src, "r+b") as f:
        f.seek(200 * MiB + 5)
        f.write(b"\x01")
    p = tapearc("verify", "--media", spec, "--against", str(src), "--json")
    assert json.loads(p.stdout)["against"]["differing_ranges"] == [[3200, 3200]]
