"""A job's generations end with immediate filemarks (st MTWEOFI): the drive streams on into the
next volume instead of writing its whole buffer out at every generation (a stop and a back-hitch
per volume on an LTO drive). The drive is synced once, when the run ends or before its medium
changes, and only then does the catalog record those generations complete: a generation is never
"complete" in the catalog before the drive has confirmed it on the medium. A failed sync fails
those volumes and records their generations incomplete. A lone backup (and one with --verify)
still ends with a synchronous filemark."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tapearc import interrupts
from tapearc.catalog.db import Catalog
from tapearc.catalog.views import media_sets
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.jobfile import read_job
from tapearc.engine.jobs import JobRun, run_job
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.progress import NoProgress
from tapearc.errors import JobPartialError, MediumIOError
from tapearc.media.base import TapeDrive, WriteStatus
from tests.engine.test_jobs import BS, job_file, restored, write


class Recorder:
    """A drive that logs its filemarks and syncs (``FM``, ``FMI``, ``SYNC``) with the catalog
    states of the volumes' generations at each sync; ``fail_sync``: the sync fails as a drive
    whose buffer cannot be written out does."""

    def __init__(self, drive: TapeDrive, log: list[Any], fail_sync: bool, ctrl_c: bool = False) -> None:
        self._drive = drive
        self._log = log
        self._fail = fail_sync
        self._ctrl_c = ctrl_c

    def write_filemark(self, *, immediate: bool = False) -> WriteStatus:
        self._log.append("FMI" if immediate else "FM")
        return self._drive.write_filemark(immediate=immediate)

    def sync(self) -> None:
        self._log.append(("SYNC", states()))
        if self._ctrl_c:  # the user presses Ctrl-C while the drive writes its buffer out
            os.kill(os.getpid(), signal.SIGINT)
        if self._fail:
            raise MediumIOError("write error while writing the buffer to the medium (sense 03/0c00)")
        self._drive.sync()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._drive, name)


@pytest.fixture
def drive_log(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    log: list[Any] = []
    orig = MediaSource._open
    fail = {"sync": False, "ctrl_c": False}

    def opened(self: MediaSource, write: bool | None = None) -> TapeDrive:
        return Recorder(orig(self, write), log, fail["sync"], fail["ctrl_c"])  # type: ignore[return-value]

    monkeypatch.setattr(MediaSource, "_open", opened)
    log.append(fail)  # the first entry: the switch
    return log


def states() -> list[tuple[str, int, str]]:
    """Every generation's (volume, number, state) in the catalog, read on a connection of its own."""
    with Catalog() as cat:
        return [(g.volume, g.number, str(g.state)) for s in media_sets(cat) for g in cat.generations(s)]


def run(path: str) -> JobRun:
    job = read_job(path)
    with Catalog() as cat, MediaSource(job.media, write=True, catalog=cat) as media:
        return run_job(job, media, cat)


def killed_before_the_sync(path: str) -> tuple[int, list[tuple[str, int, str]]]:
    """The job's first volume backed up as in a run (immediate filemark, deferred sync), then the
    process dies before the drive's sync: nothing more reaches the catalog. Returns the
    generations left pending and the catalog's states at that moment."""
    from tapearc.engine.jobs import VolumeRun, run_one

    job = read_job(path)
    with Catalog() as cat:
        media = MediaSource(job.media, write=True, catalog=cat)
        media.defer_sync = True
        out = VolumeRun(job.volumes[0].name, job.volumes[0].source)
        run_one(job, job.volumes[0], out, media, cat, full=False, now=0, progress=NoProgress(), clock=lambda: 0.0)
        pending, before = len(media.pending), states()
        media.pending.clear()  # the process dies here
        media.close()
    return pending, before


def three_volumes(tmp_path: Path, spec: str, **defaults: Any) -> tuple[str, dict[str, bytes]]:
    datas = {n: write(tmp_path / f"{n}.img", i, (6 + i) * BS) for i, n in enumerate("abc", 1)}
    vols = [{"name": n, "source": f"{n}.img"} for n in datas]
    return job_file(tmp_path, {"name": "j", "media": spec}, vols, {"block_size": BS, **defaults}), datas


