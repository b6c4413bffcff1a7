"""Benchmark section issue17: a job of 4 volumes on a simulated library with 1 drive against 2
drives, in the same run.

Four "mixed" volumes (section issue8's generator: 1/3 random, 1/3 zero, 1/3 compressible; a
different seed each) are backed up by one job (``tapearc run``) onto a fresh simulated library of
two drives, the volumes evicted from the page cache before each run so they are read from disk.
The library's drives stream at most ``--rate`` (default 400 MB/s: LTO-9 drives, native; the
simulator's tape clock behind a 1 GiB buffer, hw-sim/README.md "The native transfer rate"):
real drives are what a site adds drives for, where an unlimited simulated drive writes as fast as
the machine can and one drive already takes its CPUs and disk. ``--rate 0``: unlimited drives.
Variants, run alternately in each run:

- ``1 drive``: ``tapearc run --drives 1`` (the volumes one after the other on drive 0);
- ``2 drives``: ``tapearc run --drives 2`` (one writer thread per drive, engine.jobdrives);
- ``2 processes``: two ``tapearc run`` processes at once, each with 2 of the volumes on its own
  one-drive library (what one process per drive would give: the threads' alternative);
- with a rate, also ``1 drive, unlimited`` and ``2 drives, unlimited`` (``--no-unlimited``
  leaves them out): the machine's own limit, drives that never make tapearc wait.

For the rate-limited drives the simulator counts, from its tape clock, each drive's bytes, the
time its tape moved and stood still (``idle``: buffer empty), the part of that idle between two
writes (``starved``: tapearc did not keep the buffer filled) and the time tapearc slept because
the drive's buffer was full (``throttled``: the drive was the limit); a drive's feed rate is
``bytes / (bytes / rate + starved)``: the rate itself when it never starved. The section's check:
each of 2 drives fed at >= 98% of its rate. Also printed: the starved time's part at the start
(before tapearc first got ahead of the tape: the label, the first header and records) and right
after filemarks, and the feed "once streaming" (without the start's part).

Reported: each variant's wall time, CPU time (and CPU seconds per GiB) and the machine's load average when it ended (on a
shared machine the other users' load decides what a second writer can get), the ratio of 2 drives to 1 (issue 17's target:
<= 0.6x), and for the 2-drive run each drive's feed rate (bytes it was given over the time from
its first write to its last) and its idle time (the run's time minus the time spent in its
writes; ``waiting``: the gaps between its writes while it had a volume), from the job summary's
``drives`` (engine.drives.DriveClock).

The tape images (the libraries) are made in a new folder in /dev/shm by default, when it has room:
a site's tape drives are devices of their own, while images on the volumes' disk add the tapes'
writes to the volumes' reads on one disk, which no site has (``--tapes work``, run.py
``--issue17-tapes work``: that set-up; ``--tapes DIR``: a folder of your choice).

The PostgreSQL against SQLite catalog overhead per generation is measured by
bench/catalog_overhead.py's compare() where that script exists (a throw-away PostgreSQL cluster,
or ``--issue17-pg URL``; ``--issue17-no-catalog`` skips it).

    .venv/bin/python bench/run.py --sections issue17 --issue17-size 512M --runs 2
    .venv/bin/python bench/issue17.py --size 512M --runs 2          # the same, alone
    .venv/bin/python bench/issue17.py --warm                        # tapearc alone: no disk in the way
    .venv/bin/python bench/issue17.py --tapes work                  # the tapes on the volumes' disk
    .venv/bin/python bench/issue17.py --rate 0                      # unlimited drives only (the old bench)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from measure import TAPEARC, GiB, clean, evict, in_child, log, parse_size, run_timed

NAMES = ("v1", "v2", "v3", "v4")
VARIANTS = ("1 drive", "2 drives", "2 processes")
UNLIMITED = ("1 drive, unlimited", "2 drives, unlimited")
DEFAULT_RATE = "400M"  # LTO-9 native (IBM's tables: LTO-9 400 MB/s, LTO-8 360, LTO-7 300)


def parse_rate(text: str) -> int:
    """A rate as tapesim takes it: ``400M`` = 400 MB/s (decimal, as data sheets), 0 unlimited."""
    from tapesim.cli import CliError
    from tapesim.cli import parse_rate as tapesim_rate

    try:
        return tapesim_rate(text)
    except CliError as e:
        raise SystemExit(f"--rate: {e}") from None


def tape_stats(lib: Path, drives: int) -> list[dict | None]:
    """Each drive's figures from the simulator's tape clock (hw-sim: DIR/drive-<i>.tap.tapesim-stats)."""
    from dataclasses import asdict

    from tapesim.transport import read_stats

    out: list[dict | None] = []
    for i in range(drives):
        st = read_stats(str(lib / f"drive-{i}.tap"))
        out.append(asdict(st) if st is not None else None)
    return out


def job_text(name: str, media: str, volumes: list[Path], compress: str) -> str:
    vols = "".join(f'[[volume]]\nname = "{p.stem}"\nsource = "{p}"\n' for p in volumes)
    return f'[job]\nname = "{name}"\nmedia = "{media}"\n[defaults]\ncompress = "{compress}"\nchunk_size = "4M"\n' + vols


def make_library(path: Path, drives: int, capacity: int, rate: int = 0, buffer: str | None = None) -> None:
    extra = ["--rate", str(rate)] + (["--buffer", buffer] if buffer else []) if rate else []
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
            *extra,
        ],
        check=True,
        capture_output=True,
    )


class Section17:
    def __init__(
        self,
        work: Path,
        volumes: list[Path],
        compress: str,
        tapes: Path | None = None,
        warm: bool = False,
        rate: int = 0,
        buffer: str | None = None,
        unlimited: bool = True,
    ) -> None:
        self.rate = rate  # the drives' native rate, bytes/s; 0 = unlimited
        self.buffer = buffer  # the drives' buffer (tapesim's default when None)
        self.variants = VARIANTS + (UNLIMITED if rate and unlimited else ())
        self.work = work
        self.tapes = tapes or work  # where the libraries (the tape images) are made
        self.warm = warm  # leave the volumes in the page cache (measures tapearc, not the disk)
        self.volumes = volumes
        self.compress = compress
        self.total = sum(p.stat().st_size for p in volumes)
        self.samples: dict[str, list[dict]] = {}
        self.catalog: dict | None = None  # catalog_overhead(); None: skipped (--no-catalog)

    def add(self, variant: str, m: dict) -> None:
        m = dict(m, mbps=self.total / m["wall"] / 1e6, load=os.getloadavg()[0], cpu_pressure=cpu_pressure())
        self.samples.setdefault(variant, []).append(m)
        log(
            f"  {variant:20s} {m['wall']:7.2f} s {m['mbps']:7.0f} MB/s  cpu {m['cpu']:6.2f} s  "
            f"load {m['load']:.2f}  cpu pressure {m['cpu_pressure']}"
        )
        for i, st in enumerate(m.get("tape") or []):
            if st:
                log(f"    drive {i}: {drive_text(st, self.rate)}")

    def fresh(self, tag: str, drives: int, rate: int) -> tuple[Path, dict]:
        lib, cat = self.tapes / f"i17-lib-{tag}", self.work / f"i17-cat-{tag}.sqlite"
        for p in (lib, cat, Path(str(cat) + "-wal"), Path(str(cat) + "-shm")):
            clean(p)
        make_library(lib, drives, 2 * self.total, rate, self.buffer)
        return lib, dict(os.environ, TAPEARC_CATALOG=str(cat))

    def one(self, variant: str) -> None:
        if not self.warm:
            evict(self.volumes)
        if variant == "2 processes":
            self.two_processes()
            return
        rate = 0 if variant in UNLIMITED else self.rate
        lib, env = self.fresh("a", 2, rate)
        job = self.work / "i17-job.toml"
        job.write_text(job_text("i17", f"sim:{lib}", self.volumes, self.compress))
        n = "2" if variant.startswith("2 drives") else "1"
        m = run_timed([*TAPEARC, "run", str(job), "--drives", n, "--json"], env, capture=True)
        doc = json.loads(m.pop("stdout"))
        if doc["exit_code"] != 0:
            raise RuntimeError(f"{variant}: the job failed: {doc}")
        m["drives"] = doc["drives"]
        if rate:
            m["tape"] = tape_stats(lib, int(n))
        self.add(variant, m)
        clean(lib)

    def two_processes(self) -> None:
        """Two tapearc run processes at once, 2 volumes each, each on its own one-drive library."""
        import time

        procs, libs, t0 = [], [], time.perf_counter()
        for k, vols in enumerate((self.volumes[0::2], self.volumes[1::2])):
            lib, env = self.fresh(f"p{k}", 1, self.rate)
            libs.append(lib)
            job = self.work / f"i17-job-p{k}.toml"
            job.write_text(job_text(f"i17p{k}", f"sim:{lib}", vols, self.compress))
            procs.append(subprocess.Popen([*TAPEARC, "run", str(job)], env=env, stdout=subprocess.DEVNULL))
        cpu = 0.0
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError("2 processes: a job failed")
            cpu += ru.ru_utime + ru.ru_stime
        m: dict = {"wall": time.perf_counter() - t0, "cpu": cpu}
        if self.rate:
            m["tape"] = [tape_stats(lib, 1)[0] for lib in libs]
        self.add("2 processes", m)
        for lib in libs:
            clean(lib)

    def run(self, runs: int) -> None:
        for r in range(runs):
            log(f"issue17: run {r + 1} of {runs}")
            for v in self.variants if r % 2 == 0 else tuple(reversed(self.variants)):
                self.one(v)

    def med(self, variant: str) -> float | None:
        xs = [m["wall"] for m in self.samples.get(variant, [])]
        return statistics.median(xs) if xs else None

    def clock_lines(self, variant: str) -> list[str]:
        """Each drive of a 2-drive variant as tapearc saw it (the job summary's drives,
        engine.drives.DriveClock): its feed rate and idle time (median over the runs)."""
        per: dict[int, list[dict]] = {}
        for m in self.samples.get(variant, []):
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
                f"  {variant}, drive {i} (tapearc's clock): {gib:.2f} GiB, fed at {feed:.0f} MB/s; in writes "
                f"{busy:.2f} s, idle {idle:.2f} s (of which waiting for data between writes {wait:.2f} s)"
            )
        return out

    def tape_medians(self, variant: str) -> list[dict]:
        """Each drive's tape-clock figures of a rate-limited variant, medians over the runs."""
        per: dict[int, list[dict]] = {}
        for m in self.samples.get(variant, []):
            for i, st in enumerate(m.get("tape") or []):
                if st:
                    per.setdefault(i, []).append(st)
        return [{k: statistics.median(st[k] for st in sts) for k in sts[0]} for _, sts in sorted(per.items())]

    def tape_lines(self, variant: str) -> list[str]:
        return [
            f"  {variant}, drive {i} (the drive's tape clock): {drive_text(st, self.rate)}"
            for i, st in enumerate(self.tape_medians(variant))
        ]

    def drive_lines(self) -> list[str]:
        if not self.rate:
            return self.clock_lines("2 drives")
        out = self.tape_lines("1 drive") + self.tape_lines("2 drives") + self.tape_lines("2 processes")
        return out + self.clock_lines("2 drives, unlimited")

    def targets(self) -> list[dict]:
        what = f"drives of {self.rate / 1e6:g} MB/s" if self.rate else "unlimited drives"
        out = [ratio_target(self.med("1 drive"), self.med("2 drives"), f"2 drives <= 0.6x the time of 1 ({what})")]
        if self.rate:
            feeds = [(i, feed_rate(st, self.rate), st) for i, st in enumerate(self.tape_medians("2 drives"))]
            ok = bool(feeds) and all(f is not None and f >= 0.98 * self.rate for _, f, _ in feeds)
            detail = ", ".join(
                f"drive {i} {(f or 0) / 1e6:.1f} MB/s, {(streaming_feed_rate(st, self.rate) or 0) / 1e6:.1f} once "
                f"streaming (starved {st['starved_seconds']:.3f} s: {st.get('starved_at_start_seconds', 0.0):.3f} s "
                f"at the start, {st.get('starved_at_marks_seconds', 0.0):.3f} s after filemarks)"
                for i, f, st in feeds
            )
            out.append(
                {
                    "section": "issue17",
                    "target": f"each of 2 drives fed at its {self.rate / 1e6:g} MB/s",
                    "result": ("PASS" if ok else "FAIL") if feeds else "SKIP",
                    "detail": detail or "not measured",
                }
            )
            if UNLIMITED[0] in self.samples:
                t = ratio_target(self.med(UNLIMITED[0]), self.med(UNLIMITED[1]), "2 drives vs 1 (unlimited drives)")
                out.append(dict(t, result="INFO"))
        return out

    def table(self) -> str:
        gib = self.total / GiB
        lines = [f"{'variant':20s} {'median s':>9s} {'MB/s':>7s} {'cpu s':>7s} {'cpu s/GiB':>9s} {'load':>5s}  runs"]
        for v, ms in self.samples.items():
            wall = statistics.median(m["wall"] for m in ms)
            cpu = statistics.median(m["cpu"] for m in ms)
            load = statistics.median(m["load"] for m in ms)
            lines.append(
                f"{v:20s} {wall:9.2f} {self.total / wall / 1e6:7.0f} {cpu:7.2f} {cpu / gib:9.2f} {load:5.2f}  "
                + " ".join(f"{m['wall']:.2f}" for m in ms)
            )
        return "\n".join([*lines, *self.drive_lines(), *catalog_lines(self.catalog)])

    def report(self) -> dict:
        return {
            "bytes": self.total,
            "compress": self.compress,
            "rate": self.rate,
            "buffer": self.buffer,
            "variants": {v: {"median_wall": self.med(v), "samples": ms} for v, ms in self.samples.items()},
            "catalog_overhead": self.catalog,
        }


