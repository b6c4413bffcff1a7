"""The saved object index beside big images (tapesim.index): used when it holds, never trusted
blindly, and the drive behaves the same with or without it."""

from __future__ import annotations

import errno
import os
import struct
import zlib
from pathlib import Path

import pytest

from tapesim import drive as drive_mod
from tapesim import index as index_mod
from tapesim import mtio
from tapesim.drive import SimDrive
from tapesim.index import INDEX_SUFFIX, index_path


@pytest.fixture(autouse=True)
def _index_every_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPESIM_INDEX_MIN", "0")


def _write(path: Path, records: list[bytes], files: int = 2) -> None:
    with SimDrive(path, create=True) as d:
        for _ in range(files):
            for r in records:
                d.write(r)
            d.mtop(mtio.MTWEOF, 1)


def _read_all(path: Path) -> list[bytes]:
    out = []
    with SimDrive(path, readonly=True) as d:
        while True:
            try:
                b = d.read(1 << 20)
            except OSError as e:
                assert e.errno == errno.EIO
                return out
            out.append(b)


RECORDS = [bytes([i]) * (1000 + 37 * i) for i in range(20)]  # odd lengths too (padded)


def _no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, **kw: object) -> object:
        raise AssertionError("the image was walked although its saved index holds")

    monkeypatch.setattr(drive_mod, "scan_fd", refuse)


def test_saved_at_close_and_used_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = tmp_path / "t.tap"
    _write(img, RECORDS)
    walked = _read_all(img)
    assert Path(index_path(str(img))).exists()
    _no_scan(monkeypatch)
    assert _read_all(img) == walked
    assert walked == [*RECORDS, b"", *RECORDS, b"", b""]
    with SimDrive(img) as d:  # appending at the end of data the index gives
        d.mtop(mtio.MTEOM, 1)
        d.write(b"appended")
        d.mtop(mtio.MTWEOF, 1)
    assert _read_all(img) == [*RECORDS, b"", *RECORDS, b"", b"appended", b"", b""]
    monkeypatch.undo()
    monkeypatch.setenv("TAPESIM_INDEX_MIN", "0")
    os.unlink(index_path(str(img)))  # walked again: the same
    assert _read_all(img) == [*RECORDS, b"", *RECORDS, b"", b"appended", b"", b""]


@pytest.mark.parametrize("change", ["append", "rewrite-same-size", "index-crc", "index-short"])
def test_an_index_that_does_not_hold_is_not_used(tmp_path: Path, change: str) -> None:
    img = tmp_path / "t.tap"
    _write(img, RECORDS)
    before = _read_all(img)
    idx = Path(index_path(str(img)))
    if change == "append":  # another program appended a record
        with open(img, "ab") as f:
            f.write(struct.pack("<I", 3) + b"abc\0" + struct.pack("<I", 3))
        expect = [*before[:-1], b"abc"]  # after the last filemark, then end of data mid-file
    elif change == "rewrite-same-size":  # the same bytes written again: times change
        data = img.read_bytes()
        img.write_bytes(data)
        expect = before
    elif change == "index-crc":
        raw = bytearray(idx.read_bytes())
        raw[20] ^= 1
        idx.write_bytes(raw)
        expect = before
    else:
        idx.write_bytes(idx.read_bytes()[:-9])
        expect = before
    scans = []
    real = drive_mod.scan_fd

    def counting(fd: int, **kw: bool) -> object:
        scans.append(fd)
        return real(fd, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(drive_mod, "scan_fd", counting)
    try:
        assert _read_all(img) == expect
    finally:
        mp.undo()
    assert scans, "the image was not walked"


def _rewrite_index(idx: Path, edit: int, value: int) -> None:
    """Change one length in the index and fix its CRC (an index that passes its own checks
    but no longer describes the image)."""
    raw = bytearray(idx.read_bytes()[:-4])
    count = struct.unpack_from("<Q", raw, 8)[0]
    at = 8 + 8 * 8 + 8 * count + 8 * edit
    struct.pack_into("<q", raw, at, value)
    idx.write_bytes(bytes(raw) + struct.pack("<I", zlib.crc32(raw)))


def test_a_wrong_object_is_an_io_error_and_the_index_goes(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    _write(img, RECORDS)
    idx = Path(index_path(str(img)))
    _rewrite_index(idx, 5, 1000 + 37 * 5 - 4)  # record 5 said 4 bytes shorter than it is
    with SimDrive(img, readonly=True) as d:
        for i in range(5):
            assert d.read(1 << 20) == RECORDS[i]
        with pytest.raises(OSError, match="saved index") as ei:
            d.read(1 << 20)
        assert ei.value.errno == errno.EIO
    assert not idx.exists()
    assert _read_all(img)[:20] == RECORDS  # walked again: right


def test_the_ends_are_checked_at_open(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    _write(img, RECORDS)
    idx = Path(index_path(str(img)))
    count = struct.unpack_from("<Q", idx.read_bytes(), 8)[0]
    _rewrite_index(idx, count - 2, 7)  # the last record's length
    assert index_mod.load_index(str(img), os.open(img, os.O_RDONLY)) is None


def test_small_images_and_damaged_ones_get_no_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPESIM_INDEX_MIN", str(1 << 30))
    img = tmp_path / "small.tap"
    _write(img, RECORDS)
    assert not Path(index_path(str(img))).exists()
    monkeypatch.setenv("TAPESIM_INDEX_MIN", "0")
    bad = tmp_path / "bad.tap"
    _write(bad, RECORDS)
    os.unlink(index_path(str(bad)))
    with open(bad, "ab") as f:
        f.write(struct.pack("<I", 500) + b"cut short")  # a truncated last record
    assert len(_read_all(bad)) == 2 * len(RECORDS) + 2
    assert not Path(index_path(str(bad))).exists()


def test_a_library_drive_keeps_the_index_beside_the_cartridge(tmp_path: Path) -> None:
    cart = tmp_path / "tapes" / "A00001.tap"
    cart.parent.mkdir()
    _write(cart, RECORDS)
    link = tmp_path / "drive-0.tap"
    link.symlink_to(cart)
    assert index_path(str(link)) == str(cart) + INDEX_SUFFIX


def test_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAPESIM_INDEX_MIN", "lots")
    with pytest.raises(ValueError, match="TAPESIM_INDEX_MIN='lots'"):
        SimDrive(tmp_path / "x.tap", create=True)


def test_nothing_is_written_where_the_index_is_wrong(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    _write(img, RECORDS)
    before = img.read_bytes()
    _rewrite_index(Path(index_path(str(img))), 21, 3)  # the second file's first record: wrong
    with SimDrive(img) as d:
        d.mtop(mtio.MTFSF, 1)  # to the second file, from the (wrong) index
        with pytest.raises(OSError, match="saved index") as ei:
            d.write(b"over the second file")
        assert ei.value.errno == errno.EIO
        with pytest.raises(OSError, match="saved index"):
            d.mtop(mtio.MTWEOF, 1)
    assert img.read_bytes() == before
    assert _read_all(img) == [*RECORDS, b"", *RECORDS, b"", b""]
