"""Fault injection (tapesim.faults): each fault's exact st-like behaviour and image state."""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import pytest
from hwsim_helpers import payload

from tapesim import mtio
from tapesim.cli import main
from tapesim.drive import SidecarError, SimDrive, create_image, load_settings, save_settings, sidecar_path
from tapesim.faults import FaultError, add_fault, clear_faults, list_faults
from tapesim.simh import record_size, scan

KiB = 1024
MiB = 1024 * KiB


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(list(args))
    out, err = capsys.readouterr()
    return ei.value.code, out, err


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


def write_tape(path: Path, items: list[bytes | None]) -> None:
    """Records (bytes) and filemarks (None), no implicit filemark at close."""
    with SimDrive(path, implicit_filemarks=False) as d:
        for it in items:
            if it is None:
                d.mtop(mtio.MTWEOF, 1)
            else:
                d.write(it)


RECS = [payload(i, 100 + i) for i in range(6)]


@pytest.fixture
def tape(image: Path) -> Path:
    """Six records (100..105 bytes) at objects 0..5, a filemark at 6, one record at 7."""
    write_tape(image, [*RECS, None, b"after-fm"])
    return image


# ---------------------------------------------------------------- API and sidecar


def test_add_list_clear(image: Path):
    assert list_faults(image) == []
    f1 = add_fault(image, "unreadable", at=3)
    assert f1 == {"kind": "unreadable", "at": 3, "count": 1}
    add_fault(image, "power_cut", after=2)
    add_fault(image, "early_eom", offset=5000)
    add_fault(image, "short_read", at=1, length=4)
    add_fault(image, "write_error", at=9, count=2)
    assert [f["kind"] for f in list_faults(image)] == [
        "unreadable",
        "power_cut",
        "early_eom",
        "short_read",
        "write_error",
    ]
    # the faults are in the sidecar, next to the settings (which stay valid)
    raw = json.loads(Path(sidecar_path(image)).read_text())
    assert raw["faults"][1] == {"kind": "power_cut", "after": 2}
    assert raw["capacity"] == 1 * MiB
    # saving the settings (tapesim protect) keeps the faults
    s = load_settings(image)
    s.barcode = "TAP001"
    save_settings(image, s)
    assert len(list_faults(image)) == 5
    assert clear_faults(image, "power_cut") == 1
    assert len(list_faults(image)) == 4
    assert clear_faults(image) == 4
    assert list_faults(image) == []
    assert "faults" not in json.loads(Path(sidecar_path(image)).read_text())
    assert load_settings(image).barcode == "TAP001"


@pytest.mark.parametrize(
    "kind, params",
    [
        ("bogus", {"at": 1}),
        ("unreadable", {}),
        ("unreadable", {"at": -1}),
        ("unreadable", {"at": 1, "count": 0}),
        ("unreadable", {"at": True}),
        ("unreadable", {"at": "3"}),
        ("unreadable", {"at": 1, "length": 3}),
        ("short_read", {"at": 1}),
        ("short_read", {"at": 1, "length": 0}),
        ("power_cut", {}),
        ("power_cut", {"at": 1, "after": 1}),
        ("early_eom", {"at": 1}),
        ("write_error", {"offset": 1}),
    ],
)
def test_add_fault_rejects(image: Path, kind, params):
    with pytest.raises(FaultError):
        add_fault(image, kind, **params)
    assert list_faults(image) == []