def ratio_target(one: float | None, two: float | None, target: str) -> dict:
    if one is None or two is None:
        return {"section": "issue17", "target": target, "result": "SKIP", "detail": "not measured"}
    return {
        "section": "issue17",
        "target": target,
        "result": "PASS" if two / one <= 0.6 else "FAIL",
        "detail": f"{two:.2f} s vs {one:.2f} s: {two / one:.2f}x",
    }


def feed_rate(st: dict, rate: int) -> float | None:
    """A rate-limited drive's feed: its bytes over the tape time they needed plus the time it
    starved between writes (the rate itself when tapearc kept its buffer filled)."""
    t = st["bytes_written"] / rate + st["starved_seconds"]
    return st["bytes_written"] / t if t else None


def streaming_feed_rate(st: dict, rate: int) -> float | None:
    """The feed once streaming: as feed_rate, without the gaps before tapearc first got ahead of
    the tape (its start: label, first header, first records; tapesim's starved_at_start)."""
    t = st["bytes_written"] / rate + st["starved_seconds"] - st.get("starved_at_start_seconds", 0.0)
    return st["bytes_written"] / t if t else None


def drive_text(st: dict, rate: int) -> str:
    f, g = feed_rate(st, rate), streaming_feed_rate(st, rate)
    return (
        f"{st['bytes_written'] / GiB:.2f} GiB, fed at {(f or 0) / 1e6:.1f} MB/s ({(g or 0) / 1e6:.1f} once "
        f"streaming); tape moving {st['moving_seconds']:.2f} s, idle {st['idle_seconds']:.2f} s (starved between "
        f"writes {st['starved_seconds']:.3f} s: {st.get('starved_at_start_seconds', 0.0):.3f} s at the start, "
        f"{st.get('starved_at_marks_seconds', 0.0):.3f} s right after a filemark) of {st['open_seconds']:.2f} s "
        "open; tapearc throttled "
        f"{st['throttle_seconds']:.2f} s, waiting at filemarks/close {st['drain_seconds']:.2f} s"
    )


