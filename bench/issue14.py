"""The benchmark's issue-14 section: reading only what exists and what changed.

Part A, sparse: a sparse file of --sparse-size (default 1 TiB) holding --sparse-data (default
64 MiB) of random data in 8 extents spread over it (the last one ends at the end of the volume),
against a dense file of those same 64 MiB. Timed, to sim: media: full backup of each, then an
incremental after the same 1 MiB (in the middle of one extent) is overwritten in both; then
plan, restore and verify of each. Targets: the sparse volume's full backup and incremental take
at most 1.5x the dense one's time; every command's peak RSS on the sparse volume (the child's
ru_maxrss from os.wait4) is under 256 MB; the restored file allocates about the data (st_blocks
* 512 <= 1.1x the data), not the volume.

Part B, NBD: a qcow2 disk of --nbd-size (default 2 GiB) filled with random data, with a
persistent dirty bitmap (qemu-img bitmap --add, granularity 64 KiB) added before the full
backup, served by qemu-nbd on a Unix socket (read-only, --cache=none, -B BITMAP). Timed: a full
backup over NBD (tapearc backup nbd+unix:///disk?socket=...) against qemu-img convert -O raw of
the same export to a raw file (target: tapearc's throughput >= 0.9x). Then 1% of the 64 KiB
blocks are overwritten with qemu-io (which dirties the bitmap) and, from the same base, an
incremental with --dirty-bitmap BITMAP is timed against a full-read incremental (target: <= 10%
of its time), and the bytes read from the source -- tapearc's own figure (source_bytes_read in
backup --json) and, independently, the growth of qemu-nbd's rchar in /proc/PID/io -- against the
bytes dirtied at the bitmap's granularity (target: <= 1.1x). Unless --issue14-no-server, both
incrementals are run a second time, from copies of the same bases, through a command server
(`tapearc server`, started for the part; docs/server.md): the same commands without the start-up
of a Python process, judged against the same 10%.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from measure import PY, TAPEARC, MiB, clean, evict, human, in_child, log, median, proc_io, run_timed

BLOCK = 64 * 1024
EXTENTS = 8
CHANGE = 1 * MiB
PIECE = 8 * MiB
BITMAP = "tapearc-bench"
SERVED = " (command server)"  # an operation run through `tapearc server` (docs/server.md)
GRANULARITY = 64 * 1024
RSS_LIMIT_MB = 256


def fmt(key: str, v) -> str:
    """A figure for the log: bytes in binary units when the key names bytes or a size."""
    if isinstance(v, int) and key.endswith(("_size", "_bytes", "bytes", "granularity", "allocated", "rchar", "read")):
        return human(v)
    return str(v)


def first_error(text: str) -> str:
    """tapearc's one-line error out of a failed command's output (else the output's end)."""
    for line in text.splitlines():
        if "tapearc: error:" in line:
            return line[line.index("tapearc: error:") :].strip()
    return text.strip()[-300:]


# ---------------------------------------------------------------- part A: sparse volume


def sparse_layout(size: int, data: int) -> list[tuple[int, int]]:
    """(offset, length) of the data extents: EXTENTS of them (fewer for a small data size),
    1 MiB-aligned, spread evenly, the last one ending at the end of the volume."""
    n = max(1, min(EXTENTS, data // MiB))
    each = data // n // BLOCK * BLOCK
    out = []
    for i in range(n):
        length = each if i < n - 1 else data - each * (n - 1)
        off = (i * (size // n)) // MiB * MiB + (MiB if i else 0)
        if i == n - 1:
            off = size - length
        out.append((off, length))
    for (a, la), (b, _) in itertools.pairwise(out):
        if a + la > b:
            raise ValueError(f"--sparse-data {data} does not fit in --sparse-size {size} as {n} extents")
    return out


def make_sparse_pair(sparse: Path, dense: Path, size: int, extents: list[tuple[int, int]], seed: int) -> None:
    """The sparse volume (holes everywhere but the extents) and the dense one (the extents'
    bytes, back to back), the same random bytes in both."""
    rng = random.Random(seed)
    for p in (sparse, dense):
        p.unlink(missing_ok=True)
    with open(sparse, "wb") as fs, open(dense, "wb") as fd:
        fs.truncate(size)
        for off, length in extents:
            done = 0
            while done < length:
                buf = rng.randbytes(min(PIECE, length - done))
                os.pwrite(fs.fileno(), buf, off + done)
                fd.write(buf)
                done += len(buf)
        os.fsync(fs.fileno())
        os.fsync(fd.fileno())


def change_point(extents: list[tuple[int, int]]) -> tuple[int, int]:
    """Where the 1 MiB change goes: the middle of the middle extent, as (sparse offset, dense
    offset), 64 KiB-aligned."""
    k = len(extents) // 2
    off, length = extents[k]
    inner = max(0, (length - CHANGE) // 2) // BLOCK * BLOCK
    dense_off = sum(e[1] for e in extents[:k]) + inner
    return off + inner, dense_off


def change_pair(sparse: Path, dense: Path, at: tuple[int, int], seed: int) -> int:
    buf = random.Random(seed).randbytes(CHANGE)
    for path, off in ((sparse, at[0]), (dense, at[1])):
        with open(path, "r+b") as f:
            os.pwrite(f.fileno(), buf, off)
            os.fsync(f.fileno())
    return len(buf)


def data_ranges(path: Path) -> list[tuple[int, int]]:
    """The file's data ranges by SEEK_DATA/SEEK_HOLE (the whole file where they are unsupported)."""
    out = []
    with open(path, "rb") as f:
        fd, end, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data past pos
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, stop))
            pos = stop
    return out


def sparse_equal(a: Path, b: Path) -> str | None:
    """Compare two (sparse) files where either holds data; elsewhere both read as zeros.
    None when equal, else where they differ."""
    sa, sb = a.stat().st_size, b.stat().st_size
    if sa != sb:
        return f"sizes differ: {sa} vs {sb}"
    ranges = sorted(data_ranges(a) + data_ranges(b))
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for start, stop in ranges:
            pos = start
            while pos < stop:
                n = min(PIECE, stop - pos)
                if os.pread(fa.fileno(), n, pos) != os.pread(fb.fileno(), n, pos):
                    return f"differ in [{pos}, {pos + n})"
                pos += n
    return None


# ---------------------------------------------------------------- part B: NBD


def nbd_missing() -> str | None:
    """Why the NBD part cannot run here, or None."""
    for tool, pkg in (("qemu-nbd", "qemu-utils"), ("qemu-img", "qemu-utils"), ("qemu-io", "qemu-utils")):
        if not shutil.which(tool):
            return f"{tool} not found (apt-get install {pkg}, or make tools): NBD part skipped"
    r = subprocess.run([PY, "-c", "import nbd"], capture_output=True)
    if r.returncode:
        return "libnbd's Python module is not importable by tapearc's Python (make tools): NBD part skipped"
    return None


def qemu_img(*args: str) -> None:
    r = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"qemu-img {' '.join(args)}: {r.stderr.strip()}")


def make_random_raw(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as f:
        done = 0
        while done < size:
            n = min(PIECE, size - done)
            f.write(rng.randbytes(n))
            done += n


@contextlib.contextmanager
def qemu_nbd(image: Path, bitmap: str | None) -> Iterator[tuple[str, int]]:
    """Serve the qcow2 image read-only on a Unix socket beside it; yields (URI, qemu-nbd's pid)."""
    sock = image.parent / f".{image.name}.sock"
    sock.unlink(missing_ok=True)
    cmd = ["qemu-nbd", "--persistent", "--shared=8", "-f", "qcow2", "-x", "disk", "-k", str(sock)]
    cmd += ["--cache=none", "--aio=threads", "--read-only"]
    if bitmap:
        cmd += ["-B", bitmap]
    proc = subprocess.Popen([*cmd, str(image)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not _accepts(sock):
            if proc.poll() is not None:
                raise RuntimeError(f"qemu-nbd exited {proc.returncode}: {proc.stderr.read().decode().strip()}")
            if time.monotonic() > deadline:
                raise RuntimeError("qemu-nbd did not start within 30 s")
            time.sleep(0.02)
        yield f"nbd+unix:///disk?socket={sock}", proc.pid
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sock.unlink(missing_ok=True)


def _accepts(sock: Path) -> bool:
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def dirty_picks(size: int, seed: int) -> list[int]:
    """1% of the 64 KiB blocks (at least one), at random places, sorted."""
    nblocks = size // BLOCK
    rng = random.Random(seed)
    return sorted(rng.sample(range(nblocks), max(1, nblocks // 100)))


def dirty_with_qemu_io(image: Path, picks: list[int]) -> int:
    """Overwrite the picked blocks through qemu-io (so the qcow2 bitmap records them); returns
    the bytes dirtied at the bitmap's granularity."""
    per_call = 512
    for i in range(0, len(picks), per_call):
        cmd = ["qemu-io", "-f", "qcow2"]
        for j, b in enumerate(picks[i : i + per_call]):
            cmd += ["-c", f"write -P {1 + (i + j) % 255} {b * BLOCK} {BLOCK}"]
        r = subprocess.run([*cmd, str(image)], capture_output=True, text=True)
        if r.returncode or "error" in r.stdout.lower() or "failed" in r.stdout.lower():
            raise RuntimeError(f"qemu-io: {(r.stdout + r.stderr).strip()[-400:]}")
    granules = {b * BLOCK // GRANULARITY for b in picks} | {((b + 1) * BLOCK - 1) // GRANULARITY for b in picks}
    return len(granules) * GRANULARITY


def bitmap_dirty_bytes(uri: str) -> int | None:
    """The dirty bytes the export's bitmap reports (nbdinfo --map), or None without nbdinfo."""
    if not shutil.which("nbdinfo"):
        return None
    r = subprocess.run(["nbdinfo", "--json", f"--map=qemu:dirty-bitmap:{BITMAP}", uri], capture_output=True, text=True)
    if r.returncode:
        return None
    try:
        return sum(e["length"] for e in json.loads(r.stdout) if e.get("type", 0) & 1)
    except (ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------- the section

ORDER = [
    "full backup",
    "incremental 1 MiB",
    "plan",
    "restore",
    "verify",
    "qemu-img convert -O raw",
    "full backup over NBD",
    "incremental full read",
    "incremental --dirty-bitmap",
]


def order_key(op: str) -> tuple[int, int, str]:
    """Table order: the sparse and dense figures of a command side by side, then the NBD ones."""
    prefix, _, rest = op.rpartition(": ")
    if op.startswith("ref "):
        prefix, rest = "nbd", op[4:]
    part = 0 if prefix in ("sparse", "dense") else 1
    return (part, ORDER.index(rest) if rest in ORDER else len(ORDER), prefix)


class Section14:
    """Runs both parts, keeps every sample, prints its table and targets."""

    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.samples: dict[str, list[dict]] = {}
        self.notes: list[str] = []
        self.errors: dict[str, str] = {}
        self.info: dict = {}
        self.server: Path | None = None  # the command server of the NBD part (command_server)

    def add(self, op: str, m: dict, mb_of: int | None = None, **extra) -> dict:
        m = {k: v for k, v in m.items() if k != "stdout"} | extra
        if mb_of:
            m["mbps"] = mb_of / m["wall"] / 1e6
        self.samples.setdefault(op, []).append(m)
        tail = f" {m['mbps']:8.0f} MB/s" if mb_of else " " * 14
        more = "".join(f"  {k} {fmt(k, v)}" for k, v in extra.items())
        log(f"  {op:36s} {m['wall']:7.2f} s{tail}  cpu {m['cpu']:6.2f} s  rss {m['rss_mb']:6.0f} MB{more}")
        return m

    def env(self, catalog: Path, server: Path | None = None) -> dict:
        """The commands' environment: their catalog; a command server only when asked (a server
        the user left running must not change what is measured)."""
        return dict(os.environ, TAPEARC_CATALOG=str(catalog), TAPEARC_SERVER=str(server) if server else "off")

    def settle(self) -> None:
        """Before each timed step: the section's files (volumes, images, media, catalogs) leave
        the page cache, the programs stay (see measure.evict)."""
        evict(p for p in self.work.iterdir() if p.is_file())

    def warm_up(self) -> None:
        """One untimed backup of a small file, so the first timed command does not pay for
        loading the interpreter and tapearc's modules from disk."""
        vol, media, cat = self.work / "i14-warmup.img", self.work / "i14-warmup.sim", self.work / "i14-warmup.sqlite"
        vol.write_bytes(os.urandom(MiB))
        try:
            run_timed([*TAPEARC, "backup", str(vol), "--media", f"sim:{media}"], self.env(cat))
        finally:
            for p in (vol, media, cat):
                clean(p)

    def tapearc(self, op: str, argv: list[str], catalog: Path, server: Path | None = None, **kw) -> dict:
        self.settle()
        try:
            m = run_timed([*TAPEARC, *argv], self.env(catalog, server), capture=True)
        except RuntimeError as e:
            raise RuntimeError(f"{op}: tapearc {' '.join(argv)}: {first_error(str(e))}") from None
        result = {}
        if "--json" in argv:
            try:
                result = json.loads(m["stdout"])
            except ValueError:
                result = {}
        stored = self.add(op, m, **kw)
        stored["result"] = result
        return stored

    # part A -------------------------------------------------------------------
    def sparse(self, size: int, data: int, runs: int) -> None:
        extents = sparse_layout(size, data)
        at = change_point(extents)
        self.info["sparse"] = {"volume_size": size, "data_bytes": data, "extents": extents, "changed_bytes": CHANGE}
        sp, de = self.work / "i14-sparse.img", self.work / "i14-dense.img"
        log(
            f"issue 14, sparse: {human(size)} volume holding {human(data)} in {len(extents)} extents vs {human(data)} dense"
        )
        try:
            for r in range(runs):
                t = time.time()
                in_child(make_sparse_pair, sp, de, size, extents, 14 + r)
                log(f" run {r + 1}/{runs}: made the volumes in {time.time() - t:.1f} s")
                order = [("sparse", sp), ("dense", de)]
                if r % 2:
                    order.reverse()
                for name, vol in order:
                    self._sparse_full(name, vol)
                in_child(change_pair, sp, de, at, 1400 + r)
                for name, vol in order:
                    self._sparse_rest(name, vol)
        finally:
            for p in (sp, de):
                p.unlink(missing_ok=True)

    def _media(self, name: str) -> tuple[str, Path, Path]:
        mpath, cat = self.work / f"i14-{name}.sim", self.work / f"i14-catalog-{name}.sqlite"
        return f"sim:{mpath}", mpath, cat

    def _sparse_full(self, name: str, vol: Path) -> None:
        media, mpath, cat = self._media(name)
        clean(mpath)
        clean(cat)
        self.tapearc(
            f"{name}: full backup",
            ["backup", str(vol), "--media", media, "--compress", "none", "--volume", name, "--json"],
            cat,
        )

    def _sparse_rest(self, name: str, vol: Path) -> None:
        media, mpath, cat = self._media(name)
        self.tapearc(
            f"{name}: incremental 1 MiB",
            ["backup", str(vol), "--media", media, "--compress", "none", "--volume", name, "--json"],
            cat,
        )
        self.tapearc(f"{name}: plan", ["plan", "--media", media, "--volume", name], cat)
        target = self.work / f"i14-restored-{name}.img"
        clean(target)
        m = self.tapearc(f"{name}: restore", ["restore", "--media", media, "--volume", name, "--to", str(target)], cat)
        st = target.stat()
        m["allocated"] = st.st_blocks * 512
        m["restored_size"] = st.st_size
        log(f"    restored {name}: size {human(st.st_size)}, allocated {human(m['allocated'])}")
        if self.args.check_restore:
            why = in_child(sparse_equal, vol, target)
            if why:
                raise RuntimeError(f"restored {name} volume differs from the source: {why}")
            log(f"    restored {name} is identical to the source (compared where either holds data)")
        clean(target)
        self.tapearc(f"{name}: verify", ["verify", "--media", media], cat)
        clean(mpath)
        clean(cat)

    # part B -------------------------------------------------------------------
    def nbd(self, size: int, runs: int) -> None:
        why = nbd_missing()
        if why:
            self.notes.append(why)
            self.errors["nbd"] = why
            log(why)
            return
        size = size // BLOCK * BLOCK
        orig, disk = self.work / "i14-nbd-orig.qcow2", self.work / "i14-nbd-disk.qcow2"
        raw = self.work / "i14-nbd-orig.raw"
        t = time.time()
        in_child(make_random_raw, raw, size, 41)
        qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=64k", str(raw), str(orig))
        raw.unlink()
        picks = dirty_picks(size, 42)
        self.info["nbd"] = {"disk_size": size, "dirtied_blocks": len(picks), "granularity": GRANULARITY}
        log(f"issue 14, NBD: made a {human(size)} qcow2 of random data in {time.time() - t:.1f} s")
        try:
            with self.command_server() as self.server:
                for r in range(runs):
                    log(f" run {r + 1}/{runs} ({'tapearc first' if r % 2 == 0 else 'qemu-img first'})")
                    shutil.copyfile(orig, disk)
                    qemu_img("bitmap", "--add", "--granularity", str(GRANULARITY), str(disk), BITMAP)
                    self._nbd_run(disk, size, picks, r)
        finally:
            for p in (orig, disk, raw):
                p.unlink(missing_ok=True)

    @contextlib.contextmanager
    def command_server(self) -> Iterator[Path | None]:
        """A tapearc command server (docs/server.md) for the incrementals run through one, or
        None with --issue14-no-server."""
        if self.args.issue14_no_server:
            yield None
            return
        folder = self.work / "i14-server"
        folder.mkdir(mode=0o700, exist_ok=True)
        sock = folder / "s.sock"
        run_timed([*TAPEARC, "server", "start", "--socket", str(sock), "--idle-timeout", "0"], dict(os.environ))
        try:
            yield sock
        finally:
            run_timed([*TAPEARC, "server", "stop", "--socket", str(sock)], dict(os.environ))

    def _nbd_run(self, disk: Path, size: int, picks: list[int], r: int) -> None:
        media_a, path_a, cat_a = self._media("nbd-bitmap")
        media_b, path_b, cat_b = self._media("nbd-fullread")
        for p in (path_a, path_b, cat_a, cat_b):
            clean(p)
        with qemu_nbd(disk, BITMAP) as (uri, pid):
            steps = [lambda: self._nbd_full(uri, pid, media_a, cat_a, size), lambda: self._nbd_ref(uri, size)]
            for s in steps if r % 2 == 0 else reversed(steps):
                s()
            log("  (untimed) full backup of the same disk to a second medium, for the full-read incremental")
            argv = ["backup", uri, "--media", media_b, "--compress", "none", "--volume", "disk"]
            run_timed([*TAPEARC, *argv], self.env(cat_b))
            served = [self._media("nbd-bitmap-s"), self._media("nbd-fullread-s")]
            if self.server is not None:  # the two bases again, for the incrementals through the server
                log("  (untimed) the same two full backups to two more media, for the incrementals through the server")
                for (media, path, cat), bitmap in zip(served, (True, False), strict=True):
                    clean(path)
                    clean(cat)
                    argv = ["backup", uri, "--media", media, "--compress", "none", "--volume", "disk"]
                    run_timed([*TAPEARC, *argv, *(["--dirty-bitmap", BITMAP] if bitmap else [])], self.env(cat))
        dirtied = dirty_with_qemu_io(disk, picks)
        with qemu_nbd(disk, BITMAP) as (uri, pid):
            reported = bitmap_dirty_bytes(uri)
            self.info["nbd"]["dirtied_bytes"] = dirtied
            self.info["nbd"]["bitmap_reports_dirty_bytes"] = reported
            log(
                f"  dirtied {len(picks)} blocks with qemu-io: {human(dirtied)}; the bitmap reports {fmt('bytes', reported)}"
            )
            steps = [
                lambda: self._nbd_incr("incremental --dirty-bitmap", uri, pid, media_a, cat_a, dirtied, True),
                lambda: self._nbd_incr("incremental full read", uri, pid, media_b, cat_b, dirtied, False),
            ]
            if self.server is not None:
                (ma, _, ca), (mb, _, cb) = served
                steps += [
                    lambda: self._nbd_incr(f"incremental --dirty-bitmap{SERVED}", uri, pid, ma, ca, dirtied, True),
                    lambda: self._nbd_incr(f"incremental full read{SERVED}", uri, pid, mb, cb, dirtied, False),
                ]
            for s in steps if r % 2 == 0 else reversed(steps):
                s()
        if self.args.check_restore:
            self._nbd_check(disk, media_a, cat_a, media_b, cat_b)
        for p in (path_a, path_b, cat_a, cat_b, *(x for _, path, cat in served for x in (path, cat))):
            clean(p)

    def _nbd_full(self, uri: str, pid: int, media: str, cat: Path, size: int) -> None:
        before = proc_io(pid).get("rchar", 0)
        argv = ["backup", uri, "--media", media, "--compress", "none", "--volume", "disk"]
        m = self.tapearc("nbd: full backup over NBD", [*argv, "--dirty-bitmap", BITMAP, "--json"], cat, mb_of=size)
        m["server_rchar"] = proc_io(pid).get("rchar", 0) - before
        m["source_bytes_read"] = m["result"].get("source_bytes_read")

    def _nbd_ref(self, uri: str, size: int) -> None:
        out = self.work / "i14-qemu-img.raw"
        clean(out)
        self.settle()
        # -t writeback: the output is flushed (fdatasync) before qemu-img exits, as tapearc's medium is
        m = run_timed(["qemu-img", "convert", "-f", "raw", "-t", "writeback", "-O", "raw", uri, str(out)])
        self.add("ref qemu-img convert -O raw", m, mb_of=size)
        clean(out)

    def _nbd_incr(self, op: str, uri: str, pid: int, media: str, cat: Path, dirtied: int, bitmap: bool) -> None:
        before = proc_io(pid).get("rchar", 0)
        argv = ["backup", uri, "--media", media, "--compress", "none", "--volume", "disk", "--json"]
        if bitmap:
            argv += ["--dirty-bitmap", BITMAP]
        m = self.tapearc(f"nbd: {op}", argv, cat, server=self.server if op.endswith(SERVED) else None)
        m["server_rchar"] = proc_io(pid).get("rchar", 0) - before
        m["source_bytes_read"] = m["result"].get("source_bytes_read")
        m["kind"] = m["result"].get("kind")
        m["warnings"] = m["result"].get("warnings")
        m["backup_seconds"] = m["result"].get("seconds")  # the backup's own time, start-up excluded
        m["dirtied_bytes"] = dirtied
        log(
            f"    {op}: source_bytes_read {m['source_bytes_read']}, qemu-nbd read {m['server_rchar']}, "
            f"kind {m['kind']}, warnings {m['warnings']}"
        )

    def _nbd_check(self, disk: Path, media_a: str, cat_a: Path, media_b: str, cat_b: Path) -> None:
        want = self.work / "i14-expected.raw"
        got = self.work / "i14-restored.raw"
        qemu_img("convert", "-f", "qcow2", "-O", "raw", str(disk), str(want))
        try:
            for media, cat in ((media_a, cat_a), (media_b, cat_b)):
                clean(got)
                run_timed([*TAPEARC, "restore", "--media", media, "--volume", "disk", "--to", str(got)], self.env(cat))
                if subprocess.run(["cmp", "-s", str(want), str(got)]).returncode:
                    raise RuntimeError(f"restore of {media} differs from qemu-img convert -O raw of the disk")
            log("    both incrementals restore identical to qemu-img convert -O raw of the disk")
        finally:
            clean(want)
            clean(got)

    # report -------------------------------------------------------------------
    def med(self, op: str, key: str = "wall"):
        xs = [m[key] for m in self.samples.get(op, []) if m.get(key) is not None]
        return median(xs)

    def table(self) -> str:
        w = max([36, *(len(op) for op in self.samples)])
        hdr = f"{'operation':{w}s} {'runs':>4s} {'med s':>7s} {'best s':>7s} {'med MB/s':>9s} {'CPU s':>6s} {'RSS MB':>7s}"
        lines = [hdr, "-" * len(hdr)]
        for op in sorted(self.samples, key=order_key):
            ms = self.samples[op]
            mbps = self.med(op, "mbps")
            lines.append(
                f"{op:{w}s} {len(ms):4d} {self.med(op):7.3f} {min(m['wall'] for m in ms):7.3f} "
                f"{'' if mbps is None else f'{mbps:.0f}':>9s} {self.med(op, 'cpu'):6.2f} "
                f"{max(m['rss_mb'] for m in ms):7.0f}"
            )
        if any(op.endswith(SERVED) for op in self.samples):
            lines.append(
                f"{SERVED.strip()}: run by `tapearc server`; CPU s and RSS MB are the handing-over process's only"
            )
        return "\n".join(lines)

    def why(self, part: str) -> str | None:
        """A target's detail when its part did not run to the end (the message is in the notes)."""
        e = self.errors.get(part)
        if e is None:
            return None
        head, sep, _ = e.partition(": tapearc ")
        if sep:
            return f"not measured: {head} (see the note)"
        return "not measured: " + (e if len(e) < 120 else e[:117] + "...")

    def targets(self) -> list[dict]:
        res: list[dict] = []

        def put(name, ok, detail):
            res.append(
                {
                    "section": "issue14",
                    "target": name,
                    "result": "SKIP" if ok is None else ("PASS" if ok else "FAIL"),
                    "detail": detail,
                }
            )

        self._sparse_targets(put)
        self._nbd_targets(put)
        return res

    def _sparse_targets(self, put) -> None:
        why = self.why("sparse")
        for op in ("full backup", "incremental 1 MiB"):
            a, b = self.med(f"sparse: {op}"), self.med(f"dense: {op}")
            name = f"sparse {op} <= 1.5x dense time"
            if a is None or b is None:
                put(name, None, why or "not measured")
            else:
                put(name, a / b <= 1.5, f"{a:.2f} s vs {b:.2f} s: {a / b:.2f}x (need <= 1.5x)")
        for op in ("full backup", "incremental 1 MiB", "plan", "restore", "verify"):
            ms = self.samples.get(f"sparse: {op}")
            name = f"sparse {op} peak RSS < {RSS_LIMIT_MB} MB"
            if not ms:
                put(name, None, why or "not measured")
            else:
                rss = max(m["rss_mb"] for m in ms)
                put(name, rss < RSS_LIMIT_MB, f"{rss:.0f} MB")
        ms = self.samples.get("sparse: restore")
        name = "sparse restore allocates ~ the data"
        if not ms:
            put(name, None, why or "not measured")
        else:
            data = self.info["sparse"]["data_bytes"]
            alloc = max(m["allocated"] for m in ms)
            put(
                name,
                alloc <= data * 1.1,
                f"{human(alloc)} allocated of a {human(ms[0]['restored_size'])} file, data {human(data)} "
                f"(need <= {human(data * 1.1)})",
            )

    def _nbd_targets(self, put) -> None:
        why = self.why("nbd")
        a, b = self.med("nbd: full backup over NBD", "mbps"), self.med("ref qemu-img convert -O raw", "mbps")
        name = "NBD full backup >= 0.9x qemu-img convert"
        if a is None or b is None:
            put(name, None, why or "not measured")
        else:
            put(name, a / b >= 0.9, f"{a:.0f} vs {b:.0f} MB/s: {a / b:.2f}x (need >= 0.9x)")
        for how in ("", SERVED):
            a, b = self.med(f"nbd: incremental --dirty-bitmap{how}"), self.med(f"nbd: incremental full read{how}")
            name = f"dirty-bitmap incremental <= 10% of full-read time{how}"
            if a is None or b is None:
                put(name, None, why or ("not measured" if not how or self.server else "--issue14-no-server"))
            else:
                put(name, a / b <= 0.10, f"{a:.3f} s vs {b:.3f} s: {100 * a / b:.1f}% (need <= 10%)")
        own = [
            self.med(f"nbd: {op}", "backup_seconds") for op in ("incremental --dirty-bitmap", "incremental full read")
        ]
        if own[0] is not None and own[1]:
            self.info.setdefault("nbd", {})["own_time_ratio"] = own[0] / own[1]
            log(
                f"  (not a target) the backups' own time, process start-up and command set-up excluded: "
                f"{own[0]:.3f} s vs {own[1]:.3f} s, {100 * own[0] / own[1]:.1f}%"
            )
        for op in ("full backup over NBD", "incremental --dirty-bitmap", "incremental full read"):
            rs = self.samples.get(f"nbd: {op}")
            name = f"NBD {op} peak RSS < {RSS_LIMIT_MB} MB"
            if not rs:
                put(name, None, why or "not measured")
            else:
                rss = max(m["rss_mb"] for m in rs)
                put(name, rss < RSS_LIMIT_MB, f"{rss:.0f} MB")
        ms = self.samples.get("nbd: incremental --dirty-bitmap", [])
        for key, label in (("source_bytes_read", "tapearc's source_bytes_read"), ("server_rchar", "qemu-nbd's rchar")):
            name = f"bitmap incremental bytes read <= 1.1x dirtied ({label})"
            vals = [m[key] / m["dirtied_bytes"] for m in ms if m.get(key) is not None]
            if not vals:
                put(name, None, why or ("not in tapearc's --json result" if ms else "not measured"))
            else:
                worst = max(vals)
                got = max(m[key] for m in ms if m.get(key) is not None)
                put(
                    name,
                    worst <= 1.1,
                    f"{human(got)} read for {human(ms[0]['dirtied_bytes'])} dirtied: {worst:.3f}x (need <= 1.1x)",
                )

    def report(self) -> dict:
        return {
            "info": self.info,
            "summary": {
                op: {
                    "runs": len(ms),
                    "wall_median": self.med(op),
                    "wall_best": min(m["wall"] for m in ms),
                    "mbps_median": self.med(op, "mbps"),
                    "cpu_median": self.med(op, "cpu"),
                    "rss_mb_max": max(m["rss_mb"] for m in ms),
                    "samples": [{k: v for k, v in m.items() if k != "result"} for m in ms],
                }
                for op, ms in self.samples.items()
            },
            "errors": self.errors,
            "notes": self.notes,
        }


def run_section(args, work: Path, sparse_size: int, sparse_data: int, nbd_size: int) -> Section14:
    """Both parts; a part that fails (e.g. a feature missing from this tapearc) is recorded as an
    error with tapearc's message, its targets reported as SKIP with it, and the other part runs."""
    s = Section14(args, work)
    s.warm_up()
    for part, fn in (
        ("sparse", lambda: s.sparse(sparse_size, sparse_data, args.runs)),
        ("nbd", lambda: s.nbd(nbd_size, args.runs)),
    ):
        if part not in args.issue14_parts.split(","):
            s.errors[part] = f"{part} part not selected (--issue14-parts)"
            continue
        try:
            fn()
        except (RuntimeError, ValueError) as e:
            msg = f"{part} part stopped: {e}"
            s.errors[part] = msg
            s.notes.append(msg)
            log(msg)
    return s
