"""The kill campaign: a backup SIGKILLed at many points of its run, on ``sim:`` and ``dir:``.

A medium holds generations 1 (full) and 2 (incremental) of a small volume; generation 3 (an
incremental of 10 chunks, 4 records each) is then written by ``tapearc backup`` in a subprocess
that is SIGKILLed at one chosen low-level operation (tests/cli/killpoint.py numbers them: record
writes, whole, torn in half or still empty; dir: tape file folders; filemarks; catalog commits),
so none of tapearc's cleanup code runs. Each point is a distinct state of the medium and the
catalog, spread over the whole backup: before the first write, the tape file's folder alone,
the generation header (empty, cut short, whole), every record of the first chunk, every third
record after it, the chunks' catalog commits, the trailer, the end record, the filemark, the last
commit. A few more points kill generation 1 around the label.

After each kill, in fresh processes:

1. generations 1 and 2 restore byte-identical with the catalog as the kill left it, and again
   with the catalog lost (a new one rebuilt by ``tapearc scan``);
2. ``tapearc list``, ``verify`` and ``scan`` exit without crashing (0; verify may say 20 for the
   interrupted tape file) and agree on which tape files the medium holds;
3. a later ``tapearc backup`` appends, and its generation restores byte-identical (an
   incremental: blocks come from generation 1's and 2's tape files too).

The kill points are named (``rec7-torn``: the 8th record of the chunks, cut in half) and
resolved against a trace of the same backup run without a kill, so a failure names the state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# ~85 kill points, about ten commands each (1-3 minutes): all run in the setup of the first
# selected case, a few at a time, hence the long timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

KILLPOINT = Path(__file__).with_name("killpoint.py")
BS = 4096
SIZES = ("--block-size", "4K", "--record-size", "4K", "--chunk-size", "16K")
NBLOCKS = 64
CHUNKS3 = 10  # generation 3: 30 changed blocks, 3 blocks (4 records) per chunk
RECS_PER_CHUNK = 4


def _volumes() -> list[bytes]:
    """Generation 1's volume, then 2 (a few blocks changed), 3 (30 blocks), 4 (the append)."""
    rng = random.Random(12)
    v1 = bytearray(rng.randbytes((NBLOCKS - 16) * BS) + bytes(16 * BS))
    v2 = bytearray(v1)
    for b in (1, 5, 50):
        v2[b * BS : b * BS + 64] = rng.randbytes(64)
    v3 = bytearray(v2)
    for b in range(0, 60, 2):
        v3[b * BS + 100 : b * BS + 200] = rng.randbytes(100)
    v4 = bytearray(v3)
    for b in (3, 7, 40, 63):
        v4[b * BS : b * BS + 10] = rng.randbytes(10)
    return [bytes(v) for v in (v1, v2, v3, v4)]


VOLS = _volumes()


