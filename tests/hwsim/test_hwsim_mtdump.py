"""Interop: simh's mtdump reads images written by SimDrive the same way tapesim info does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from hwsim_helpers import payload

from tapesim import mtio
from tapesim.drive import SimDrive, create_image

MTDUMP = shutil.which("mtdump")
pytestmark = pytest.mark.skipif(MTDUMP is None, reason="simh's mtdump is not installed")

_RECORD = re.compile(r"^Obj (\d+), position (\d+), record (\d+), length = (\d+)")
_MARK = re.compile(r"^Obj (\d+), position (\d+), (end of tape file \d+|end of logical tape)")


def parse_mtdump(text: str) -> list[tuple[str, int, int]]:
    """(kind, offset, length) for each object mtdump lists."""
    out: list[tuple[str, int, int]] = []
    for line in text.splitlines():
        line = line.strip()
        if m := _RECORD.match(line):
            out.append(("record", int(m.group(2)), int(m.group(4))))
        elif m := _MARK.match(line):
            out.append(("filemark", int(m.group(2)), 0))
    return out


def info_json(path: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-m", "tapesim", "info", "--json", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout)


def test_mtdump_agrees_with_tapesim_info(tmp_path):
    path = str(tmp_path / "interop.tap")
    create_image(path, capacity=16 << 20)
    # mtdump (simh 3.8) stops at two consecutive tape marks ("end of logical tape"), so
    # those appear only at the very end.
    layout = [[80, 81, 1, 65536, 65535], [3, 4096], [12345, 2, 64 * 1024 - 1, 7], [1]]
    with SimDrive(path) as d:
        for f, sizes in enumerate(layout):
            for i, n in enumerate(sizes):
                d.write(payload(f * 100 + i, n))
            d.mtop(mtio.MTWEOF)
        d.mtop(mtio.MTWEOF)  # double filemark: logical end of tape
    dump = subprocess.run([MTDUMP, path], capture_output=True, text=True, check=True).stdout
    listed = parse_mtdump(dump)
    rep = info_json(path)
    ours = [(o["kind"], o["offset"], o["length"]) for o in rep["objects"]]
    assert listed == ours
    assert sum(1 for k, _, _ in listed if k == "filemark") == len(layout) + 1
    assert [f["records"] for f in rep["files"]] == [len(s) for s in layout] + [0]
    assert "end of logical tape" in dump


def test_mtdump_sees_a_file_without_closing_filemark(tmp_path):
    path = str(tmp_path / "open.tap")
    create_image(path, capacity=1 << 20)
    with SimDrive(path, implicit_filemarks=False) as d:
        d.write(b"x" * 99)
        d.mtop(mtio.MTWEOF)
        d.write(b"y" * 100)
        d.write(b"z" * 3)
    dump = subprocess.run([MTDUMP, path], capture_output=True, text=True, check=True).stdout
    rep = info_json(path)
    assert parse_mtdump(dump) == [(o["kind"], o["offset"], o["length"]) for o in rep["objects"]]
    assert rep["files"][-1]["filemark"] is False
    assert rep["files"][-1]["runs_text"] == "1 x 100, 1 x 3"
