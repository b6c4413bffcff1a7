#!/usr/bin/env python3
"""tapearc performance benchmark (issues 8, 14, 15 and 17).

Section issue8: creates test volumes, times tapearc's full backup, incremental backup, restore
and verify to dir: and sim: media on local disk beside the tools a user would run instead (dd
conv=fsync, partclone.ext4 -c, xxh128sum), in the same run, several runs in alternating order,
and checks the issue's targets. Section issue14 (bench/issue14.py): a 1 TiB sparse volume
holding 64 MiB against a dense 64 MiB one, and a qcow2 disk over NBD (qemu-nbd) against
qemu-img convert, with a dirty-bitmap incremental against a full-read one. Section issue15
(bench/issue15.py, not run by default): full backup and restore of the mixed volume with
--compress zstd and none, packing/decoding workers against TAPEARC_PIPELINE=0 and, with
--issue15-baseline DIR, an older tree. Section issue17 (bench/issue17.py, not run by default): a
job of 4 volumes on a simulated library with 1 drive against 2 drives (and two processes), each
drive's feed rate and idle time. See bench/README.md and docs/performance.md.

    .venv/bin/python bench/run.py                      # both sections: 2 GiB volumes, 1 TiB sparse, 3 runs
    .venv/bin/python bench/run.py --size 256M --runs 2 --sparse-size 64G --nbd-size 256M  # quick
    .venv/bin/python bench/run.py --sections issue14   # the issue-14 section alone
    .venv/bin/python bench/run.py --sections issue15 --issue15-baseline /tmp/base   # parallel packing
    .venv/bin/python bench/run.py --sections issue17 --issue17-size 512M --runs 2   # parallel drives
    .venv/bin/python bench/run.py --profile backup     # where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import (
    DROP,
    PY,
    TAPEARC,
    GiB,
    MiB,
    clean,
    drop_caches_possible,
    in_child,
    log,
    parse_size,
    run_timed,
    settle,
)

BLOCK = 64 * 1024
STRETCH = 64 * MiB


# ---------------------------------------------------------------- test volumes


def _compressible(rng: random.Random, n: int, tag: int) -> bytes:
    """Text-like data (zstd shrinks it a lot), unique per block so nothing dedups."""
    words = [
        b"tape",
        b"archive",
        b"block",
        b"volume",
        b"stream",
        b"record",
        b"chunk",
        b"digest",
        b"catalog",
        b"generation",
        b"restore",
        b"verify",
        b"medium",
        b"LTO",
    ]
    out = bytearray()
    i = 0
    while len(out) < n:
        line = b" ".join(rng.choice(words) for _ in range(8))
        out += b"%08x %010d " % (tag, i) + line + b"\n"
        i += 1
    return bytes(out[:n])


def make_mixed(path: Path, size: int, seed: int = 1) -> None:
    """1/3 random, 1/3 zero, 1/3 compressible, in 64 MiB stretches (smaller for small sizes)."""
    rng = random.Random(seed)
    stretch = min(STRETCH, max(BLOCK, size // 6 // BLOCK * BLOCK))
    zero = bytes(stretch)
    comp_unit = _compressible(rng, stretch, 0)
    with open(path, "wb") as f:
        off, k = 0, 0
        while off < size:
            n = min(stretch, size - off)
            kind = k % 3
            if kind == 0:
                f.write(rng.randbytes(n))
            elif kind == 1:
                f.write(zero[:n])
            else:
                # unique per stretch: a fresh 8-byte stamp in every 4 KiB of the text unit
                buf = bytearray(comp_unit[:n])
                stamp = k.to_bytes(4, "little")
                for p in range(0, n, 4096):
                    buf[p : p + 4] = stamp
                    buf[p + 4 : p + 8] = (p // 4096).to_bytes(4, "little")
                f.write(buf)
            off += n
            k += 1


def make_changed(src: Path, dst: Path, fraction: float = 0.01, seed: int = 2) -> int:
    shutil.copyfile(src, dst)
    size = dst.stat().st_size
    nblocks = size // BLOCK
    rng = random.Random(seed)
    picks = rng.sample(range(nblocks), max(1, int(nblocks * fraction)))
    with open(dst, "r+b") as f:
        for b in sorted(picks):
            f.seek(b * BLOCK)
            f.write(rng.randbytes(BLOCK))
    return len(picks)


def make_ext4(path: Path, size: int, work: Path, seed: int = 3) -> str | None:
    mke2fs = shutil.which("mke2fs") or ("/sbin/mke2fs" if os.path.exists("/sbin/mke2fs") else None)
    if not mke2fs:
        return "mke2fs not found (apt-get install e2fsprogs): ext4 volume skipped"
    rng = random.Random(seed)
    tree = work / "ext4-tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    payload = size // 2  # ~1 GB of files in a 2 GiB image
    done, i = 0, 0
    while done < payload:
        d = tree / f"dir{i // 50:03d}"
        d.mkdir(exist_ok=True)
        n = min(payload - done, rng.choice([4096, 65536, 1 * MiB, 8 * MiB, 32 * MiB]))
        if i % 2 == 0:
            data = rng.randbytes(n)
            name = f"f{i:05d}.bin"
        else:
            data = _compressible(rng, n, i)
            name = f"f{i:05d}.txt"
        (d / name).write_bytes(data)
        done += n
        i += 1
    if path.exists():
        path.unlink()
    r = subprocess.run(
        [mke2fs, "-q", "-F", "-t", "ext4", "-d", str(tree), str(path), str(size // 1024) + "k"],
        capture_output=True,
        text=True,
    )
    shutil.rmtree(tree, ignore_errors=True)
    if r.returncode != 0:
        return f"mke2fs failed: {r.stderr.strip()[:300]}"
    return None


# ---------------------------------------------------------------- measuring


class Bench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.samples: dict[str, list[dict]] = {}
        self.sizes: dict[str, int] = {}
        self.drop = False

    def add(self, op: str, size: int, m: dict) -> None:
        m = dict(m, mbps=size / m["wall"] / 1e6)
        self.samples.setdefault(op, []).append(m)
        self.sizes[op] = size
        log(f"  {op:28s} {m['wall']:7.2f} s {m['mbps']:8.0f} MB/s  cpu {m['cpu']:6.2f} s  rss {m['rss_mb']:6.0f} MB")

    def env(self, catalog: Path) -> dict:
        e = dict(os.environ, TAPEARC_CATALOG=str(catalog))
        return e

    # references -------------------------------------------------------------
    def ref_dd(self, vol: Path, size: int) -> None:
        out = self.work / "dd.out"
        clean(out)
        settle(self.drop)
        self.add(
            "ref dd conv=fsync", size, run_timed(["dd", f"if={vol}", f"of={out}", "bs=1M", "conv=fsync", "status=none"])
        )
        clean(out)

    def ref_xxh(self, vol: Path, size: int) -> None:
        if not shutil.which("xxh128sum"):
            return
        settle(self.drop)
        self.add("ref xxh128sum", size, run_timed(["xxh128sum", str(vol)]))

    def ref_partclone(self, img: Path, size: int) -> None:
        if not shutil.which("partclone.ext4"):
            return
        out = self.work / "partclone.out"
        clean(out)
        settle(self.drop)
        self.add(
            "ref partclone.ext4 -c", size, run_timed(["partclone.ext4", "-q", "-c", "-s", str(img), "-o", str(out)])
        )
        clean(out)

    # tapearc ----------------------------------------------------------------
    def medium(self, kind: str, name: str) -> tuple[str, Path]:
        p = self.work / f"{name}.{kind}"
        clean(p)
        return (f"sim:{p}" if kind == "sim" else f"dir:{p}"), p

    def tapearc_chain(self, kind: str, mixed: Path, changed: Path, size: int) -> None:
        media, mpath = self.medium(kind, "medium")
        cat = self.work / f"catalog-{kind}.sqlite"
        clean(cat)
        env = self.env(cat)
        settle(self.drop)
        self.add(
            f"{kind}: full backup mixed",
            size,
            run_timed(
                [*TAPEARC, "backup", str(mixed), "--media", media, "--compress", "none", "--volume", "mixed"], env
            ),
        )
        settle(self.drop)
        self.add(
            f"{kind}: incremental 1%",
            size,
            run_timed(
                [*TAPEARC, "backup", str(changed), "--media", media, "--compress", "none", "--volume", "mixed"], env
            ),
        )
        target = self.work / "restored.img"
        clean(target)
        settle(self.drop)
        self.add(
            f"{kind}: restore latest",
            size,
            run_timed([*TAPEARC, "restore", "--media", media, "--to", str(target)], env),
        )
        if self.args.check_restore and subprocess.run(["cmp", "-s", str(changed), str(target)]).returncode != 0:
            raise RuntimeError("restored image differs from mixed-1pct")
        clean(target)
        settle(self.drop)
        self.add(f"{kind}: verify", size, run_timed([*TAPEARC, "verify", "--media", media], env))
        clean(mpath)
        clean(cat)

    def tapearc_ext4(self, kind: str, img: Path, size: int) -> None:
        media, mpath = self.medium(kind, "medium-ext4")
        cat = self.work / f"catalog-ext4-{kind}.sqlite"
        clean(cat)
        settle(self.drop)
        self.add(
            f"{kind}: full backup ext4",
            size,
            run_timed(
                [*TAPEARC, "backup", str(img), "--media", media, "--compress", "none", "--volume", "ext4"],
                self.env(cat),
            ),
        )
        clean(mpath)
        clean(cat)


# ---------------------------------------------------------------- report


def summarize(samples: dict[str, list[dict]]) -> dict:
    out = {}
    for op, ms in samples.items():
        walls = [m["wall"] for m in ms]
        med_wall = statistics.median(walls)
        best = min(ms, key=lambda m: m["wall"])
        out[op] = {
            "runs": len(ms),
            "wall_best": best["wall"],
            "wall_median": med_wall,
            "mbps_best": max(m["mbps"] for m in ms),
            "mbps_median": statistics.median(m["mbps"] for m in ms),
            "cpu_median": statistics.median(m["cpu"] for m in ms),
            "rss_mb_max": max(m["rss_mb"] for m in ms),
            "samples": ms,
        }
    return out


REF_FOR = {
    "full backup mixed": "ref dd conv=fsync",
    "restore latest": "ref dd conv=fsync",
    "incremental 1%": "ref xxh128sum",
    "verify": "ref xxh128sum",
    "full backup ext4": "ref partclone.ext4 -c",
}


def table(summary: dict, sizes: dict) -> str:
    lines = []
    hdr = (
        f"{'operation':28s} {'size MiB':>8s} {'best MB/s':>10s} {'med MB/s':>9s} {'med s':>7s} "
        f"{'ratio':>7s} {'vs':<22s} {'CPU s':>6s} {'GiB/CPU-s':>9s} {'RSS MB':>7s}"
    )
    lines.append(hdr)
    lines.append("-" * len(hdr))
    order = sorted(summary, key=lambda o: (not o.startswith("ref"), o))
    for op in order:
        s = summary[op]
        base = op.split(": ", 1)[-1]
        ref = REF_FOR.get(base)
        ratio = ""
        if ref and ref in summary:
            ratio = f"{s['mbps_median'] / summary[ref]['mbps_median']:.2f}x"
        gib_cpu = sizes[op] / GiB / s["cpu_median"] if s["cpu_median"] > 0 else float("inf")
        lines.append(
            f"{op:28s} {sizes[op] / MiB:8.0f} {s['mbps_best']:10.0f} {s['mbps_median']:9.0f} "
            f"{s['wall_median']:7.2f} {ratio:>7s} {(ref or '') if ratio else '':<22s} "
            f"{s['cpu_median']:6.2f} {gib_cpu:9.2f} {s['rss_mb_max']:7.0f}"
        )
    return "\n".join(lines)


def targets(summary: dict, sizes: dict, memcheck: dict | None) -> list[dict]:
    res = []

    def med(op):
        return summary[op]["mbps_median"] if op in summary else None

    for kind in ("dir", "sim"):

        def chk(name, op, ref, want, how, kind=kind):
            a, b = med(f"{kind}: {op}"), med(ref)
            if a is None or b is None:
                res.append({"target": f"{kind}: {name}", "result": "SKIP", "detail": "not measured"})
                return
            ratio = a / b
            res.append(
                {
                    "target": f"{kind}: {name}",
                    "result": "PASS" if ratio >= want else "FAIL",
                    "detail": f"{how}: {ratio:.2f}x (need >= {want}x)",
                }
            )

        chk("full backup >= dd conv=fsync", "full backup mixed", "ref dd conv=fsync", 1.0, "throughput vs dd")
        chk("ext4 backup >= 3x partclone", "full backup ext4", "ref partclone.ext4 -c", 3.0, "throughput vs partclone")
        for op, label in (("incremental 1%", "incremental"), ("verify", "verify")):
            o, r = f"{kind}: {op}", "ref xxh128sum"
            if o in summary and r in summary:
                t = summary[o]["wall_median"] / summary[r]["wall_median"]
                res.append(
                    {
                        "target": f"{kind}: {label} <= 2x xxh128sum time",
                        "result": "PASS" if t <= 2.0 else "FAIL",
                        "detail": f"time ratio {t:.2f}x (need <= 2x)",
                    }
                )
            else:
                res.append(
                    {"target": f"{kind}: {label} <= 2x xxh128sum time", "result": "SKIP", "detail": "not measured"}
                )
        chk("restore >= dd conv=fsync", "restore latest", "ref dd conv=fsync", 1.0, "throughput vs dd")
        op = f"{kind}: full backup mixed"
        if op in summary:
            g = sizes[op] / GiB / summary[op]["cpu_median"]
            res.append(
                {
                    "target": f"{kind}: full backup >= 1 GiB per CPU-second",
                    "result": "PASS" if g >= 1.0 else "FAIL",
                    "detail": f"{g:.2f} GiB/CPU-s (cpu {summary[op]['cpu_median']:.2f} s)",
                }
            )
            rss = summary[op]["rss_mb_max"]
            res.append(
                {
                    "target": f"{kind}: full backup peak RSS < 256 MB",
                    "result": "PASS" if rss < 256 else "FAIL",
                    "detail": f"{rss:.0f} MB",
                }
            )
    if memcheck:
        a, b = memcheck["small"]["rss_mb"], memcheck["large"]["rss_mb"]
        ok = b < 256 and b <= a * 1.1 + 8
        res.append(
            {
                "target": "peak RSS not growing with volume (memory check)",
                "result": "PASS" if ok else "FAIL",
                "detail": f"{memcheck['small']['size'] / GiB:.0f} GiB: {a:.0f} MB, "
                f"{memcheck['large']['size'] / GiB:.0f} GiB: {b:.0f} MB",
            }
        )
    else:
        res.append(
            {
                "target": "peak RSS not growing with volume (memory check)",
                "result": "SKIP",
                "detail": "run with --memory-check",
            }
        )
    return res


# ---------------------------------------------------------------- modes


def memory_check(b: Bench, small: int, large: int) -> dict:
    out = {}
    for label, size in (("small", small), ("large", large)):
        vol = b.work / f"memcheck-{label}.img"
        log(f"memory check: making {size / GiB:.0f} GiB mixed volume")
        in_child(make_mixed, vol, size, 7)
        media, mpath = b.medium("dir", f"memcheck-{label}")
        cat = b.work / f"catalog-memcheck-{label}.sqlite"
        clean(cat)
        settle(b.drop)
        m = run_timed([*TAPEARC, "backup", str(vol), "--media", media, "--compress", "none"], b.env(cat))
        m["size"] = size
        m["mbps"] = size / m["wall"] / 1e6
        log(
            f"  full backup {size / GiB:.0f} GiB to dir: {m['wall']:.1f} s, rss {m['rss_mb']:.0f} MB,"
            f" cpu {m['cpu']:.1f} s"
        )
        out[label] = m
        clean(mpath)
        clean(cat)
        vol.unlink()
    return out


def profile(b: Bench, op: str, mixed: Path, changed: Path, ext4: Path | None) -> None:
    kind = b.args.medium
    media, mpath = b.medium(kind, "medium-prof")
    cat = b.work / "catalog-prof.sqlite"
    clean(cat)
    env = b.env(cat)
    pre: list[list[str]] = []
    target = b.work / "restored.img"
    clean(target)
    if op == "backup":
        cmd = ["backup", str(mixed), "--media", media, "--compress", "none", "--volume", "mixed"]
    elif op == "ext4":
        if ext4 is None:
            sys.exit("no ext4 image")
        cmd = ["backup", str(ext4), "--media", media, "--compress", "none", "--volume", "ext4"]
    else:
        pre.append(["backup", str(mixed), "--media", media, "--compress", "none", "--volume", "mixed"])
        if op == "incremental":
            cmd = ["backup", str(changed), "--media", media, "--compress", "none", "--volume", "mixed"]
        else:
            pre.append(["backup", str(changed), "--media", media, "--compress", "none", "--volume", "mixed"])
            cmd = (
                ["restore", "--media", media, "--to", str(target)] if op == "restore" else ["verify", "--media", media]
            )
    for c in pre:
        run_timed(TAPEARC + c, env)
    prof = b.work / "profile.out"
    settle(b.drop)
    m = run_timed([PY, "-m", "cProfile", "-o", str(prof), "-m", "tapearc", *cmd], env)
    print(f"profile of {kind}: {op}: {' '.join(cmd)}")
    print(f"wall {m['wall']:.2f} s (under cProfile), cpu {m['cpu']:.2f} s, rss {m['rss_mb']:.0f} MB")
    st = pstats.Stats(str(prof))
    st.sort_stats("cumulative").print_stats(25)
    print("the same profile, top 25 by own time (tottime): where the CPU goes")
    st.sort_stats("tottime").print_stats(25)
    if b.args.json:
        Path(b.args.json).write_text(json.dumps({"profile": op, "medium": kind, **m}, indent=2))
    clean(mpath)
    clean(cat)
    clean(target)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sections",
        default="issue8,issue14",
        help="sections to run, comma-separated: issue8 (throughput against dd, partclone, xxh128sum), "
        "issue14 (sparse and NBD volumes), issue15 (encryption and parallel packing), issue17 (a job on 1 vs 2 "
        "drives; default issue8,issue14)",
    )
    ap.add_argument("--size", default="2G", help="issue8: size of the mixed volumes and ext4 image (default 2G)")
    ap.add_argument("--runs", type=int, default=3, help="runs per operation (default 3)")
    ap.add_argument("--dir", help="work folder on the disk to measure (default: a new folder in /tmp)")
    ap.add_argument("--json", help="write the results as JSON to this file")
    ap.add_argument("--media", default="dir,sim", help="issue8: media kinds to test (default dir,sim)")
    ap.add_argument("--no-ext4", action="store_true", help="issue8: skip the ext4 volume")
    ap.add_argument(
        "--check-restore", action="store_true", help="compare each restored image with its source (untimed)"
    )
    ap.add_argument(
        "--memory-check",
        action="store_true",
        help="issue8: also back up 2 GiB and 8 GiB volumes once and compare peak RSS",
    )
    ap.add_argument("--memory-sizes", default="2G,8G", help="sizes for --memory-check (default 2G,8G)")
    ap.add_argument(
        "--sparse-size", default="1T", help="issue14: size of the sparse volume (default 1T; e.g. 64G for a quick run)"
    )
    ap.add_argument(
        "--sparse-data",
        default="64M",
        help="issue14: data in the sparse volume, and size of the dense one (default 64M)",
    )
    ap.add_argument("--nbd-size", default="2G", help="issue14: size of the qcow2 disk served over NBD (default 2G)")
    ap.add_argument(
        "--issue14-no-server",
        action="store_true",
        help="issue14: skip the incrementals run through a command server (tapearc server)",
    )
    ap.add_argument(
        "--issue14-parts", default="sparse,nbd", help="issue14: parts to run, comma-separated (default sparse,nbd)"
    )
    ap.add_argument(
        "--profile",
        choices=["backup", "incremental", "restore", "verify", "ext4"],
        help="issue8: run one operation under cProfile and print the top 25 by cumulative time",
    )
    ap.add_argument("--medium", choices=["dir", "sim"], default="sim", help="medium for --profile")
    ap.add_argument(
        "--issue15-baseline",
        help="issue15: an older tapearc tree to compare with (git archive COMMIT tapearc | tar -x -C DIR)",
    )
    ap.add_argument("--issue15-no-serial", action="store_true", help="issue15: skip the TAPEARC_PIPELINE=0 variant")
    ap.add_argument(
        "--issue17-size", default="512M", help="issue17: size of each of the job's 4 volumes (default 512M)"
    )
    ap.add_argument(
        "--issue17-compress", default="none", choices=("none", "zstd"), help="issue17: the volumes' compression"
    )
    ap.add_argument(
        "--issue17-tapes",
        help="issue17: make the simulated libraries here (default: a new folder in /dev/shm when it has room: "
        "tapes off the volumes' disk, as a site's drives are; work: the work folder, on the volumes' disk)",
    )
    ap.add_argument(
        "--issue17-pg", help="issue17: a PostgreSQL URL for the catalog overhead (default: a throw-away cluster)"
    )
    ap.add_argument("--issue17-no-catalog", action="store_true", help="issue17: skip the catalog overhead")
    from issue17 import add_rate_options

    add_rate_options(ap, "--issue17-")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    sections = [x for x in args.sections.split(",") if x]
    bad = [x for x in sections if x not in ("issue8", "issue14", "issue15", "issue17")]
    if bad or not sections:
        ap.error(
            f"--sections: unknown section {','.join(bad) or '(none)'}; choose from issue8, issue14, issue15, issue17"
        )
    bad = [x for x in args.issue14_parts.split(",") if x not in ("sparse", "nbd")]
    if bad:
        ap.error(f"--issue14-parts: unknown part {','.join(bad)}; choose from sparse, nbd")
    args.sections = sections
    return args


def make_issue8_volumes(b: Bench, size: int, notes: list[str]) -> tuple[Path, Path, Path, int, bool]:
    args, work = b.args, b.work
    mixed, changed, ext4 = work / "mixed.img", work / "mixed-1pct.img", work / "ext4.img"
    t = time.time()
    if not mixed.exists() or mixed.stat().st_size != size:
        in_child(make_mixed, mixed, size)
    nchanged = in_child(make_changed, mixed, changed)
    log(f"made mixed + mixed-1pct ({nchanged} blocks changed) in {time.time() - t:.1f} s")
    ext4_ok = False
    if not args.no_ext4 and (args.profile in (None, "ext4")):
        t = time.time()
        if ext4.exists() and ext4.stat().st_size == size:
            why = None
        else:
            why = in_child(make_ext4, ext4, size, work)
        if why:
            notes.append(why)
            log(why)
        else:
            ext4_ok = True
            log(f"made ext4 image in {time.time() - t:.1f} s")
    for tool, pkg in (("xxh128sum", "xxhash"), ("partclone.ext4", "partclone")):
        if not shutil.which(tool):
            n = f"{tool} not found (apt-get install {pkg}): its reference and targets skipped"
            notes.append(n)
            log(n)
    return mixed, changed, ext4, nchanged, ext4_ok


def run_issue8(b: Bench, size: int, kinds: list[str], notes: list[str]) -> dict:
    args = b.args
    mixed, changed, ext4, nchanged, ext4_ok = make_issue8_volumes(b, size, notes)
    for r in range(args.runs):
        log(f"run {r + 1}/{args.runs} ({'tapearc first' if r % 2 == 0 else 'references first'})")
        steps = []
        steps.append(lambda: (b.ref_dd(mixed, size), b.ref_xxh(changed, size)))
        tap = [lambda k=k: b.tapearc_chain(k, mixed, changed, size) for k in kinds]
        if ext4_ok:
            steps.append(lambda: b.ref_partclone(ext4, size))
            tap += [lambda k=k: b.tapearc_ext4(k, ext4, size) for k in kinds]
        if r % 2 == 1:
            tap.reverse()
        order = tap + steps if r % 2 == 0 else steps + tap
        for s in order:
            s()
    memcheck = None
    if args.memory_check:
        small, large = (parse_size(x) for x in args.memory_sizes.split(","))
        memcheck = memory_check(b, small, large)
    summary = summarize(b.samples)
    tg = targets(summary, b.sizes, memcheck)
    for t_ in tg:
        t_["section"] = "issue8"
    return {"nchanged": nchanged, "memcheck": memcheck, "summary": summary, "targets": tg}


def print_issue8(b: Bench, res: dict, size: int, kinds: list[str]) -> None:
    print(f"issue 8 section: volume {size / MiB:.0f} MiB, media {','.join(kinds)}")
    print(
        "MB = 10^6 bytes; throughput = volume size / wall time; ratio = median MB/s vs the "
        "reference (for incremental/verify: inverse time ratio)"
    )
    print(table(res["summary"], b.sizes))
    memcheck = res["memcheck"]
    if memcheck:
        for k in ("small", "large"):
            m = memcheck[k]
            print(
                f"memory check: full backup of {m['size'] / GiB:.0f} GiB to dir: peak RSS "
                f"{m['rss_mb']:.0f} MB, {m['wall']:.1f} s, cpu {m['cpu']:.1f} s"
            )


def print_issue14(s14, args, sparse_size: int, sparse_data: int, nbd_size: int) -> None:
    from issue14 import fmt
    from measure import human

    parts = args.issue14_parts.split(",")
    what = []
    if "sparse" in parts:
        what.append(f"sparse {human(sparse_size)} holding {human(sparse_data)} vs dense {human(sparse_data)}")
    if "nbd" in parts:
        what.append(f"qcow2 of {human(nbd_size)} over NBD (MB/s of the disk size)")
    print(f"issue 14 section, to sim: media: {'; '.join(what)}")
    print("before each step the section's own files leave the page cache (posix_fadvise); the programs stay cached")
    print(s14.table())
    for k, v in s14.info.items():
        print(f"{k}: " + ", ".join(f"{a} {fmt(a, x)}" for a, x in v.items() if a != "extents"))


def compile_bytecode() -> None:
    """Compile tapearc's (and the simulator's) bytecode, as make bench does, so that no timed
    command pays for compiling its modules when PYTHONDONTWRITEBYTECODE keeps it from caching."""
    code = "import os, tapearc, tapesim; print(os.path.dirname(tapearc.__file__)); print(os.path.dirname(tapesim.__file__))"
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    if r.returncode == 0:
        subprocess.run([PY, "-m", "compileall", "-q", *r.stdout.split()], stdout=subprocess.DEVNULL)


def main() -> int:
    args = parse_args()
    compile_bytecode()
    size = parse_size(args.size) // BLOCK * BLOCK
    if args.dir:
        work = Path(args.dir).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="tapearc-bench-", dir="/tmp"))
    b = Bench(args, work)
    b.drop = drop_caches_possible()
    kinds = [k for k in args.media.split(",") if k]
    sparse_size, sparse_data = parse_size(args.sparse_size), parse_size(args.sparse_data)
    nbd_size = parse_size(args.nbd_size)
    try:
        log(f"work folder {work}; sections {','.join(args.sections)}; runs {args.runs}")
        log(f"page cache dropped between steps: {'yes' if b.drop else 'no (' + DROP + ' not writable)'}")
        notes: list[str] = []
        if args.profile:
            mixed, changed, ext4, _, ext4_ok = make_issue8_volumes(b, size, notes)
            profile(b, args.profile, mixed, changed, ext4 if ext4_ok else None)
            return 0
        res8 = run_issue8(b, size, kinds, notes) if "issue8" in args.sections else None
        s14 = None
        if "issue14" in args.sections:
            from issue14 import run_section

            s14 = run_section(args, work, sparse_size, sparse_data, nbd_size)
            notes += s14.notes
        s15 = None
        if "issue15" in args.sections:
            from issue15 import run_section as run_section15

            s15 = run_section15(args, work, size)
        s17 = None
        if "issue17" in args.sections:
            from issue17 import rate_text as rate_text17
            from issue17 import run_section as run_section17

            s17 = run_section17(args, work, parse_size(args.issue17_size) // BLOCK * BLOCK)
        tg = (res8["targets"] if res8 else []) + (s14.targets() if s14 else []) + (s15.targets() if s15 else [])
        tg += s17.targets() if s17 else []
        print(
            f"tapearc benchmark: sections {','.join(args.sections)}, {args.runs} runs; "
            f"host {platform.node()} ({os.cpu_count()} CPUs), python {platform.python_version()}"
        )
        if res8:
            print(f"page cache dropped between steps: {'yes' if b.drop else 'no (' + DROP + ' not writable)'}")
            print_issue8(b, res8, size, kinds)
        if s14:
            print_issue14(s14, args, sparse_size, sparse_data, nbd_size)
        if s15:
            print(
                f"issue15: encryption, parallel packing, mixed volume {size} bytes, sim: medium, cold volume and medium"
            )
            print(s15.table())
        if s17:
            print(
                f"issue17: a job of 4 volumes of {args.issue17_size} (compress {args.issue17_compress}) on a sim: "
                f"library in {args.issue17_tapes_used}, 1 drive vs 2 drives vs 2 processes, cold volumes, "
                f"{rate_text17(s17)}"
            )
            print(s17.table())
        print("targets:")
        for t_ in tg:
            print(f"  {t_['result']:4s}  {t_['target']:60s} {t_['detail']}")
        for n in notes:
            print("note:", n)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                        "sections": args.sections,
                        "volume_size": size,
                        "runs": args.runs,
                        "media": kinds,
                        "host": platform.node(),
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "page_cache_dropped": b.drop,
                        "changed_blocks": res8["nchanged"] if res8 else None,
                        "summary": res8["summary"] if res8 else {},
                        "sizes": b.sizes,
                        "memory_check": res8["memcheck"] if res8 else None,
                        "issue14": s14.report() if s14 else None,
                        "issue15": s15.report() if s15 else None,
                        "issue17": s17.report() if s17 else None,
                        "targets": tg,
                        "notes": notes,
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
        elif not args.keep:
            for p in ("mixed.img", "mixed-1pct.img", "ext4.img"):
                (work / p).unlink(missing_ok=True)
            for p in [*work.glob("i14-*"), *work.glob("i15-*"), *work.glob("i17-*")]:
                clean(p)


if __name__ == "__main__":
    sys.exit(main())
