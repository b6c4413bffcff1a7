#!/usr/bin/env python3
"""Peak RSS of every tapearc command on sparse volumes of two sizes holding the same data, and
from the difference the bytes each command keeps per volume block (issue 14).

    .venv/bin/python bench/memory.py                       # 16 GiB and 64 GiB, 64 MiB of data
    .venv/bin/python bench/memory.py --sizes 1G,4G --data 16M

Each volume is a sparse file holding ``--data`` bytes in ``--extents`` extents of equal size
spread evenly over it. The commands run one after the other on a dir: medium, each in its own process (peak
RSS from wait4): a full backup, an incremental after 1 MiB changed, plan, restore to a new file,
restore of the first generation onto that file (target detection and roll back), verify, list,
scan into an empty catalog and verify --against the volume. Per-block cost:
(RSS at the large size - RSS at the small size) / (blocks of the large - blocks of the small).

    .venv/bin/python bench/memory.py --axis data --sizes 4G --data 64M,1G --block-size 4K
    .venv/bin/python bench/memory.py --axis extents --sizes 4G --data 64M --extents 64,16384 --block-size 4K

do the same along the amount of data (bytes per data block) or the number of extents holding
the same data (bytes per extent).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MiB = 1 << 20
GiB = 1 << 30
BLOCK = 64 * 1024
EXTENTS = 64
TAPEARC = [sys.executable, "-m", "tapearc"]


def parse_size(s: str) -> int:
    mult = {"K": 1 << 10, "M": MiB, "G": GiB, "T": 1 << 40}
    return int(float(s[:-1]) * mult[s[-1]]) if s and s[-1] in mult else int(s)


def make_sparse(path: Path, size: int, data: int, extents: int = EXTENTS, seed: int = 1) -> None:
    """``data`` bytes of random data in ``extents`` extents spread evenly over a sparse file."""
    rng = random.Random(seed)
    piece = data // extents
    with open(path, "wb") as f:
        f.truncate(size)
        for k in range(extents):
            f.seek(k * (size // extents))
            for o in range(0, piece, MiB):  # a MiB at a time: the memory of this process stays small
                f.write(rng.randbytes(min(MiB, piece - o)))


def in_child(fn: Any, *args: Any) -> Any:
    """Run fn(*args) in a forked process: a child's peak RSS starts from its parent's RSS at
    fork (Linux keeps ru_maxrss across exec), so this process must stay small."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(fn, args)


def change(path: Path, size: int, nbytes: int, seed: int = 2) -> None:
    """Overwrite ``nbytes`` in the middle of the first extent (changed data, not new data)."""
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        f.seek(0)
        f.write(rng.randbytes(nbytes))


def run(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {err.decode(errors='replace')[-800:]}")
    return {"wall": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime, "rss_kb": ru.ru_maxrss}


def measure(work: Path, size: int, data: int, extents: int, bs: int) -> dict[str, dict[str, float]]:
    vol = work / "vol.img"
    media = work / "medium"
    cat = work / "catalog.sqlite"
    cat2 = work / "catalog-scan.sqlite"
    tgt = work / "restored.img"
    for p in (vol, cat, cat2, tgt):
        p.unlink(missing_ok=True)
    shutil.rmtree(media, ignore_errors=True)
    in_child(make_sparse, vol, size, data, extents)
    env = dict(os.environ, TAPEARC_CATALOG=str(cat))
    env2 = dict(os.environ, TAPEARC_CATALOG=str(cat2))
    m = f"dir:{media}"
    out: dict[str, dict[str, float]] = {}
    steps: list[tuple[str, list[str], dict[str, str]]] = [
        ("backup (full)", ["backup", str(vol), "--media", m, "--compress", "none", "--block-size", str(bs)], env),
        ("backup (incremental, 1 MiB changed)", ["backup", str(vol), "--media", m, "--compress", "none"], env),
        ("plan", ["plan", "--media", m, "--chunks"], env),
        ("restore (new file)", ["restore", "--media", m, "--to", str(tgt)], env),
        (
            "restore (onto gen 2: detect, roll back to 1)",
            ["restore", "--media", m, "--to", str(tgt), "--generation", "1"],
            env,
        ),
        ("verify", ["verify", "--media", m], env),
        ("verify --against", ["verify", "--media", m, "--against", str(vol)], env),
        ("list", ["list", "--media", m], env),
        ("scan (empty catalog)", ["scan", "--media", m], env2),
    ]
    for name, argv, e in steps:
        if name.startswith("backup (incremental"):
            change(vol, size, MiB)
        out[name] = run([*TAPEARC, *argv], e)
        print(
            f"  {size / GiB:6.1f} GiB  {name:46s} {out[name]['rss_kb'] / 1024:7.1f} MB  {out[name]['wall']:6.1f} s",
            file=sys.stderr,
            flush=True,
        )
    for p in (vol, cat, cat2, tgt):
        p.unlink(missing_ok=True)
    shutil.rmtree(media, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--axis", choices=["volume", "data", "extents"], default="volume")
    ap.add_argument("--sizes", default="16G,64G")
    ap.add_argument("--data", default="64M")
    ap.add_argument("--extents", default=str(EXTENTS))
    ap.add_argument("--block-size", default="64K")
    ap.add_argument("--json")
    ap.add_argument("--work", default=None, help="folder for the volume and the medium (default: a temporary one)")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    datas = [parse_size(s) for s in args.data.split(",")]
    exts = [int(s) for s in args.extents.split(",")]
    bs = parse_size(args.block_size)
    pts = {"volume": [(s, datas[0], exts[0]) for s in sizes], "data": [(sizes[0], d, exts[0]) for d in datas]}
    pts["extents"] = [(sizes[0], datas[0], e) for e in exts]
    points = pts[args.axis]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tapearc-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    res = [measure(work, s, d, e, bs) for s, d, e in points]
    (s0, d0, e0), (s1, d1, e1) = points[0], points[-1]
    unit, delta = {
        "volume": ("volume block", (s1 - s0) // bs),
        "data": ("data block", (d1 - d0) // bs),
        "extents": ("extent", e1 - e0),
    }[args.axis]
    label = {"volume": lambda s, d, e: f"{s / GiB:g} GiB", "data": lambda s, d, e: f"{d / MiB:g} MiB of data"}
    label["extents"] = lambda s, d, e: f"{e} extents"
    print(
        f"| command | peak RSS, {label[args.axis](s0, d0, e0)} (MB) | peak RSS, {label[args.axis](s1, d1, e1)} (MB) | bytes per {unit} |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name in res[0]:
        a, b = res[0][name]["rss_kb"] * 1024, res[-1][name]["rss_kb"] * 1024
        print(f"| {name} | {a / 1e6:.1f} | {b / 1e6:.1f} | {(b - a) / delta:.1f} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps({f"{s}:{d}:{e}": r for (s, d, e), r in zip(points, res, strict=True)}, indent=1)
        )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
