"""A job on several drives of one simulated library (tapearc.engine.jobdrives, engine.drives):
4 volumes over 2 or 3 drives, each restored byte for byte; every drive writes its own media set;
the largest volumes go first; a failing volume on one drive does not stop the others; a medium
failure stops only its drive; Ctrl-C leaves every drive's generation marked incomplete, the
media readable; a second run continues each drive's set; fewer free drives than asked for."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog
from tapearc.catalog.views import media_sets
from tapearc.engine.drives import Library, library_of, open_drives
from tapearc.engine.jobdrives import run_job_on_drives, volume_order, wait_for
from tapearc.engine.jobfile import read_job
from tapearc.engine.jobs import JobRun
from tapearc.engine.plan import assign_drives
from tapearc.engine.progress import NoProgress
from tapearc.engine.restore import RestoreOptions
from tapearc.engine.restoremany import arrange, restore_volumes
from tapearc.errors import DrivesError
from tests.engine.test_jobs import BS, job_file, restored, write

lib_mod = pytest.importorskip("tapesim.library")

KIB = 1024
LATEST = 4_000_000_000  # restore --at: the newest generation of a volume, whichever set (drive) holds it
SIZES = {"a": 300 * KIB, "b": 1200 * KIB, "c": 600 * KIB, "d": 900 * KIB}


def library(tmp: Path, drives: int, slots: int = 8) -> str:
    lib_mod.create_library(
        str(tmp / "lib"), slots, 4096 * KIB, drives=drives, early_warning=256 * KIB, max_record=1024 * KIB
    )
    return f"sim:{tmp / 'lib'}"


def four_volumes(tmp: Path, spec: str, drives: int, **job: Any) -> tuple[str, dict[str, bytes]]:
    datas = {k: write(tmp / f"{k}.img", i, n) for i, (k, n) in enumerate(SIZES.items(), 1)}
    path = job_file(
        tmp,
        {"name": "night", "media": spec, "record_size": "64K", "drives": drives, **job},
        [{"name": k, "source": f"{k}.img"} for k in datas],
        defaults={"block_size": BS, "chunk_size": "256K"},
    )
    return path, datas


def restored_after(spec: str, tmp: Path, volume: str) -> bytes:
    """The volume's newest generation restored through drive 0 (a one-drive restore, by date: any
    set), once every drive's medium is back in its slot (a library keeps them loaded after a job;
    a restore takes a medium out of another drive only when that drive is free, which drive
    leases tell: the several-drive restore below does not need it)."""
    lib = lib_mod.Library(spec[4:])
    for d in lib.status().drives:
        if d.barcode is not None:
            lib.unload(d.number)
    return restored(spec, tmp, volume, at=LATEST)


def run_on(path: str, n: int | None = None, **kw: Any) -> JobRun:
    job = read_job(path)
    with Catalog() as cat:
        lib = library_of(job.drive_media or job.media, job.changer)
        with open_drives(lib, n or job.drives, write=True, catalog=cat) as drives:
            return run_job_on_drives(job, list(drives), cat, **kw)


def sets_by_drive(r: JobRun) -> dict[str, set[str]]:
    """The media sets each drive wrote (from the catalog)."""
    out: dict[str, set[str]] = {}
    with Catalog() as cat:
        for v in r.volumes:
            assert v.drive is not None and v.result is not None
            for p in v.result.parts:
                row = cat.medium(uuid.UUID(str(p["medium_uuid"])))
                assert row is not None
                out.setdefault(v.drive, set()).add(str(row.set_uuid))
    return out


@pytest.mark.parametrize("drives", [2, 3])
def test_four_volumes_on_several_drives(tmp_path: Path, _private_catalog: Path, drives: int) -> None:
    spec = library(tmp_path, drives)
    path, datas = four_volumes(tmp_path, spec, drives)
    r = run_on(path)
    assert r.ok, [(v.name, v.error) for v in r.volumes]
    assert [v.kind for v in r.volumes] == ["full"] * 4
    used = {v.drive for v in r.volumes}
    assert len(used) == drives  # every drive took at least one volume
    by_drive = sets_by_drive(r)
    all_sets = [s for sets in by_drive.values() for s in sets]
    assert len(all_sets) == len(set(all_sets)) == drives  # one media set per drive, none shared
    assert len(r.drives) == drives and sum(int(str(d["bytes"])) for d in r.drives) >= sum(SIZES.values())
    with Catalog() as cat:  # the catalog has every generation, complete, in its drive's set
        for v in r.volumes:
            gens = [(s, g.state) for s in media_sets(cat) for g in cat.generations(s, v.name)]
            assert gens == [(uuid.UUID(next(iter(by_drive[str(v.drive)]))), "complete")], v.name
    for name, want in datas.items():  # restored through drive 0: media held by the others come back to slots
        assert restored_after(spec, tmp_path, name) == want


def test_largest_volumes_go_first(tmp_path: Path) -> None:
    spec = library(tmp_path, 2)
    path, _ = four_volumes(tmp_path, spec, 2)
    job = read_job(path)
    assert [job.volumes[i].name for i in volume_order(job)] == ["b", "d", "c", "a"]


def test_a_second_run_continues_each_drives_set(tmp_path: Path, _private_catalog: Path) -> None:
    spec = library(tmp_path, 2)
    path, datas = four_volumes(tmp_path, spec, 2)
    first = run_on(path)
    assert first.ok
    before = sets_by_drive(first)
    second = run_on(path)
    assert second.ok and [v.kind for v in second.volumes] == ["incremental"] * 4
    after = sets_by_drive(second)
    assert {s for v in after.values() for s in v} <= {s for v in before.values() for s in v}
    for name, want in datas.items():
        assert restored_after(spec, tmp_path, name) == want


def test_a_failing_volume_does_not_stop_the_other_drive(tmp_path: Path, _private_catalog: Path) -> None:
    spec = library(tmp_path, 2)
    path, datas = four_volumes(tmp_path, spec, 2)
    (tmp_path / "b.img").unlink()  # the largest: the first volume a drive takes
    r = run_on(path)
    outcomes = {v.name: str(v.outcome) for v in r.volumes}
    assert outcomes == {"a": "ok", "b": "failed", "c": "ok", "d": "ok"}
    err = r.error()
    assert err is not None and err.exit_code == 35 and "b (failed: exit 3 source)" in str(err)
    for name in ("a", "c", "d"):
        assert restored_after(spec, tmp_path, name) == datas[name]


def test_a_medium_failure_stops_only_its_drive(tmp_path: Path, _private_catalog: Path) -> None:
    # 2 slots, one per drive, each too small for the largest volume: the drive that takes b
    # fills its tape and has no next one (medium-level failure); the other drive goes on
    lib_mod.create_library(
        str(tmp_path / "lib"), 2, 1100 * KIB, drives=2, early_warning=128 * KIB, max_record=1024 * KIB
    )
    spec = f"sim:{tmp_path / 'lib'}"
    path, _ = four_volumes(tmp_path, spec, 2)
    r = run_on(path)
    out = {v.name: v for v in r.volumes}
    assert str(out["b"].outcome) == "failed" and out["b"].error is not None
    stopped_drive = out["b"].drive
    assert any("stopped after volume 'b'" in n and "the other drives went on" in n for n in r.notes)
    others = [v for v in r.volumes if v.name != "b" and str(v.outcome) == "ok"]
    assert others and all(v.drive != stopped_drive for v in others)
    assert r.error() is not None and r.error().exit_code == 35  # type: ignore[union-attr]


class _CtrlCOnce(NoProgress):
    """Sets the run's Ctrl-C (as the main thread's wait does) once a volume has written some."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def advance(self, nbytes: int) -> None:
        self.stop.set()


