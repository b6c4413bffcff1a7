#!/usr/bin/env python3
"""Encrypted backups (issue 15): full backups of the 2 GiB "mixed" volume of section issue8
(1/3 random, 1/3 zero, 1/3 compressible) to a fresh sim: medium, encrypted (--encrypt) and
plain, with --compress zstd and none; an incremental with 1% of the blocks changed; a restore of
each. The volume (before a backup) and the medium (before a restore) are evicted from the page
cache. Variants run alternately, ``--runs`` times; each line is one run (wall, MB/s, CPU).

    .venv/bin/python bench/encrypt.py --work /tmp/encbench --runs 2
    .venv/bin/python bench/encrypt.py --variants enc-zstd,none --no-restore

Targets: encrypted+zstd full >= 400 MB/s and >= 0.8x the plain uncompressed backup; restore of
it >= 400 MB/s; encrypted incremental <= 1.2x the plain one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from measure import TAPEARC, clean, evict, in_child, log, parse_size, run_timed
from run import make_changed, make_mixed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/encbench", help="folder for the volumes and media")
    ap.add_argument("--size", default="2G")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--variants", default="enc-zstd,zstd,none,enc-none")
    ap.add_argument("--no-incremental", action="store_true")
    ap.add_argument("--no-restore", action="store_true")
    a = ap.parse_args()
    w, size = Path(a.work), parse_size(a.size)
    w.mkdir(parents=True, exist_ok=True)
    mixed, changed = w / "mixed.img", w / "mixed-1pct.img"
    if not mixed.exists() or mixed.stat().st_size != size:
        in_child(make_mixed, mixed, size)
        in_child(make_changed, mixed, changed)
    key, pw = w / "bench.key", w / "bench.pass"
    pw.write_text("bench passphrase\n")
    if not key.exists():
        subprocess.run(
            [*TAPEARC, "key", "create", str(key), "--passphrase-file", str(pw)], check=True, capture_output=True
        )
    out: dict[str, list[int]] = {}

    def add(name: str, m: dict) -> None:
        mbps = size / m["wall"] / 1e6
        out.setdefault(name, []).append(round(mbps))
        log(f"{name:30s} {m['wall']:7.2f} s {mbps:7.0f} MB/s  cpu {m['cpu']:6.2f} s")

    for _ in range(a.runs):
        for v in a.variants.split(","):
            med, cat, target = w / f"m-{v}.sim", w / f"c-{v}.sqlite", w / "restored.img"
            for p in (med, cat, target):
                clean(p)
            env = dict(os.environ, TAPEARC_CATALOG=str(cat))
            keyopts = ["--passphrase-file", str(pw)]
            enc = ["--encrypt", str(key), *keyopts] if v.startswith("enc") else []
            comp = "zstd" if v.endswith("zstd") else "none"
            base = [*TAPEARC, "backup", "--media", f"sim:{med}", "--compress", comp, "--volume", "mixed", *enc]
            evict([mixed])
            add(f"{v}: full backup", run_timed([*base, str(mixed)], env))
            if not a.no_incremental:
                evict([changed])
                add(f"{v}: incremental 1%", run_timed([*base, str(changed)], env))
            if not a.no_restore:
                evict([med])
                kk = ["--key", str(key), *keyopts] if v.startswith("enc") else []
                cmd = [*TAPEARC, "restore", "--media", f"sim:{med}", "--to", str(target), "--generation", "1", *kk]
                add(f"{v}: restore", run_timed(cmd, env))
                if subprocess.run(["cmp", "-s", str(target), str(mixed)]).returncode != 0:
                    raise SystemExit(f"{v}: the restored image differs from the volume")
            for p in (med, cat, target):
                clean(p)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