def test_a_jobs_generations_end_with_immediate_filemarks_and_one_sync(
    tmp_path: Path, _private_catalog: Path, drive_log: list[Any]
) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    path, datas = three_volumes(tmp_path, spec)
    r = run(path)
    assert r.ok, [(v.name, v.error) for v in r.volumes]
    ops = drive_log[1:]
    # the label's filemark is synchronous (a new medium joins the catalog), then one immediate
    # filemark per generation and a single sync, at which the catalog still says "writing"
    assert ops[:4] == ["FM", "FMI", "FMI", "FMI"] and len(ops) == 5
    assert ops[4] == ("SYNC", [("a", 1, "writing"), ("b", 1, "writing"), ("c", 1, "writing")])
    assert states() == [("a", 1, "complete"), ("b", 1, "complete"), ("c", 1, "complete")]
    for name, data in datas.items():
        assert restored(spec, tmp_path, name) == data
    # a second run appends incrementals the same way: still one sync
    write(tmp_path / "b.img", 9, 7 * BS)
    del drive_log[1:]
    r2 = run(path)
    assert r2.ok and [v.kind for v in r2.volumes] == ["incremental", "incremental", "incremental"]
    assert drive_log[1:4] == ["FMI", "FMI", "FMI"] and [op[0] for op in drive_log[4:]] == ["SYNC"]
    assert restored(spec, tmp_path, "b") == (tmp_path / "b.img").read_bytes()


def test_a_failed_sync_fails_the_volumes_it_leaves_unconfirmed(
    tmp_path: Path, _private_catalog: Path, drive_log: list[Any]
) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    path, _ = three_volumes(tmp_path, spec)
    drive_log[0]["sync"] = True
    r = run(path)
    assert [(v.name, v.outcome) for v in r.volumes] == [("a", "failed"), ("b", "failed"), ("c", "failed")]
    for v in r.volumes:
        assert isinstance(v.error, MediumIOError)
        assert f"volume {v.name!r}" in v.error.message and "did not confirm it on the medium" in v.error.message
        assert "sense 03/0c00" in v.error.message
        assert v.result is not None and not v.result.complete
    assert isinstance(r.error(), JobPartialError)
    assert states() == [("a", 1, "incomplete"), ("b", 1, "incomplete"), ("c", 1, "incomplete")]


@pytest.mark.parametrize("sync_fails", [False, True])
def test_ctrl_c_during_the_sync_says_what_the_sync_decided(
    tmp_path: Path, _private_catalog: Path, drive_log: list[Any], sync_fails: bool
) -> None:
    """A Ctrl-C held while the drive writes its buffer out: the command still stops
    (KeyboardInterrupt, exit 130) and its message says what became of each generation -- complete
    once the sync succeeded; not confirmed, recorded incomplete, with the drive's error, when it
    failed (it used to say "recorded complete once the drive has written it out" either way, and
    a failed sync dropped the Ctrl-C)."""
    spec = f"sim:{tmp_path / 't.tap'}"
    path, _ = three_volumes(tmp_path, spec)
    drive_log[0].update(sync=sync_fails, ctrl_c=True)
    interrupts.clear_notes()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(path)
        said = interrupts.message()
    finally:
        interrupts.clear_notes()
    assert "once the drive has written it out" not in said
    for name in "abc":
        what = f"generation 1 of volume {name!r} on medium"
        if sync_fails:
            assert what in said and "was not confirmed by the drive: recorded incomplete" in said
        else:
            assert f"{what} " in said and said.count(" is complete") == 3
    assert ("sense 03/0c00" in said) is sync_fails
    state = "incomplete" if sync_fails else "complete"
    assert states() == [("a", 1, state), ("b", 1, state), ("c", 1, state)]


