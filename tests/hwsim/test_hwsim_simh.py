"""SIMH image scanner and writer."""

from __future__ import annotations

import os

import pytest
from hwsim_helpers import TM, rec, word

from tapesim import simh
from tapesim.simh import ObjKind, SimhFormatError, record_size, scan


def kinds(res: simh.ScanResult) -> list[tuple[str, int, int]]:
    return [(o.kind.value, o.offset, o.length) for o in res.objects]


def test_records_padding_and_tape_marks(raw_image):
    p = raw_image(rec(80) + rec(81) + TM + rec(10) + TM + TM)
    res = scan(p)
    assert kinds(res) == [
        ("record", 0, 80),
        ("record", 88, 81),
        ("filemark", 178, 0),
        ("record", 182, 10),
        ("filemark", 200, 0),
        ("filemark", 204, 0),
    ]
    assert res.end_offset == 208 == os.path.getsize(p)
    assert not res.truncated and res.damage is None and not res.eom_marker


def test_empty_image_is_blank(raw_image):
    res = scan(raw_image(b""))
    assert res.objects == [] and res.end_offset == 0 and not res.truncated


def test_eom_marker_ends_data(raw_image):
    res = scan(raw_image(rec(4) + TM + word(simh.MTR_EOM) + rec(6)))
    assert [o.kind for o in res.objects] == [ObjKind.RECORD, ObjKind.FILEMARK]
    assert res.eom_marker and res.end_offset == 16 and not res.truncated


def test_gaps_are_skipped(raw_image):
    content = rec(4) + word(simh.MTR_GAP) + word(simh.MTR_GAP) + rec(5) + word(simh.MTR_RHGAP) + TM
    res = scan(raw_image(content))
    assert kinds(res) == [("record", 0, 4), ("record", 20, 5), ("filemark", 38, 0)]


def test_forward_half_gap_resyncs_two_bytes(raw_image):
    # SIMH: a forward half gap advances by half a word
    content = rec(4) + word(simh.MTR_FHGAP) + b"\xff\xff" + rec(2)
    res = scan(raw_image(content))
    assert kinds(res) == [("record", 0, 4), ("record", 18, 2)]
    assert not res.truncated


def test_error_flag(raw_image):
    res = scan(raw_image(rec(3) + rec(7, flag=simh.MTR_ERF) + TM))
    assert [o.error for o in res.objects] == [False, True, False]
    assert res.objects[1].length == 7
    assert res.error_records == [1]


@pytest.mark.parametrize(
    "tail, reason",
    [
        (rec(10)[:-2], "truncated record"),  # trailing length word cut
        (rec(10)[:8], "truncated record"),  # data cut
        (word(10) + b"x" * 10 + word(11), "length mismatch"),
        (b"\x01\x00", "partial length word"),
        (word(0xFF000001), "reserved marker"),
        (word(0x01000005), "invalid length word"),
    ],
)
def test_damaged_tail_is_reported_not_raised(raw_image, tail, reason):
    good = rec(80) + TM + rec(5)
    res = scan(raw_image(good + tail))
    assert len(res.objects) == 3
    assert res.truncated
    assert reason in (res.damage or "")
    assert res.damage_offset == len(good) == res.end_offset
    with pytest.raises(SimhFormatError):
        scan(raw_image(good + tail, "strict.tap"), strict=True)


def test_writer_appends_and_truncates(tmp_path):
    p = tmp_path / "w.tap"
    fd = os.open(p, os.O_RDWR | os.O_CREAT)
    try:
        end = simh.write_record(fd, 0, b"abc")
        assert end == record_size(3) == 12
        end = simh.write_tape_mark(fd, end)
        end = simh.write_record(fd, end, b"0123456789")
        end2 = simh.write_tape_marks(fd, end, 2)
        assert end2 == end + 8
        assert os.path.getsize(p) == end2
        # overwriting at offset 12 (the tape mark) makes it the new end of the image
        new_end = simh.write_record(fd, 12, b"zz", error=True)
        assert os.path.getsize(p) == new_end == 12 + record_size(2)
        res = simh.scan_fd(fd)
        assert kinds(res) == [("record", 0, 3), ("record", 12, 2)]
        assert res.objects[1].error
        assert simh.read_record_data(fd, res.objects[0]) == b"abc"
    finally:
        os.close(fd)
    assert p.read_bytes()[:12] == word(3) + b"abc\0" + word(3)