def test_missing_image(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        add_fault(tmp_path / "none.tap", "unreadable", at=0)


def test_image_without_sidecar(raw_image):
    p = raw_image(b"")
    add_fault(p, "write_error", at=0)
    assert load_settings(p).capacity > 0  # the sidecar holds only the faults: defaults apply
    with SimDrive(p) as d:
        assert errno_of(d.write, b"x") == errno.EIO


def test_bad_faults_in_sidecar(image: Path):
    raw = json.loads(Path(sidecar_path(image)).read_text())
    for bad in ({"kind": "unreadable"}, "x", [{"kind": "nope", "at": 1}]):
        raw["faults"] = bad if isinstance(bad, list) else [bad] if isinstance(bad, dict) else bad
        Path(sidecar_path(image)).write_text(json.dumps(raw))
        with pytest.raises(SidecarError):
            SimDrive(image)


def test_faults_read_at_open_and_reload(tape: Path):
    with SimDrive(tape) as d:
        add_fault(tape, "unreadable", at=0)
        assert d.read(1000) == RECS[0]  # not seen yet
        d.mtop(mtio.MTREW)
        d.reload_faults()
        assert errno_of(d.read, 1000) == errno.EIO
        assert d.faults == [{"kind": "unreadable", "at": 0, "count": 1}]
        clear_faults(tape)
        d.mtop(mtio.MTLOAD)  # reloads them too
        assert d.read(1000) == RECS[0]


# ---------------------------------------------------------------- unreadable


def test_unreadable(tape: Path):
    add_fault(tape, "unreadable", at=2, count=2)
    before = tape.read_bytes()
    for _ in range(2):  # persistent: the same after reopening
        with SimDrive(tape, readonly=True) as d:
            assert d.read(1000) == RECS[0]
            assert d.read(1000) == RECS[1]
            assert errno_of(d.read, 1000) == errno.EIO
            assert d.mtpos() == 3  # past the record, like st after a medium error
            g = d.mtget()
            assert (g.mt_fileno, g.mt_blkno) == (0, 3)
            assert not g.mt_gstat & mtio.GMT_EOD
            assert errno_of(d.read, 1000) == errno.EIO
            assert d.mtpos() == 4
            assert d.read(1000) == RECS[4]
            # readinto too
            d.mtop(mtio.MTSEEK, 2)
            assert errno_of(d.readinto, bytearray(1000)) == errno.EIO
            assert d.mtpos() == 3
            # spacing over it is fine
            d.mtop(mtio.MTSEEK, 1)
            d.mtop(mtio.MTFSR, 3)
            assert d.mtpos() == 4
    assert tape.read_bytes() == before  # the image is untouched


def test_unreadable_range_skips_filemarks(tape: Path):
    add_fault(tape, "unreadable", at=5, count=3)  # record 5, filemark 6, record 7
    with SimDrive(tape, readonly=True) as d:
        d.mtop(mtio.MTSEEK, 5)
        assert errno_of(d.read, 1000) == errno.EIO
        assert d.read(1000) == b""  # the filemark reads normally
        assert d.mtpos() == 7
        assert errno_of(d.read, 1000) == errno.EIO
        assert d.mtpos() == 8
        assert errno_of(d.read, 1000) == errno.EIO  # end of data (not right after a filemark)
        assert d.mtpos() == 8


def test_unreadable_stays_after_rewrite(tape: Path):
    add_fault(tape, "unreadable", at=1)
    with SimDrive(tape) as d:
        d.mtop(mtio.MTSEEK, 1)
        d.write(b"new data")  # written fine (writing is not reading)
        d.mtop(mtio.MTREW)
        d.read(1000)
        assert errno_of(d.read, 1000) == errno.EIO  # the bad spot stays
        assert d.mtpos() == 2


def test_unreadable_beyond_data(image: Path):
    add_fault(image, "unreadable", at=5)
    with SimDrive(image) as d:
        assert errno_of(d.read, 1000) == errno.EIO  # blank tape: plain end of data
        assert d.mtpos() == 0


# ---------------------------------------------------------------- short_read


def test_short_read(tape: Path):
    add_fault(tape, "short_read", at=1, length=10)
    add_fault(tape, "short_read", at=2, length=5000)  # longer than the record: no effect
    with SimDrive(tape, readonly=True) as d:
        d.mtop(mtio.MTSEEK, 1)
        assert d.read(1000) == RECS[1][:10]
        assert d.mtpos() == 2
        assert d.read(1000) == RECS[2]
        d.mtop(mtio.MTSEEK, 1)
        buf = bytearray(1000)
        assert d.readinto(buf) == 10 and bytes(buf[:10]) == RECS[1][:10]
        # a buffer smaller than the short record: ENOMEM, past it (as for a 10-byte record)
        d.mtop(mtio.MTSEEK, 1)
        assert errno_of(d.read, 9) == errno.ENOMEM
        assert d.mtpos() == 2
        d.mtop(mtio.MTSEEK, 1)
        assert d.read(10) == RECS[1][:10]


def test_unreadable_wins_over_short_read(tape: Path):
    add_fault(tape, "short_read", at=0, length=1)
    add_fault(tape, "unreadable", at=0)
    with SimDrive(tape, readonly=True) as d:
        assert errno_of(d.read, 1000) == errno.EIO
        assert d.mtpos() == 1


# ---------------------------------------------------------------- write_error


def test_write_error(tape: Path):
    add_fault(tape, "write_error", at=2)
    before = tape.read_bytes()
    with SimDrive(tape, implicit_filemarks=False) as d:
        d.mtop(mtio.MTSEEK, 2)
        assert errno_of(d.write, b"x" * 50) == errno.EIO
        assert d.mtpos() == 2
        assert d.object_count == 8  # nothing written, nothing erased
        assert tape.read_bytes() == before
        assert errno_of(d.write, b"x" * 50) == errno.EIO  # persistent
        # elsewhere writing works; a filemark at 2 too
        d.mtop(mtio.MTSEEK, 3)
        d.write(b"ok")
        assert d.mtpos() == 4 and d.object_count == 4
        d.mtop(mtio.MTSEEK, 2)
        d.mtop(mtio.MTWEOF, 1)
        assert d.mtpos() == 3
    res = scan(tape)
    assert [o.kind.value for o in res.objects] == ["record", "record", "filemark"]
    with SimDrive(tape) as d:  # still there after reopening
        d.mtop(mtio.MTSEEK, 2)
        assert errno_of(d.write, b"y") == errno.EIO


def test_write_error_count(image: Path):
    add_fault(image, "write_error", at=1, count=2)
    with SimDrive(image, implicit_filemarks=False) as d:
        d.write(b"a")
        assert errno_of(d.write, b"b") == errno.EIO
        d.mtop(mtio.MTWEOF, 1)  # filemarks are not affected: object 1
        assert errno_of(d.write, b"c") == errno.EIO  # object 2
        d.mtop(mtio.MTWEOF, 1)  # object 2
        d.write(b"d")  # object 3
    assert [o.length for o in scan(image).objects] == [1, 0, 0, 1]


# ---------------------------------------------------------------- power_cut


def _all_ops_fail(d: SimDrive) -> None:
    assert errno_of(d.read, 1000) == errno.EIO
    assert errno_of(d.readinto, bytearray(10)) == errno.EIO
    assert errno_of(d.write, b"x") == errno.EIO
    for op in (mtio.MTREW, mtio.MTWEOF, mtio.MTFSF, mtio.MTEOM, mtio.MTLOAD, mtio.MTNOP):
        assert errno_of(d.mtop, op, 1) == errno.EIO
    assert errno_of(d.mtget) == errno.EIO
    assert errno_of(d.mtpos) == errno.EIO
    assert errno_of(d.reload_faults) == errno.EIO


@pytest.mark.parametrize("length", [1, 2, 101, 4000])
def test_power_cut_after(image: Path, capsys, length: int):
    add_fault(image, "power_cut", after=3)
    add_fault(image, "unreadable", at=0)  # other faults stay
    recs = [payload(i, 100 + i) for i in range(3)]
    d = SimDrive(image)
    for r in recs:
        d.write(r)
    d.mtop(mtio.MTWEOF, 1)  # filemarks do not count
    start = sum(record_size(len(r)) for r in recs) + 4
    big = payload(7, length)
    assert errno_of(d.write, big) == errno.EIO
    assert d.powered_off
    _all_ops_fail(d)
    d.close()  # closes quietly, no filemark
    # the image ends in the middle of the record: leading length word, half of the data
    raw = image.read_bytes()
    assert len(raw) == start + 4 + length // 2
    assert raw[start : start + 4] == struct.pack("<I", length)
    assert raw[start + 4 :] == big[: length // 2]
    # one-shot: removed from the sidecar (the drive rebooted); the others stay
    assert list_faults(image) == [{"kind": "unreadable", "at": 0, "count": 1}]
    res = scan(image)
    assert res.truncated and res.damage_offset == start and res.end_offset == start
    assert len(res.objects) == 4
    clear_faults(image)
    with SimDrive(image) as d:
        assert d.truncated and d.object_count == 4
        assert [d.read(1000) for _ in range(4)] == [*recs, b""]
        assert errno_of(d.read, 1000) == errno.EIO  # the damaged tail
        assert d.mtpos() == 4
    # tapesim info reports the damaged tail and the intact objects
    rc, out, _ = run(capsys, "info", str(image))
    assert rc == 0
    assert f"damage: truncated tail at offset {start}: truncated record (length {length}" in out
    assert "(the 4 objects before it are intact)" in out
    rc, out, _err = run(capsys, "info", str(image), "--json")
    rep = json.loads(out)
    assert rep["truncated"] and rep["damage"]["offset"] == start
    assert rep["object_count"] == 4 and rep["used"] == start and rep["file_size"] == len(raw)
    # writing at the end of data repairs the image
    with SimDrive(image) as d:
        d.mtop(mtio.MTEOM)
        d.write(b"again")
    assert not scan(image).truncated and len(scan(image).objects) == 6  # + the close filemark


def test_power_cut_counts_this_session(image: Path):
    with SimDrive(image) as d:
        d.write(b"first session")  # closes with a filemark
    add_fault(image, "power_cut", after=1)
    with SimDrive(image) as d:
        d.mtop(mtio.MTEOM)
        d.write(b"1")
        assert errno_of(d.write, b"22") == errno.EIO
    assert [o.length for o in scan(image).objects] == [13, 0, 1]
    assert scan(image).truncated
    assert list_faults(image) == []
    with SimDrive(image) as d:  # the next session: no power cut any more
        d.mtop(mtio.MTEOM)
        assert d.mtpos() == 3
        d.write(b"22")
        d.write(b"333")


def test_power_cut_after_zero_and_overwrite(tape: Path):
    add_fault(tape, "power_cut", after=0)
    with SimDrive(tape) as d:
        d.mtop(mtio.MTSEEK, 2)
        assert errno_of(d.write, b"abcdefgh") == errno.EIO  # overwriting: the rest is gone
    raw = tape.read_bytes()
    start = record_size(100) + record_size(101)
    assert len(raw) == start + 4 + 4 and raw[start:] == struct.pack("<I", 8) + b"abcd"
    res = scan(tape)
    assert len(res.objects) == 2 and res.truncated


def test_power_cut_at_position(image: Path):
    add_fault(image, "power_cut", at=2)
    with SimDrive(image) as d:
        d.write(b"a")
        d.mtop(mtio.MTWEOF, 1)  # object 1
        assert errno_of(d.write, b"bbb") == errno.EIO  # object 2
        assert d.powered_off
    res = scan(image)
    assert [o.kind.value for o in res.objects] == ["record", "filemark"]
    assert res.truncated and res.damage_offset == record_size(1) + 4
    assert image.stat().st_size == record_size(1) + 4 + 4 + 1


def test_power_cut_through_library_link(tmp_path: Path):
    from tapesim.library import create_library

    lib = create_library(tmp_path / "lib", slots=1, capacity=1 * MiB)
    lib.load(1, drive=0)
    drive = lib.drive_path(0)
    add_fault(drive, "power_cut", after=0)
    add_fault(drive, "unreadable", at=9)
    with SimDrive(drive) as d:
        assert errno_of(d.write, b"xy") == errno.EIO
    assert Path(sidecar_path(drive)).is_symlink()  # the link stays; its target was updated
    assert list_faults(tmp_path / "lib" / "tapes" / "TAP001.tap") == [{"kind": "unreadable", "at": 9, "count": 1}]
    assert load_settings(drive).barcode == "TAP001"


# ---------------------------------------------------------------- early_eom


def _outcomes(path: Path, n: int, size: int) -> list[object]:
    out: list[object] = []
    with SimDrive(path, implicit_filemarks=False) as d:
        for _ in range(n):
            try:
                d.write(bytes(size))
                out.append(("ok", bool(d.mtget().mt_gstat & mtio.GMT_EOT), d.mtpos()))
            except OSError as e:
                out.append(("err", errno.errorcode[e.errno], d.mtpos()))
        try:
            d.mtop(mtio.MTWEOF, 1)
            out.append("fm")
        except OSError as e:
            out.append(("fm-err", errno.errorcode[e.errno]))
    return out


def test_early_eom_behaves_like_a_smaller_capacity(tmp_path: Path):
    faulty = tmp_path / "faulty.tap"
    create_image(faulty, capacity=1 * MiB, early_warning=30_000)
    add_fault(faulty, "early_eom", offset=100_000)
    small = tmp_path / "small.tap"
    create_image(small, capacity=100_000, early_warning=30_000)
    got = _outcomes(faulty, 16, 9_992)  # records of 10,000 image bytes
    assert got == _outcomes(small, 16, 9_992)
    # the write passing 70,000 gets the early warning; nothing ends after 100,000
    assert got[6] == ("ok", False, 7) and got[7] == ("ok", True, 8)
    assert got[8] == ("err", "ENOSPC", 8)
    assert ("err", "ENOSPC", 10) in got
    assert scan(faulty).end_offset <= 100_000
    with SimDrive(faulty) as d:
        assert d.capacity == 1 * MiB  # the nominal capacity is still reported


def test_early_eom_smallest_wins_and_larger_is_ignored(tmp_path: Path):
    p = tmp_path / "t.tap"
    create_image(p, capacity=50_000, early_warning=0)
    add_fault(p, "early_eom", offset=10**9)  # beyond the capacity: no effect
    with SimDrive(p, implicit_filemarks=False) as d:
        for _ in range(5):
            d.write(bytes(9_992))
        assert errno_of(d.write, b"x") == errno.ENOSPC
    create_image(p, capacity=50_000, early_warning=0)  # a new tape has no faults
    assert list_faults(p) == []
    add_fault(p, "early_eom", offset=30_000)
    add_fault(p, "early_eom", offset=25_000)
    with SimDrive(p, implicit_filemarks=False) as d:
        d.write(bytes(9_992))
        d.write(bytes(9_992))
        assert errno_of(d.write, bytes(9_992)) == errno.ENOSPC
        assert d.mtpos() == 2


def test_early_eom_zone_starts_at_zero(tmp_path: Path):
    p = tmp_path / "t.tap"
    create_image(p, capacity=1 * MiB, early_warning=64 * KiB)
    add_fault(p, "early_eom", offset=1000)  # smaller than the early-warning zone
    with SimDrive(p, implicit_filemarks=False) as d:
        d.write(b"x" * 10)
        assert d.mtget().mt_gstat & mtio.GMT_EOT
        assert errno_of(d.write, b"x" * 10) == errno.ENOSPC
        d.write(b"x" * 10)
        assert errno_of(d.write, b"x" * 992) == errno.ENOSPC  # refused (EW alternation)
        assert errno_of(d.write, b"x" * 992) == errno.ENOSPC  # does not fit in 1000


# ---------------------------------------------------------------- command line


def test_cli_fault(image: Path, capsys):
    img = str(image)
    rc, out, _ = run(capsys, "fault", img, "add", "unreadable", "--at", "3", "--count", "2")
    assert rc == 0 and "unreadable" in out and "3..4" in out
    rc, out, _ = run(capsys, "fault", img, "add", "power_cut", "--after", "5")
    assert rc == 0
    rc, out, _ = run(capsys, "fault", img, "add", "early_eom", "--offset", "64K")
    assert rc == 0
    rc, out, _ = run(capsys, "fault", img, "add", "short_read", "--at", "1", "--length", "7")
    assert rc == 0
    rc, out, _ = run(capsys, "fault", img, "add", "write_error", "--at", "0")
    assert rc == 0
    rc, out, _ = run(capsys, "fault", img, "list", "--json")
    assert rc == 0
    assert (
        json.loads(out)
        == list_faults(image)
        == [
            {"kind": "unreadable", "at": 3, "count": 2},
            {"kind": "power_cut", "after": 5},
            {"kind": "early_eom", "offset": 65536},
            {"kind": "short_read", "at": 1, "length": 7},
            {"kind": "write_error", "at": 0, "count": 1},
        ]
    )
    rc, out, _ = run(capsys, "fault", img, "list")
    assert rc == 0 and out.count("\n") == 5 and "one-shot" in out
    rc, out, _ = run(capsys, "info", img)
    assert out.count("fault: ") == 5
    rc, out, _ = run(capsys, "info", img, "--json")
    assert len(json.loads(out)["faults"]) == 5
    rc, out, _ = run(capsys, "fault", img, "clear", "unreadable")
    assert rc == 0 and "removed 1 fault" in out
    rc, out, _ = run(capsys, "fault", img, "clear")
    assert rc == 0 and "removed 4 faults" in out
    rc, out, _ = run(capsys, "fault", img, "list")
    assert rc == 0 and "no faults" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["add", "bogus", "--at", "1"], "unknown fault kind"),
        (["add", "unreadable"], "missing parameter at"),
        (["add", "power_cut"], "exactly one of"),
        (["add", "power_cut", "--at", "1", "--after", "2"], "exactly one of"),
        (["add", "unreadable", "--at", "-1"], "non-negative"),
        (["add", "early_eom", "--offset", "lots"], "invalid size"),
        (["add", "short_read", "--at", "1", "--offset", "3"], "unexpected parameter"),
        (["add"], "give the fault kind"),
        (["list", "--at", "1"], "only with 'add'"),
        (["frob"], "invalid action"),
        (["clear", "bogus"], "unknown fault kind"),
    ],
)
def test_cli_fault_errors(image: Path, capsys, args, needle):
    rc, _out, err = run(capsys, "fault", str(image), *args)
    assert rc != 0
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert list_faults(image) == []


