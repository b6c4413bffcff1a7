"""Measuring functions shared by the benchmark's sections (bench/run.py, bench/issue14.py): sizes,
child processes timed with os.wait4 (wall, CPU, peak RSS), page-cache settling, cleaning up."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PY = sys.executable
TAPEARC = [PY, "-m", "tapearc"]


def parse_size(s: str) -> int:
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": MiB, "G": GiB, "T": TiB}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def human(n: float) -> str:
    """Bytes as KiB/MiB/GiB/TiB (binary units, as the sizes are given)."""
    for unit, div in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.4g} {unit}"
    return f"{n:.0f} B"


def in_child(fn, *args):
    """Run fn(*args) in a forked process, so the big buffers of volume making never inflate this
    process: a child's ru_maxrss starts from its parent's RSS at fork (Linux keeps it across exec)."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(fn, args)


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


DROP = "/proc/sys/vm/drop_caches"


def drop_caches_possible() -> bool:
    try:
        with open(DROP, "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def settle(drop: bool) -> None:
    os.sync()
    if drop:
        try:
            with open(DROP, "w") as f:
                f.write("3\n")
        except OSError:
            pass


def evict(paths) -> int:
    """Write back and drop from the page cache these files only (posix_fadvise DONTNEED), so a
    step reads them from disk while the programs themselves (the interpreter, tapearc's modules)
    stay cached, and the other users of a shared machine keep their cache. Returns how many
    files it could evict."""
    os.sync()
    n = 0
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            n += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return n


def run_timed(argv: list[str], env: dict | None = None, stdout=subprocess.DEVNULL, capture: bool = False) -> dict:
    """Run argv, return wall seconds, child CPU seconds (user+sys) and peak RSS (MB) of the child
    (os.wait4's rusage: that child alone). capture=True: its standard output (through an unnamed
    temporary file, so a long output never blocks it) is returned as "stdout"."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile()) if capture else None
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, env=env, stdout=out if out is not None else stdout, stderr=subprocess.PIPE)
        err = p.stderr.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        text = ""
        if out is not None:
            out.seek(0)
            text = out.read().decode(errors="replace")
    if p.returncode != 0:
        msg = (err.decode(errors="replace") + text)[-800:]
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {msg.strip()}")
    m = {
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "user": ru.ru_utime,
        "sys": ru.ru_stime,
        "rss_mb": ru.ru_maxrss / 1024,
    }
    if capture:
        m["stdout"] = text
    return m


def proc_io(pid: int) -> dict[str, int]:
    """The kernel's I/O counters of a process (/proc/PID/io: rchar = bytes it read through read
    system calls, threads included; read_bytes = what it made the block layer fetch)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = int(v)
    except OSError:
        pass
    return out


def clean(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()
    for extra in (Path(str(p) + ".tapesim"),):
        if extra.exists():
            extra.unlink()


def median(xs):
    xs = list(xs)
    return statistics.median(xs) if xs else None