def test_ctrl_c_stops_every_drive_with_incomplete_generations(tmp_path: Path, _private_catalog: Path) -> None:
    spec = library(tmp_path, 2)
    path, datas = four_volumes(tmp_path, spec, 2)
    stop = threading.Event()
    r = run_on(path, progress=lambda _name: _CtrlCOnce(stop), stop=stop)
    assert r.interrupted and r.error() is not None and r.error().exit_code == 130  # type: ignore[union-attr]
    states = {v.name: str(v.outcome) for v in r.volumes}
    assert "ok" not in states.values() and list(states.values()).count("interrupted") >= 1
    with Catalog() as cat:  # no generation says complete or writing: each cut one is incomplete
        states_in_catalog = [g.state for s in media_sets(cat) for n in datas for g in cat.generations(s, n)]
        assert states_in_catalog and set(states_in_catalog) == {"incomplete"}
    # every drive's medium is still usable: the next run backs every volume up
    r2 = run_on(path)
    assert r2.ok, [(v.name, v.error) for v in r2.volumes]
    for name, want in datas.items():
        assert restored_after(spec, tmp_path, name) == want


def test_more_drives_than_the_library_has(tmp_path: Path, _private_catalog: Path) -> None:
    spec = library(tmp_path, 2)
    with pytest.raises(DrivesError, match=r"3 drives are asked for; library sim:.* has 2 \(drive 0, drive 1\)"):
        with open_drives(library_of(spec, None), 3, write=True):
            pass


