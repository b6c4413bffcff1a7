"""Honest restores through the command line (issue 12): exit 24 for substituted blocks, 25 for
media that never arrived, rollback onto a newer generation, malformed claims refused (21) with
memory bounded by what is on the medium."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile_images import Gen, claiming, write_medium

BS = 4096


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args], check=False, capture_output=True, text=True, timeout=120
    )


# A small launcher forks tapearc and reports its peak RSS: a child forked straight from pytest
# would count pytest's own (order-dependent) peak, since Linux keeps the peak across exec.
_LAUNCH = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}')\n"
)


def tapearc_rss(tmp_path: Path, *args: str) -> tuple[int, str, str, int]:
    """Run tapearc; (exit code, stdout, stderr, peak RSS in bytes) of that process alone."""
    out, err, rss = tmp_path / "rss.out", tmp_path / "rss.err", tmp_path / "rss.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        subprocess.run(
            [sys.executable, "-c", _LAUNCH, str(rss), sys.executable, "-m", "tapearc", *args],
            stdout=fo,
            stderr=fe,
            check=True,
            timeout=300,
        )
    code, maxrss_kib = map(int, rss.read_text().split())
    return code, out.read_text(), err.read_text(), maxrss_kib * 1024


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("tapearc: error: ")]


def two_generations(tmp_path: Path) -> tuple[str, Path, bytes, bytes]:
    rng = random.Random(41)
    img = tmp_path / "t.tap"
    spec = f"sim:{img}"
    src = tmp_path / "vol.img"
    v1 = bytearray(rng.randbytes(64 * BS))
    src.write_bytes(bytes(v1))
    assert tapearc("backup", str(src), "--media", spec, "--block-size", "4K").returncode == 0
    v2 = bytearray(v1)
    for b in (5, 6, 7, 40):
        v2[b * BS : (b + 1) * BS] = rng.randbytes(BS)
    src.write_bytes(bytes(v2))
    assert tapearc("backup", str(src), "--media", spec).returncode == 0
    return spec, img, bytes(v1), bytes(v2)


def test_fallback_older_exits_24_with_the_ranges(tmp_path: Path) -> None:
    spec, img, v1, v2 = two_generations(tmp_path)
    raw = bytearray(img.read_bytes())
    pos = raw.rfind(b"TACHUNK1")  # generation 2's only chunk
    raw[pos + 2000] ^= 1
    img.write_bytes(bytes(raw))
    out = tmp_path / "o"
    p = tapearc("restore", "--media", spec, "--to", str(out), "--fallback-older")
    assert p.returncode == 24, p.stderr
    errs = error_lines(p.stderr)
    assert len(errs) == 1 and "not exactly what was asked" in errs[0]
    assert (
        "bytes 20480-32767 (blocks 5-7) from generation 1" in errs[0] and "(blocks 40-40) from generation 1" in errs[0]
    )
    assert "tapearc: blocks 5-7 (bytes 20480-32767): damaged in generation 2, restored from generation 1" in p.stderr
    got = out.read_bytes()
    assert got[5 * BS : 8 * BS] == v1[5 * BS : 8 * BS] and got[8 * BS : 40 * BS] == v2[8 * BS : 40 * BS]
    out.unlink()
    p = tapearc("restore", "--media", spec, "--to", str(out), "--fallback-older", "--json")
    assert p.returncode == 24, p.stderr
    js = json.loads(p.stdout)
    assert js["status"] == "substituted" and js["exit_code"] == 24 and js["lost"] == []
    assert [(r["blocks"], r["offset"], r["length"], r["from_generation"]) for r in js["substituted"]] == [
        ([5, 7], 5 * BS, 3 * BS, 1),
        ([40, 40], 40 * BS, BS, 1),
    ]
    assert len(error_lines(p.stderr)) == 1
    # without --fallback-older: lost ranges, partial (23)
    out.unlink()
    p = tapearc("restore", "--media", spec, "--to", str(out), "--json")
    assert p.returncode == 23 and json.loads(p.stdout)["status"] == "partial"


def test_a_clean_restore_exits_0_and_says_complete(tmp_path: Path) -> None:
    spec, _, _, v2 = two_generations(tmp_path)
    p = tapearc("restore", "--media", spec, "--to", str(tmp_path / "o"), "--json")
    assert p.returncode == 0, p.stderr
    js = json.loads(p.stdout)
    assert js["status"] == "complete" and js["exit_code"] == 0 and js["substituted"] == [] and js["lost"] == []
    assert (tmp_path / "o").read_bytes() == v2


def test_rollback_to_generation_1_over_generation_2(tmp_path: Path) -> None:
    """The finding: generation 1 onto a target holding generation 2 said 'holds no generation'."""
    spec, _, v1, v2 = two_generations(tmp_path)
    vm = tmp_path / "vm.img"
    assert tapearc("restore", "--media", spec, "--to", str(vm)).returncode == 0
    assert vm.read_bytes() == v2
    p = tapearc("restore", "--media", spec, "--to", str(vm), "--generation", "1", "--json")
    assert p.returncode == 0, p.stderr
    js = json.loads(p.stdout)
    assert js["mode"] == "rollback" and js["from_generation"] == 2 and js["generation"] == 1
    assert js["blocks_written"] == 4 and js["bytes_written"] == 4 * BS and js["status"] == "complete"
    assert vm.read_bytes() == v1
    p = tapearc("restore", "--media", spec, "--to", str(vm))
    assert p.returncode == 0 and "rolled forward from generation 1" in p.stdout and f"({4 * BS} bytes)" in p.stdout
    assert vm.read_bytes() == v2
    p = tapearc("restore", "--media", spec, "--to", str(vm), "--generation", "1")
    assert p.returncode == 0 and "rolled back from generation 2" in p.stdout
    # plan shows the rollback too
    p = tapearc("plan", "--media", spec, "--generation", "1", "--assume-generation", "2", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["blocks_to_write"] == 4


def test_incremental_with_another_block_size_fails_verify_and_restore(tmp_path: Path) -> None:
    rng = random.Random(13)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "vol.img"
    v1 = rng.randbytes(16 * BS)
    src.write_bytes(v1)
    assert tapearc("backup", str(src), "--media", spec, "--block-size", "4K").returncode == 0
    p = tapearc("list", "--media", spec, "--json")
    assert p.returncode == 0
    # an incremental on generation 1 with 8 KiB blocks, every CRC valid
    write_medium(
        spec,
        [Gen(generation=2, base=1, volume_size=len(v1), block_size=8192, chunks=[([_run(1)], rng.randbytes(8192))])],
    )
    p = tapearc("verify", "--media", spec)
    assert p.returncode == 20, p.stdout + p.stderr
    assert "block size 8192" in p.stdout + p.stderr
    out = tmp_path / "o"
    p = tapearc("restore", "--media", spec, "--to", str(out))
    assert p.returncode == 21, p.stderr
    errs = error_lines(p.stderr)
    assert len(errs) == 1 and "generation 2" in errs[0] and "base generation 1 has block size 4096" in errs[0]
    assert not out.exists()
    p = tapearc("plan", "--media", spec)
    assert p.returncode == 21
    p = tapearc("restore", "--media", spec, "--to", str(out), "--generation", "1")
    assert p.returncode == 0 and out.read_bytes() == v1


def _run(first: int):  # type: ignore[no-untyped-def]
    from tapearc import format as fmt

    return fmt.Run(first, 1)


MEMORY_BOUND = 200 * 1024 * 1024  # a memory bound, generous: tapearc itself takes ~40 MB


@pytest.mark.parametrize("claim", [1 << 40, 1 << 50, 1 << 60])
def test_huge_claim_in_a_tiny_image_is_malformed_in_bounded_memory(tmp_path: Path, claim: int) -> None:
    """The finding: a 5 KB image claiming a 1 TiB volume of 4 KiB blocks took 2.4 GB in plan and
    restore, larger claims ended in MemoryError."""
    img = tmp_path / "h.tap"
    write_medium(f"sim:{img}", [claiming(claim)])
    assert img.stat().st_size < 6000
    out = tmp_path / "o"
    for args in (("plan",), ("restore", "--to", str(out)), ("restore", "--to", "-")):
        code, stdout, stderr, rss = tapearc_rss(tmp_path, *args, "--media", f"sim:{img}")
        assert code == 21, stderr
        errs = error_lines(stderr)
        assert len(errs) == 1 and "do not account for blocks 1-" in errs[0], stderr
        assert rss < MEMORY_BOUND, (args, rss)
        assert stdout == ""
    assert not out.exists()
    code, stdout, stderr, rss = tapearc_rss(tmp_path, "verify", "--media", f"sim:{img}")
    assert code == 20 and "do not account" in stdout + stderr and rss < MEMORY_BOUND


def test_huge_all_zero_volume_plans_and_restores_in_bounded_memory(tmp_path: Path) -> None:
    """A 1 TiB volume that really is all zeros but one block (a zero run accounts for the rest)
    is a valid claim: planned and restored (a sparse file) without memory per block."""
    img = tmp_path / "h.tap"
    write_medium(f"sim:{img}", [claiming(1 << 40, cover=True)])
    code, stdout, stderr, rss = tapearc_rss(tmp_path, "plan", "--media", f"sim:{img}", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["blocks_to_write"] == 1 and rss < MEMORY_BOUND
    probe = tmp_path / "probe"
    try:
        with open(probe, "wb") as f:
            f.truncate(1 << 40)
    except OSError:
        pytest.skip("this file system cannot hold a 1 TiB sparse file")
    finally:
        probe.unlink(missing_ok=True)
    out = tmp_path / "o"
    code, stdout, stderr, rss = tapearc_rss(tmp_path, "restore", "--media", f"sim:{img}", "--to", str(out), "--json")
    assert code == 0, stderr
    assert rss < MEMORY_BOUND
    assert out.stat().st_size == 1 << 40 and out.stat().st_blocks * 512 < 1 << 20  # sparse
    with open(out, "rb") as f:
        assert f.read(BS) == bytes(range(256)) * (BS // 256)
        f.seek((1 << 40) - BS)
        assert f.read() == bytes(BS)


tapesim_library = pytest.importorskip("tapesim.library")


def test_media_that_never_arrive_exit_25(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    tapesim_library.create_library(str(lib), 4, 1536 * 1024, early_warning=256 * 1024, max_record=1024 * 1024)
    src = tmp_path / "vol.img"
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 777)
    src.write_bytes(data)
    p = tapearc(
        "backup",
        str(src),
        "--media",
        f"sim:{lib}",
        "--block-size",
        "16K",
        "--record-size",
        "64K",
        "--chunk-size",
        "256K",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["parts"]) >= 2
    one = tmp_path / "one.tap"  # sequence 1 alone, no changer
    shutil.copy(lib / "tapes" / "TAP001.tap", one)
    shutil.copy(lib / "tapes" / "TAP001.tap.tapesim", str(one) + ".tapesim")
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", f"sim:{one}", "--to", str(out))
    assert p.returncode == 25, p.stderr
    errs = error_lines(p.stderr)
    assert (
        len(errs) == 1
        and "TAP002 (sequence 2" in errs[0]
        and "never arrived" in errs[0]
        and "was not created" in errs[0]
    )
    assert "--partial" in p.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.img*"))
    p = tapearc("restore", "--media", f"sim:{one}", "--to", str(out), "--json")
    assert p.returncode == 25
    js = json.loads(p.stdout)
    assert js["error"] == "media-missing" and js["exit_code"] == 25 and js["ranges"][0]["sequence"] == 2
    # --partial: the rest restored, exit 25, the ranges on stderr and in JSON
    p = tapearc("restore", "--media", f"sim:{one}", "--to", str(out), "--partial", "--json")
    assert p.returncode == 25, p.stderr
    js = json.loads(p.stdout)
    assert js["status"] == "media-missing" and {m["sequence"] for m in js["missing_media"]} >= {2}
    first = min(b[0] for m in js["missing_media"] for b in m["blocks"])
    assert "never arrived, zeros" in p.stderr and f"blocks {first}-" in p.stderr
    got = out.read_bytes()
    assert got[: first * 16384] == data[: first * 16384]
    assert got[first * 16384 :] == bytes(len(data) - first * 16384)
    # with the library as changer everything arrives: exit 0
    out2 = tmp_path / "out2.img"
    p = tapearc("restore", "--media", f"sim:{lib}", "--to", str(out2))
    assert p.returncode == 0, p.stderr
    assert out2.read_bytes() == data


def test_newest_generation_incomplete_plain_restore_exits_24(tmp_path: Path) -> None:
    """A plain restore no longer passes over an incomplete newest generation silently."""
    img = tmp_path / "small.tap"
    assert (
        subprocess.run(
            [sys.executable, "-m", "tapesim", "new", str(img), "--capacity", "2M", "--early-warning", "256K"],
            check=False,
        ).returncode
        == 0
    )
    src = tmp_path / "vol.img"
    v1 = random.Random(5).randbytes(64 * BS)
    src.write_bytes(v1)
    assert tapearc("backup", str(src), "--media", f"sim:{img}", "--block-size", "4K").returncode == 0
    src.write_bytes(random.Random(6).randbytes(3 * 1024 * 1024))  # does not fit: generation 2 incomplete
    assert tapearc("backup", str(src), "--media", f"sim:{img}").returncode == 12
    out = tmp_path / "o"
    p = tapearc("restore", "--media", f"sim:{img}", "--to", str(out), "--json")
    assert p.returncode == 24, p.stderr
    js = json.loads(p.stdout)
    assert (
        js["generation"] == 1
        and js["status"] == "substituted"
        and js["skipped_generations"] == [{"generation": 2, "state": "incomplete"}]
    )
    assert "tapearc: generation 2 is incomplete: restored generation 1, not the newest" in p.stderr
    assert out.read_bytes() == v1
    out.unlink()
    p = tapearc("restore", "--media", f"sim:{img}", "--to", str(out), "--generation", "1")
    assert p.returncode == 0, p.stderr


def test_generations_gone_from_the_medium_fallback_exits_24(tmp_path: Path) -> None:
    """The finding: generations 2-3 physically gone, --generation 3 returned mostly generation 1
    with exit 0."""
    rng = random.Random(9)
    img = tmp_path / "t.tap"
    spec = f"sim:{img}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(40 * BS))
    src.write_bytes(bytes(data))
    assert tapearc("backup", str(src), "--media", spec, "--block-size", "4K").returncode == 0
    v1 = bytes(data)
    cut = img.stat().st_size
    for g in (2, 3):
        for b in range(3 * g, 3 * g + 10):
            data[b * BS : (b + 1) * BS] = rng.randbytes(BS)
        src.write_bytes(bytes(data))
        assert tapearc("backup", str(src), "--media", spec).returncode == 0
    img.write_bytes(img.read_bytes()[:cut])  # generations 2 and 3 are gone; the catalog knows them
    out = tmp_path / "o"
    p = tapearc("restore", "--media", spec, "--to", str(out), "--generation", "3", "--fallback-older", "--json")
    assert p.returncode == 24, p.stderr
    js = json.loads(p.stdout)
    assert js["status"] == "substituted" and js["generation"] == 3
    assert {r["from_generation"] for r in js["substituted"]} == {1}
    assert sum(r["length"] for r in js["substituted"]) == 13 * BS  # blocks 6-18
    assert out.read_bytes() == v1
