"""tapearc through its command line on a real st device: backups, scan, restores, and positions
checked against mt-st. DESTRUCTIVE (the tape is blanked). Needs TAPEARC_TEST_TAPE=/dev/nstN."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from tapearc.format import CHUNK_MAGIC, GENERATION_MAGIC

from .conftest import Lab, blank_tape, mt, mt_status, mt_tell, tapearc

MiB = 1 << 20


def _volume(path: Path) -> bytes:
    rng = random.Random(5)
    data = rng.randbytes(3 * MiB) + bytes(MiB) + rng.randbytes(MiB // 2 + 123)
    path.write_bytes(data)
    return data


def _modify(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    rng = random.Random(6)
    for off in (0, 70_000, 2 * MiB + 5, len(data) - 10):
        data[off : off + 10] = rng.randbytes(10)
    data += rng.randbytes(100_000)  # the volume grew
    path.write_bytes(bytes(data))
    return bytes(data)


def _read_record_at(dev: str, logical: int) -> bytes:
    mt(dev, "seek", str(logical))
    assert mt_tell(dev) == logical
    fd = os.open(dev, os.O_RDONLY)
    try:
        return os.read(fd, MiB)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Blank the tape; full backup; modify; incremental backup. Shared by the tests below."""
    dev = os.environ["TAPEARC_TEST_TAPE"]
    tmp = tmp_path_factory.mktemp("st")
    catalog = tmp / "catalog.sqlite"
    src = tmp / "vol.img"
    blank_tape(dev)
    gen1 = _volume(src)
    r1 = json.loads(tapearc("backup", str(src), "--media", dev, "--json", catalog=catalog).stdout)
    after1 = mt_status(dev)
    gen2 = _modify(src)
    r2 = json.loads(tapearc("backup", str(src), "--media", dev, "--json", catalog=catalog).stdout)
    after2 = mt_status(dev)
    return {
        "dev": dev,
        "tmp": tmp,
        "catalog": catalog,
        "gen1": gen1,
        "gen2": gen2,
        "r1": r1,
        "r2": r2,
        "after1": after1,
        "after2": after2,
    }


def test_full_then_incremental_then_scan_and_restore(archived):
    dev, tmp, catalog = archived["dev"], archived["tmp"], archived["catalog"]
    assert archived["r1"]["kind"] == "full" and archived["r1"]["generation"] == 1
    assert archived["r2"]["kind"] == "incremental" and archived["r2"]["generation"] == 2
    catalog.unlink()  # the catalog is lost: rebuild it from the tape
    scan = json.loads(tapearc("scan", "--media", dev, "--json", catalog=catalog).stdout)
    assert [g["generation"] for g in scan["generations"]] == [1, 2]
    for gen, want in ((1, archived["gen1"]), (2, archived["gen2"])):
        out = tmp / f"restored{gen}.img"
        tapearc("restore", "--media", dev, "--to", str(out), "--generation", str(gen), catalog=catalog)
        assert out.read_bytes() == want, f"generation {gen} differs"


def test_mt_status_file_number_is_the_number_of_tape_files(archived):
    dev = archived["dev"]
    listing = json.loads(tapearc("list", "--media", dev, "--json", catalog=archived["catalog"]).stdout)
    files = listing["tape_files"]
    assert [f["kind"] for f in files] == ["label", "generation", "generation"]
    assert all(f["closed"] for f in files)
    # right after each backup st's file number counts the filemarks tapearc wrote
    assert archived["after1"]["file"] == 2
    assert archived["after2"]["file"] == len(files) == 3
    # tape file k starts after the records and filemarks of files 0..k-1 (filemarks count)
    start = 0
    mt(dev, "rewind")
    for f in files:
        mt(dev, "rewind")
        if f["tape_file"]:
            mt(dev, "fsf", str(f["tape_file"]))
        assert mt_tell(dev) == start, f"tape file {f['tape_file']}"
        st = mt_status(dev)
        assert (st["file"], st["block"]) == (f["tape_file"], 0)
        start += f["records"] + 1
    mt(dev, "eod")
    assert mt_tell(dev) == start  # end of data
    assert mt_status(dev)["file"] in (len(files), -1)


