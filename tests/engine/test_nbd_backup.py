"""Backups from NBD exports: a server that goes away in the middle of a backup (a SourceError
naming the URI and the byte offset, and the generation is closed on the medium as incomplete, as
for a file); a server that offers no block status (everything read, restored byte-identical)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.listing import list_medium
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import SourceError
from tapearc.media import open_medium
from tests.conftest import KiB, MiB
from tests.nbdsupport import nbdkit_file, needs_nbdkit, needs_qemu_nbd, qemu_nbd


class KillAfter:
    """A Progress that kills the server once the backup has had its first window."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.n = 0

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        self.n += 1
        if self.n == 1:
            self.proc.kill()
            self.proc.wait()

    def finish(self) -> None:
        pass


@needs_qemu_nbd
def test_server_going_away_mid_backup(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(16 * MiB))
    sock = tmp_path / "s.sock"
    proc = subprocess.Popen(
        ["qemu-nbd", "--persistent", "-f", "raw", "-x", "disk", "-k", str(sock), "--read-only", str(img)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.02)
        uri = f"nbd+unix:///disk?socket={sock}"
        spec = f"sim:{tmp_path / 't.tap'}"
        opts = BackupOptions(record_size=64 * KiB, chunk_size=256 * KiB)
        with Catalog() as cat, open_medium(spec, write=True) as drive, pytest.raises(SourceError) as info:
            backup(uri, drive, cat, opts, KillAfter(proc))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    msg = str(info.value)
    assert f"reading NBD export {uri} at byte " in msg and "failed" in msg
    at = int(msg.split(" at byte ")[1].split()[0])
    assert 0 < at < 16 * MiB and at % (64 * KiB) == 0  # a window boundary
    assert "marked incomplete" in (info.value.hint or "")
    # the server went away: not the advice for a volume that changed
    assert "server or connection went away" in (info.value.hint or "") and "quiet" not in (info.value.hint or "")
    with open_medium(spec, write=False) as drive:
        f = next(f for f in list_medium(drive).files if f.kind == "generation")
    assert f.trailer and not f.complete and f.closed
    with Catalog() as cat:
        sets = [uuid.UUID(row[0]) for row in cat.db.execute("SELECT uuid FROM media_sets")]
        assert [g.state for s in sets for g in cat.generations(s, "disk")] == ["incomplete"]


@needs_nbdkit
def test_export_without_block_status_is_read_whole_and_restores_identical(tmp_path: Path) -> None:
    """nbdkit's noextents filter: the server offers no base:allocation, so nothing is known to
    be a hole; the backup reads every byte (zeros included) and the restore is byte-identical."""
    img = tmp_path / "disk.img"
    size = 8 * MiB + 3 * 512
    data = bytearray(size)
    data[0 : 100 * KiB] = os.urandom(100 * KiB)
    data[5 * MiB : 5 * MiB + 4097] = os.urandom(4097)
    data[-700:] = os.urandom(700)
    with open(img, "wb") as f:
        f.truncate(size)  # sparse: holes a server with block status would report
        for off, n in [(0, 100 * KiB), (5 * MiB, 4097), (size - 700, 700)]:
            f.seek(off)
            f.write(data[off : off + n])
    spec = f"sim:{tmp_path / 't.tap'}"
    with nbdkit_file(img, filters=("noextents",)) as uri:
        with Catalog() as cat, open_medium(spec, write=True) as drive:
            res = backup(uri, drive, cat, BackupOptions(record_size=64 * KiB, chunk_size=256 * KiB))
    assert res.source_bytes_read == size  # everything read: no holes were known
    assert not res.warnings
    out = tmp_path / "restored.img"
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        r = restore(drive, cat, str(out), RestoreOptions())
    assert r.status == "complete" and out.read_bytes() == bytes(data)


class GrowAfter:
    """A Progress that makes the served file 1 MiB longer once the backup has had its first window."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        self.n += 1
        if self.n == 1:
            with open(self.path, "ab") as f:
                f.write(b"\x77" * MiB)

    def finish(self) -> None:
        pass


@needs_nbdkit
def test_export_that_grew_during_the_backup_is_warned_about(tmp_path: Path) -> None:
    """NBD gives the size at connection time: the backup asks a second connection at the end
    (nbdkit's file plugin gives each new connection the file's size then)."""
    img = tmp_path / "disk.img"
    data = os.urandom(4 * MiB)
    img.write_bytes(data)
    spec = f"sim:{tmp_path / 't.tap'}"
    with nbdkit_file(img) as uri:
        with Catalog() as cat, open_medium(spec, write=True) as drive:
            opts = BackupOptions(record_size=64 * KiB, chunk_size=256 * KiB)
            res = backup(uri, drive, cat, opts, GrowAfter(img))
    assert res.warnings == [
        f"source {uri} grew during the backup: bytes after {4 * MiB} were not backed up (it now holds {5 * MiB} bytes)"
    ]
    out = tmp_path / "restored.img"
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        assert restore(drive, cat, str(out), RestoreOptions()).status == "complete"
    assert out.read_bytes() == data


@needs_qemu_nbd
def test_size_recheck_on_a_one_client_server_gives_up_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qemu-nbd --shared=1 serves one client at a time: the second connection gets no answer,
    the size is not known again (None), and the backup ends normally, without a warning."""
    import tapearc.sources.nbd as nbd_mod
    from tapearc.sources.nbd import NbdSource

    monkeypatch.setattr(nbd_mod, "RECHECK_SECONDS", 0.3)
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(MiB))
    with qemu_nbd(img, "raw", shared=1) as uri:
        with NbdSource(uri) as src:
            assert src.current_size() is None
        spec = f"sim:{tmp_path / 't.tap'}"
        with Catalog() as cat, open_medium(spec, write=True) as drive:
            res = backup(uri, drive, cat, BackupOptions())
    assert res.warnings == [] and res.source_bytes_read == MiB