def test_a_lone_drive_is_not_a_library(tmp_path: Path) -> None:
    with pytest.raises(DrivesError, match="several drives need a library"):
        library_of(f"sim:{tmp_path / 't.tap'}", None)
    lib = library_of(("/dev/nst0", "/dev/nst1"), "mtx:/dev/sg3")
    assert lib == Library("mtx:/dev/sg3", "mtx:/dev/sg3", ("/dev/nst0", "/dev/nst1"))


def test_busy_drives_are_skipped(tmp_path: Path, _private_catalog: Path) -> None:
    from tapearc.locks import medium_lock

    spec = library(tmp_path, 3)
    lib = library_of(spec, None)
    notes: list[str] = []
    with medium_lock(lib.drives[0], write=True), open_drives(lib, 2, write=True, timeout=0, notes=notes) as ds:
        assert [d.drive_index for d in ds] == [1, 2] and notes == []
    with medium_lock(lib.drives[0], write=True), medium_lock(lib.drives[1], write=True):
        with open_drives(lib, 2, write=True, timeout=0, notes=notes) as ds:
            assert [d.drive_index for d in ds] == [2]
        assert "1 of the 2 drives asked for were free" in notes[0]
        with medium_lock(lib.drives[2], write=True), pytest.raises(DrivesError, match="every drive of library"):
            with open_drives(lib, 2, write=True, timeout=0):
                pass


# ---------------------------------------------------------------- restore on several drives


