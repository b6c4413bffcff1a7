"""The contract of tapearc.catalog.leases.Leases (docs/leases.md), on every catalog backend
(the ``lease_catalog`` fixture, conftest.py)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tapearc.catalog.leases import Lease, LeaseBusy, LeaseRow, Leases, describe_resource, process_start
from tapearc.errors import LeaseBusyError, LeaseLostError

HOST = socket.gethostname()


@pytest.fixture
def make(lease_catalog: str) -> Iterator[Callable[..., tuple[Leases, list[str]]]]:
    """Leases objects on the catalog, each with the list its messages go to; closed at the end."""
    made: list[Leases] = []

    def factory() -> tuple[Leases, list[str]]:
        said: list[str] = []
        ls = Leases(lease_catalog, notify=said.append)
        made.append(ls)
        return ls, said

    yield factory
    for ls in made:
        ls.close()


def until(cond: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Wait for ``cond`` (a condition, not a time: ``limit`` only keeps a broken test from hanging)."""
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def put_row(ls: Leases, resource: str, *, host: str, pid: int, purpose: str, age: float, left: float) -> None:
    """A lease row as another holder left it: acquired ``age`` s ago, expiring ``left`` s from now."""
    now = time.time()
    ls.db.execute(
        "INSERT INTO leases (resource, holder, host, pid, pid_start, purpose, acquired_at, renewed_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (resource, "someone-else", host, pid, None, purpose, now - age, now - age, now + left),
    )


