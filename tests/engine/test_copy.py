"""Copying whole media (tapearc.engine.copy) and comparing them (tapearc.engine.compare)."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.compare import MediaDifferError, compare_media
from tapearc.engine.copy import copy_medium, ensure_not_self, same_medium
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import (
    MediumFullError,
    MediumInUseError,
    RecordTooLargeError,
    TruncatedError,
    UsageError,
    WriteProtectedError,
)
from tapearc.media import Mark, open_medium
from tapearc.media.dirmedium import DirDrive, create_dir_medium
from tapearc.media.stream import StreamDrive
from tests.conftest import make_volume

pytest.importorskip("tapesim.drive")

Obj = bytes | Mark
FM = Mark.FILEMARK


def objects(seed: int = 1) -> list[Obj]:
    """A medium that is not tapearc's: odd and even records, empty tape files, no final filemark."""
    rng = random.Random(seed)
    out: list[Obj] = []
    for f in range(4):
        for _r in range(rng.randint(0 if f == 2 else 1, 6)):
            out.append(rng.randbytes(rng.choice([1, 2, 511, 4096, 65537])))
        out.append(FM)
    out += [b"records after the last filemark", b"x"]
    return out


def write(spec: str, objs: list[Obj]) -> None:
    with open_medium(spec, write=True) as d:
        for o in objs:
            d.write_filemark() if o is FM else d.write_record(o)  # type: ignore[arg-type]


def read(spec: str) -> list[Obj]:
    with open_medium(spec, write=False) as d:
        out: list[Obj] = []
        while (o := d.read_record()) is not Mark.END_OF_DATA:
            out.append(o)
        return out


def copy(src: str, dst: str, **kw: object):
    with open_medium(src, write=False) as s, open_medium(dst, write=True) as t:
        return copy_medium(s, t, **kw)  # type: ignore[arg-type]


def backup_to(spec: str, vol: Path, **kw: object):
    with Catalog() as cat, open_medium(spec, write=True) as drive:
        return backup(str(vol), drive, cat, BackupOptions(**kw))  # type: ignore[arg-type]


def restore_from(spec: str, out: Path) -> None:
    with Catalog() as cat, open_medium(spec, write=False) as drive:
        restore(drive, cat, str(out), RestoreOptions())


# ---------------------------------------------------------------------- copy


def test_round_trip_sim_dir_sim_stream_sim_is_byte_identical(tmp_path: Path) -> None:
    objs = objects()
    a, b = tmp_path / "a.tap", tmp_path / "b.tap"
    write(f"sim:{a}", objs)
    res = copy(f"sim:{a}", f"dir:{tmp_path / 'd'}")
    assert res.complete and res.records == sum(1 for o in objs if o is not FM) and res.filemarks == 4
    assert res.tape_files == 5 and res.label is None
    assert res.bytes == sum(len(o) for o in objs if isinstance(o, bytes))
    copy(f"dir:{tmp_path / 'd'}", f"sim:{tmp_path / 'm.tap'}")
    assert (tmp_path / "m.tap").read_bytes() == a.read_bytes()
    buf = io.BytesIO()
    with open_medium(f"sim:{tmp_path / 'm.tap'}", write=False) as s, StreamDrive(buf, write=True) as out:
        copy_medium(s, out)
    assert buf.getvalue() == a.read_bytes() + b"\xff\xff\xff\xff"  # the image and the end marker
    with open_medium(f"sim:{b}", write=True) as t:
        res2 = copy_medium(StreamDrive(io.BytesIO(buf.getvalue()), write=False), t)
    assert b.read_bytes() == a.read_bytes()
    assert res2.records == res.records and res2.filemarks == res.filemarks and res2.bytes == res.bytes
    assert read(f"sim:{b}") == objs