def test_a_lone_backup_and_a_verified_job_end_with_synchronous_filemarks(
    tmp_path: Path, _private_catalog: Path, drive_log: list[Any]
) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    write(tmp_path / "x.img", 5, 5 * BS)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        backup(str(tmp_path / "x.img"), media, cat, BackupOptions(block_size=BS))
    assert drive_log[1:] == ["FM", "FM"]  # the label's, the generation's: no sync needed
    del drive_log[1:]
    path, _ = three_volumes(tmp_path, spec, verify=True)
    assert run(path).ok
    assert drive_log[1:] == ["FM", "FM", "FM"]  # each read back at once: on the medium first


def test_a_medium_change_syncs_first(tmp_path: Path, _private_catalog: Path, drive_log: list[Any]) -> None:
    """A job spanning the tapes of a library: before the drive's medium changes, the generations
    written on it are synced and recorded complete."""
    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), 4, 1536 * 1024, early_warning=256 * 1024, max_record=1024 * 1024)
    spec = f"sim:{tmp_path / 'lib'}"
    datas = {"a": write(tmp_path / "a.img", 1, 300 * 1024), "b": write(tmp_path / "b.img", 2, 2 * 1024 * 1024)}
    vols = [{"name": k, "source": f"{k}.img"} for k in datas]
    defaults = {"block_size": BS, "chunk_size": "256K"}
    path = job_file(tmp_path, {"name": "lib", "media": spec, "record_size": "64K"}, vols, defaults)
    r = run(path)
    assert r.ok, [(v.name, v.error) for v in r.volumes]
    assert r.volumes[1].media[:2] == [r.volumes[0].media[0], r.volumes[1].media[1]]  # b spans
    syncs = [op for op in drive_log[1:] if isinstance(op, tuple)]
    # the first sync comes before b's part on the next tape: a is still "writing" then, b too
    assert syncs[0][1] == [("a", 1, "writing"), ("b", 1, "writing")]
    assert states() == [("a", 1, "complete"), ("b", 1, "complete")]
    for name, data in datas.items():
        assert restored(spec, tmp_path, name) == data


def test_each_drive_of_a_job_syncs_once_with_its_own_catalog_connection(
    tmp_path: Path, _private_catalog: Path, drive_log: list[Any]
) -> None:
    """Two drives: each writes its volumes' generations with immediate filemarks and syncs once,
    at the end of its run (in its own thread, before its catalog connection closes)."""
    from tests.engine.test_parallel_drives import four_volumes, library, restored_after, run_on

    spec = library(tmp_path, 2)
    path, datas = four_volumes(tmp_path, spec, 2)
    r = run_on(path)
    assert r.ok, [(v.name, v.error) for v in r.volumes]
    ops = drive_log[1:]
    assert ops.count("FMI") == 4 and [op[0] for op in ops if isinstance(op, tuple)] == ["SYNC", "SYNC"]
    assert {(v, s) for v, _, s in states()} == {(v, "complete") for v in datas}
    for name, data in datas.items():
        assert restored_after(spec, tmp_path, name) == data


def test_killed_before_the_sync_the_catalog_says_writing_and_a_scan_learns_it_whole(
    tmp_path: Path, _private_catalog: Path
) -> None:
    """A job process killed after a generation's immediate filemark, before the drive's sync: the
    catalog never said complete (its row stays "writing"); the medium holds the generation whole
    (a killed process loses nothing the drive was given), and a scan learns it complete."""
    from tapearc.engine.scan import scan_medium

    spec = f"sim:{tmp_path / 't.tap'}"
    path, datas = three_volumes(tmp_path, spec)
    pending, before = killed_before_the_sync(path)
    assert pending == 1 and before == [("a", 1, "writing")]
    assert states() == [("a", 1, "writing")]
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        res = scan_medium(media.current(), cat)
    assert [(f.volume, f.state) for f in res.files] == [("a", "complete")]
    assert states() == [("a", 1, "complete")]
    assert restored(spec, tmp_path, "a") == datas["a"]
