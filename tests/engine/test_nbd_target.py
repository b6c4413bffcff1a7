"""Restore onto NBD exports, served by the real tools: a qcow2 by qemu-nbd (Unix socket), a file
by nbdkit (TCP). Every restored image is compared with the volume through ``qemu-img convert -O
raw``; ``qemu-img map`` shows what the restore allocated."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.progress import NoProgress
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import TargetError, TargetTooSmallError
from tapearc.media import open_medium
from tests.nbdsupport import nbdkit_file, needs_libnbd, needs_nbdkit, needs_qemu_nbd, qemu_img, qemu_io, qemu_nbd

KiB = 1024
MiB = 1024 * KiB
BS = 64 * KiB
DATA_RUNS = [(0, 512 * KiB), (1536 * KiB, 1 * MiB)]  # (offset, length) of the data; zeros between
TAIL = 1234  # the volume ends 1234 bytes into a block (not a multiple of 512)
VOL_SIZE = 4 * MiB + TAIL


def make_vol(path: Path, seed: int = 1) -> bytes:
    """A 4 MiB + 1234-byte volume: data, 1 MiB of zeros, data, 1.5 MiB of zeros, a data tail."""
    rng = random.Random(seed)
    data = bytearray(VOL_SIZE)
    for off, n in DATA_RUNS:
        data[off : off + n] = rng.randbytes(n)
    data[4 * MiB :] = rng.randbytes(TAIL)
    path.write_bytes(bytes(data))
    return bytes(data)


def do_backup(spec: str, src: Path, **kw: Any) -> Any:
    with Catalog() as cat, open_medium(spec, write=True) as d:
        return backup(str(src), d, cat, BackupOptions(**kw))


def do_restore(spec: str, to: str, progress: Any = None, **kw: Any) -> Any:
    with Catalog() as cat, open_medium(spec, write=False) as d:
        return restore(d, cat, to, RestoreOptions(**kw), progress)


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120)


def raw_of(image: Path, fmt: str = "qcow2") -> bytes:
    """The image's guest-visible bytes, by qemu-img convert -O raw."""
    out = image.with_suffix(".converted")
    qemu_img("convert", "-U", "-f", fmt, "-O", "raw", str(image), str(out))  # -U: also while served
    return out.read_bytes()


def allocated(image: Path) -> list[tuple[int, int]]:
    """(start, end) of the ranges qemu-img map says hold data (merged)."""
    p = subprocess.run(["qemu-img", "map", "--output=json", str(image)], capture_output=True, text=True, check=True)
    out: list[tuple[int, int]] = []
    for e in json.loads(p.stdout):
        if e["data"]:
            s, t = e["start"], e["start"] + e["length"]
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], t)
            else:
                out.append((s, t))
    return out


def new_qcow2(path: Path, size: int) -> Path:
    qemu_img("create", "-f", "qcow2", str(path), str(size))
    return path


