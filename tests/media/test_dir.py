"""dir: backend specifics (layout on disk, marker, refusal of foreign folders, early warning)."""

from __future__ import annotations

import errno
import json
import os

import pytest

from tapearc.errors import (
    MediumFullError,
    MediumIOError,
    MediumUnavailableError,
    NotTapearcMediumError,
    WriteProtectedError,
)
from tapearc.media.base import Mark, Position, WriteStatus
from tapearc.media.dirmedium import MARKER_NAME, DirDrive, create_dir_medium


def test_missing_folder_for_reading_is_unavailable(tmp_path):
    with pytest.raises(MediumUnavailableError, match="no such folder"):
        DirDrive(str(tmp_path / "nope"), write=False)
    assert not (tmp_path / "nope").exists()


def test_missing_folder_for_writing_is_created_with_a_marker(tmp_path):
    path = tmp_path / "a" / "medium"
    with DirDrive(str(path), write=True) as d:
        assert d.name == f"dir:{path}"
        assert d.max_record_size == 16 * 1024 * 1024
    marker = json.loads((path / MARKER_NAME).read_text())
    assert marker == {"format": "tapearc-dir-medium", "version": 1}


def test_layout_on_disk(tmp_path):
    path = tmp_path / "m"
    with DirDrive(str(path), write=True) as d:
        d.write_record(b"a0")
        d.write_record(b"a1")
        d.write_filemark()
        d.write_filemark()
        d.write_record(b"c0")
    assert (path / "file-000000" / "rec-000000000").read_bytes() == b"a0"
    assert (path / "file-000000" / "rec-000000001").read_bytes() == b"a1"
    assert (path / "file-000000" / "FILEMARK").read_bytes() == b""
    assert sorted(os.listdir(path / "file-000001")) == ["FILEMARK"]
    assert sorted(os.listdir(path / "file-000002")) == ["rec-000000000"]
    with DirDrive(str(path), write=False) as d:  # counts come back from the scan
        assert d.seek_end_of_data() == Position(5, 2, 1)
        st = d.status()
        assert st.details["filemarks"] == 2
        assert st.used == 6


def test_truncation_removes_files(tmp_path):
    path = tmp_path / "m"
    with DirDrive(str(path), write=True) as d:
        for obj in [b"a", b"b", None, b"c", None, b"d"]:
            d.write_filemark() if obj is None else d.write_record(obj)
        d.locate(1)
        d.write_record(b"B")
    assert sorted(os.listdir(path)) == [MARKER_NAME, "file-000000"]
    assert sorted(os.listdir(path / "file-000000")) == ["rec-000000000", "rec-000000001"]
    assert (path / "file-000000" / "rec-000000001").read_bytes() == b"B"


@pytest.mark.parametrize("write", [True, False])
def test_non_empty_folder_without_marker_is_refused(tmp_path, write):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(NotTapearcMediumError, match="not a tapearc dir medium"):
        DirDrive(str(tmp_path / "photos"), write=write)
    assert os.listdir(tmp_path / "photos") == ["cat.jpg"]  # nothing scribbled


def test_empty_folder_and_lost_found(tmp_path):
    disk = tmp_path / "disk"
    (disk / "lost+found").mkdir(parents=True)
    with DirDrive(str(disk), write=False) as d:
        assert d.read_record() is Mark.END_OF_DATA
    assert not (disk / MARKER_NAME).exists()  # reading never writes
    with DirDrive(str(disk), write=True) as d:
        d.write_record(b"x")
    assert (disk / MARKER_NAME).exists()


def test_not_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(NotTapearcMediumError, match="not a folder"):
        DirDrive(str(f), write=True)


@pytest.mark.parametrize("content", ["not json", '{"format": "other"}', "[]"])
def test_bad_marker(tmp_path, content):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MARKER_NAME).write_text(content)
    with pytest.raises(NotTapearcMediumError):
        DirDrive(str(tmp_path / "m"), write=True)


