"""``tapearc run --drives N`` / ``drives = N`` and ``tapearc restore --volume A --volume B --drives N``
on a simulated library with several drives: the JSON summary (each volume's drive, each drive's
bytes), every volume restored byte for byte with 2 drives, too few drives (exit 42), a failing
volume (exit 35, the other drive went on), Ctrl-C and SIGKILL leaving every drive's medium
usable (the next run backs every volume up, the restores are whole), and two separate runs on
one library each getting a drive (needs drive leases)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import assert_one_line_error, on_a_terminal
from tests.cli.test_cli_run import tapearc, write

lib_mod = pytest.importorskip("tapesim.library")

KIB = 1024
MIB = 1024 * KIB
SIZES = {"a": 300 * KIB, "b": 1200 * KIB, "c": 600 * KIB, "d": 900 * KIB}


def make_job(
    tmp: Path, drives: int, lib_drives: int = 2, sizes: dict[str, int] = SIZES, **extra: str
) -> dict[str, Any]:
    lib_mod.create_library(
        str(tmp / "lib"), 8, 256 * MIB, drives=lib_drives, early_warning=8 * MIB, max_record=1024 * KIB
    )
    datas = {k: write(tmp / f"{k}.img", i, n) for i, (k, n) in enumerate(sizes.items(), 1)}
    spec = f"sim:{tmp / 'lib'}"
    more = "".join(f"{k} = {v}\n" for k, v in extra.items())
    (tmp / "job.toml").write_text(
        f'[job]\nname = "night"\nmedia = "{spec}"\nrecord_size = "64K"\ndrives = {drives}\n{more}'
        '[defaults]\nblock_size = "16K"\nchunk_size = "256K"\n'
        + "".join(f'[[volume]]\nname = "{k}"\nsource = "{k}.img"\n' for k in datas)
    )
    return {"tmp": tmp, "spec": spec, "file": str(tmp / "job.toml"), "datas": datas}


def restore_all(job: dict[str, Any], drives: int = 2, *more: str) -> subprocess.CompletedProcess[str]:
    out = job["tmp"] / "restored"
    out.mkdir(exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    vols = [a for k in job["datas"] for a in ("--volume", k)]
    return tapearc("restore", "--media", job["spec"], *vols, "--to", str(out), "--drives", str(drives), *more)


def assert_restored(job: dict[str, Any], names: list[str] | None = None) -> None:
    p = restore_all(job, 2, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert {v["status"] for v in doc["volumes"]} == {"complete"} and doc["exit_code"] == 0
    assert len({v["drive"] for v in doc["volumes"]}) >= 1
    for name in names or list(job["datas"]):
        assert (job["tmp"] / "restored" / f"{name}.img").read_bytes() == job["datas"][name], name


def test_run_on_two_drives_and_restore_on_two_drives(tmp_path: Path) -> None:
    job = make_job(tmp_path, 2)
    p = tapearc("run", job["file"], "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [v["outcome"] for v in doc["volumes"]] == ["ok"] * 4 and doc["exit_code"] == 0
    drives = {v["drive"] for v in doc["volumes"]}
    assert drives == {f"{job['spec']}/drive-0.tap", f"{job['spec']}/drive-1.tap"}
    assert len(doc["drives"]) == 2 and all(d["bytes"] > 0 for d in doc["drives"])
    assert all({"waiting_seconds", "idle_seconds", "mb_per_s"} <= set(d) for d in doc["drives"])
    # one media set per drive, and the catalog holds every generation, complete
    q = tapearc("catalog", "generations", "--json")
    gens = json.loads(q.stdout)["generations"]
    assert sorted((g["volume"], g["state"]) for g in gens) == [(k, "complete") for k in "abcd"]
    assert len({g["media_set"] for g in gens}) == 2, gens
    # the text summary names each volume's drive
    p = restore_all(job)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("restored 4 of 4 volumes") and "drive-1.tap" in p.stdout and "drive-0.tap" in p.stdout
    assert_restored(job)


def test_drives_on_the_command_line(tmp_path: Path) -> None:
    job = make_job(tmp_path, 1)
    p = tapearc("run", job["file"], "--drives", "2")
    assert p.returncode == 0, p.stderr
    assert "4 of 4 volumes backed up in" in p.stdout and "on 2 drives" in p.stdout
    assert "drive-0.tap:" in p.stdout and "drive-1.tap:" in p.stdout
    assert_restored(job)
    p = tapearc("run", job["file"], "--drives", "0")
    assert p.returncode == 2 and "--drives" in p.stderr


def test_too_few_drives_exit_42(tmp_path: Path) -> None:
    job = make_job(tmp_path, 3)
    p = tapearc("run", job["file"])
    assert_one_line_error(p, 42, "3 drives are asked for; library", "has 2 (drive 0, drive 1)")
    t = tmp_path / "t.tap"
    (tmp_path / "lone.toml").write_text(
        Path(job["file"]).read_text().replace(f'media = "{job["spec"]}"', f'media = "sim:{t}"')
    )
    p = tapearc("run", str(tmp_path / "lone.toml"))
    assert_one_line_error(p, 42, f"several drives need a library: sim:{t} is a lone drive")
    assert not t.exists()


def test_a_failing_volume_does_not_stop_the_other_drive(tmp_path: Path) -> None:
    job = make_job(tmp_path, 2)
    (tmp_path / "b.img").unlink()
    p = tapearc("run", job["file"], "--json")
    assert p.returncode == 35, p.stderr
    doc = json.loads(p.stdout)
    assert {v["volume"]: v["outcome"] for v in doc["volumes"]} == {"a": "ok", "b": "failed", "c": "ok", "d": "ok"}
    assert len({v["drive"] for v in doc["volumes"] if v["outcome"] == "ok"}) == 2  # both drives went on
    del job["datas"]["b"]
    assert_restored(job)


def _both_drives_writing(lib: Path, proc: subprocess.Popen[str], limit: float = 60.0) -> None:
    """Wait until both drives' tapes have grown past their labels (the backups are writing)."""
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        sizes = [os.path.getsize(p) if p.exists() else 0 for p in (lib / "drive-0.tap", lib / "drive-1.tap")]
        if all(s > 2 * MIB for s in sizes):
            return
        time.sleep(0.02)
    pytest.fail("the drives did not both start writing")