def _m(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def test_planner_spreads_disjoint_volumes_largest_first() -> None:
    needs = {"a": ([_m(1)], 100), "b": ([_m(2)], 400), "c": ([_m(3)], 300), "d": ([_m(4)], 200)}
    assert assign_drives(needs, 2) == [["b", "a"], ["c", "d"]]
    assert assign_drives(needs, 1) == [["b", "c", "d", "a"]]
    assert assign_drives(needs, 5) == [["b"], ["c"], ["d"], ["a"], []]


def test_planner_keeps_volumes_sharing_a_medium_on_one_drive() -> None:
    # a and c share medium 1; c and e share medium 5 (so a, c, e are one group); b, d alone
    needs = {
        "a": ([_m(1)], 100),
        "b": ([_m(2)], 250),
        "c": ([_m(1), _m(5)], 100),
        "d": ([_m(3)], 50),
        "e": ([_m(5), _m(6)], 100),
    }
    work = assign_drives(needs, 2)
    assert work == [["a", "c", "e"], ["b", "d"]]
    for k, vols in enumerate(work):  # no medium in the lists of two drives
        mine = {m for v in vols for m in needs[v][0]}
        others = {m for j, vs in enumerate(work) if j != k for v in vs for m in needs[v][0]}
        assert not mine & others


def test_planner_with_one_shared_medium_uses_one_drive() -> None:
    needs = {v: ([_m(9), _m(i)], 10) for i, v in enumerate("abcd")}
    assert assign_drives(needs, 3) == [["a", "b", "c", "d"], [], []]


def test_restore_of_four_volumes_on_two_drives(tmp_path: Path, _private_catalog: Path) -> None:
    spec = library(tmp_path, 2)
    path, datas = four_volumes(tmp_path, spec, 2)
    r = run_on(path)
    assert r.ok
    wanted = [(k, str(tmp_path / f"r-{k}.img")) for k in datas]
    with Catalog() as cat:
        lib = library_of(spec, None)
        with open_drives(lib, 2, write=False, catalog=cat) as ds:
            done = restore_volumes(list(ds), cat, wanted, RestoreOptions())
    assert [(v.volume, v.error, v.result is not None and v.result.status) for v in done] == [
        (k, None, "complete") for k in datas
    ]
    for k, want in datas.items():
        assert Path(dict(wanted)[k]).read_bytes() == want
    # the volumes a drive backed up share its media: the restore reads them on one drive
    backed = {v.name: v.drive for v in r.volumes}
    restored_on = {v.volume: v.drive for v in done}
    for x in datas:
        for y in datas:
            if backed[x] == backed[y]:
                assert restored_on[x] == restored_on[y], (x, y)
    assert len(set(restored_on.values())) == 2


# ---------------------------------------------------------------- a pooled job on two drives


@pytest.mark.parametrize("allocation", ["continue", "new-set-per-full"])
def test_a_pooled_job_on_two_drives(tmp_path: Path, _private_catalog: Path, allocation: str) -> None:
    """Each drive takes its medium for the pool under the job's changer lock: never the medium
    the other drive holds; the second night each drive continues a set of the pool."""
    from tapearc.engine import pools
    from tapearc.engine.retention import KEEP_FULL, Policy

    spec = library(tmp_path, 2, slots=8)
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 3), allocation, 1_700_000_000)
    path, datas = four_volumes(tmp_path, spec, 2, pool="p")
    first = run_on(path)
    assert first.ok, [(v.name, v.error) for v in first.volumes]
    sets = sets_by_drive(first)
    assert len({s for v in sets.values() for s in v}) == 2  # a set per drive, both in the pool
    second = run_on(path)
    assert second.ok, [(v.name, v.error) for v in second.volumes]
    with Catalog() as cat:
        from tapearc.catalog import pools as cp

        in_pool = {str(m.set_uuid) for m in cp.media(cat, "p")}
    assert {s for v in sets_by_drive(second).values() for s in v} <= in_pool
    for name, want in datas.items():
        assert restored_after(spec, tmp_path, name) == want


def test_arrange_gives_a_drive_the_list_that_reads_its_medium() -> None:
    media = {"a": {_m(1)}, "b": {_m(2)}, "c": {_m(2), _m(3)}}
    work = [["a"], ["b", "c"]]
    assert arrange(work, [_m(3), None], media) == [["b", "c"], ["a"]]
    assert arrange(work, [None, _m(1)], media) == [["b", "c"], ["a"]]
    assert arrange(work, [_m(9), None], media) == [["a"], ["b", "c"]]
    assert arrange([["a", "b", "c"], []], [None, _m(2)], media) == [[], ["a", "b", "c"]]


def test_after_the_tapes_went_back_to_their_slots_each_drive_finds_a_set(
    tmp_path: Path, _private_catalog: Path
) -> None:
    """Both sets span two tapes; every tape back in its slot (a restore, an operator): the next
    run loads each set's last tape into a drive of its own (the first slot's tape, of a set
    whose last tape the other drive took, is not used twice), and every volume's generation is
    an incremental in its set."""
    lib_mod.create_library(
        str(tmp_path / "lib"), 8, 1024 * KIB, drives=2, early_warning=256 * KIB, max_record=1024 * KIB
    )
    spec = f"sim:{tmp_path / 'lib'}"
    path, datas = four_volumes(tmp_path, spec, 2)
    first = run_on(path)
    assert first.ok, [(v.name, v.error) for v in first.volumes]
    assert any(
        len(m) >= 2
        for m in (
            sorted({x for v in first.volumes if v.drive == d for x in v.media})
            for d in {v.drive for v in first.volumes}
        )
    )
    lib = lib_mod.Library(spec[4:])
    for d in lib.status().drives:
        if d.barcode is not None:
            lib.unload(d.number)
    second = run_on(path)
    assert second.ok, [(v.name, v.error) for v in second.volumes]
    assert [v.kind for v in second.volumes] == ["incremental"] * 4, second.notes
    for name, want in datas.items():
        assert restored_after(spec, tmp_path, name) == want