def run(
    *args: str, catalog: Path, killpoint: str | None = None, trace: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAPEARC_CATALOG": str(catalog)}
    env.pop("KILLPOINT_AT", None)
    env.pop("KILLPOINT_TRACE", None)
    if killpoint is not None or trace is not None:
        cmd = [sys.executable, str(KILLPOINT), *args]
        if killpoint is not None:
            env["KILLPOINT_AT"] = killpoint
        if trace is not None:
            env["KILLPOINT_TRACE"] = str(trace)
    else:
        cmd = [sys.executable, "-m", "tapearc", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)


def shown(p: subprocess.CompletedProcess[str]) -> str:
    err = p.stderr.strip().splitlines()
    return f"exit {p.returncode}: {err[-1] if err else p.stdout.strip()[:200]!r}"


def no_crash(p: subprocess.CompletedProcess[str], what: str, report: int | None = None) -> None:
    """Exited by itself (no signal, no internal error, no traceback), with a one-line error if any
    (exit ``report`` is a report, not an error: verify's 20, damage found)."""
    assert p.returncode >= 0 and p.returncode != 1 and "Traceback" not in p.stderr, (
        f"{what} crashed: {shown(p)}\n{p.stderr}"
    )
    if p.returncode and p.returncode != report:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert lines and lines[0].startswith("tapearc: error: "), f"{what}: {p.stderr}"


@dataclass
class Medium:
    kind: str  # sim or dir
    folder: Path  # holds the medium and the catalog
    src: Path  # the volume: one path (and file) for every backup of a kind, so one chain

    @property
    def path(self) -> Path:
        return self.folder / ("t.tap" if self.kind == "sim" else "m")

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.path}"

    @property
    def catalog(self) -> Path:
        return self.folder / "catalog.sqlite"

    def copy_to(self, folder: Path) -> Medium:
        folder.mkdir(parents=True, exist_ok=True)
        other = Medium(self.kind, folder, self.src)
        if self.kind == "sim":
            shutil.copyfile(self.path, other.path)
            shutil.copyfile(f"{self.path}.tapesim", f"{other.path}.tapesim")
        else:
            shutil.copytree(self.path, other.path)
        for f in self.folder.glob("catalog.sqlite*"):
            shutil.copyfile(f, folder / f.name)
        return other

    def backup(self, vol: bytes, **kw: Any) -> subprocess.CompletedProcess[str]:
        self.src.write_bytes(vol)  # the same file, rewritten in place
        return run("backup", str(self.src), "--media", self.spec, *SIZES, "--json", catalog=self.catalog, **kw)

    def restore(self, generation: int | None, catalog: Path) -> tuple[subprocess.CompletedProcess[str], bytes | None]:
        out = self.folder / f"restored-{generation}-{catalog.stem}.img"
        out.unlink(missing_ok=True)
        gen = ["--generation", str(generation)] if generation else []
        p = run("restore", "--media", self.spec, "--to", str(out), *gen, catalog=catalog)
        data = out.read_bytes() if out.exists() else None
        out.unlink(missing_ok=True)
        return p, data


# ------------------------------------------------------------------ the kill points