def test_acquire_and_release(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, _ = make()
    lease = a.acquire("drive:L:0", purpose="backup of vm1")
    row = b.get("drive:L:0")
    assert row is not None and (row.host, row.pid, row.purpose) == (HOST, os.getpid(), "backup of vm1")
    assert row.expires_at > row.acquired_at
    lease.release()
    assert b.get("drive:L:0") is None
    with b.acquire("drive:L:0", purpose="restore of vm1") as again:
        assert again.resource == "drive:L:0"
    assert a.get("drive:L:0") is None
    lease.release()  # twice: nothing happens, and it deletes nobody else's row
    assert a.rows() == []


def test_release_deletes_only_our_own_row(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, _ = make()
    lease = a.acquire("medium:M1", purpose="backup")
    a.break_lease("medium:M1")
    mine = b.acquire("medium:M1", purpose="restore")
    lease.release()  # the old holder lets go late: b's lease stays
    row = a.get("medium:M1")
    assert row is not None and row.holder == mine.holder


def test_busy_names_the_holder(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, _ = make()
    a.acquire("drive:/lib:1", purpose="backup of vm1")
    with pytest.raises(LeaseBusy) as ei:
        b.acquire("drive:/lib:1", purpose="backup of vm2")
    msg = str(ei.value)
    assert isinstance(ei.value, LeaseBusyError) and ei.value.exit_code == 40
    assert f"drive 1 of library /lib is held by host {HOST} pid {os.getpid()} (backup of vm1) since " in msg
    assert "expires" in msg and "tapearc lease break drive:/lib:1" in (ei.value.hint or "")
    assert ei.value.to_json()["holder_pid"] == os.getpid()


def test_wait_until_released(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, said = make()
    held = a.acquire("changer:/lib", purpose="load of slot 3")
    got: list[Lease] = []
    t = threading.Thread(target=lambda: got.append(b.acquire("changer:/lib", purpose="inventory", wait=None)))
    t.start()
    until(lambda: bool(said), "the wait message")
    assert said[0].startswith(f"the changer of library /lib is held by host {HOST} pid {os.getpid()} (load of slot 3)")
    assert said[0].endswith("; waiting")
    assert not got
    held.release()
    t.join()
    assert got and got[0].resource == "changer:/lib" and len(said) == 1


def test_bounded_wait_ends_busy(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, said = make()
    a.acquire("medium:X", purpose="backup")
    with pytest.raises(LeaseBusyError, match=r"\(waited 0\.2 s\)"):
        b.acquire("medium:X", purpose="restore", wait=0.2)
    assert said and "; waiting" in said[0]


def test_expired_lease_is_taken_over_with_a_warning(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, said = make()
    put_row(a, "drive:L:0", host="tapesrv2", pid=4242, purpose="backup of db", age=600, left=-5)
    lease = a.acquire("drive:L:0", purpose="backup of vm1")
    assert lease.resource == "drive:L:0"
    (warning,) = said
    assert warning.startswith("warning: took over the expired lease on drive 0 of library L")
    assert "host tapesrv2 pid 4242 (backup of db)" in warning and "last renewed" in warning


def test_live_lease_of_another_host_is_not_taken(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    put_row(a, "drive:L:0", host="tapesrv2", pid=1, purpose="backup of db", age=5, left=60)
    with pytest.raises(LeaseBusyError, match="host tapesrv2 pid 1 "):
        a.acquire("drive:L:0", purpose="x")


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_dead_holder_on_this_host_is_taken_over_at_once(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, said = make()
    pid = dead_pid()
    put_row(a, "medium:M7", host=HOST, pid=pid, purpose="backup of vm3", age=5, left=3600)
    a.acquire("medium:M7", purpose="restore of vm3")
    (warning,) = said
    assert f"at once: its holder host {HOST} pid {pid} (backup of vm3)" in warning
    assert "no longer running on this host" in warning


def test_reused_pid_is_a_dead_holder(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    """A pid that names another process now (its start time differs) is a holder gone."""
    a, said = make()
    now = time.time()
    start = process_start(os.getppid())
    assert start is not None
    a.db.execute(
        "INSERT INTO leases VALUES ('medium:R', 'h', ?, ?, ?, 'old', ?, ?, ?)",
        (HOST, os.getppid(), start + 1, now, now, now + 3600),
    )
    a.acquire("medium:R", purpose="new")
    assert "no longer running" in said[0]


def test_heartbeat_keeps_a_long_holder_alive(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, _ = make()
    lease = a.acquire("drive:L:0", purpose="long backup", ttl=0.6)
    first = b.get("drive:L:0")
    assert first is not None
    # renewed past the first expiry, twice over
    until(lambda: (r := b.get("drive:L:0")) is not None and r.renewed_at > first.expires_at + 0.6, "renewals")
    with pytest.raises(LeaseBusyError):
        b.acquire("drive:L:0", purpose="other")
    lease.check()


def test_broken_lease_is_detected(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, _ = make()
    lease = a.acquire("medium:M1", purpose="backup", ttl=0.6)
    row = b.break_lease("medium:M1")
    assert row is not None and row.purpose == "backup"
    until(lambda: lease.lost is not None, "the heartbeat to notice")
    with pytest.raises(LeaseLostError, match="lost the lease on medium M1: its row was deleted") as ei:
        lease.check()
    assert ei.value.exit_code == 41
    with pytest.raises(LeaseLostError):
        a.check()


def test_lease_taken_over_is_detected(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, _ = make()
    lease = a.acquire("medium:M1", purpose="backup", ttl=0.6)
    b.db.execute("UPDATE leases SET holder = 'x', host = 'tapesrv9', pid = 99 WHERE resource = 'medium:M1'")
    until(lambda: lease.lost is not None, "the heartbeat to notice")
    with pytest.raises(LeaseLostError, match="it is held now by host tapesrv9 pid 99"):
        lease.check()
    lease.release()  # leaves the new holder's row alone
    row = b.get("medium:M1")
    assert row is not None and row.host == "tapesrv9"


def test_acquire_any_picks_a_free_one(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, _ = make()
    drives = [f"drive:L:{i}" for i in range(3)]
    first = a.acquire_any(drives, purpose="job 1")
    second = b.acquire_any(drives, purpose="job 2")
    third = a.acquire_any(drives, purpose="job 3")
    assert [first.resource, second.resource, third.resource] == drives
    with pytest.raises(LeaseBusyError) as ei:
        b.acquire_any(drives, purpose="job 4")
    assert all(describe_resource(d) in str(ei.value) for d in drives)
    second.release()
    assert b.acquire_any(drives, purpose="job 4").resource == "drive:L:1"


def test_row_json_and_names() -> None:
    row = LeaseRow("drive:/l:2", "h", "x", 1, None, "p", 1.0, 2.0, 3.0)
    assert row.to_json(now=4.0)["expired"] is True
    assert describe_resource("medium:TAP001") == "medium TAP001"
    assert describe_resource("changer:/l") == "the changer of library /l"


def racer(spec: str, log: str, rounds: int) -> None:
    ls = Leases(spec, notify=lambda _t: None)
    me = os.getpid()
    for _ in range(rounds):
        with ls.acquire("medium:RACE", purpose=f"racer {me}", wait=None, ttl=30):
            with open(log, "a") as f:
                f.write(f"A {me}\n")
            time.sleep(0.001)
            with open(log, "a") as f:
                f.write(f"R {me}\n")
    ls.close()


def test_racing_processes_hold_one_at_a_time(lease_catalog: str, tmp_path: Path) -> None:
    """Many processes race for one resource: the log of their critical sections never overlaps."""
    log = str(tmp_path / "log")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=racer, args=(lease_catalog, log, 15)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * 6
    lines = Path(log).read_text().split("\n")[:-1]
    assert len(lines) == 6 * 15 * 2
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("A ") and leave == "R " + enter[2:], (enter, leave)


def _watch(ls: Leases) -> list[str]:
    """The holder ids ``ls`` has seen while waiting (what it read of the table)."""
    seen: list[str] = []
    get = ls.get

    def spy(resource: str) -> LeaseRow | None:
        row = get(resource)
        if row is not None:
            seen.append(row.holder)
        return row

    ls.get = spy  # type: ignore[method-assign]
    return seen


def _retake(ls: Leases, resource: str, holder: str, *, host: str, pid: int, purpose: str) -> None:
    """The holder process lets go and takes the lease again at once (a new lease id)."""
    now = time.time()
    ls.db.execute("DELETE FROM leases WHERE resource = ?", (resource,))
    ls.db.execute(
        "INSERT INTO leases (resource, holder, host, pid, pid_start, purpose, acquired_at, renewed_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (resource, holder, host, pid, None, purpose, now, now, now + 600),
    )


def test_wait_message_once_per_wait_and_holder(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    """A holder process that takes the changer's lease anew for each load is one holder: one
    line for the whole wait; another process holding it next gets a second line; a new wait
    after the lease was ours says it again."""
    a, _ = make()
    b, said = make()
    res = "changer:/lib"
    _retake(a, res, "h1", host="tapesrv2", pid=4242, purpose="inventory for run nightly")
    seen = _watch(b)
    got: list[Lease] = []
    t = threading.Thread(target=lambda: got.append(b.acquire(res, purpose="load", wait=None)))
    t.start()
    until(lambda: "h1" in seen, "b reading the first holder")
    for k in range(2, 5):  # the same process, a new lease each time
        _retake(a, res, f"h{k}", host="tapesrv2", pid=4242, purpose=f"load of slot {k} for run nightly")
        until(lambda k=k: f"h{k}" in seen, f"b reading holder h{k}")  # type: ignore[misc]
    assert len(said) == 1 and "host tapesrv2 pid 4242 (inventory for run nightly)" in said[0], said
    _retake(a, res, "h9", host="tapesrv3", pid=77, purpose="restore of vm1")  # another process
    until(lambda: "h9" in seen, "b reading the other holder")
    assert len(said) == 2 and "host tapesrv3 pid 77 (restore of vm1)" in said[1], said
    a.db.execute("DELETE FROM leases WHERE resource = ?", (res,))
    t.join()
    assert got and got[0].resource == res
    got[0].release()
    _retake(a, res, "h10", host="tapesrv2", pid=4242, purpose="inventory for run nightly")
    with pytest.raises(LeaseBusyError):
        b.acquire(res, purpose="load", wait=0.05)
    assert len(said) == 3 and "host tapesrv2 pid 4242" in said[2], said  # a new wait: said again


def test_threads_waiting_for_one_holder_share_the_line(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    a, _ = make()
    b, said = make()
    res = "changer:/lib"
    _retake(a, res, "h1", host="tapesrv2", pid=4242, purpose="load of slot 1")
    seen = _watch(b)
    got: list[Lease] = []
    threads = [threading.Thread(target=lambda: got.append(b.acquire(res, purpose="drive", wait=None))) for _ in "ab"]
    for t in threads:
        t.start()
    until(lambda: seen.count("h1") >= 4, "both threads reading the holder")
    assert len(said) == 1, said
    a.db.execute("DELETE FROM leases WHERE resource = ?", (res,))
    until(lambda: len(got) == 1, "one thread getting the lease")
    got[0].release()
    for t in threads:
        t.join()
    got[1].release()


def test_lease_ttl_from_the_environment(lease_catalog: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPEARC_LEASE_TTL", "7.5")
    with Leases(lease_catalog, notify=lambda _t: None) as ls:
        with ls.acquire("drive:L:0", purpose="backup") as lease:
            row = ls.get("drive:L:0")
            assert lease.ttl == 7.5 and row is not None
            assert row.expires_at - row.acquired_at == pytest.approx(7.5)
        with ls.acquire("drive:L:1", purpose="backup", ttl=3) as lease:  # given: that one
            assert lease.ttl == 3
    monkeypatch.delenv("TAPEARC_LEASE_TTL")
    with Leases(lease_catalog, notify=lambda _t: None) as ls, ls.acquire("drive:L:0", purpose="backup") as lease:
        assert lease.ttl == 60.0


def test_a_wait_for_any_drive_ends_for_all(make: Callable[..., tuple[Leases, list[str]]]) -> None:
    """Waiting for any of two drives names each holder once; once one drive is ours the wait is
    over for both: a later wait for the other names its holder again."""
    a, _ = make()
    b, said = make()
    _retake(a, "drive:L:0", "x", host="tapesrv2", pid=1, purpose="backup of vm1")
    _retake(a, "drive:L:1", "y", host="tapesrv3", pid=2, purpose="backup of vm2")
    seen = _watch(b)
    got: list[Lease] = []
    t = threading.Thread(target=lambda: got.append(b.acquire_any(["drive:L:0", "drive:L:1"], purpose="r", wait=None)))
    t.start()
    until(lambda: seen.count("y") >= 2, "b reading both holders twice")
    assert len(said) == 2, said
    a.db.execute("DELETE FROM leases WHERE resource = ?", ("drive:L:1",))
    t.join()
    assert got[0].resource == "drive:L:1"
    with pytest.raises(LeaseBusyError):
        b.acquire("drive:L:0", purpose="r", wait=0.05)
    assert len(said) == 3 and "host tapesrv2 pid 1" in said[2], said


class _Waits(threading.Event):
    """An Event that notes the timeouts it is waited with."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return super().wait(timeout)


def test_a_very_long_lease_ttl_keeps_the_heartbeat_running(lease_catalog: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """TAPEARC_LEASE_TTL=1e11 (a lease that lives for millennia: the setting has no upper bound)
    must not kill the heartbeat thread: its wait of ttl / 3 seconds was past what a thread can
    wait (threading.TIMEOUT_MAX), an OverflowError there (a traceback on standard error, and no
    lease renewed any more by this process)."""
    monkeypatch.setenv("TAPEARC_LEASE_TTL", "1e11")
    crashed: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    with Leases(lease_catalog, notify=lambda _t: None) as ls:
        ls.stop = waits = _Waits()
        with ls.acquire("drive:L:0", purpose="backup") as lease:
            assert lease.ttl == 1e11
            until(lambda: any(t is not None and t > 1 for t in waits.timeouts) or bool(crashed), "a renewal's wait")
            assert all(t is None or t <= threading.TIMEOUT_MAX for t in waits.timeouts), waits.timeouts
    assert not crashed
