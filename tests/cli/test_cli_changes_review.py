"""Change sources through the command line, adversarially (issue 14): bad --changed-blocks
input of every kind is one line and exit 26 (never a traceback, never a hang), a tracker that
--verify-unchanged caught lying is not trusted again from that generation, and
``tapearc catalog generations`` shows how each generation was read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

K64 = 64 * 1024


def tapearc(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # a table row on one line
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def ok(p: subprocess.CompletedProcess[str]) -> Any:
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def blocks(*values: int) -> bytes:
    return b"".join(bytes([v]) * K64 for v in values)


def _fifo(tmp: Path) -> str:
    p = tmp / "fifo"
    os.mkfifo(p)
    return str(p)


def _non_utf8(tmp: Path) -> str:
    p = tmp / "latin1.csv"
    p.write_bytes(b"# caf\xe9\noffset,length\n")
    return str(p)


def _empty(tmp: Path) -> str:
    p = tmp / "empty.json"
    p.write_text(" \n")
    return str(p)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_fifo, "not a regular file"),  # no writer: opening it waited for ever
        (lambda tmp: "/dev/zero", "not a regular file"),  # read for ever as one endless CSV line
        (lambda tmp: str(tmp), "not a regular file"),  # a directory (was "Is a directory": also one line)
        (lambda tmp: str(tmp / "missing.xml"), "No such file"),
        (_non_utf8, "not UTF-8 text"),
        (_empty, "is empty"),
    ],
)
def test_files_that_are_not_tracker_output_are_exit_26(tmp_path: Path, make: Any, says: str) -> None:
    vol = tmp_path / "vol"
    vol.write_bytes(blocks(1, 2, 3, 4))
    spec, cat = f"sim:{tmp_path / 't.tap'}", str(tmp_path / "cat.sqlite")
    f = make(tmp_path)
    p = tapearc("backup", str(vol), "--media", spec, "--catalog", cat, "--changed-blocks", f, timeout=60)
    assert p.returncode == 26, p.stderr
    lines = p.stderr.splitlines()
    assert lines[0].startswith("tapearc: error: ") and f in lines[0] and says in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "t.tap").exists()


def test_a_tracker_caught_lying_is_not_trusted_from_that_generation(tmp_path: Path) -> None:
    """--verify-unchanged reads every block and names each missed one (here three ranges: a
    block now zero, one in the middle, the last partial block); the generation restores
    byte-identical; the catalog records the lie (no checkpoint), so the next incremental with
    the same tracker reads everything again instead of trusting it."""
    spec, cat = f"sim:{tmp_path / 't.tap'}", str(tmp_path / "cat.sqlite")
    common = ("--media", spec, "--catalog", cat, "--json")
    vol = tmp_path / "vol"
    data = bytearray(blocks(*range(1, 17)) + b"\x17" * 1000)  # 16 blocks and a partial one
    vol.write_bytes(data)
    ok(tapearc("backup", str(vol), *common, "--checkpoint", "cp1"))
    data[2 * K64 : 3 * K64] = bytes(K64)  # missed: now zeros
    data[5 * K64 : 6 * K64] = b"\x55" * K64  # in the file
    data[9 * K64 : 11 * K64] = b"\x66" * (2 * K64)  # missed
    data[-10:] = b"\x77" * 10  # missed: the last, partial block
    vol.write_bytes(data)
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"since": "cp1", "until": "cp2", "changed": [[5 * K64, K64]]}))
    p = tapearc("backup", str(vol), *common, "--changed-blocks", str(f), "--verify-unchanged")
    assert p.returncode == 27, p.stderr
    res = json.loads(p.stdout)
    assert res["tracker_missed"] == [[2, 2], [9, 10], [16, 16]]
    assert res["source_bytes_read"] == len(data)
    assert "called 4 changed blocks unchanged (blocks 2, 9-10, 16," in p.stderr
    assert res["change"] == {"source": "changed-blocks:json", "trusted": False, "since": "cp1", "checkpoint": None}
    out = tmp_path / "out"
    ok(tapearc("restore", "--media", spec, "--catalog", cat, "--to", str(out), "--volume", "vol", "--json"))
    assert out.read_bytes() == bytes(data)
    # the next file starts at cp2, where the lying tracker said generation 2 was read
    data[0:K64] = b"\x88" * K64
    data[12 * K64 : 13 * K64] = b"\x99" * K64  # missed again
    vol.write_bytes(data)
    f.write_text(json.dumps({"since": "cp2", "until": "cp3", "changed": [[0, K64]]}))
    p = tapearc("backup", str(vol), *common, "--changed-blocks", str(f))
    r3 = ok(p)
    assert r3["change"]["trusted"] is False and "is not trusted" in p.stderr
    assert r3["data_blocks"] == 2
    out.unlink()
    ok(tapearc("restore", "--media", spec, "--catalog", cat, "--to", str(out), "--volume", "vol", "--json"))
    assert out.read_bytes() == bytes(data)


def test_catalog_generations_shows_how_each_generation_was_read(tmp_path: Path) -> None:
    spec, cat = f"sim:{tmp_path / 't.tap'}", str(tmp_path / "cat.sqlite")
    common = ("--media", spec, "--catalog", cat, "--json")
    vol = tmp_path / "vol"
    vol.write_bytes(blocks(1, 2, 3, 4))
    ok(tapearc("backup", str(vol), *common, "--checkpoint", "cp1"))
    f = tmp_path / "c.csv"
    f.write_text("offset,length\n0,65536\n")
    ok(
        tapearc(
            "backup", str(vol), *common, "--changed-blocks", str(f), "--changed-since", "cp1", "--checkpoint", "cp2"
        )
    )
    ok(tapearc("backup", str(vol), *common, "--changed-blocks", str(f), "--changed-since", "cp7"))
    listed = ok(tapearc("catalog", "generations", "--catalog", cat, "--json"))
    assert [g["change"] for g in listed["generations"]] == [
        {"source": "full-read", "trusted": False, "since": None, "checkpoint": "cp1"},
        {"source": "changed-blocks:csv", "trusted": True, "since": "cp1", "checkpoint": "cp2"},
        {"source": "changed-blocks:csv", "trusted": False, "since": "cp7", "checkpoint": None},
    ]
    text = tapearc("catalog", "generations", "--catalog", cat)
    assert text.returncode == 0, text.stderr
    rows = [line for line in text.stdout.splitlines() if line.lstrip().startswith("vol ")]
    assert len(rows) == 3, text.stdout
    assert "full-read" in rows[0] and "csv trusted" in rows[1] and "csv every block" in rows[2], text.stdout