def test_newer_marker_version(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MARKER_NAME).write_text('{"format": "tapearc-dir-medium", "version": 2}')
    with pytest.raises(NotTapearcMediumError, match="version 2"):
        DirDrive(str(tmp_path / "m"), write=False)


def test_write_protected_marker(tmp_path):
    create_dir_medium(str(tmp_path / "m"), write_protected=True)
    with DirDrive(str(tmp_path / "m"), write=True) as d:
        assert d.writable is False
        assert d.status().write_protected is True
        with pytest.raises(WriteProtectedError, match="write-protected"):
            d.write_record(b"x")


def test_busy_while_open_for_writing(tmp_path):
    with DirDrive(str(tmp_path / "m"), write=True), pytest.raises(MediumUnavailableError, match="in use"):
        DirDrive(str(tmp_path / "m"), write=False)
    with DirDrive(str(tmp_path / "m"), write=False), DirDrive(str(tmp_path / "m"), write=False):
        pass  # readers share


def test_damaged_layout(tmp_path):
    path = tmp_path / "m"
    with DirDrive(str(path), write=True) as d:
        d.write_record(b"a")
        d.write_filemark()
        d.write_record(b"b")
    os.unlink(path / "file-000000" / "FILEMARK")
    with pytest.raises(MediumIOError, match="damaged dir medium"):
        DirDrive(str(path), write=False)


def test_early_warning_from_free_space(tmp_path, monkeypatch):
    with DirDrive(str(tmp_path / "m"), write=True, reserve=1000) as d:
        monkeypatch.setattr(d, "_free_bytes", lambda: 10**9)
        assert d.write_record(b"x" * 100) is WriteStatus.OK
        monkeypatch.setattr(d, "_free_bytes", lambda: 500 + 70000)
        assert d.write_record(b"x" * 100) is WriteStatus.OK  # 70500 >= reserve... of 1000
        d.reserve = 80000
        assert d.write_record(b"x" * 100) is WriteStatus.EARLY_WARNING
        assert d.write_filemark() is WriteStatus.EARLY_WARNING
        monkeypatch.setattr(d, "_free_bytes", lambda: 1000)
        with pytest.raises(MediumFullError):
            d.write_record(b"x" * 100)
        assert d.position() == Position(4, 1, 0)


