"""The backup's text result says how much was read from the source and which blocks a change
tracker missed (--verify-unchanged)."""

from __future__ import annotations

import pytest

from tapearc.cli.render import render_backup
from tapearc.engine.backup_result import BackupResult


def _result(**kw: object) -> BackupResult:
    r = BackupResult(
        medium="sim:t.tap",
        volume="disk",
        generation=2,
        tape_file=2,
        volume_size=1 << 30,
        block_size=65536,
        record_size=1 << 20,
        compression="none",
        kind="incremental",
        base_generation=1,
    )
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_bytes_read_and_missed_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    render_backup(
        "nbd+unix:///disk?socket=/run/d.sock", _result(source_bytes_read=3 << 20, tracker_missed=[(10, 10), (15, 17)])
    )
    out = capsys.readouterr().out
    assert "3.0 MiB read from the source" in out
    assert "the change tracker missed 4 changed blocks (read and stored anyway): blocks 10, 15-17" in out


def test_no_missed_line_without_misses(capsys: pytest.CaptureFixture[str]) -> None:
    render_backup("/x.img", _result(source_bytes_read=0))
    out = capsys.readouterr().out
    assert "0 B read from the source" in out and "tracker" not in out