def test_cli_fault_missing_image(tmp_path: Path, capsys):
    rc, _out, err = run(capsys, "fault", str(tmp_path / "x.tap"), "list")
    assert rc == 1 and "no such image" in err


# ---------------------------------------------------------------- through tapearc's adapter


def test_adapter_sees_unreadable_and_power_cut(tape: Path):
    """The st adapter turns the injected EIO into MediumIOError and is past the record."""
    stlike = pytest.importorskip("tapearc.media.stlike")
    errors = pytest.importorskip("tapearc.errors")
    add_fault(tape, "unreadable", at=1)
    with SimDrive(tape, readonly=True) as ops:
        d = stlike.StLikeDrive(ops, name="sim:t", writable=False)
        assert d.read_record() == RECS[0]
        with pytest.raises(errors.MediumIOError):
            d.read_record()
        assert d.position().logical == 2
        assert d.read_record() == RECS[2]
    clear_faults(tape)
    add_fault(tape, "power_cut", after=1)
    with SimDrive(tape) as ops:
        d = stlike.StLikeDrive(ops, name="sim:t", writable=True)
        d.seek_end_of_data()
        d.write_record(b"one")
        with pytest.raises(errors.MediumError):
            d.write_record(b"two")
    res = scan(tape)
    assert res.truncated and len(res.objects) == 9
