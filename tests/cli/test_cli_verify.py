"""tapearc verify through the command line: exit codes, report, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120)


def test_verify_ok_then_damaged(tmp_path: Path) -> None:
    src = tmp_path / "v.img"
    src.write_bytes(os.urandom(600_000))
    img = tmp_path / "t.tap"
    assert (
        run(
            "backup",
            str(src),
            "--media",
            f"sim:{img}",
            "--block-size",
            "4K",
            "--record-size",
            "16K",
            "--chunk-size",
            "64K",
            "--verify",
        ).returncode
        == 0
    )
    p = run("verify", "--media", f"sim:{img}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tape file 1 (volume 'v.img' generation 1): OK" in p.stdout and "verify: OK" in p.stdout
    p = run("verify", "--media", f"sim:{img}", "--against", str(src), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["against"]["equal"] is True
    raw = bytearray(img.read_bytes())
    pos = raw.find(b"TACHUNK1", raw.find(b"TACHUNK1") + 1)  # the second chunk
    raw[pos + 3000] ^= 0xFF
    img.write_bytes(bytes(raw))
    p = run("verify", "--media", f"sim:{img}")
    assert p.returncode == 20, p.stdout + p.stderr
    assert "DAMAGED" in p.stdout and "chunk 1, blocks" in p.stdout and "generations 1" in p.stdout
    p = run("verify", "--media", f"sim:{img}", "--json")
    rep = json.loads(p.stdout)
    assert rep["ok"] is False
    probs = rep["media"][0]["tape_files"][0]["problems"]
    assert probs and probs[0]["chunk"] == 1 and probs[0]["kind"] == "crc" and probs[0]["blocks"]
