"""Benchmark section issue17: a job of 4 volumes on a simulated library with 1 drive against 2
drives, in the same run.

Four "mixed" volumes (section issue8's generator: 1/3 random, 1/3 zero, 1/3 compressible; a
different seed each) are backed up by one job (``tapearc run``) onto a fresh simulated library of
two drives, the volumes evicted from the page cache before each run so they are read from disk.
Variants, run alternately in each run:

- ``1 drive``: ``tapearc run --drives 1`` (the volumes one after the other on drive 0);
- ``2 drives``: ``tapearc run --drives 2`` (one writer thread per drive, engine.jobdrives);
- ``2 processes``: two ``tapearc run`` processes at once, each with 2 of the volumes on its own
  one-drive library (what one process per drive would give: the threads' alternative).

Reported: each variant's wall time, CPU time and the machine's load average when it ended (on a
shared machine the other users' load decides what a second writer can get), the ratio of 2 drives to 1 (issue 17's target:
<= 0.6x), and for the 2-drive run each drive's feed rate (bytes it was given over the time from
its first write to its last) and its idle time (the run's time minus the time spent in its
writes; ``waiting``: the gaps between its writes while it had a volume), from the job summary's
``drives`` (engine.drives.DriveClock).

The PostgreSQL against SQLite catalog overhead per generation is measured by
bench/catalog_overhead.py's compare() where that script exists (a throw-away PostgreSQL cluster,
or ``--issue17-pg URL``; ``--issue17-no-catalog`` skips it).

    .venv/bin/python bench/run.py --sections issue17 --issue17-size 512M --runs 2
    .venv/bin/python bench/issue17.py --size 512M --runs 2          # the same, alone
    .venv/bin/python bench/issue17.py --tapes /dev/shm --warm       # tapearc alone: no disk in the way
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import TAPEARC, clean, evict, in_child, log, parse_size, run_timed

NAMES = ("v1", "v2", "v3", "v4")
VARIANTS = ("1 drive", "2 drives", "2 processes")


def job_text(name: str, media: str, volumes: list[Path], compress: str) -> str:
    vols = "".join(f'[[volume]]\nname = "{p.stem}"\nsource = "{p}"\n' for p in volumes)
    return f'[job]\nname = "{name}"\nmedia = "{media}"\n[defaults]\ncompress = "{compress}"\nchunk_size = "4M"\n' + vols


def make_library(path: Path, drives: int, capacity: int) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tapesim",
            "library",
            str(path),
            "--slots",
            "8",
            "--drives",
            str(drives),
            "--capacity",
            str(capacity),
        ],
        check=True,
        capture_output=True,
    )


class Section17:
    def __init__(
        self, work: Path, volumes: list[Path], compress: str, tapes: Path | None = None, warm: bool = False
    ) -> None:
        self.work = work
        self.tapes = tapes or work  # where the libraries (the tape images) are made
        self.warm = warm  # leave the volumes in the page cache (measures tapearc, not the disk)
        self.volumes = volumes
        self.compress = compress
        self.total = sum(p.stat().st_size for p in volumes)
        self.samples: dict[str, list[dict]] = {}
        self.catalog: dict | None = None  # catalog_overhead()

    def add(self, variant: str, m: dict) -> None:
        m = dict(m, mbps=self.total / m["wall"] / 1e6, load=os.getloadavg()[0], cpu_pressure=cpu_pressure())
        self.samples.setdefault(variant, []).append(m)
        log(
            f"  {variant:12s} {m['wall']:7.2f} s {m['mbps']:7.0f} MB/s  cpu {m['cpu']:6.2f} s  "
            f"load {m['load']:.2f}  cpu pressure {m['cpu_pressure']}"
        )

    def fresh(self, tag: str, drives: int) -> tuple[Path, dict]:
        lib, cat = self.tapes / f"i17-lib-{tag}", self.work / f"i17-cat-{tag}.sqlite"
        for p in (lib, cat, Path(str(cat) + "-wal"), Path(str(cat) + "-shm")):
            clean(p)
        make_library(lib, drives, 2 * self.total)
        return lib, dict(os.environ, TAPEARC_CATALOG=str(cat))

    def one(self, variant: str) -> None:
        if not self.warm:
            evict(self.volumes)
        if variant == "2 processes":
            self.two_processes()
            return
        lib, env = self.fresh("a", 2)
        job = self.work / "i17-job.toml"
        job.write_text(job_text("i17", f"sim:{lib}", self.volumes, self.compress))
        n = "2" if variant == "2 drives" else "1"
        m = run_timed([*TAPEARC, "run", str(job), "--drives", n, "--json"], env, capture=True)
        doc = json.loads(m.pop("stdout"))
        if doc["exit_code"] != 0:
            raise RuntimeError(f"{variant}: the job failed: {doc}")
        m["drives"] = doc["drives"]
        self.add(variant, m)
        clean(lib)

    def two_processes(self) -> None:
        """Two tapearc run processes at once, 2 volumes each, each on its own one-drive library."""
        import time

        procs, t0 = [], time.perf_counter()
        for k, vols in enumerate((self.volumes[0::2], self.volumes[1::2])):
            lib, env = self.fresh(f"p{k}", 1)
            job = self.work / f"i17-job-p{k}.toml"
            job.write_text(job_text(f"i17p{k}", f"sim:{lib}", vols, self.compress))
            procs.append(subprocess.Popen([*TAPEARC, "run", str(job)], env=env, stdout=subprocess.DEVNULL))
        cpu = 0.0
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError("2 processes: a job failed")
            cpu += ru.ru_utime + ru.ru_stime
        self.add("2 processes", {"wall": time.perf_counter() - t0, "cpu": cpu})
        for k in (0, 1):
            clean(self.tapes / f"i17-lib-p{k}")

    def run(self, runs: int) -> None:
        for r in range(runs):
            log(f"issue17: run {r + 1} of {runs}")
            for v in VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS)):
                self.one(v)

    def med(self, variant: str) -> float | None:
        xs = [m["wall"] for m in self.samples.get(variant, [])]
        return statistics.median(xs) if xs else None

    def drive_lines(self) -> list[str]:
        """Each drive of the 2-drive runs: its feed rate and idle time (median over the runs)."""
        per: dict[int, list[dict]] = {}
        for m in self.samples.get("2 drives", []):
            for i, d in enumerate(m["drives"]):
                per.setdefault(i, []).append(d)
        out = []
        for i, ds in sorted(per.items()):
            feed = statistics.median(d["mb_per_s"] or 0 for d in ds)
            idle = statistics.median(d["idle_seconds"] for d in ds)
            wait = statistics.median(d["waiting_seconds"] for d in ds)
            busy = statistics.median(d["write_seconds"] for d in ds)
            gib = statistics.median(d["bytes"] for d in ds) / 2**30
            out.append(
                f"  drive {i}: {gib:.2f} GiB, fed at {feed:.0f} MB/s; in writes {busy:.2f} s, idle {idle:.2f} s "
                f"(of which waiting for data between writes {wait:.2f} s)"
            )
        return out

    def targets(self) -> list[dict]:
        one, two = self.med("1 drive"), self.med("2 drives")
        if one is None or two is None:
            return [
                {
                    "section": "issue17",
                    "target": "2 drives <= 0.6x the time of 1",
                    "result": "SKIP",
                    "detail": "not measured",
                }
            ]
        return [
            {
                "section": "issue17",
                "target": "2 drives <= 0.6x the time of 1",
                "result": "PASS" if two / one <= 0.6 else "FAIL",
                "detail": f"{two:.2f} s vs {one:.2f} s: {two / one:.2f}x",
            }
        ]

    def table(self) -> str:
        lines = [f"{'variant':14s} {'median s':>9s} {'MB/s':>7s} {'cpu s':>7s} {'load':>5s}  runs"]
        for v, ms in self.samples.items():
            wall = statistics.median(m["wall"] for m in ms)
            cpu = statistics.median(m["cpu"] for m in ms)
            load = statistics.median(m["load"] for m in ms)
            lines.append(
                f"{v:14s} {wall:9.2f} {self.total / wall / 1e6:7.0f} {cpu:7.2f} {load:5.2f}  "
                + " ".join(f"{m['wall']:.2f}" for m in ms)
            )
        return "\n".join([*lines, *self.drive_lines(), *catalog_lines(self.catalog)])

    def report(self) -> dict:
        return {
            "bytes": self.total,
            "compress": self.compress,
            "variants": {v: {"median_wall": self.med(v), "samples": ms} for v, ms in self.samples.items()},
            "catalog_overhead": self.catalog,
        }


def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some task waited for a CPU (/proc/pressure/cpu: on a
    shared machine, what the other users took), in percent."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def catalog_overhead(work: Path, pg_url: str | None = None) -> dict | None:
    """The PostgreSQL vs SQLite catalog overhead per generation: bench/catalog_overhead.py's
    compare() (a throw-away PostgreSQL cluster unless ``pg_url``), None when that script is not
    there."""
    if not Path(__file__).with_name("catalog_overhead.py").exists():
        return None
    import catalog_overhead as co  # bench/catalog_overhead.py

    log("issue17: catalog overhead per generation, SQLite and PostgreSQL")
    return co.compare(str(work), pg_url)


def catalog_lines(res: dict | None) -> list[str]:
    if res is None:
        return ["  catalog overhead per generation (PostgreSQL vs SQLite): bench/catalog_overhead.py not present"]
    out = []
    for k in ("sqlite", "postgresql"):
        r = res.get(k)
        if r is None:
            out.append(f"  catalog {k}: not measured ({res.get('why', '?')})")
            continue
        out.append(
            f"  catalog {k}: {r['backup_seconds_per_generation']:.3f} s per generation of {r['chunks_per_generation']} "
            f"chunks as a backup records it ({r['backup_ms_per_chunk']:.2f} ms a chunk), "
            f"{r['scan_seconds_per_generation']:.3f} s as scan does"
        )
    if "ratio" in res:
        out.append(
            f"  catalog PostgreSQL / SQLite: {res['ratio']}x per backup generation, {res['scan_ratio']}x per scan"
        )
    return out


def make_volumes(work: Path, size: int) -> list[Path]:
    from run import make_mixed  # the issue-8 generator (bench/run.py)

    out = []
    for i, name in enumerate(NAMES, 1):
        p = work / f"i17-{name}.img"
        if not p.exists() or p.stat().st_size != size:
            log(f"issue17: making volume {p.name} ({size} bytes)")
            in_child(make_mixed, p, size, i)
        out.append(p)
    return out


def run_section(args: argparse.Namespace, work: Path, size: int) -> Section17:
    tapes = Path(args.issue17_tapes) if getattr(args, "issue17_tapes", None) else None
    s = Section17(work, make_volumes(work, size), args.issue17_compress, tapes, getattr(args, "issue17_warm", False))
    s.run(args.runs)
    if not getattr(args, "issue17_no_catalog", False):
        s.catalog = catalog_overhead(work, getattr(args, "issue17_pg", None))
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512M", help="size of each of the 4 volumes (default 512M)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--compress", dest="issue17_compress", default="none", choices=("none", "zstd"))
    ap.add_argument("--dir", help="work folder (default: a new folder in /tmp, removed afterwards)")
    ap.add_argument("--tapes", dest="issue17_tapes", help="make the libraries here (e.g. /dev/shm: no disk writes)")
    ap.add_argument("--warm", dest="issue17_warm", action="store_true", help="volumes stay in the page cache")
    ap.add_argument(
        "--pg", dest="issue17_pg", help="catalog overhead: a PostgreSQL URL (default: a throw-away cluster)"
    )
    ap.add_argument("--no-catalog", dest="issue17_no_catalog", action="store_true", help="skip the catalog overhead")
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tapearc-i17-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    size = parse_size(args.size) // (64 * 1024) * (64 * 1024)
    try:
        s = run_section(args, work, size)
        print(
            f"issue17: 4 volumes of {size} bytes, compress {args.issue17_compress}, {args.runs} runs, "
            f"{os.cpu_count()} CPUs, sim: library in {args.issue17_tapes or 'the work folder'}, "
            f"{'warm' if args.issue17_warm else 'cold'} volumes"
        )
        print(s.table())
        for t in s.targets():
            print(f"  {t['result']:4s}  {t['target']:40s} {t['detail']}")
    finally:
        if not args.dir:
            clean(work)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
