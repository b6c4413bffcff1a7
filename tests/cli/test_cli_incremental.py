"""Incremental backups, plan, scan and stream restore through the command line."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path


def tapearc(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_chain_plan_scan_stream(tmp_path: Path, _private_catalog: Path) -> None:
    rng = random.Random(3)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "disk.img"
    bs = 4096
    data = bytearray(rng.randbytes(200 * bs))
    src.write_bytes(bytes(data))
    p = tapearc("backup", str(src), "--media", spec, "--block-size", "4K", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["kind"] == "full"
    data[10 * bs : 12 * bs] = rng.randbytes(2 * bs)
    src.write_bytes(bytes(data))
    p = tapearc("backup", str(src), "--media", spec, "--json")  # block size follows the volume's
    assert p.returncode == 0, p.stderr
    g2 = json.loads(p.stdout)
    assert g2["kind"] == "incremental" and g2["base_generation"] == 1 and g2["data_blocks"] == 2
    assert g2["block_size"] == bs

    p = tapearc("plan", "--media", spec, "--json")
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    for key in ("chunks_to_read", "bytes_to_read", "bytes_to_skip", "media", "tape_files", "chain"):
        assert key in plan
    assert plan["chain"] == [1, 2] and plan["generation"] == 2
    assert plan["chunks_to_read"] == len(plan["chunks"]) >= 2
    assert [m["sequence"] for m in plan["media"]] == [1]
    p = tapearc("plan", "--media", spec, "--chunks")
    assert p.returncode == 0 and "to read" in p.stdout and "to skip" in p.stdout

    p = tapearc("list", "--media", spec)
    assert p.returncode == 0 and "volume disk.img: generations 1(F" in p.stdout and "2(+1, 2 blocks)" in p.stdout

    # lose the catalog, scan, and restore the same bytes, to a stream
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    p = tapearc("scan", "--media", spec, "--json")
    assert p.returncode == 0, p.stderr
    scanned = json.loads(p.stdout)
    assert [g["state"] for g in scanned["generations"]] == ["complete", "complete"]
    out = subprocess.run(
        [sys.executable, "-m", "tapearc", "restore", "--media", spec, "--to", "-"], capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == bytes(data)
    out = subprocess.run(
        [sys.executable, "-m", "tapearc", "restore", "--media", spec, "--to", "-", "--generation", "1"],
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0
    assert out.stdout[: 10 * bs] == bytes(data[: 10 * bs]) and out.stdout[10 * bs : 12 * bs] != bytes(
        data[10 * bs : 12 * bs]
    )


def test_catalog_option_and_unusable_catalog(tmp_path: Path) -> None:
    src = tmp_path / "v.img"
    src.write_bytes(os.urandom(10000))
    spec = f"sim:{tmp_path / 't.tap'}"
    cat = tmp_path / "elsewhere.sqlite"
    assert tapearc("backup", str(src), "--media", spec, "--catalog", str(cat)).returncode == 0
    assert cat.exists()
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    p = tapearc("backup", str(src), "--media", spec, "--catalog", str(bad))
    assert p.returncode == 16, p.stderr
    assert "not a usable tapearc catalog" in p.stderr and "Traceback" not in p.stderr
