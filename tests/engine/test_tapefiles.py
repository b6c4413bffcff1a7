"""The one resynchronising item reader (tapefiles.FileItems) that verify and scan --deep share:
each stray record named, an item whose framing cannot be trusted read again from its second
record, an unreadable record ending the item it cuts, the same answers with read-ahead."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from tapearc import format as fmt
from tapearc.engine import tapefiles
from tapearc.engine.listing import list_medium
from tapearc.engine.tapefiles import Damage, FileItems, FileRecords
from tapearc.errors import MediumIOError, TapearcError
from tapearc.media import open_medium
from tapearc.media.base import Mark
from tests.engine.test_verify import chunk_records, make, records, write_image

pytest.importorskip("tapesim.drive")


class _Records:
    """A tape file's records from a list (an exception in it is a read error), then a filemark."""

    def __init__(self, recs: list[bytes | TapearcError]) -> None:
        self.recs = list(recs)
        self.mark: Mark | None = None

    def read(self) -> bytes | Mark:
        if not self.recs:
            self.mark = Mark.FILEMARK
            return self.mark
        r = self.recs.pop(0)
        if isinstance(r, TapearcError):
            raise r
        return r


def _items(
    recs: list[bytes | TapearcError], *, ahead: bool, untrusted: bool = True
) -> tuple[list[tuple[str, int]], FileItems]:
    """(what, record) for everything the reader yields; a chunk that does not decode is reported
    back to the reader as damaged (as verify and scan do)."""
    items = FileItems(cast("FileRecords", _Records(recs)), tape_file=1, logical=10, medium="m", ahead=ahead)
    out: list[tuple[str, int]] = []
    try:
        for got in items:
            if isinstance(got, Damage):
                what = "unreadable" if got.unreadable is not None else ("item" if got.total else "stray")
                out.append((what, got.record))
                continue
            out.append((got.magic[:7].decode(), got.record))
            if got.magic == fmt.CHUNK_MAGIC:
                try:
                    fmt.decode_chunk(got.data)
                except TapearcError as e:
                    out[-1] = ("untrusted" if items.damaged(got, e) else "damaged", got.record)
    finally:
        items.close()
    assert items.ended is Mark.FILEMARK
    return out, items