def test_backup_copy_restore(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    data = make_volume(vol, "mixed")
    backup_to(f"sim:{tmp_path / 'a.tap'}", vol, record_size=64 * 1024, compress="zstd")
    make_volume(vol, "mixed", seed=2)
    backup_to(f"sim:{tmp_path / 'a.tap'}", vol)  # an incremental: two generations on the medium
    data2 = vol.read_bytes()
    res = copy(f"sim:{tmp_path / 'a.tap'}", f"dir:{tmp_path / 'copy'}")
    assert res.label is not None and res.label["sequence"] == 1 and res.label["record_size"] == 64 * 1024
    assert res.tape_files == 3 and res.filemarks == 3
    out = tmp_path / "out.img"
    restore_from(f"dir:{tmp_path / 'copy'}", out)
    assert out.read_bytes() == data2 != data
    assert compare_media(
        open_medium(f"sim:{tmp_path / 'a.tap'}", write=False), open_medium(f"dir:{tmp_path / 'copy'}", write=False)
    ).identical


def test_backup_to_a_stream_then_copy_and_restore(tmp_path: Path) -> None:
    """What `tapearc backup vol --media -` does: label a blank write-only stream and write."""
    vol = tmp_path / "vol.img"
    data = make_volume(vol, "zero-runs")
    buf = io.BytesIO()
    with Catalog() as cat:
        d = StreamDrive(buf, write=True)
        res = backup(str(vol), d, cat, BackupOptions())
        d.close()
    assert res.complete and res.new_medium and res.medium == "-"
    with open_medium(f"sim:{tmp_path / 'x.tap'}", write=True) as t:
        cres = copy_medium(StreamDrive(io.BytesIO(buf.getvalue()), write=False), t)
    assert cres.label is not None and cres.tape_files == 2
    out = tmp_path / "out.img"
    restore_from(f"sim:{tmp_path / 'x.tap'}", out)
    assert out.read_bytes() == data


def test_refuses_non_blank_target_and_leaves_it_untouched(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tap", tmp_path / "b.tap"
    write(f"sim:{a}", objects(1))
    write(f"sim:{b}", [b"something", FM])
    before = b.read_bytes()
    with pytest.raises(MediumInUseError, match=r"not blank.*nothing was written") as info:
        copy(f"sim:{a}", f"sim:{b}")
    assert info.value.exit_code == 18 and info.value.hint and "--force" in info.value.hint
    assert b.read_bytes() == before
    # a tapearc medium is named as such
    vol = tmp_path / "vol.img"
    make_volume(vol, "tiny")
    backup_to(f"sim:{tmp_path / 'lab.tap'}", vol)
    before = (tmp_path / "lab.tap").read_bytes()
    with pytest.raises(MediumInUseError, match="tapearc label"):
        copy(f"sim:{a}", f"sim:{tmp_path / 'lab.tap'}")
    assert (tmp_path / "lab.tap").read_bytes() == before
    # --force replaces it
    res = copy(f"sim:{a}", f"sim:{b}", force=True)
    assert res.warnings and b.read_bytes() == a.read_bytes()


def test_refuses_self_copy(tmp_path: Path) -> None:
    a = tmp_path / "a.tap"
    write(f"sim:{a}", objects())
    before = a.read_bytes()
    for x, y in [(f"sim:{a}", f"sim:{a}"), (f"sim:{a}", str(a)), (str(a), f"sim:{tmp_path}/./a.tap")]:
        assert same_medium(x, y)
        with pytest.raises(UsageError, match="same medium"):
            ensure_not_self(x, y)
    os.symlink(a, tmp_path / "link.tap")
    assert same_medium(f"sim:{a}", f"sim:{tmp_path / 'link.tap'}")
    assert same_medium("/dev/nst0", "st:/dev/st0")
    assert not same_medium("-", "-") and not same_medium(f"sim:{a}", f"sim:{tmp_path / 'b.tap'}")
    with open_medium(f"sim:{a}", write=True) as d, pytest.raises(UsageError, match="onto itself"):
        copy_medium(d, d)
    assert a.read_bytes() == before


def test_refuses_a_tapearc_medium_whose_records_do_not_fit_before_writing(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    make_volume(vol, "tiny")
    backup_to(f"sim:{tmp_path / 'a.tap'}", vol, record_size=256 * 1024)
    create_dir_medium(str(tmp_path / "small"), max_record_size=64 * 1024)
    with open_medium(f"sim:{tmp_path / 'a.tap'}", write=False) as s, DirDrive(str(tmp_path / "small"), write=True) as t:
        with pytest.raises(RecordTooLargeError, match=r"label's record size.*nothing was written"):
            copy_medium(s, t)
    assert read(f"dir:{tmp_path / 'small'}") == []


def test_oversize_record_stops_before_it(tmp_path: Path) -> None:
    objs: list[Obj] = [b"a" * 100, FM, b"b" * 200, b"c" * 70000, b"d", FM]
    write(f"sim:{tmp_path / 'a.tap'}", objs)
    create_dir_medium(str(tmp_path / "small"), max_record_size=65536)
    with open_medium(f"sim:{tmp_path / 'a.tap'}", write=False) as s, DirDrive(str(tmp_path / "small"), write=True) as t:
        with pytest.raises(RecordTooLargeError) as info:
            copy_medium(s, t)
    msg = str(info.value)
    assert "record 1 of tape file 1" in msg and "70000 bytes" in msg and "nothing past it was written" in msg
    assert "incomplete" in msg and "first 3 objects" in msg
    assert read(f"dir:{tmp_path / 'small'}") == objs[:3]
    # the first record too large: the target stays blank
    write(f"sim:{tmp_path / 'big.tap'}", [b"z" * 70000, FM])
    create_dir_medium(str(tmp_path / "small2"), max_record_size=65536)
    with (
        open_medium(f"sim:{tmp_path / 'big.tap'}", write=False) as s,
        DirDrive(str(tmp_path / "small2"), write=True) as t,
    ):
        with pytest.raises(RecordTooLargeError, match="nothing was written"):
            copy_medium(s, t)
    assert read(f"dir:{tmp_path / 'small2'}") == []


def test_copy_must_fit_early_warning_stops_it(tmp_path: Path) -> None:
    objs: list[Obj] = [bytes([i]) * 10000 for i in range(30)] + [FM]
    write(f"sim:{tmp_path / 'a.tap'}", objs)
    create_dir_medium(str(tmp_path / "t"), capacity=200_000, early_warning=50_000)
    with pytest.raises(MediumFullError, match=r"early warning.*does not span.*incomplete") as info:
        copy(f"sim:{tmp_path / 'a.tap'}", f"dir:{tmp_path / 't'}")
    assert info.value.exit_code == 12
    got = read(f"dir:{tmp_path / 't'}")
    assert 0 < len(got) < len(objs) and got == objs[: len(got)]
    # the same medium fits on a larger target
    create_dir_medium(str(tmp_path / "t2"), capacity=2_000_000, early_warning=50_000)
    res = copy(f"sim:{tmp_path / 'a.tap'}", f"dir:{tmp_path / 't2'}")
    assert res.complete and not res.early_warning


def test_copy_ending_inside_the_early_warning_zone_is_complete(tmp_path: Path) -> None:
    objs: list[Obj] = [bytes([i]) * 10000 for i in range(15)] + [FM, FM]  # the 15th enters the zone
    write(f"sim:{tmp_path / 'a.tap'}", objs)
    create_dir_medium(str(tmp_path / "t"), capacity=200_000, early_warning=50_000)
    res = copy(f"sim:{tmp_path / 'a.tap'}", f"dir:{tmp_path / 't'}")
    assert res.complete and res.early_warning and res.warnings
    assert read(f"dir:{tmp_path / 't'}") == objs


def test_write_protected_target(tmp_path: Path) -> None:
    write(f"sim:{tmp_path / 'a.tap'}", objects())
    create_dir_medium(str(tmp_path / "wp"), write_protected=True)
    with pytest.raises(WriteProtectedError):
        copy(f"sim:{tmp_path / 'a.tap'}", f"dir:{tmp_path / 'wp'}")


def test_cut_source_stream_reports_incomplete_copy(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with StreamDrive(buf, write=True) as d:
        for o in objects():
            d.write_filemark() if o is FM else d.write_record(o)  # type: ignore[arg-type]
    cut = buf.getvalue()[:-4]  # no end-of-medium word: the writer did not finish
    with open_medium(f"sim:{tmp_path / 'x.tap'}", write=True) as t:
        with pytest.raises(TruncatedError, match=r"end-of-medium marker is missing.*incomplete"):
            copy_medium(StreamDrive(io.BytesIO(cut), write=False), t)


def test_progress_protocol(tmp_path: Path) -> None:
    objs = objects()
    write(f"sim:{tmp_path / 'a.tap'}", objs)

    class P:
        def __init__(self) -> None:
            self.calls: list[tuple[str, object]] = []

        def start(self, description: str, total: int | None) -> None:
            self.calls.append(("start", total))

        def advance(self, nbytes: int) -> None:
            self.calls.append(("advance", nbytes))

        def finish(self) -> None:
            self.calls.append(("finish", None))

    p = P()
    res = copy(f"sim:{tmp_path / 'a.tap'}", f"sim:{tmp_path / 'b.tap'}", progress=p)
    assert p.calls[0][0] == "start" and p.calls[-1] == ("finish", None)
    assert sum(n for k, n in p.calls if k == "advance") == res.bytes  # type: ignore[misc]


# ---------------------------------------------------------------------- compare


def cmp(objs_a: list[Obj], objs_b: list[Obj], **kw: object):
    def stream(objs: list[Obj]) -> StreamDrive:
        buf = io.BytesIO()
        with StreamDrive(buf, write=True) as d:
            for o in objs:
                d.write_filemark() if o is FM else d.write_record(o)  # type: ignore[arg-type]
        return StreamDrive(io.BytesIO(buf.getvalue()), write=False, name="B" if objs is objs_b else "A")

    return compare_media(stream(objs_a), stream(objs_b), **kw)  # type: ignore[arg-type]


def medium() -> list[Obj]:
    """label | file 1: 5 records | file 2: 6 records | file 3: 3 records (all distinct)."""
    rng = random.Random(7)
    out: list[Obj] = [b"LABEL", FM]
    for n in (5, 6, 3):
        out += [rng.randbytes(1000 + rng.randrange(50)) for _ in range(n)] + [FM]
    return out


def idx(tape_file: int, record: int, objs: list[Obj]) -> int:
    f = r = 0
    for i, o in enumerate(objs):
        if f == tape_file and r == record:
            return i
        if o is FM:
            f, r = f + 1, 0
        else:
            r += 1
    raise IndexError


def test_identical_media() -> None:
    m = medium()
    res = cmp(m, list(m))
    assert res.identical and res.first is None and res.differing_records == 0
    assert res.a.records == 15 and res.a.filemarks == 4 and res.a.tape_files == 4 and res.b.bytes == res.a.bytes
    assert res.check() is res


def test_flipped_byte() -> None:
    a = medium()
    b = list(a)
    i = idx(2, 3, a)
    rec = bytearray(a[i])  # type: ignore[arg-type]
    rec[123] ^= 0x40
    b[i] = bytes(rec)
    res = cmp(a, b)
    assert not res.identical and res.differing_records == 1 and res.differing_filemarks == 0
    f = res.first
    assert f is not None and f.kind == "data" and (f.tape_file, f.record, f.offset) == (2, 3, 123)
    assert "tape file 2 record 3 differs at byte 123" in f.detail
    with pytest.raises(MediaDifferError) as info:
        res.check()
    e = info.value
    assert e.exit_code == 20 and e.details["first_offset"] == 123 and e.details["differing_records"] == 1
    assert e.to_json()["error"] == "media-differ"


def test_length_difference() -> None:
    a = medium()
    b = list(a)
    i = idx(1, 0, a)
    b[i] = a[i][:500]  # type: ignore[index]
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "length" and f.offset == 500 and res.differing_records == 1


def test_dropped_record_realigns() -> None:
    a = medium()
    b = list(a)
    del b[idx(2, 1, a)]
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "record missing" and f.side == "a" and (f.tape_file, f.record) == (2, 1)
    assert res.differing_records == 1 and res.divergence_count == 1 and res.differing_filemarks == 0


def test_extra_record_realigns() -> None:
    a = medium()
    b = list(a)
    b.insert(idx(1, 2, a), b"an extra record")
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "extra record" and f.side == "b" and (f.tape_file, f.record) == (1, 2)
    assert res.differing_records == 1 and res.divergence_count == 1


def test_swapped_records() -> None:
    a = medium()
    b = list(a)
    i = idx(2, 4, a)
    b[i], b[i + 1] = b[i + 1], b[i]
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "swapped" and (f.tape_file, f.record) == (2, 4)
    assert res.differing_records == 2 and res.divergence_count == 1


def test_truncated_tape_file() -> None:
    """Tape file 1 lost its last three records (its filemark is still there)."""
    a = medium()
    b = list(a)
    i = idx(1, 2, a)
    del b[i : i + 3]
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "filemark vs record" and f.side == "a" and (f.tape_file, f.record) == (1, 2)
    assert f.count == 3 and res.divergence_count == 1
    assert res.differing_records == 3  # tape files 2 and 3 still pair up


def test_missing_filemark() -> None:
    a = medium()
    b = list(a)
    del b[idx(2, 0, a) - 1]  # the filemark that ends tape file 1
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "filemark missing" and f.side == "a" and (f.tape_file, f.record) == (1, 5)
    assert res.differing_filemarks == 1 and res.differing_records == 0 and res.divergence_count == 1


def test_extra_filemark() -> None:
    a = medium()
    b = list(a)
    b.insert(idx(2, 2, a), FM)
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "extra filemark" and f.side == "b" and (f.tape_file, f.record) == (2, 2)
    assert res.differing_filemarks == 1 and res.differing_records == 0


def test_end_of_data_on_one_side() -> None:
    a = medium()
    b = a[: idx(3, 1, a)]  # the medium ends inside tape file 3
    res = cmp(a, b)
    f = res.first
    assert f is not None and f.kind == "end of data" and f.side == "a" and (f.tape_file, f.record) == (3, 1)
    assert res.differing_records == 2 and res.differing_filemarks == 1 and f.count == 3
    res = cmp(b, a)
    assert res.first is not None and res.first.side == "b" and res.differing_records == 2


def test_one_medium_blank() -> None:
    res = cmp(medium(), [])
    assert (
        res.first is not None and res.first.kind == "end of data" and (res.first.tape_file, res.first.record) == (0, 0)
    )
    assert res.differing_records == 15 and res.differing_filemarks == 4


def test_several_differences_counted_separately() -> None:
    a = medium()
    b = list(a)
    del b[idx(3, 0, a)]  # dropped in tape file 3
    j = idx(1, 1, a)
    b[j] = b"changed"  # a record changed in tape file 1 (before the drop: indexes still valid)
    res = cmp(a, b)
    assert res.divergence_count == 2 and res.differing_records == 2
    assert [d.kind for d in res.divergences] == ["length", "record missing"]
    assert [(d.tape_file, d.record) for d in res.divergences] == [(1, 1), (3, 0)]
    first = cmp(a, b, stop_at_first=True)
    assert first.divergence_count == 1 and not first.complete


def test_compare_image_against_its_copy(tmp_path: Path) -> None:
    a = tmp_path / "a.tap"
    write(f"sim:{a}", objects())
    copy(f"sim:{a}", f"dir:{tmp_path / 'd'}")
    with open_medium(f"sim:{a}", write=False) as x, open_medium(f"dir:{tmp_path / 'd'}", write=False) as y:
        assert compare_media(x, y).identical
    # damage one byte of one record in the image
    objs = objects()
    i = next(k for k, o in enumerate(objs) if isinstance(o, bytes) and len(o) > 100)
    img = bytearray(a.read_bytes())
    pos = img.find(objs[i])  # type: ignore[arg-type]
    img[pos + 77] ^= 1
    a.write_bytes(bytes(img))
    with open_medium(f"sim:{a}", write=False) as x, open_medium(f"dir:{tmp_path / 'd'}", write=False) as y:
        res = compare_media(x, y)
    assert res.differing_records == 1 and res.first is not None and res.first.offset == 77