def test_when_every_drive_stopped_the_rest_are_not_run(tmp_path: Path, _private_catalog: Path) -> None:
    # two tapes, one per drive, too small for b and d (the two a drive takes first): both
    # drives stop, and c and a, which no drive was left to take, are not run
    lib_mod.create_library(
        str(tmp_path / "lib"), 2, 700 * KIB, drives=2, early_warning=128 * KIB, max_record=1024 * KIB
    )
    spec = f"sim:{tmp_path / 'lib'}"
    path, _ = four_volumes(tmp_path, spec, 2)
    r = run_on(path)
    out = {v.name: str(v.outcome) for v in r.volumes}
    assert out == {"a": "not-run", "b": "failed", "c": "not-run", "d": "failed"}
    assert r.stopped == "no drive was left to take volumes a, c"
    assert len([n for n in r.notes if "the other drives went on" in n]) == 2
    err = r.error()
    assert err is not None and err.exit_code == 35 and "a (not-run)" in str(err)


def test_a_drive_that_cannot_open_the_catalog_gives_its_volume_back(tmp_path: Path, _private_catalog: Path) -> None:
    from tapearc.errors import CatalogError

    spec = library(tmp_path, 2)
    path, datas = four_volumes(tmp_path, spec, 2)
    calls: list[int] = []
    lock = threading.Lock()

    def opener() -> Catalog:
        with lock:
            calls.append(1)
            if len(calls) == 2:
                raise CatalogError("catalog unreachable (test)")
        return Catalog()

    r = run_on(path, open_catalog=opener)
    assert r.ok, [(v.name, v.error) for v in r.volumes]
    assert len({v.drive for v in r.volumes}) == 1
    assert any("not used: catalog unreachable (test)" in n for n in r.notes)
    for name, want in datas.items():
        assert restored_after(spec, tmp_path, name) == want


class _Joined:
    """A drive's thread as wait_for sees it: its join is cut by ``cuts`` Ctrl-Cs, and it ends
    once the run's stop is set (as a drive does at its next progress)."""

    def __init__(self, stop: threading.Event, cuts: int) -> None:
        self.stop, self.cuts = stop, cuts

    def is_alive(self) -> bool:
        return not self.stop.is_set() or self.cuts > 0

    def join(self, timeout: float) -> None:
        if self.cuts > 0:
            self.cuts -= 1
            raise KeyboardInterrupt


def test_ctrl_c_stops_the_drives_and_a_second_stops_waiting() -> None:
    stop = threading.Event()
    wait_for([_Joined(stop, 1)], stop)  # type: ignore[list-item]
    assert stop.is_set()
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        wait_for([_Joined(stop, 2)], stop)  # type: ignore[list-item]


class _Recorder:
    """A volume's progress that records the bytes it was told of, under its drive and volume."""

    def __init__(self, seen: dict[tuple[str, str], int], key: tuple[str, str]) -> None:
        self.seen, self.key = seen, key

    def start(self, description: str, total: int | None) -> None:
        self.seen.setdefault(self.key, 0)

    def advance(self, nbytes: int) -> None:
        self.seen[self.key] += nbytes

    def finish(self) -> None:
        pass


def test_progress_by_drive(tmp_path: Path, _private_catalog: Path) -> None:
    """drive_progress (run) and progress (restore of several volumes) get each volume's progress
    under the drive it is on: the CLI's bar per drive."""
    spec = library(tmp_path, 2)
    path, datas = four_volumes(tmp_path, spec, 2)
    seen: dict[tuple[str, str], int] = {}
    r = run_on(path, drive_progress=lambda d, v: _Recorder(seen, (d, v)))
    assert r.ok
    assert set(seen) == {(str(v.drive), v.name) for v in r.volumes} and all(seen.values())
    assert len({d for d, _ in seen}) == 2
    got: dict[tuple[str, str], int] = {}
    wanted = [(k, str(tmp_path / f"r-{k}.img")) for k in datas]
    with Catalog() as cat, open_drives(library_of(spec, None), 2, write=False, catalog=cat) as ds:
        done = restore_volumes(list(ds), cat, wanted, RestoreOptions(), progress=lambda d, v: _Recorder(got, (d, v)))
    assert set(got) == {(str(v.drive), v.volume) for v in done} and all(got.values())