@pytest.fixture(scope="module")
def tape_file(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    img, _ = make(tmp_path_factory.mktemp("tf"))
    return records(img)[1]  # generation 1: header, 4-record chunks, trailer, end record


@pytest.mark.parametrize("ahead", [False, True])
def test_intact_tape_file(tape_file: list[bytes], ahead: bool) -> None:
    got, items = _items(list(tape_file), ahead=ahead)
    assert all(w != "stray" and w != "item" for w, _ in got)
    assert [r for _, r in got][:3] == [0, 1, 5]
    assert items.records_read == len(tape_file) and items.bytes_read == sum(map(len, tape_file))
    assert items.record == len(tape_file)


@pytest.mark.parametrize("ahead", [False, True])
def test_dropped_record_the_next_chunk_is_found(tape_file: list[bytes], ahead: bool) -> None:
    """Chunk 2 lost its second record: its frame takes chunk 3's first record (the lengths add
    up, the payload CRC fails); a record of it starts an item, so the reader reads its records
    again and chunk 3 is read whole. A shorter record dropped: the frame overshoots its length."""
    recs = list(tape_file)
    c = chunk_records([[], recs], 1)
    del recs[c[2] + 1]
    got, _ = _items(cast("list[bytes | TapearcError]", recs), ahead=ahead)
    assert got[got.index(("untrusted", c[2])) + 1 :][:3] == [
        ("stray", c[2] + 1),
        ("stray", c[2] + 2),
        ("TACHUNK", c[3] - 1),
    ]
    assert sum(1 for w, _ in got if w == "TACHUNK") == len(c) - 1
    recs = list(tape_file)
    recs[c[2] + 1] = recs[c[2] + 1][:1000]  # a record cut short inside chunk 2: it takes 5 records
    got, _ = _items(cast("list[bytes | TapearcError]", recs), ahead=ahead)
    assert got[got.index(("item", c[2])) + 1 :][:4] == [
        ("stray", c[2] + 1),
        ("stray", c[2] + 2),
        ("stray", c[2] + 3),
        ("TACHUNK", c[3]),
    ]


@pytest.mark.parametrize("ahead", [False, True])
def test_untrusted_header_records_read_again(tape_file: list[bytes], ahead: bool) -> None:
    """A chunk whose header does not decode: its framing may be wrong, so its records after the
    first are read again (strays here); a chunk with a bad payload keeps its framing."""
    c = chunk_records([[], tape_file], 1)
    bad_header = list(tape_file)
    r = bytearray(bad_header[c[1]])
    r[40] ^= 0x10
    bad_header[c[1]] = bytes(r)
    got, _ = _items(cast("list[bytes | TapearcError]", bad_header), ahead=ahead)
    assert got[got.index(("untrusted", c[1])) + 1 : got.index(("TACHUNK", c[2]))] == [
        ("stray", c[1] + 1),
        ("stray", c[1] + 2),
        ("stray", c[1] + 3),
    ]
    bad_payload = list(tape_file)
    r = bytearray(bad_payload[c[1]])
    r[5000] ^= 0x10
    bad_payload[c[1]] = bytes(r)
    got, _ = _items(cast("list[bytes | TapearcError]", bad_payload), ahead=ahead)
    assert ("damaged", c[1]) in got and not any(w == "stray" for w, _ in got)


@pytest.mark.parametrize("ahead", [False, True])
def test_unreadable_record_ends_its_item(tape_file: list[bytes], ahead: bool) -> None:
    c = chunk_records([[], tape_file], 1)
    recs: list[bytes | TapearcError] = list(tape_file)
    recs[c[1] + 1] = MediumIOError("read error")
    got, items = _items(recs, ahead=ahead)
    assert ("unreadable", c[1]) in got
    assert [g for g in got if g[0] == "stray"] == [("stray", c[1] + 2), ("stray", c[1] + 3)]
    assert ("TACHUNK", c[2]) in got
    assert items.records_read == len(tape_file) - 1 and items.record == len(tape_file)


def test_list_goes_on_past_a_damaged_chunk(tmp_path: Path) -> None:
    """list reads a tape file as verify does: a chunk whose header is damaged is the problem, and
    the chunks after it (and the trailer) are still listed; the records are all counted."""
    img, _ = make(tmp_path)
    files = records(img)
    c = chunk_records(files, 1)
    r = bytearray(files[1][c[1]])
    r[40] ^= 0x10
    files[1][c[1]] = bytes(r)
    write_image(img, files)
    with open_medium(f"sim:{img}", write=False) as d:
        tf = list_medium(d).files[1]
    assert tf.problem is not None and f"record {c[1]}" in tf.problem
    assert [ch.seq for ch in tf.chunks] == [0, *range(2, len(c))]
    assert tf.trailer and tf.complete
    assert tf.records == len(files[1]) and tf.bytes == sum(map(len, files[1]))


def test_deep_scan_resynchronises_as_verify_does(tmp_path: Path) -> None:
    """scan --deep reads with the same reader: after a record dropped inside chunk 2 (whose frame
    then takes chunk 3's first record), chunk 3 is still read from the medium."""
    from tapearc.catalog.db import Catalog
    from tapearc.engine.scan import scan_medium

    img, _ = make(tmp_path)
    files = records(img)
    c = chunk_records(files, 1)
    del files[1][c[2] + 1]
    write_image(img, files)
    with Catalog(tmp_path / "c.sqlite") as cat, open_medium(f"sim:{img}", write=False) as d:
        fs = scan_medium(d, cat, deep=True).files[0]
    assert fs.method == "deep" and fs.chunks == len(c) - 1
    assert fs.problem is not None and f"chunk at record {c[2]} skipped" in fs.problem


def _split_trailer(recs: list[bytes]) -> tuple[list[bytes], int, int]:
    """The tape file with its trailer split into 512-byte records (an item may span records of
    any size up to the record size), the index of the trailer's first record and its count."""
    i = next(k for k, r in enumerate(recs) if r[:8] == fmt.TRAILER_MAGIC)
    t = recs[i]
    pieces = [t[o : o + 512] for o in range(0, len(t), 512)]
    assert len(pieces) > 1, "the fixture's trailer is larger than 512 bytes"
    return [*recs[:i], *pieces, *recs[i + 1 :]], i, len(pieces)


@pytest.mark.parametrize("ahead", [False, True])
def test_large_trailer_is_spooled_not_assembled(
    tape_file: list[bytes], ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trailer over SPOOL_ITEM_OVER is written to a temporary file as its records are read:
    the item holds only its first record, and reads back as the same trailer."""
    monkeypatch.setattr(tapefiles, "SPOOL_ITEM_OVER", 0)
    recs, i, n = _split_trailer(tape_file)
    whole = b"".join(recs[i : i + n])
    items = FileItems(cast("FileRecords", _Records(list(recs))), tape_file=1, logical=0, medium="m", ahead=ahead)
    try:
        got = [x for x in items if not isinstance(x, Damage) and x.magic == fmt.TRAILER_MAGIC]
    finally:
        items.close()
    (t,) = got
    assert t.spool is not None and t.data == recs[i] and t.length == len(whole)
    assert t.records() == recs[i : i + n]
    assert t.trailer().to_trailer() == fmt.decode_trailer(whole)
    t.close()
    assert t.spool.closed


def test_spooled_trailer_cut_short_keeps_its_records(tape_file: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """A spooled trailer cut short by the filemark is a Damage holding the records read."""
    monkeypatch.setattr(tapefiles, "SPOOL_ITEM_OVER", 0)
    recs, i, n = _split_trailer(tape_file)
    recs = recs[: i + n - 1]
    items = FileItems(cast("FileRecords", _Records(list(recs))), tape_file=1, logical=0, medium="m")
    last = list(items)[-1]
    assert isinstance(last, Damage) and last.record == i and last.parts == recs[i:]


def test_spooled_trailer_with_a_damaged_record_is_reread(
    tape_file: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer finds a spooled trailer damaged (not a CRC error): its later records are
    read again from the spool as possible starts of items (the end record is found)."""
    monkeypatch.setattr(tapefiles, "SPOOL_ITEM_OVER", 0)
    recs, i, n = _split_trailer(tape_file)
    items = FileItems(cast("FileRecords", _Records(recs)), tape_file=1, logical=0, medium="m")
    seen = []
    for got in items:
        if not isinstance(got, Damage) and got.magic == fmt.TRAILER_MAGIC:
            assert items.damaged(got, TapearcError("framing not trusted"))
        seen.append(got.record)
    assert seen.count(i + 1) == 1 and seen[-1] == i + n  # each later record again, then the end record


def test_a_full_tmpdir_is_one_clear_error(tape_file: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """A trailer that cannot be spooled ($TMPDIR full) stops the reader with one line naming
    the folder, not an OSError's traceback."""
    import errno
    import tempfile

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tapefiles, "SPOOL_ITEM_OVER", 0)
    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    recs, _, _ = _split_trailer(tape_file)
    items = FileItems(cast("FileRecords", _Records(recs)), tape_file=1, logical=0, medium="m")
    with pytest.raises(TapearcError, match=r"cannot keep the trailer read back in a temporary file in .*No space left"):
        list(items)


@pytest.mark.parametrize("how", ["cut", "eio"])
def test_a_spool_failing_underneath_is_a_temp_file_error(
    tape_file: list[bytes], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A spooled trailer whose temporary file is cut (truncated by something else) or fails to
    read (EIO): records() and trailer() raise TempFileError naming what and the folder, never
    a damaged trailer (TruncatedError) nor an OSError."""
    import errno
    import os
    import tempfile

    from tapearc.errors import TempFileError

    monkeypatch.setattr(tapefiles, "SPOOL_ITEM_OVER", 0)
    recs, _, _ = _split_trailer(tape_file)
    items = FileItems(cast("FileRecords", _Records(list(recs))), tape_file=1, logical=0, medium="m")
    (t,) = [x for x in items if not isinstance(x, Damage) and x.magic == fmt.TRAILER_MAGIC]
    assert t.spool is not None
    if how == "cut":
        os.ftruncate(t.spool.fileno(), 100)
    else:

        def eio(*a: object) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(t, "spool", type("Eio", (), {"read": eio, "seek": eio, "tell": lambda s: 0})())
    for call in (t.records, t.trailer):
        with pytest.raises(
            TempFileError, match=r"cannot read back the trailer read back from its temporary file in"
        ) as info:
            call()
        assert tempfile.gettempdir() in str(info.value) and info.value.exit_code == 28
    items.close()
