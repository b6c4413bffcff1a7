"""Copying between simulator images and a real tape, verifying one against the other.

DESTRUCTIVE (the tape is overwritten). Skipped unless TAPEARC_TEST_TAPE is set.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.hardware.conftest import tapearc


def _volume(tmp_path: Path, seed: int) -> tuple[Path, bytes]:
    rng = random.Random(seed)
    data = rng.randbytes(3 * 1024 * 1024) + bytes(1024 * 1024) + rng.randbytes(77777)
    src = tmp_path / f"vol{seed}.img"
    src.write_bytes(data)
    return src, data


def test_image_to_tape_verify_and_back(tape: str, tmp_path: Path) -> None:
    src, data = _volume(tmp_path, 1)
    img = tmp_path / "first.tap"
    cat = tmp_path / "cat.sqlite"
    tapearc("backup", str(src), "--media", f"sim:{img}", catalog=cat)  # the default 1 MiB records
    src.write_bytes(data[:1000] + b"x" + data[1001:])
    tapearc("backup", str(src), "--media", f"sim:{img}", catalog=cat)  # an incremental too
    tapearc("label", "--media", tape, "--force", catalog=cat)  # make the tape non-blank, then:
    p = tapearc("copy", "--from", f"sim:{img}", "--to", tape, catalog=cat, check=False)
    assert p.returncode != 0  # a copy refuses a non-blank target ...
    tapearc("copy", "--from", f"sim:{img}", "--to", tape, "--force", catalog=cat)  # ... unless forced
    p = tapearc("verify", "--media", tape, "--image", f"sim:{img}", "--json", catalog=cat)
    rep = json.loads(p.stdout)
    assert rep["ok"] and rep["image"]["identical"], rep
    back = tmp_path / "back.tap"
    tapearc("copy", "--from", tape, "--to", f"sim:{back}", catalog=cat)
    assert back.read_bytes() == img.read_bytes()  # byte-identical images


def test_backup_to_tape_dump_and_restore_from_dump(tape: str, tmp_path: Path) -> None:
    src, data = _volume(tmp_path, 2)
    cat = tmp_path / "cat.sqlite"
    tapearc("label", "--media", tape, "--force", "--record-size", "512K", catalog=cat)  # a non-default size
    tapearc("backup", str(src), "--media", tape, catalog=cat)
    dump = tmp_path / "dump.tap"
    tapearc("copy", "--from", tape, "--to", f"sim:{dump}", catalog=cat)
    cat.unlink()  # the dump is read with no catalog
    out = tmp_path / "out.img"
    tapearc("restore", "--media", f"sim:{dump}", "--to", str(out), catalog=cat)
    assert out.read_bytes() == data
    p = tapearc("verify", "--media", f"sim:{dump}", "--json", catalog=cat)
    assert json.loads(p.stdout)["ok"]
