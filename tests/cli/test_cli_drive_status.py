"""`drive status` reads the label through the one label reader (tapefiles.probe_label): blank,
tapearc, damaged (a label that starts like tapearc's but does not decode), foreign."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.test_cli import tapearc

pytest.importorskip("tapesim.drive")


def _status(spec: str) -> dict[str, object]:
    p = tapearc("drive", "status", "--media", spec, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def test_drive_status_states(tmp_path: Path) -> None:
    blank = tmp_path / "blank.tap"
    blank.write_bytes(b"")
    assert _status(f"sim:{blank}")["state"] == "blank"
    tape = tmp_path / "t.tap"
    assert tapearc("label", "--media", f"sim:{tape}").returncode == 0
    info = _status(f"sim:{tape}")
    assert info["state"] == "tapearc" and isinstance(info["label"], dict)
    raw = bytearray(tape.read_bytes())
    raw[4 + 40] ^= 0x01  # a bit of the label record (after its 4-byte SIMH length)
    tape.write_bytes(bytes(raw))
    info = _status(f"sim:{tape}")
    assert info["state"] == "damaged" and info["label"] is None
    assert "the volume label is damaged" in str(info["label_note"])
    foreign = tmp_path / "f.img"
    foreign.write_bytes(os.urandom(10_000))
    assert _status(f"sim:{foreign}")["state"] == "foreign"
