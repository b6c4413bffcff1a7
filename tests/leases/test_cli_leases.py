"""Leases through the command line, on a simulated library with two drives: two backups at once
each get a drive; a restore waits for a medium a backup holds and then takes it; a crashed
holder's lease is taken over and named; ``tapearc lease list|break``."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.catalog.leases import Leases

HOST = socket.gethostname()


def tapearc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tapearc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def until(cond: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def library(tmp_path: Path, drives: int = 2, slots: int = 4, capacity: str = "64M") -> Path:
    lib = tmp_path / "lib"
    args = ["library", str(lib), "--slots", str(slots), "--capacity", capacity, "--drives", str(drives)]
    p = subprocess.run([sys.executable, "-m", "tapesim", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return lib


@pytest.fixture
def leases(_private_catalog: Path) -> Iterator[Leases]:
    Catalog(str(_private_catalog)).close()
    ls = Leases(str(_private_catalog), notify=lambda _t: None)
    yield ls
    ls.close()


def volume(path: Path, seed: int, size: int = 2 << 20) -> bytes:
    import random

    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def test_two_backups_at_once_get_two_drives(tmp_path: Path, leases: Leases) -> None:
    lib = library(tmp_path)
    real = os.path.realpath(lib)
    a, b = volume(tmp_path / "a.img", 1), volume(tmp_path / "b.img", 2)
    # the changer is held: both backups take a drive, then wait for it, so they run at once
    changer = leases.acquire(f"changer:{real}", purpose="the test")
    procs = [start("backup", str(tmp_path / f"{n}.img"), "--media", f"sim:{lib}", "--json") for n in "ab"]
    until(lambda: len(leases.rows("drive:")) == 2, "both drives leased")
    holders = {r.resource: r.pid for r in leases.rows("drive:")}
    assert set(holders) == {f"drive:{real}:0", f"drive:{real}:1"}
    assert sorted(holders.values()) == sorted(p.pid for p in procs)
    changer.release()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    media = {json.loads(o)["medium"] for o, _ in outs}
    assert media == {f"sim:{lib}/drive-0.tap", f"sim:{lib}/drive-1.tap"}, media
    assert any("the changer of library" in e and "(the test)" in e and "waiting" in e for _, e in outs)
    assert leases.rows() == []
    for (o, _), data in zip(outs, (a, b), strict=True):
        res = json.loads(o)
        out = tmp_path / f"r-{res['volume']}"
        p = tapearc("restore", "--media", res["medium"], "--changer", f"sim:{lib}", "--to", str(out))
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == data


def test_a_backup_takes_the_free_drive(tmp_path: Path, leases: Leases) -> None:
    lib = library(tmp_path)
    volume(tmp_path / "v.img", 3)
    with leases.acquire(f"drive:{os.path.realpath(lib)}:0", purpose="backup of vm1"):
        p = tapearc("backup", str(tmp_path / "v.img"), "--media", f"sim:{lib}", "--json")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["medium"] == f"sim:{lib}/drive-1.tap"
        with leases.acquire(f"drive:{os.path.realpath(lib)}:1", purpose="backup of vm2"):
            p = tapearc("backup", str(tmp_path / "v.img"), "--media", f"sim:{lib}", "--wait", "0")
            assert p.returncode == 40, p.stderr
            line = p.stderr.splitlines()[0]
            assert line.startswith("tapearc: error: drive 0 of library ")
            assert f"is held by host {HOST} pid {os.getpid()} (backup of vm1) since " in line
            assert f"drive 1 of library {os.path.realpath(lib)} is held by host {HOST}" in line


def test_restore_waits_for_a_medium_a_backup_holds(tmp_path: Path, leases: Leases) -> None:
    """Bareos #1866: a restore that needs the tape another job writes waits for it (the message
    names the job), then takes it out of the drive that job used and restores it."""
    lib = library(tmp_path, drives=2, slots=3)
    real = os.path.realpath(lib)
    a = volume(tmp_path / "a.img", 4)
    volume(tmp_path / "b.img", 5)
    p = tapearc("backup", str(tmp_path / "a.img"), "--media", f"sim:{lib}/drive-0.tap", "--changer", f"sim:{lib}")
    assert p.returncode == 0, p.stderr
    p = tapearc("backup", str(tmp_path / "b.img"), "--media", f"sim:{lib}/drive-1.tap", "--changer", f"sim:{lib}")
    assert p.returncode == 0, p.stderr
    with Catalog(os.environ["TAPEARC_CATALOG"]) as cat:
        tape_a = cat.media_holding_generations()[0]  # the first labelled: TAP001, in drive 0
    # a backup writing TAP001 in drive 0: it holds that drive and that medium
    drive0 = leases.acquire(f"drive:{real}:0", purpose="backup of vm1")
    medium = leases.acquire(f"medium:{tape_a[0]}", purpose="backup of vm1")
    at = (datetime.now() + timedelta(minutes=5)).isoformat(timespec="seconds")
    out = tmp_path / "r.img"
    proc = start("restore", "--media", f"sim:{lib}", "--volume", "a.img", "--at", at, "--to", str(out))
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith(f"tapearc: medium {tape_a[0]} is held by host {HOST} pid {os.getpid()} (backup of vm1)")
    assert line.rstrip().endswith("; waiting")
    assert not out.exists()
    medium.release()
    drive0.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, line + err
    assert out.read_bytes() == a
    status = json.loads((lib / "library.json").read_text())
    assert status["drive_contents"].get("1", {}).get("barcode") == "TAP001"


def stop_outside_a_write(pid: int, catalog: str) -> None:
    """SIGSTOP ``pid`` at a moment it holds no write transaction of the SQLite catalog (else
    every other process's catalog writes, leases included, would wait for it)."""
    db = sqlite3.connect(catalog, timeout=0, isolation_level=None)
    try:
        for _ in range(1000):
            os.kill(pid, signal.SIGSTOP)
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
                return
            except sqlite3.OperationalError:
                os.kill(pid, signal.SIGCONT)
                time.sleep(0.001)
        pytest.fail("the backup is always inside a catalog write")
    finally:
        db.close()


def test_restore_waits_for_a_running_backup(tmp_path: Path, leases: Leases) -> None:
    """The same with a real backup: it is stopped (SIGSTOP) once it holds TAP001's lease, the
    restore on the other drive names it and waits; the backup goes on, ends, and the restore
    takes TAP001 out of drive 0 and restores the generation it asked for."""
    lib = library(tmp_path, drives=2, slots=3, capacity="512M")
    a = volume(tmp_path / "a.img", 4)
    volume(tmp_path / "b.img", 5)
    volume(tmp_path / "big.img", 8, 128 << 20)
    drive0 = ("--media", f"sim:{lib}/drive-0.tap", "--changer", f"sim:{lib}")
    assert tapearc("backup", str(tmp_path / "a.img"), *drive0).returncode == 0
    p = tapearc("backup", str(tmp_path / "b.img"), "--media", f"sim:{lib}/drive-1.tap", "--changer", f"sim:{lib}")
    assert p.returncode == 0, p.stderr
    with Catalog(os.environ["TAPEARC_CATALOG"]) as cat:
        tape_a = cat.media_holding_generations()[0][0]
    backup = start("backup", str(tmp_path / "big.img"), *drive0)
    until(lambda: (r := leases.get(f"medium:{tape_a}")) is not None and r.pid == backup.pid, "the backup's lease")
    stop_outside_a_write(backup.pid, os.environ["TAPEARC_CATALOG"])
    try:
        row = leases.get(f"medium:{tape_a}")
        assert row is not None and row.pid == backup.pid, "the backup ended before it could be stopped"
        at = (datetime.now() + timedelta(minutes=5)).isoformat(timespec="seconds")
        out = tmp_path / "r.img"
        restore = start("restore", "--media", f"sim:{lib}", "--volume", "a.img", "--at", at, "--to", str(out))
        assert restore.stderr is not None
        line = restore.stderr.readline()
        assert line.startswith(f"tapearc: medium {tape_a} is held by host {HOST} pid {backup.pid} (tapearc backup ")
        assert line.rstrip().endswith("; waiting")
    finally:
        os.kill(backup.pid, signal.SIGCONT)
    _, err = backup.communicate(timeout=300)
    assert backup.returncode == 0, err
    _, err = restore.communicate(timeout=300)
    assert restore.returncode == 0, line + err
    assert out.read_bytes() == a
    assert leases.rows() == []


def test_crashed_holder_is_taken_over_and_named(tmp_path: Path, leases: Leases) -> None:
    lib = library(tmp_path, drives=1, slots=2)
    real = os.path.realpath(lib)
    volume(tmp_path / "v.img", 6)
    changer = leases.acquire(f"changer:{real}", purpose="the test")
    proc = start("backup", str(tmp_path / "v.img"), "--media", f"sim:{lib}")
    until(lambda: leases.get(f"drive:{real}:0") is not None, "the backup's drive lease")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    changer.release()
    p = tapearc("lease", "list")
    assert p.returncode == 0 and f"drive:{real}:0  host {HOST} pid {proc.pid} (tapearc backup " in p.stdout
    p = tapearc("backup", str(tmp_path / "v.img"), "--media", f"sim:{lib}")
    assert p.returncode == 0, p.stderr
    assert (
        f"tapearc: warning: took over the lease on drive 0 of library {real} at once: its holder host {HOST} "
        f"pid {proc.pid} (tapearc backup {tmp_path / 'v.img'} --media sim:"
    ) in p.stderr
    assert "is no longer running on this host" in p.stderr
    assert leases.rows() == []


def test_expired_lease_of_another_host_is_taken_over_and_named(tmp_path: Path, leases: Leases) -> None:
    """A holder on another host that stopped renewing (crashed, cut off): once its lease has
    expired the next process takes it over and names it; before, it waits for it or says who."""
    lib = library(tmp_path, drives=1, slots=2)
    real = os.path.realpath(lib)
    volume(tmp_path / "v.img", 7)
    now = time.time()
    leases.db.execute(
        "INSERT INTO leases VALUES (?, 'x', 'tapesrv2', 4242, NULL, 'tapearc run nightly.toml', ?, ?, ?)",
        (f"drive:{real}:0", now - 3600, now - 30, now + 30),
    )
    p = tapearc("backup", str(tmp_path / "v.img"), "--media", f"sim:{lib}", "--wait", "0")
    assert p.returncode == 40, p.stderr
    assert "is held by host tapesrv2 pid 4242 (tapearc run nightly.toml) since " in p.stderr
    leases.db.execute("UPDATE leases SET expires_at = ? WHERE resource = ?", (now - 1, f"drive:{real}:0"))
    p = tapearc("backup", str(tmp_path / "v.img"), "--media", f"sim:{lib}", "--wait", "0")
    assert p.returncode == 0, p.stderr
    assert (
        f"tapearc: warning: took over the expired lease on drive 0 of library {real}: it was held by host "
        "tapesrv2 pid 4242 (tapearc run nightly.toml) since "
    ) in p.stderr
    assert "last renewed" in p.stderr
    assert leases.rows() == []


def test_lease_list_and_break(tmp_path: Path, leases: Leases) -> None:
    now = time.time()
    leases.db.execute(
        "INSERT INTO leases VALUES ('drive:/srv/lib:1', 'x', 'tapesrv2', 4242, NULL, 'backup of db', ?, ?, ?)",
        (now - 60, now - 30, now + 30),
    )
    mine = leases.acquire("medium:M1", purpose="restore of vm1", ttl=0.6)
    p = tapearc("lease", "list")
    assert p.returncode == 0, p.stderr
    assert "drive:/srv/lib:1  host tapesrv2 pid 4242 (backup of db)  since " in p.stdout
    assert f"medium:M1  host {HOST} pid {os.getpid()} (restore of vm1)" in p.stdout
    p = tapearc("lease", "list", "--json")
    assert {r["resource"] for r in json.loads(p.stdout)["leases"]} == {"drive:/srv/lib:1", "medium:M1"}
    p = tapearc("lease", "break", "medium:M1")
    assert p.returncode == 40 and "a process running on this host: not broken" in p.stderr
    p = tapearc("lease", "break", "drive:/srv/lib:1")
    assert p.returncode == 0, p.stderr
    assert "broke the lease on drive 1 of library /srv/lib: held by host tapesrv2 pid 4242 (backup of db)" in p.stdout
    p = tapearc("lease", "break", "drive:/srv/lib:1")
    assert p.returncode == 0 and "no lease on drive:/srv/lib:1" in p.stdout
    p = tapearc("lease", "break", "--force", "medium:M1")
    assert p.returncode == 0, p.stderr
    until(lambda: mine.lost is not None, "the holder to find its lease lost")
    assert leases.rows() == []


def test_lease_list_and_break_make_no_catalog(tmp_path: Path) -> None:
    """Listing (or breaking) leases in a catalog that does not exist says there are none and
    does not create it (as ``tapearc catalog ...`` does not)."""
    cat = tmp_path / "none.sqlite"
    p = tapearc("lease", "list", "--catalog", str(cat))
    assert p.returncode == 0 and p.stdout.strip() == "no leases", p.stderr
    p = tapearc("lease", "list", "--catalog", str(cat), "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == {"leases": []}, p.stderr
    p = tapearc("lease", "break", "drive:/lib:0", "--catalog", str(cat))
    assert p.returncode == 0 and p.stdout.strip() == "no lease on drive:/lib:0", p.stderr
    assert not cat.exists()