def one_line_error(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, p.stderr
    assert p.stderr.startswith("tapearc: error: ") and "Traceback" not in p.stderr
    return p.stderr


@needs_qemu_nbd
def test_restore_into_fresh_qcow2_is_identical_and_leaves_zeros_unallocated(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    data = make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    img = new_qcow2(tmp_path / "vm.qcow2", 8 * MiB)  # larger than the volume
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        res = do_restore(spec, uri)
    assert res.mode == "nbd" and res.status == "complete"
    assert res.bytes_written == 512 * KiB + 1 * MiB + TAIL and res.bytes_zeroed == 0
    raw = raw_of(img)
    assert raw[:VOL_SIZE] == data and raw[VOL_SIZE:] == bytes(8 * MiB - VOL_SIZE)
    # the zero runs (and the export past the volume) were never written: no clusters there
    assert allocated(img) == [(0, 512 * KiB), (1536 * KiB, 2560 * KiB), (4 * MiB, 4 * MiB + BS)]


@needs_nbdkit
def test_restore_into_nbdkit_tcp_export_of_a_file(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    data = make_vol(vol, seed=2)
    spec = f"dir:{tmp_path / 'medium'}"
    do_backup(spec, vol, compress="zstd")
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(VOL_SIZE)  # exactly the volume's size, sparse: reads as zeros
    with nbdkit_file(disk, read_only=False) as uri:
        assert uri.startswith("nbd://127.0.0.1:")
        p = tapearc("restore", "--media", spec, "--to", uri, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["mode"] == "nbd" and out["target"] == uri and out["status"] == "complete"
    assert disk.read_bytes() == data
    assert os.stat(disk).st_blocks * 512 < 3 * MiB  # the zero runs stayed holes


@needs_qemu_nbd
def test_export_smaller_than_the_volume_is_refused_before_writing(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    img = new_qcow2(tmp_path / "small.qcow2", 4 * MiB)  # 1234 bytes short
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        err = one_line_error(tapearc("restore", "--media", spec, "--to", uri, "--force"), 5)
    assert uri in err and f"holds {4 * MiB} bytes, the volume needs {VOL_SIZE}" in err
    assert allocated(img) == []  # nothing written


@needs_qemu_nbd
def test_read_only_export_is_refused(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    img = new_qcow2(tmp_path / "ro.qcow2", 8 * MiB)
    with qemu_nbd(img, "qcow2", read_only=True) as uri:
        err = one_line_error(tapearc("restore", "--media", spec, "--to", uri), 4)
    assert f"NBD export {uri} is read-only" in err and len(err.strip().splitlines()) == 1


@needs_qemu_nbd
def test_export_holding_foreign_data_needs_force_and_the_rest_is_untouched(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    data = make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    img = new_qcow2(tmp_path / "old.qcow2", 8 * MiB)
    qemu_io(img, "qcow2", "write -P 0x5a 3M 5M")  # data, from before the first zero run ends
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        err = one_line_error(tapearc("restore", "--media", spec, "--to", uri), 4)  # as a block device's
        assert f"target {uri} is not empty and holds no generation of volume " in err
        assert "--force" in err and "--assume-generation" in err
        assert raw_of(img) == bytes(3 * MiB) + b"\x5a" * (5 * MiB)  # nothing written
        res = do_restore(spec, uri, force=True)
    assert res.mode == "nbd" and res.status == "complete"
    raw = raw_of(img)
    assert raw[:VOL_SIZE] == data  # zero runs written as zeros over the old data
    assert raw[VOL_SIZE:] == b"\x5a" * (8 * MiB - VOL_SIZE)  # past the volume: untouched
    assert res.bytes_zeroed == 1 * MiB + 1536 * KiB  # both zero runs, as NBD zero requests
    # WRITE_ZEROES: the zero run over the old data holds no data clusters (zero clusters)
    assert all(e <= 2560 * KiB or s >= 4 * MiB for s, e in allocated(img))


@needs_nbdkit
def test_export_that_cannot_zero_gets_written_zeros(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    data = make_vol(vol, seed=3)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\xff" * VOL_SIZE)
    with nbdkit_file(disk, read_only=False, filters=("nozero",)) as uri:  # no WRITE_ZEROES
        with pytest.raises(TargetError, match="is not empty"):
            do_restore(spec, uri)
        res = do_restore(spec, uri, force=True)
    assert res.status == "complete" and disk.read_bytes() == data


def _versions(vol: Path) -> list[bytes]:
    """Three versions of a volume: some blocks rewritten, some zeroed, and it grows."""
    v1 = bytearray(make_vol(vol, seed=4))
    v2 = bytearray(v1)
    v2[BS : 3 * BS] = random.Random(5).randbytes(2 * BS)
    v2[1536 * KiB : 1536 * KiB + BS] = bytes(BS)  # a data block becomes zero
    v3 = bytearray(v2)
    v3[3 * MiB : 3 * MiB + BS] = random.Random(6).randbytes(BS)  # a zero block gets data
    v3 += random.Random(7).randbytes(BS)  # and it grows
    return [bytes(v1), bytes(v2), bytes(v3)]


def _chain_on_tape(tmp_path: Path) -> tuple[str, list[bytes]]:
    vol = tmp_path / "vol.img"
    versions = _versions(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    for v in versions:
        vol.write_bytes(v)
        do_backup(spec, vol)
    return spec, versions


@needs_qemu_nbd
def test_incremental_chain_restores_and_rolls_forward_from_the_detected_generation(tmp_path: Path) -> None:
    spec, versions = _chain_on_tape(tmp_path)
    size = 8 * MiB
    for n, v in enumerate(versions, start=1):  # every generation into a fresh qcow2
        img = new_qcow2(tmp_path / f"g{n}.qcow2", size)
        with qemu_nbd(img, "qcow2", read_only=False) as uri:
            assert do_restore(spec, uri, generation=n).status == "complete"
        assert raw_of(img)[: len(v)] == v
    img = tmp_path / "g1.qcow2"  # holds generation 1 (larger than the volume: read as a device)
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        res = do_restore(spec, uri)  # the export is read to find the generation it holds
    assert res.mode == "roll-forward" and res.from_generation == 1 and res.generation == 3
    # blocks 1-2 (rewritten), 48 (data at 3 MiB), 64 (was the 1234-byte tail), 65 (new)
    assert res.bytes_written == 4 * BS + TAIL
    assert res.bytes_zeroed == BS  # block 24 became zero
    assert raw_of(img)[: len(versions[2])] == versions[2]
    img = tmp_path / "g3.qcow2"  # holds generation 3: rolled back to 2
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        res = do_restore(spec, uri, generation=2)
    assert res.mode == "rollback" and res.from_generation == 3 and res.generation == 2
    assert raw_of(img)[: len(versions[1])] == versions[1]


@needs_nbdkit
def test_export_of_exactly_the_volume_without_allocation_status_is_detected(tmp_path: Path) -> None:
    """An nbdkit export that reports no holes (``noextents``) is read whole; generation 2 is
    found there and the restore to generation 3 writes only what differs."""
    spec, versions = _chain_on_tape(tmp_path)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(versions[1] + bytes(len(versions[2]) - len(versions[1])))
    with nbdkit_file(disk, read_only=False, filters=("noextents",)) as uri:
        res = do_restore(spec, uri)
        assert res.mode == "roll-forward" and res.from_generation == 2
        assert res.bytes_written == 2 * BS + TAIL  # blocks 48, 64 (grown whole), 65 (new tail)
        assert disk.read_bytes() == versions[2]
        disk.write_bytes(b"\x01" + versions[2][1:])  # one byte differs: generation 3 no more
        p = tapearc("restore", "--media", spec, "--to", uri)
    err = one_line_error(p, 4)
    assert f"target {uri} is not empty and holds no generation of volume " in err
    assert disk.read_bytes()[:1] == b"\x01"  # nothing written


@needs_qemu_nbd
def test_assume_generation_still_rolls_an_export_in_place(tmp_path: Path) -> None:
    spec, versions = _chain_on_tape(tmp_path)
    img = new_qcow2(tmp_path / "g.qcow2", 8 * MiB)
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        assert do_restore(spec, uri, generation=1).status == "complete"
        res = do_restore(spec, uri, assume_generation=1)
    assert res.mode == "roll-forward" and res.from_generation == 1 and res.bytes_written == 4 * BS + TAIL
    assert raw_of(img)[: len(versions[2])] == versions[2]


def _listening(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


@needs_qemu_nbd
def test_server_going_away_mid_restore_names_uri_and_offset(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    vol.write_bytes(random.Random(8).randbytes(8 * MiB))
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol, chunk_size=256 * KiB)  # 32 chunks
    img = new_qcow2(tmp_path / "vm.qcow2", 8 * MiB)
    sock = tmp_path / "vm.sock"
    proc = subprocess.Popen(["qemu-nbd", "--persistent", "-f", "qcow2", "-x", "disk", "-k", str(sock), str(img)])
    try:
        while not _listening(sock):
            assert proc.poll() is None
            time.sleep(0.01)
        uri = f"nbd+unix:///disk?socket={sock}"

        class KillServer(NoProgress):
            def advance(self, n: int) -> None:  # after the first chunk went to the export
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

        with pytest.raises(TargetError) as e:
            do_restore(spec, uri, KillServer())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not isinstance(e.value, TargetTooSmallError)
    assert f"NBD export {uri} at byte " in e.value.message and "\n" not in e.value.message


@needs_libnbd
def test_unreachable_export_is_one_line_and_nothing_is_created(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    make_vol(vol)
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    uri = f"nbd+unix:///disk?socket={tmp_path / 'none.sock'}"
    before = sorted(p.name for p in tmp_path.iterdir())
    err = one_line_error(tapearc("restore", "--media", spec, "--to", uri), 4)
    assert f"cannot connect to NBD export {uri}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file named like the URI


@needs_nbdkit
def test_export_with_a_minimum_block_size_gets_whole_blocks(tmp_path: Path) -> None:
    """An export that refuses requests not aligned to 4096 bytes (nbdkit's blocksize-policy
    filter): the volume's unaligned end is read, patched and written back whole."""
    aligned = ("blocksize-policy",), ("blocksize-minimum=4096", "blocksize-error-policy=error")
    vol = tmp_path / "vol.img"
    data = make_vol(vol, seed=9)  # ends in 1234 bytes of data
    spec = f"sim:{tmp_path / 't.tap'}"
    do_backup(spec, vol)
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(8 * MiB)
    with nbdkit_file(disk, read_only=False, filters=aligned[0], params=aligned[1]) as uri:
        assert do_restore(spec, uri).status == "complete"
    assert disk.read_bytes() == data + bytes(8 * MiB - VOL_SIZE)
    zero_end = data[: 4 * MiB - BS] + bytes(BS + TAIL)  # a zero run up to the unaligned end
    vol.write_bytes(zero_end)
    do_backup(spec, vol)
    disk.write_bytes(b"\xff" * 8 * MiB)
    with nbdkit_file(disk, read_only=False, filters=aligned[0], params=aligned[1]) as uri:
        res = do_restore(spec, uri, force=True)
    assert res.status == "complete" and res.bytes_zeroed >= BS + TAIL
    assert disk.read_bytes() == zero_end + b"\xff" * (8 * MiB - VOL_SIZE)


@needs_nbdkit
def test_nbd_target_writes_large_unaligned_and_reused_buffers(tmp_path: Path) -> None:
    """NbdTarget alone: a 40 MiB write goes as requests of at most 32 MiB (qemu-nbd's limit); a
    write that starts and ends inside 4096-byte blocks patches them; a caller's buffer reused
    after write_at returned does not change what is written (writes are still in flight)."""
    from tapearc.targets.nbd import NbdTarget

    rng = random.Random(10)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\xee" * 48 * MiB)
    policy = ("blocksize-minimum=4096", "blocksize-maximum=33554432", "blocksize-error-policy=error")
    big = rng.randbytes(40 * MiB)
    odd = rng.randbytes(3 * 4096 + 100)
    reused = bytearray(rng.randbytes(MiB))
    expect = bytearray(disk.read_bytes())
    expect[0 : 40 * MiB] = big
    expect[41 * MiB + 1000 : 41 * MiB + 1000 + len(odd)] = odd
    expect[44 * MiB : 45 * MiB] = reused
    with nbdkit_file(disk, read_only=False, filters=("blocksize-policy",), params=policy) as uri:
        with pytest.raises(TargetError, match="not empty"):
            NbdTarget(uri, 48 * MiB, force=False)
        t = NbdTarget(uri, 48 * MiB, force=True)
        assert t.align == 4096 and t.zero_needs_writing
        t.write_at(big, 0)
        t.write_at(memoryview(reused), 44 * MiB)  # queued behind the big write's last request
        reused[:] = bytes(MiB)  # the caller reuses its buffer
        t.write_at(memoryview(odd), 41 * MiB + 1000)
        t.zero_range(46 * MiB + 1, 2 * MiB - 1)  # unaligned start: written zeros, then WRITE_ZEROES
        expect[46 * MiB + 1 : 48 * MiB] = bytes(2 * MiB - 1)
        t.commit()
    assert disk.read_bytes() == bytes(expect)


@needs_qemu_nbd
def test_detection_reads_only_what_block_status_says_holds_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 64 MiB volume holding two 64 KiB blocks, restored into a 64 MiB qcow2 that holds it: the
    detection reads the two 4 MiB windows that start at data, not the 56 MiB of holes."""
    from tapearc.targets.nbd import NbdTarget

    vol = tmp_path / "vol.img"
    size = 64 * MiB
    rng = random.Random(11)
    v1 = bytearray(size)
    v1[0:BS] = rng.randbytes(BS)
    v1[40 * MiB : 40 * MiB + BS] = rng.randbytes(BS)
    v2 = bytearray(v1)
    v2[40 * MiB : 40 * MiB + BS] = rng.randbytes(BS)
    spec = f"sim:{tmp_path / 't.tap'}"
    for v in (v1, v2):
        with open(vol, "wb") as f:
            f.truncate(size)
            for off in (0, 40 * MiB):
                f.seek(off)
                f.write(v[off : off + BS])
        do_backup(spec, vol)
    img = new_qcow2(tmp_path / "g.qcow2", size)
    with qemu_nbd(img, "qcow2", read_only=False) as uri:
        assert do_restore(spec, uri, generation=1).status == "complete"
        read: list[int] = []
        real = NbdTarget.read_into

        def counting(self: NbdTarget, view: memoryview, offset: int) -> int:
            read.append(len(view))
            return real(self, view, offset)

        monkeypatch.setattr(NbdTarget, "read_into", counting)
        res = do_restore(spec, uri)
    assert res.mode == "roll-forward" and res.from_generation == 1 and res.bytes_written == BS
    assert sum(read) == 2 * 4 * MiB  # a window from each data block; the holes were not read
    assert raw_of(img) == bytes(v2)
