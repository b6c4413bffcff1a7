"""The streaming pipeline on the real st driver: backups with and without the threads write the
same records to the tape, and restore and verify give the same results.

DESTRUCTIVE (the tape is overwritten). Skipped unless TAPEARC_TEST_TAPE is set.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import DEFAULT_RECORD_SIZE, BackupOptions, backup
from tapearc.engine.labeling import label_medium
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.verify import run_verify
from tapearc.media import open_medium
from tapearc.media.base import Mark

RS = DEFAULT_RECORD_SIZE  # 1 MiB


def _records(tape: str) -> list[bytes | str]:
    out: list[bytes | str] = []
    with open_medium(tape, write=False) as drive:
        drive.rewind()
        while True:
            r = drive.read_record()
            if r is Mark.END_OF_DATA:
                return out
            out.append(r.value if isinstance(r, Mark) else r)


def test_pipelined_and_plain_backups_write_the_same_tape(
    tape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    data = rng.randbytes(2 * 1024 * 1024) + bytes(2 * 1024 * 1024) + rng.randbytes(1024 * 1024 + 333)
    src = tmp_path / "vol.img"
    src.write_bytes(data)
    seen = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("TAPEARC_PIPELINE", mode)
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat{mode}.sqlite"))
        ids = random.Random(42)
        monkeypatch.setattr(uuid, "uuid4", lambda ids=ids: uuid.UUID(int=ids.getrandbits(128), version=4))
        with Catalog() as cat, open_medium(tape, write=True) as drive:
            label_medium(drive, cat, force=True, record_size=RS, clock=lambda: 1_700_000_000)
        with Catalog() as cat, open_medium(tape, write=True) as drive:
            res = backup(
                str(src), drive, cat, BackupOptions(compress="none", chunk_size=2 * RS), clock=lambda: 1_700_000_001
            )
        assert res.complete
        out = tmp_path / f"out{mode}.img"
        with Catalog() as cat, open_medium(tape, write=False) as drive:
            restore(drive, cat, str(out), RestoreOptions())
        with Catalog() as cat, open_medium(tape, write=False) as drive:
            assert run_verify(drive, cat).ok
        assert out.read_bytes() == data
        seen[mode] = _records(tape)
    assert len(seen["0"]) == len(seen["1"]) > 5
    assert seen["0"] == seen["1"]