def _trace(path: Path) -> list[tuple[int, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        n, kind, detail = line.split(" ", 2)
        out.append((int(n), kind, detail))
    return out


def resolve(name: str, events: list[tuple[int, str, str]]) -> str:
    """A named kill point -> ``N:PHASE`` for killpoint.py, from the trace of the same backup."""
    point, phase = name.rsplit("-", 1)
    recs = [(n, d) for n, k, d in events if k == "rec"]
    first_hdr = next(i for i, (_, d) in enumerate(recs) if d.startswith("TAGENHD1"))
    hdr_n = recs[first_hdr][0]
    dbs = [n for n, k, _ in events if k == "db"]
    if point == "label":
        return f"{next(n for n, d in recs if d.startswith('TALABEL1'))}:{phase}"
    if point == "labelfm":
        return f"{next(n for n, k, _ in events if k == 'fm')}:{phase}"
    if point in ("db1", "dbpre"):  # the first commit of the run; the last one before the header
        before = [n for n in dbs if n < hdr_n]
        assert before, (name, events)
        return f"{before[0] if point == 'db1' else before[-1]}:{phase}"
    if point == "mkdir":  # the generation's tape file folder
        n = [n for n, k, _ in events if k == "mkdir" and n < hdr_n][-1]
        return f"{n}:{phase}"
    if point == "hdr":
        return f"{hdr_n}:{phase}"
    body = [n for n, d in recs[first_hdr + 1 :] if not d.startswith(("TATRAIL1", "TATREND1"))]
    if point.startswith("rec"):
        return f"{body[int(point[3:])]}:{phase}"
    if point.startswith("chunkdb"):  # the catalog commit after chunk k's records
        k = int(point[7:])
        after = body[(k + 1) * RECS_PER_CHUNK - 1]
        return f"{next(n for n in dbs if n > after)}:{phase}"
    if point == "trailer":
        return f"{next(n for n, d in recs if d.startswith('TATRAIL1'))}:{phase}"
    if point == "end":
        return f"{next(n for n, d in recs if d.startswith('TATREND1'))}:{phase}"
    if point == "fm":
        return f"{[n for n, k, _ in events if k == 'fm'][-1]}:{phase}"
    if point == "lastdb":
        return f"{dbs[-1]}:{phase}"
    raise ValueError(name)


def gen3_points(kind: str) -> list[str]:
    """Distinct states over generation 3's whole backup (a kill "before" an operation leaves the
    state "after" the one before it, so only states that differ are listed)."""
    cut = ["empty", "torn"] if kind == "dir" else ["torn"]  # dir: a record file created, no bytes yet
    pts = ["db1-after", "dbpre-after"]  # catalog commits before anything reaches the medium
    if kind == "dir":
        pts.append("mkdir-after")  # the tape file folder, no record in it
    pts += [f"hdr-{c}" for c in cut] + ["hdr-after"]
    pts += [f"rec0-{c}" for c in cut] + ["rec0-after"]
    for i in range(1, RECS_PER_CHUNK):  # the rest of the first chunk: cut (in turn) and whole
        pts += [f"rec{i}-{cut[i % len(cut)]}", f"rec{i}-after"]
    total = CHUNKS3 * RECS_PER_CHUNK
    for j, i in enumerate(range(RECS_PER_CHUNK + 1, total, 3)):  # every third record after it
        pts.append(f"rec{i}-{'after' if j % 2 else cut[j // 2 % len(cut)]}")
    pts += ["chunkdb0-after", f"chunkdb{CHUNKS3 // 2}-after", f"chunkdb{CHUNKS3 - 1}-after"]
    pts += [f"trailer-{c}" for c in cut] + ["trailer-after"]
    pts += [f"end-{c}" for c in cut] + ["end-after"]
    pts += ["fm-after", "lastdb-after"]  # (killed before the last commit = after the filemark)
    return pts


# generation 1's points around the label (the medium was blank: nothing earlier to keep)
LABEL_POINTS = {
    "sim": ["label-torn", "label-after", "labelfm-after", "hdr-torn", "rec0-after"],
    "dir": ["label-empty", "label-torn", "label-after", "labelfm-after", "mkdir-after", "hdr-empty", "rec0-after"],
}
BLANK_LABEL = {"label-empty", "label-torn"}  # no whole label on the medium after these


def test_campaign_has_enough_points() -> None:
    for kind in ("sim", "dir"):
        pts = gen3_points(kind)
        assert len(pts) == len(set(pts)) >= 30, (kind, len(pts))


@pytest.fixture(scope="module")
def base(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Medium, list[tuple[int, str, str]], list[tuple[int, str, str]]]]:
    """Per kind: the medium after generations 1 and 2, the trace of generation 3's backup and
    that of generation 1's."""
    out = {}
    for kind in ("sim", "dir"):
        root = tmp_path_factory.mktemp(f"base-{kind}")
        m = Medium(kind, root / "g12", root / "vol.img")
        m.folder.mkdir()
        trace1 = root / "trace1"
        p = m.backup(VOLS[0], trace=trace1)
        assert p.returncode == 0, p.stderr
        p = m.backup(VOLS[1])
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["kind"] == "incremental"
        t = m.copy_to(root / "traced")
        trace3 = root / "trace3"
        p = t.backup(VOLS[2], trace=trace3)
        assert p.returncode == 0, p.stderr
        res = json.loads(p.stdout)
        assert (res["generation"], res["chunks"], res["kind"]) == (3, CHUNKS3, "incremental"), res
        events = _trace(trace3)
        body = [d for _, k, d in events if k == "rec"][1:-2]
        assert len(body) == CHUNKS3 * RECS_PER_CHUNK, events  # the layout the point names assume
        assert t.restore(3, t.catalog)[1] == VOLS[2]
        out[kind] = (m, events, _trace(trace1))
    return out


def _tape_files(
    listing: dict[str, Any], verified: dict[str, Any], scanned: dict[str, Any]
) -> tuple[set[int], set[int], set[int]]:
    return (
        {f["tape_file"] for f in listing["tape_files"] if f["tape_file"] > 0},
        {f["tape_file"] for f in verified["media"][0]["tape_files"]},
        {f["tape_file"] for f in scanned["tape_files"]},
    )


class Case:
    """One kill point: runs the checks and collects every problem (not just the first), so a
    failure shows the whole state: which commands fail at that point, and how."""

    def __init__(self, m: Medium, where: str, source_lock: threading.Lock) -> None:
        self.m = m
        self.where = where
        self.lock = source_lock
        self.problems: list[str] = []

    def fail(self, what: str) -> None:
        self.problems.append(f"{self.where}: {what}")

    def backup(self, vol: bytes, **kw: Any) -> subprocess.CompletedProcess[str]:
        with self.lock:  # the source file is shared by the cases of a kind
            return self.m.backup(vol, **kw)

    def restores(self, generation: int | None, catalog: Path, how: str) -> bool:
        p, data = self.m.restore(generation, catalog)
        what = f"restore --generation {generation}" if generation else "restore of the latest generation"
        if p.returncode != 0:
            self.fail(f"{what} ({how}): {shown(p)}")
        elif data != VOLS[(generation or 4) - 1]:
            self.fail(f"{what} ({how}): exit 0 but the bytes differ")
        else:
            return True
        return False

    def crashed(self, p: subprocess.CompletedProcess[str], what: str, report: int | None = None) -> bool:
        try:
            no_crash(p, what)
        except AssertionError as e:
            if not (report is not None and p.returncode == report and not p.stderr.strip()):
                self.fail(str(e).splitlines()[0])
                return True
        return False

    def check_after_kill(self, lost: Path, earlier: int) -> None:
        """The checks 1-3 above (the catalog as the kill left it; ``lost``: the path of a new
        catalog, the old one lost; ``earlier``: generations written before the kill)."""
        m = self.m
        # 1. earlier generations restore with the catalog as left
        for g in range(1, earlier + 1):
            self.restores(g, m.catalog, "catalog as left")
        # 2. list, verify and scan (into a new catalog) agree on the tape files
        pl = run("list", "--media", m.spec, "--json", catalog=m.catalog)
        pv = run("verify", "--media", m.spec, "--json", catalog=m.catalog)
        ps = run("scan", "--media", m.spec, "--json", catalog=lost)
        ok = True
        for p, what, good in ((pl, "list", (0,)), (pv, "verify", (0, 20)), (ps, "scan", (0,))):
            if not self.crashed(p, what, report=20 if what == "verify" else None) and p.returncode not in good:
                self.fail(f"{what}: {shown(p)}")
            ok = ok and p.returncode in good
        if ok:
            verified_json = json.loads(pv.stdout)
            listed, verified, scanned = _tape_files(json.loads(pl.stdout), verified_json, json.loads(ps.stdout))
            if not set(range(1, earlier + 1)) <= listed:
                self.fail(f"list shows tape files {sorted(listed)}")
            if not listed == verified == scanned:
                self.fail(f"tape files: list {sorted(listed)}, verify {sorted(verified)}, scan {sorted(scanned)}")
            for f in verified_json["media"][0]["tape_files"]:
                if f["tape_file"] <= earlier and f["status"] != "ok":
                    self.fail(
                        f"verify: tape file {f['tape_file']} (written before the kill): {f['status']} {f['problems']}"
                    )
        # 1 again: with the catalog rebuilt by scan
        for g in range(1, earlier + 1):
            self.restores(g, lost, "catalog lost, rebuilt by scan")
        # 3. the next backup appends after what is there, and restores
        p = self.backup(VOLS[3])
        if p.returncode != 0:
            self.fail(f"the next backup: {shown(p)}")
            return
        res = json.loads(p.stdout)
        if not res["complete"] or res["tape_file"] <= earlier:
            self.fail(f"the next backup: complete {res['complete']}, tape file {res['tape_file']}")
        self.restores(None, m.catalog, "the next backup's")


def _snapshot(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() if f.is_file() else b"<dir>" for f in sorted(path.rglob("*"))}


def run_case(
    base: dict[str, Any], locks: dict[str, threading.Lock], folder: Path, test: str, kind: str, point: str
) -> list[str]:
    m0, events3, events1 = base[kind]
    first = test == "test_kill_during_first_backup"
    if first:
        m = Medium(kind, folder, m0.src)
        folder.mkdir(parents=True)
    else:
        m = m0.copy_to(folder)
    at = resolve(point, events1 if first else events3)
    case = Case(
        m,
        f"{kind}: {'first backup' if first else 'backup of generation 3'} killed at {point} (event {at})",
        locks[kind],
    )
    p = case.backup(VOLS[0] if first else VOLS[2], killpoint=at)
    if p.returncode != -signal.SIGKILL:
        case.fail(f"the backup was not killed: {shown(p)}")
        return case.problems
    if not first:
        case.check_after_kill(folder / "lost.sqlite", 2)
    elif point not in BLANK_LABEL:
        case.check_after_kill(folder / "lost.sqlite", 0)
    else:
        # no whole label: not a tapearc medium yet. Nothing crashes; a backup either writes a new
        # medium that restores, or refuses in one line and leaves the remains untouched
        for cmd in ("list", "verify", "scan"):
            case.crashed(run(cmd, "--media", m.spec, catalog=m.catalog), cmd, report=20 if cmd == "verify" else None)
        before = _snapshot(m.path)
        p = case.backup(VOLS[3])
        if not case.crashed(p, "the next backup"):
            if p.returncode == 0:
                case.restores(None, m.catalog, "the next backup's")
            elif _snapshot(m.path) != before:
                case.fail(f"the next backup refused ({shown(p)}) but changed the medium")
    return case.problems


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, base: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, str], list[str]]:
    """The selected cases of this module, run a few at a time (each on its own copy of the
    medium and catalog; one source file per kind, written under a lock): test -> problems."""
    wanted: list[tuple[str, str, str]] = [
        (item.originalname, str(item.callspec.params["kind"]), str(item.callspec.params["point"]))
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module and hasattr(item, "callspec")
    ]
    locks = {"sim": threading.Lock(), "dir": threading.Lock()}
    root = tmp_path_factory.mktemp("cases")

    def one(i: int, key: tuple[str, str, str]) -> list[str]:
        try:
            return run_case(base, locks, root / f"{i:03d}", *key)
        except Exception as e:
            return [f"{key}: {type(e).__name__}: {e}"]

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as ex:
        results = list(ex.map(one, range(len(wanted)), wanted))
    return dict(zip(wanted, results, strict=True))


GEN3_CASES = [(k, p) for k in ("sim", "dir") for p in gen3_points(k)]
LABEL_CASES = [(k, p) for k in ("sim", "dir") for p in LABEL_POINTS[k]]


@pytest.mark.parametrize(("kind", "point"), GEN3_CASES, ids=[f"{k}-{p}" for k, p in GEN3_CASES])
def test_kill_during_backup(outcomes: dict[tuple[str, str, str], list[str]], kind: str, point: str) -> None:
    """Generation 3's backup killed at ``point``: generations 1 and 2 restore (catalog as left,
    and rebuilt by scan), list/verify/scan agree, the next backup appends and restores."""
    problems = outcomes[("test_kill_during_backup", kind, point)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("kind", "point"), LABEL_CASES, ids=[f"{k}-{p}" for k, p in LABEL_CASES])
def test_kill_during_first_backup(outcomes: dict[tuple[str, str, str], list[str]], kind: str, point: str) -> None:
    """Generation 1's backup (on a blank medium) killed at ``point``, around the label."""
    problems = outcomes[("test_kill_during_first_backup", kind, point)]
    assert not problems, "\n".join(problems)
