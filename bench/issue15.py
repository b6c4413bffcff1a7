"""Benchmark section issue15: encryption, and the parallel packing of chunk payloads (compression,
encryption) on the backup side and parallel decoding on the restore side.

A full backup of the "mixed" volume of section issue8 (1/3 random, 1/3 zero, 1/3 compressible)
to a fresh sim: medium with ``--compress zstd`` and with ``--compress none``, and a restore of
each, the volume (before a backup) and the medium (before a restore) evicted from the page cache
so they are read from disk. Variants, run alternately in each run:

- ``new``: this tree as it is (packing workers, read-ahead);
- ``enc``: the same, encrypted (``backup --encrypt KEY``, ``restore --key KEY``, a key made with
  ``key create`` and a passphrase file), and for ``new`` and ``enc`` with zstd an incremental of
  the volume with 1% of its blocks changed; issue 15's targets are judged on these medians;
- ``serial``: this tree with ``TAPEARC_PIPELINE=0`` (everything in one thread);
- ``old``: another tree of tapearc (``--issue15-baseline DIR``, e.g. an export of an older commit:
  ``git archive COMMIT tapearc | tar -x -C DIR``), run with ``PYTHONPATH=DIR``.

    .venv/bin/python bench/run.py --sections issue15 --runs 3 --issue15-baseline /tmp/base
    .venv/bin/python bench/issue15.py --size 2G --runs 3 --baseline /tmp/base   # the same, alone
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import TAPEARC, clean, evict, in_child, log, parse_size, run_timed

COMPRESS = ("zstd", "none")


class Section15:
    def __init__(self, work: Path, size: int, variants: list[tuple[str, dict]], check: bool) -> None:
        self.changed: Path | None = None  # the mixed volume with 1% of its blocks changed
        self.work = work
        self.size = size
        self.variants = variants
        self.check = check
        self.samples: dict[str, list[dict]] = {}

    def add(self, op: str, m: dict) -> None:
        m = dict(m, mbps=self.size / m["wall"] / 1e6)
        self.samples.setdefault(op, []).append(m)
        log(f"  {op:32s} {m['wall']:7.2f} s {m['mbps']:8.0f} MB/s  cpu {m['cpu']:6.2f} s  rss {m['rss_mb']:6.0f} MB")

    def one(self, mixed: Path, name: str, extra_env: dict, comp: str) -> None:
        w = self.work
        medium, cat, target = w / "i15-medium.sim", w / "i15-catalog.sqlite", w / "i15-restored.img"
        for p in (medium, cat, target):
            clean(p)
        env = dict(os.environ, TAPEARC_CATALOG=str(cat), **extra_env)
        backup_args, restore_args = self.key_args(name)
        evict([mixed])
        cmd = [*TAPEARC, "backup", str(mixed), "--media", f"sim:{medium}", "--compress", comp, "--volume", "mixed"]
        self.add(f"{name} {comp}: full backup", run_timed([*cmd, *backup_args], env))
        evict([medium])
        restore = [*TAPEARC, "restore", "--media", f"sim:{medium}", "--to", str(target), *restore_args]
        self.add(f"{name} {comp}: restore", run_timed(restore, env))
        if self.check and subprocess.run(["cmp", "-s", str(mixed), str(target)]).returncode != 0:
            raise RuntimeError(f"{name} {comp}: restored image differs from the volume")
        clean(target)
        if self.changed is not None and comp == "zstd" and name in ("new", "enc"):
            evict([self.changed, medium, cat])
            cmd = [*TAPEARC, "backup", str(self.changed), "--media", f"sim:{medium}", "--compress", comp]
            self.add(f"{name} {comp}: incremental 1%", run_timed([*cmd, "--volume", "mixed", *backup_args], env))
        for p in (medium, cat, target):
            clean(p)

    def key_args(self, name: str) -> tuple[list[str], list[str]]:
        """The encrypted variant's options: a key made once (key create) with a passphrase file."""
        if name != "enc":
            return [], []
        key, pw = self.work / "i15.key", self.work / "i15.pass"
        if not key.exists():
            pw.write_text("benchmark passphrase\n")
            run_timed([*TAPEARC, "key", "create", str(key), "--passphrase-file", str(pw)])
        return ["--encrypt", str(key), "--passphrase-file", str(pw)], ["--key", str(key), "--passphrase-file", str(pw)]

    def med(self, op: str, key: str = "wall") -> float | None:
        xs = [m[key] for m in self.samples.get(op, [])]
        return statistics.median(xs) if xs else None

    def targets(self) -> list[dict]:
        """Issue 15's targets, from the medians of this run."""
        out: list[dict] = []

        def put(name: str, ok: bool | None, detail: str) -> None:
            res = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
            out.append({"section": "issue15", "target": name, "result": res, "detail": detail})

        mb = self.size / 1e6
        enc, none, rest = (
            self.med("enc zstd: full backup"),
            self.med("new none: full backup"),
            self.med("enc zstd: restore"),
        )
        ei, pi = self.med("enc zstd: incremental 1%"), self.med("new zstd: incremental 1%")
        if enc is None or none is None or rest is None:
            put("encrypted+zstd full backup >= 400 MB/s", None, "not measured")
            return out
        put("encrypted+zstd full backup >= 400 MB/s", mb / enc >= 400, f"{mb / enc:.0f} MB/s ({enc:.2f} s)")
        put(
            "encrypted+zstd full >= 0.8x plain uncompressed full",
            none / enc >= 0.8,
            f"{mb / enc:.0f} vs {mb / none:.0f} MB/s: {none / enc:.2f}x (need >= 0.8x)",
        )
        put(
            "restore of the encrypted+zstd backup >= 400 MB/s", mb / rest >= 400, f"{mb / rest:.0f} MB/s ({rest:.2f} s)"
        )
        if ei is not None and pi is not None:
            put(
                "encrypted incremental 1% <= 1.2x the plain one",
                ei / pi <= 1.2,
                f"{ei:.2f} s vs {pi:.2f} s: {ei / pi:.2f}x (need <= 1.2x)",
            )
        return out

    def run(self, mixed: Path, runs: int) -> None:
        for r in range(runs):
            log(f"issue15: run {r + 1} of {runs}")
            order = self.variants if r % 2 == 0 else list(reversed(self.variants))
            for name, env in order:
                for comp in COMPRESS:
                    self.one(mixed, name, env, comp)

    def table(self) -> str:
        lines = [f"{'operation':34s} {'median s':>9s} {'MB/s':>7s} {'cpu s':>7s} {'rss MB':>7s}  runs"]
        for op, ms in self.samples.items():
            wall = statistics.median(m["wall"] for m in ms)
            cpu = statistics.median(m["cpu"] for m in ms)
            rss = max(m["rss_mb"] for m in ms)
            lines.append(
                f"{op:34s} {wall:9.2f} {self.size / wall / 1e6:7.0f} {cpu:7.2f} {rss:7.0f}  "
                + " ".join(f"{m['wall']:.2f}" for m in ms)
            )
        return "\n".join(lines)

    def report(self) -> dict:
        return {
            op: {"median_wall": statistics.median(m["wall"] for m in ms), "samples": ms}
            for op, ms in self.samples.items()
        }


