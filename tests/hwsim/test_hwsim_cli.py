"""The tapesim command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tapesim import mtio
from tapesim.cli import CliError, main, parse_size
from tapesim.drive import SimDrive, load_settings, sidecar_path


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(list(args))
    out, err = capsys.readouterr()
    return ei.value.code, out, err


@pytest.mark.parametrize(
    "text, value",
    [
        ("65536", 65536),
        ("64K", 65536),
        ("64k", 65536),
        ("1M", 1 << 20),
        ("10MiB", 10 << 20),
        ("2G", 2 << 30),
        ("2GB", 2 << 30),
        ("1T", 1 << 40),
        ("512B", 512),
        (" 3 KiB ", 3072),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "1.5G", "-1", "10Q", "M", "1 MM"])
def test_parse_size_rejects(text):
    with pytest.raises(CliError):
        parse_size(text)


def test_new_and_refuse_overwrite(tmp_path, capsys):
    img = str(tmp_path / "t.tap")
    rc, out, err = run(
        capsys,
        "new",
        img,
        "--capacity",
        "10M",
        "--early-warning",
        "1M",
        "--max-record",
        "256K",
        "--barcode",
        "TAPE01L8",
    )
    assert rc == 0 and "blank tape" in out
    s = load_settings(img)
    assert (s.capacity, s.early_warning, s.max_record, s.barcode, s.write_protected) == (
        10 << 20,
        1 << 20,
        256 << 10,
        "TAPE01L8",
        False,
    )
    with SimDrive(img) as d:
        d.write(b"data")
    rc, out, err = run(capsys, "new", img, "--capacity", "10M")
    assert rc != 0
    assert err.count("\n") == 1 and "already exists" in err and "Traceback" not in err
    assert Path(img).stat().st_size > 0
    rc, out, err = run(capsys, "new", img, "--capacity", "20M", "--force")
    assert rc == 0 and Path(img).stat().st_size == 0
    assert load_settings(img).capacity == 20 << 20


@pytest.mark.parametrize(
    "args, needle",
    [
        (["new", "{img}", "--capacity", "lots"], "invalid size"),
        (["new", "{img}", "--capacity", "1K", "--early-warning", "2K"], "early_warning"),
        (["new", "{img}", "--capacity", "1M", "--max-record", "32M"], "max_record"),
        (["new", "{img}"], "--capacity"),
        (["info", "{img}"], "no such image"),
        (["protect", "{img}", "--on"], "no such image"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, args, needle):
    img = str(tmp_path / "missing.tap")
    rc, _out, err = run(capsys, *[a.format(img=img) for a in args])
    assert rc != 0
    assert err.startswith("tapesim: error: ") and err.count("\n") == 1, err
    assert needle in err


def test_info_text_and_json(tmp_path, capsys):
    img = str(tmp_path / "i.tap")
    run(capsys, "new", img, "--capacity", "1M")
    with SimDrive(img) as d:
        for _ in range(3):
            d.write(b"x" * 65536)
        d.write(b"y" * 1200)
        d.mtop(mtio.MTWEOF)
        d.mtop(mtio.MTWEOF)
        d.write(b"z" * 10)
    rc, out, _ = run(capsys, "info", img)
    assert rc == 0
    assert "file 0: 4 records (3 x 65536, 1 x 1200), 197808 bytes, filemark" in out
    assert "file 1: 0 records, 0 bytes, filemark" in out
    assert "file 2: 1 record (1 x 10), 10 bytes, filemark" in out  # st's filemark at close
    assert "damage: none" in out
    rc, out, _err = run(capsys, "info", img, "--json")
    rep = json.loads(out)
    assert rep["capacity"] == 1 << 20
    assert rep["used"] == Path(img).stat().st_size
    assert [f["records"] for f in rep["files"]] == [4, 0, 1]
    assert rep["files"][0]["runs"] == [{"count": 3, "length": 65536}, {"count": 1, "length": 1200}]
    assert rep["files"][0]["record_sizes"] == [[65536, 3], [1200, 1]]
    assert rep["files"][0]["bytes"] == 3 * 65536 + 1200
    assert all(f["filemark"] for f in rep["files"])
    assert rep["object_count"] == 8 and rep["filemark_count"] == 3
    assert rep["truncated"] is False and rep["damage"] is None and rep["error_records"] == []
    assert rep["objects"][1] == {
        "position": 1,
        "kind": "record",
        "offset": 65544,
        "length": 65536,
        "error": False,
        "file": 0,
        "record": 1,
    }


def test_info_reports_damage(tmp_path, capsys):
    img = tmp_path / "d.tap"
    with SimDrive(img, create=True, implicit_filemarks=False) as d:
        d.write(b"a" * 11)
        d.mtop(mtio.MTWEOF)
        d.write(b"b" * 20)
    with open(img, "ab") as f:
        f.write(b"\x64\x00\x00\x00" + b"c" * 30)  # a 100-byte record cut short
    # flag the first record as erroneous
    raw = bytearray(img.read_bytes())
    raw[3] |= 0x80
    raw[4 + 12 + 3] |= 0x80  # trailing word of the 11-byte record (+pad)
    img.write_bytes(bytes(raw))
    rc, out, _ = run(capsys, "info", str(img))
    assert rc == 0
    assert "damage: truncated tail at offset" in out
    assert "damage: error-flagged record at object 0" in out
    rc, out, _err = run(capsys, "info", str(img), "--json")
    rep = json.loads(out)
    assert rep["truncated"] is True and rep["damage"]["offset"] == 20 + 4 + 28
    assert rep["error_records"][0]["position"] == 0
    assert rep["files"][-1]["filemark"] is False


def test_protect(tmp_path, capsys):
    img = str(tmp_path / "p.tap")
    run(capsys, "new", img, "--capacity", "1M")
    rc, _, _ = run(capsys, "protect", img, "--on")
    assert rc == 0 and load_settings(img).write_protected
    with pytest.raises(OSError):
        SimDrive(img)
    rc, _out, _ = run(capsys, "protect", img, "--off")
    assert rc == 0 and not load_settings(img).write_protected
    SimDrive(img).close()
    # protect works on an image without a sidecar too (defaults + the tab)
    bare = tmp_path / "bare.tap"
    bare.write_bytes(b"")
    run(capsys, "protect", str(bare), "--on")
    assert json.loads(Path(sidecar_path(bare)).read_text())["write_protected"] is True


def test_python_dash_m_tapesim(tmp_path):
    img = str(tmp_path / "s.tap")
    r = subprocess.run(
        [sys.executable, "-m", "tapesim", "new", img, "--capacity", "64K"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "tapesim", "new", img, "--capacity", "64K"], capture_output=True, text=True
    )
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "tapesim", "info", "--json", img], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["object_count"] == 0