def test_enospc_from_the_os_removes_the_partial_record(tmp_path, monkeypatch):
    import builtins

    with DirDrive(str(tmp_path / "m"), write=True, reserve=0) as d:
        d.write_record(b"a")
        real_open = builtins.open

        class Failing:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(bytes(data[:3]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def fake_open(path, mode="r", *args, **kw):
            fh = real_open(path, mode, *args, **kw)
            return Failing(fh) if "w" in mode and "rec-" in str(path) else fh

        monkeypatch.setattr(builtins, "open", fake_open)
        with pytest.raises(MediumFullError):
            d.write_record(b"bbbbbbbb")
        monkeypatch.setattr(builtins, "open", real_open)
        assert d.position() == Position(1, 0, 1)
        assert sorted(os.listdir(tmp_path / "m" / "file-000000")) == ["rec-000000000"]
        assert d.write_record(b"c") is WriteStatus.OK


def test_record_files_larger_than_max_are_too_large(tmp_path):
    from tapearc.errors import RecordTooLargeError

    with DirDrive(str(tmp_path / "m"), write=True) as d:
        d.write_record(b"x" * 5000)
        d.write_record(b"y")
    with DirDrive(str(tmp_path / "m"), write=False, max_record_size=4096) as d:
        with pytest.raises(RecordTooLargeError):
            d.read_record()
        assert d.read_record() == b"y"


def _count_syncs(monkeypatch) -> list[str]:
    """Record every syncfs / fsync the dir medium issues."""
    from tapearc.media import dirmedium

    calls: list[str] = []
    real_syncfs, real_fsync_path = dirmedium.syncfs, dirmedium._fsync_path

    def syncfs(path):
        calls.append("syncfs")
        return real_syncfs(path)

    def fsync_path(path, *, directory=False):
        calls.append(os.path.basename(path))
        real_fsync_path(path, directory=directory)

    monkeypatch.setattr(dirmedium, "syncfs", syncfs)
    monkeypatch.setattr(dirmedium, "_fsync_path", fsync_path)
    return calls


def test_immediate_filemark_leaves_durability_to_sync(tmp_path, monkeypatch):
    path = str(tmp_path / "m")
    with DirDrive(path, write=True) as d:
        calls = _count_syncs(monkeypatch)
        d.write_record(b"a")
        d.write_filemark(immediate=True)
        d.write_record(b"b")
        d.write_filemark(immediate=True)
        assert calls == []  # nothing made durable yet
        assert os.path.exists(os.path.join(path, "file-000000", "FILEMARK"))
        assert os.path.exists(os.path.join(path, "file-000001", "FILEMARK"))
        d.sync()
        # the records (one syncfs, or an fsync each), then both FILEMARKs and their folders
        assert calls[-5:] == ["FILEMARK", "file-000000", "FILEMARK", "file-000001", "m"]
        assert "syncfs" in calls or calls.count("rec-000000000") == 2
        calls.clear()
        d.sync()  # nothing pending
        assert calls == []
    calls.clear()
    with DirDrive(path, write=False) as r:
        r.sync()
        assert calls == []


def test_synchronous_filemark_makes_earlier_immediate_ones_durable(tmp_path, monkeypatch):
    path = str(tmp_path / "m")
    with DirDrive(path, write=True) as d:
        calls = _count_syncs(monkeypatch)
        d.write_record(b"a")
        d.write_filemark(immediate=True)
        d.write_record(b"b")
        d.write_filemark()
        assert calls[-5:] == ["FILEMARK", "file-000000", "FILEMARK", "file-000001", "m"]
        calls.clear()
    assert calls == []  # close: nothing left to flush


def test_close_makes_immediate_filemarks_durable(tmp_path, monkeypatch):
    path = str(tmp_path / "m")
    d = DirDrive(path, write=True)
    calls = _count_syncs(monkeypatch)
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    d.close()
    assert calls[-3:] == ["FILEMARK", "file-000000", "m"]


def test_overwrite_keeps_earlier_unsynced_records_pending(tmp_path, monkeypatch):
    path = str(tmp_path / "m")
    with DirDrive(path, write=True) as d:
        calls = _count_syncs(monkeypatch)
        monkeypatch.setattr("tapearc.media.dirmedium.syncfs", lambda p: False)  # fsync per record
        d.write_record(b"a")
        d.write_filemark(immediate=True)
        d.write_record(b"b")
        d.write_record(b"c")
        d.locate(2)  # b: truncating tape file 1 must not forget tape file 0's record
        d.write_record(b"B")
        d.sync()
        synced = [c for c in calls if c.startswith("rec-")]
        assert sorted(synced) == ["rec-000000000", "rec-000000000"]  # file 0's a, file 1's B
        assert "FILEMARK" in calls


def test_a_failed_flush_after_an_immediate_filemark_fails_the_next_sync(tmp_path, monkeypatch):
    # Linux reports a writeback error to one fsync/syncfs and then forgets it (the dirty pages
    # are dropped): the flush that follows succeeds although the data is gone. A failed flush
    # (here a synchronous filemark's) must leave the next sync failing, not confirming.
    from tapearc.media import dirmedium

    path = str(tmp_path / "m")
    with DirDrive(path, write=True) as d:
        d.write_record(b"a")
        d.write_filemark(immediate=True)
        d.write_record(b"b")
        real = dirmedium.syncfs
        failed = []

        def syncfs_once(p):
            if not failed:
                failed.append(p)
                raise OSError(errno.EIO, os.strerror(errno.EIO), p)
            return real(p)

        monkeypatch.setattr(dirmedium, "syncfs", syncfs_once)
        with pytest.raises(MediumIOError):
            d.write_filemark()
        with pytest.raises(MediumIOError, match="not confirmed"):
            d.sync()
        d.sync()  # reported once