def _after_a_cut(job: dict[str, Any], outcomes: dict[str, str]) -> None:
    """Every drive's medium is usable after the cut: the catalog calls no cut generation
    complete, the next run backs every volume up, and every volume restores whole."""
    q = tapearc("catalog", "generations", "--json")
    for g in json.loads(q.stdout)["generations"]:
        assert g["state"] in ("complete", "incomplete", "writing")
        if g["state"] == "complete":
            assert outcomes.get(g["volume"]) in ("ok", None), (g, outcomes)
    p = tapearc("run", job["file"], "--json")
    assert p.returncode == 0, p.stderr
    assert [v["outcome"] for v in json.loads(p.stdout)["volumes"]] == ["ok"] * 4
    assert_restored(job)


BIG = {"a": 24 * MIB, "b": 40 * MIB, "c": 24 * MIB, "d": 32 * MIB}


@pytest.mark.slow
def test_ctrl_c_leaves_every_drive_consistent(tmp_path: Path) -> None:
    job = make_job(tmp_path, 2, sizes=BIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapearc", "run", job["file"], "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TZ": "UTC"},
    )
    _both_drives_writing(tmp_path / "lib", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    outcomes = {v["volume"]: v["outcome"] for v in doc["volumes"]}
    assert "interrupted" in outcomes.values() and set(outcomes.values()) <= {"ok", "interrupted", "not-run"}
    assert err.strip().splitlines()[-1].startswith("tapearc: error: interrupted")
    _after_a_cut(job, outcomes)


@pytest.mark.slow
def test_sigkill_leaves_every_drive_consistent(tmp_path: Path) -> None:
    job = make_job(tmp_path, 2, sizes=BIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapearc", "run", job["file"], "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TZ": "UTC"},
    )
    _both_drives_writing(tmp_path / "lib", proc)
    proc.kill()
    proc.communicate(timeout=60)
    _after_a_cut(job, {})


def test_two_runs_on_one_library_each_get_a_drive(tmp_path: Path) -> None:
    """Two separate ``tapearc run`` processes (as two hosts would) with drives = 1 on a library
    of two drives: each gets a drive (today both ask for drive 0, and the second fails)."""
    job = make_job(tmp_path, 1, sizes=BIG)
    other = tmp_path / "other"
    other.mkdir()
    (other / "job.toml").write_text(
        Path(job["file"])
        .read_text()
        .replace('name = "night"', 'name = "other"')
        .replace('source = "', f'source = "{tmp_path}/')
        .replace('name = "a"', 'name = "oa"')
        .replace('name = "b"', 'name = "ob"')
        .replace('name = "c"', 'name = "oc"')
        .replace('name = "d"', 'name = "od"')
    )
    cmd = [sys.executable, "-m", "tapearc", "run"]
    procs = [
        subprocess.Popen([*cmd, f], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for f in (job["file"], str(other / "job.toml"))
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert_restored(job)


def test_restore_of_several_volumes_refuses_what_names_one(tmp_path: Path) -> None:
    """--generation, --assume-generation and --to - choose one volume's restore: with several
    volumes (or --drives N) each is one line naming the option, exit 44, nothing read."""
    job = make_job(tmp_path, 2)
    assert tapearc("run", job["file"]).returncode == 0
    vols = ["--volume", "a", "--volume", "b"]
    base = ["restore", "--media", job["spec"], *vols]
    out = tmp_path / "out"
    out.mkdir()
    assert_one_line_error(tapearc(*base, "--to", "-"), 44, "--to -: standard output takes one volume's data")
    p = tapearc(*base, "--to", str(out), "--generation", "1")
    assert_one_line_error(p, 44, "--generation 1: a generation number counts one volume's generations", "2 volumes")
    assert "--at TIME" in p.stderr
    p = tapearc(*base, "--to", str(out), "--assume-generation", "1", "--json")
    assert_one_line_error(p, 44, "--assume-generation 1", "2 volumes")
    p = tapearc(
        "restore", "--media", job["spec"], "--volume", "a", "--drives", "2", "--to", str(out), "--generation", "1"
    )
    assert_one_line_error(p, 44, "--generation 1", "a restore of --drives 2")
    assert list(out.iterdir()) == []
    # --at chooses every volume's generation
    p = tapearc(*base, "--to", str(out), "--at", "2999-01-01", "--json")
    assert p.returncode == 0, p.stderr
    assert [v["generation"] for v in json.loads(p.stdout)["volumes"]] == [1, 1]
    assert_one_line_error(tapearc(*base, "--to", str(tmp_path / "a.img")), 2, "is not one")
    p = tapearc("restore", "--media", job["spec"], "--volume", "a", "--volume", "nope", "--to", str(tmp_path))
    assert_one_line_error(p, 6, "volume 'nope' has no complete generation in the catalog")
    assert not (tmp_path / "a.img.img").exists()


def test_restore_of_several_volumes_waits_for_the_drives(tmp_path: Path) -> None:
    """--wait is the several-volume restore's too: with both drives leased by another process
    it says whom it waits for and, once they are free, restores (before, --drives 2 gave up at
    once, exit 42)."""
    import select

    from tapearc.catalog.leases import Leases

    job = make_job(tmp_path, 2)
    assert tapearc("run", job["file"]).returncode == 0
    out = tmp_path / "restored"
    out.mkdir()
    lib = os.path.realpath(tmp_path / "lib")
    with Leases(os.environ["TAPEARC_CATALOG"], notify=lambda _t: None) as other:
        held = [other.acquire(f"drive:{lib}:{i}", purpose="backup elsewhere") for i in (0, 1)]
        vols = [a for k in job["datas"] for a in ("--volume", k)]
        cmd = [sys.executable, "-m", "tapearc", "restore", "--media", job["spec"], *vols, "--to", str(out)]
        proc = subprocess.Popen(
            [*cmd, "--drives", "2", "--wait", "60", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 60)
        line = proc.stderr.readline() if ready else ""
        assert "held by" in line and "(backup elsewhere)" in line and line.rstrip().endswith("; waiting"), line
        for lease in held:
            lease.release()
        stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert {v["status"] for v in json.loads(stdout)["volumes"]} == {"complete"}
    for name, data in job["datas"].items():
        assert (out / f"{name}.img").read_bytes() == data


def test_a_job_on_several_drives_waits_for_a_drive_as_a_one_drive_job_does(tmp_path: Path) -> None:
    """Every drive of the library leased by another process (as another host's job would): `run
    --drives 2` says whom it waits for and, once a drive is free, runs on what is free (before,
    it gave up at once, exit 42, unless TAPEARC_LOCK_TIMEOUT was set); with the job's `wait`, it
    gives up after that long, exit 42 naming the holders, nothing written."""
    import select

    from tapearc.catalog.db import Catalog
    from tapearc.catalog.leases import Leases

    job = make_job(tmp_path, 2, wait="1")
    lib = os.path.realpath(tmp_path / "lib")
    Catalog().close()  # the other process's catalog, where its leases are
    with Leases(os.environ["TAPEARC_CATALOG"], notify=lambda _t: None) as other:
        held = [other.acquire(f"drive:{lib}:{i}", purpose="backup elsewhere") for i in (0, 1)]
        p = tapearc("run", job["file"])
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("tapearc: error: ")]
        assert p.returncode == 42 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
        assert (
            "every drive of library" in errors[0] and "(backup elsewhere)" in errors[0] and "(waited 1 s)" in errors[0]
        )
        assert "held by" in p.stderr.splitlines()[0] and p.stderr.splitlines()[0].endswith("; waiting")
        assert json.loads(tapearc("catalog", "generations", "--json").stdout)["generations"] == []
        (tmp_path / "job.toml").write_text((tmp_path / "job.toml").read_text().replace("wait = 1\n", ""))
        cmd = [sys.executable, "-m", "tapearc", "run", job["file"], "--json"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 60)
        line = proc.stderr.readline() if ready else ""
        assert "held by" in line and "(backup elsewhere)" in line and line.rstrip().endswith("; waiting"), line
        held[1].release()  # one drive frees: the job takes it and runs every volume on it
        stdout, err = proc.communicate(timeout=120)
        held[0].release()
    assert proc.returncode == 0, err
    doc = json.loads(stdout)
    assert {v["outcome"] for v in doc["volumes"]} == {"ok"} and {v["drive"] for v in doc["volumes"]} == {
        f"sim:{lib}/drive-1.tap"
    }
    assert "1 of the 2 drives asked for were free" in " ".join(doc["notes"])
    assert_restored(job)


def test_a_progress_bar_per_driveon_a_terminal(tmp_path: Path) -> None:
    """run --drives 2 and the restore of several volumes on 2 drives show one bar per drive
    (naming the drive and its volume) on a terminal; nothing when standard error is not one,
    nor with --json (as before)."""
    job = make_job(tmp_path, 2)
    code, shown = on_a_terminal(["run", job["file"]])
    assert code == 0, shown
    assert re.search(r"drive-0\.tap: backup [abcd]", shown) and re.search(r"drive-1\.tap: backup [abcd]", shown)
    assert "KiB" in shown or "MiB" in shown
    out = tmp_path / "restored"
    out.mkdir()
    vols = [a for k in job["datas"] for a in ("--volume", k)]
    code, shown = on_a_terminal(["restore", "--media", job["spec"], *vols, "--to", str(out), "--drives", "2"])
    assert code == 0, shown
    assert re.search(r"drive-0\.tap: restore [abcd] gen 1", shown), shown
    assert re.search(r"drive-1\.tap: restore [abcd] gen 1", shown), shown
    code, shown = on_a_terminal(["run", job["file"], "--json"])
    assert code == 0 and "drive-0.tap: backup" not in shown and "drive-1.tap: backup" not in shown, shown
    p = tapearc("run", job["file"])  # standard error not a terminal: nothing on it
    assert p.returncode == 0 and p.stderr == "", p.stderr