def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some task waited for a CPU (/proc/pressure/cpu: on a
    shared machine, what the other users took), in percent."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


#: this script's folder, found when it is loaded: a relative ``__file__`` (run by a relative
#: path, or loaded by one) would name another file once the current directory is not the one
#: it was run from, and bench/catalog_overhead.py was then "not present"
HERE = Path(__file__).resolve().parent


def load_catalog_overhead() -> tuple[ModuleType | None, str]:
    """bench/catalog_overhead.py as a module, loaded from this script's folder (whatever the
    current directory and sys.path); (None, why) when it cannot be."""
    path = HERE / "catalog_overhead.py"
    if not path.is_file():
        return None, f"{path} not present"
    loaded = sys.modules.get("catalog_overhead")
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path:
        return loaded, ""
    try:
        spec = importlib.util.spec_from_file_location("catalog_overhead", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["catalog_overhead"] = module
        spec.loader.exec_module(module)
    except Exception as e:  # the bench goes on and says why
        sys.modules.pop("catalog_overhead", None)
        return None, f"{path} could not be loaded: {type(e).__name__}: {e}"
    return module, ""


def catalog_overhead(work: Path, pg_url: str | None = None) -> dict:
    """The PostgreSQL vs SQLite catalog overhead per generation: bench/catalog_overhead.py's
    compare() (a throw-away PostgreSQL cluster unless ``pg_url``); when that script cannot be
    loaded, both not measured and why."""
    co, why = load_catalog_overhead()
    if co is None:
        return {"sqlite": None, "postgresql": None, "why": why}
    log("issue17: catalog overhead per generation, SQLite and PostgreSQL")
    return co.compare(str(work), pg_url)


def catalog_lines(res: dict | None) -> list[str]:
    if res is None:
        return ["  catalog overhead per generation (PostgreSQL vs SQLite): skipped (--no-catalog)"]
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


SHM = Path("/dev/shm")


def tapes_folder(given: str | None, size: int) -> tuple[Path | None, bool]:
    """Where the simulated libraries (the tape images) are made, and whether the folder is the
    section's own (removed afterwards). Default: a new folder in /dev/shm when it has room for
    the job's tapes with 1 GiB to spare -- a site's tape drives are devices of their own, while
    images on the volumes' disk would add the tapes' writes to its reads (a simulator's
    artifact: no site writes its tapes to the disk it backs up); else the work folder.
    ``work``: the work folder (tapes on the volumes' disk); any other value: that folder."""
    if given == "work":
        return None, False
    if given:
        return Path(given), False
    try:
        room = shutil.disk_usage(SHM).free >= 4 * size + GiB
    except OSError:
        room = False
    return (Path(tempfile.mkdtemp(prefix="tapearc-i17-tapes-", dir=SHM)), True) if room else (None, False)


def run_section(args: argparse.Namespace, work: Path, size: int) -> Section17:
    tapes, own = tapes_folder(getattr(args, "issue17_tapes", None), size)
    args.issue17_tapes_used = str(tapes) if tapes else "the work folder"
    try:
        s = Section17(
            work,
            make_volumes(work, size),
            args.issue17_compress,
            tapes,
            getattr(args, "issue17_warm", False),
            rate=parse_rate(args.issue17_rate),
            buffer=getattr(args, "issue17_buffer", None),
            unlimited=not getattr(args, "issue17_no_unlimited", False),
        )
        s.run(args.runs)
    finally:
        if own and tapes is not None:
            shutil.rmtree(tapes, ignore_errors=True)
    if not getattr(args, "issue17_no_catalog", False):
        s.catalog = catalog_overhead(work, getattr(args, "issue17_pg", None))
    return s


def add_rate_options(ap: argparse.ArgumentParser, prefix: str) -> None:
    """The drives' rate options (``--rate`` here, ``--issue17-rate`` in bench/run.py)."""
    ap.add_argument(
        f"{prefix}rate",
        dest="issue17_rate",
        default=DEFAULT_RATE,
        help="the simulated drives' native rate, decimal as data sheets (default 400M: LTO-9; 0: unlimited)",
    )
    ap.add_argument(f"{prefix}buffer", dest="issue17_buffer", help="the drives' buffer (default tapesim's, 1G)")
    ap.add_argument(
        f"{prefix}no-unlimited",
        dest="issue17_no_unlimited",
        action="store_true",
        help="with a rate, leave out the unlimited-drive variants",
    )


def rate_text(s: Section17) -> str:
    if not s.rate:
        return "unlimited drives"
    return f"drives of {s.rate / 1e6:g} MB/s native, buffer {s.buffer or '1G'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512M", help="size of each of the 4 volumes (default 512M)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--compress", dest="issue17_compress", default="none", choices=("none", "zstd"))
    ap.add_argument("--dir", help="work folder (default: a new folder in /tmp, removed afterwards)")
    ap.add_argument(
        "--tapes",
        dest="issue17_tapes",
        help="make the libraries here (default: a new folder in /dev/shm when it has room; work: the work folder)",
    )
    ap.add_argument("--warm", dest="issue17_warm", action="store_true", help="volumes stay in the page cache")
    ap.add_argument(
        "--pg", dest="issue17_pg", help="catalog overhead: a PostgreSQL URL (default: a throw-away cluster)"
    )
    ap.add_argument("--no-catalog", dest="issue17_no_catalog", action="store_true", help="skip the catalog overhead")
    add_rate_options(ap, "--")
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tapearc-i17-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    size = parse_size(args.size) // (64 * 1024) * (64 * 1024)
    try:
        s = run_section(args, work, size)
        print(
            f"issue17: 4 volumes of {size} bytes, compress {args.issue17_compress}, {args.runs} runs, "
            f"{os.cpu_count()} CPUs, sim: library in {args.issue17_tapes_used}, "
            f"{'warm' if args.issue17_warm else 'cold'} volumes, {rate_text(s)}"
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