def variants(baseline: str | None, serial: bool = True) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = [("new", {}), ("enc", {})]  # enc: --encrypt / --key
    if serial:
        out.append(("serial", {"TAPEARC_PIPELINE": "0"}))
    if baseline:
        root = str(Path(baseline).resolve())
        if not (Path(root) / "tapearc" / "__init__.py").exists():
            raise SystemExit(f"--issue15-baseline {baseline}: no tapearc/ package there")
        out.append(("old", {"PYTHONPATH": root}))
    return out


def run_section(args: argparse.Namespace, work: Path, size: int) -> Section15:
    from run import make_changed, make_mixed  # the issue-8 generators (bench/run.py)

    mixed = work / "mixed.img"
    if not mixed.exists() or mixed.stat().st_size != size:
        log(f"issue15: making the mixed volume ({size} bytes)")
        in_child(make_mixed, mixed, size)
    s = Section15(work, size, variants(args.issue15_baseline, not args.issue15_no_serial), args.check_restore)
    s.changed = work / "i15-mixed-1pct.img"
    in_child(make_changed, mixed, s.changed)
    s.run(mixed, args.runs)
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", help="work folder (default: a new folder in /tmp, removed afterwards)")
    ap.add_argument("--baseline", dest="issue15_baseline", help="an older tree to compare with (variant old)")
    ap.add_argument("--no-serial", dest="issue15_no_serial", action="store_true", help="skip the serial variant")
    ap.add_argument("--check-restore", action="store_true")
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tapearc-i15-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    size = parse_size(args.size) // (64 * 1024) * (64 * 1024)
    try:
        s = run_section(args, work, size)
        print(f"issue15: mixed volume {size} bytes, {args.runs} runs, {os.cpu_count()} CPUs")
        print(s.table())
    finally:
        if not args.dir:
            clean(work)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