def test_mt_seek_to_the_positions_tapearc_recorded(archived):
    dev, catalog = archived["dev"], archived["catalog"]
    listing = json.loads(tapearc("list", "--media", dev, "--json", catalog=catalog).stdout)
    for gen in (1, 2):
        plan = json.loads(tapearc("plan", "--media", dev, "--json", "--generation", str(gen), catalog=catalog).stdout)
        assert plan["chunks"], plan
        for c in plan["chunks"]:
            rec = _read_record_at(dev, c["logical"])
            assert rec.startswith(CHUNK_MAGIC), f"no chunk at object {c['logical']}"
        # the generation header is the first record of its tape file
        tf = plan["chunks"][0]["tape_file"]
        first = sum(f["records"] + 1 for f in listing["tape_files"][:tf])
        assert _read_record_at(dev, first).startswith(GENERATION_MAGIC)


def test_drive_status_shows_label_and_keeps_the_position(archived):
    dev = archived["dev"]
    mt(dev, "seek", "3")
    info = json.loads(tapearc("drive", "status", "--media", dev, "--json").stdout)
    assert info["tape"] is True and info["state"] == "tapearc"
    assert info["st"]["position"] == 3 and info["position"]["logical"] == 3
    assert mt_tell(dev) == 3  # returned to where it was
    assert "ONLINE" in info["st"]["flags"]
    assert info["st"]["block_size"] == 0
    listing = json.loads(tapearc("list", "--media", dev, "--json", catalog=archived["catalog"]).stdout)
    assert info["label"]["medium_uuid"] == listing["label"]["medium_uuid"]
    mt(dev, "seek", "3")
    text = tapearc("drive", "status", "--media", dev).stdout
    assert "tapearc label" in text and "returned to object 3" in text


def test_blank_tape_status_and_list(tape):
    blank_tape(tape)
    info = json.loads(tapearc("drive", "status", "--media", tape, "--json").stdout)
    assert info["state"] == "blank" and info["label"] is None
    proc = tapearc("list", "--media", tape, check=False)
    assert proc.returncode == 11, proc.stderr  # NotTapearcMediumError
    assert "blank" in proc.stderr


def test_rewinding_device_is_refused_for_writing(tape, tmp_path):
    rew = tape.replace("/nst", "/st")
    if rew == tape or not os.path.exists(rew):
        pytest.skip("no rewinding node")
    src = tmp_path / "v.img"
    src.write_bytes(b"x" * 70000)
    proc = tapearc("backup", str(src), "--media", rew, check=False)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tapearc: error:")]
    assert len(lines) == 1 and "rewinding device" in lines[0], proc.stderr


def test_write_protected_tape(tape, lab: Lab, tmp_path):
    blank_tape(tape)
    src = tmp_path / "v.img"
    src.write_bytes(random.Random(1).randbytes(200_000))
    lab.write_protect(True)
    try:
        info = json.loads(tapearc("drive", "status", "--media", tape, "--json", "--no-label").stdout)
        assert info["write_protected"] is True and "WR_PROT" in info["st"]["flags"]
        proc = tapearc("backup", str(src), "--media", tape, check=False)
        assert proc.returncode == 13, proc.stdout + proc.stderr  # WriteProtectedError
        err = [ln for ln in proc.stderr.splitlines() if ln.startswith("tapearc: error:")]
        assert len(err) == 1 and "write-protected" in err[0], proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        lab.write_protect(False)


def test_empty_drive(tape, lab: Lab, tmp_path):
    src = tmp_path / "v.img"
    src.write_bytes(b"y" * 70000)
    lab.online(False)
    try:
        for args in (("backup", str(src), "--media", tape), ("list", "--media", tape)):
            proc = tapearc(*args, check=False)
            assert proc.returncode == 10, proc.stdout + proc.stderr  # MediumUnavailableError
            err = [ln for ln in proc.stderr.splitlines() if ln.startswith("tapearc: error:")]
            assert len(err) == 1 and f"no tape in drive {tape}" in err[0], proc.stderr
        info = json.loads(tapearc("drive", "status", "--media", tape, "--json").stdout)
        assert info == {"medium": f"st:{tape}", "backend": "st", "tape": False, "state": "no tape", "label": None}
        assert "no tape" in tapearc("drive", "status", "--media", tape).stdout
    finally:
        lab.online(True)
