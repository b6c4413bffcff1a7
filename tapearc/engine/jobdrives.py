"""A job on several drives of one library at once (``drives = N``, ``tapearc run --drives N``).

One writer thread per drive; each drive is fed as a one-drive job feeds its drive: one
:func:`~tapearc.engine.backup.backup` per volume in turn, with its own catalog connection.
Threads, not processes: the heavy parts (reading, CRC and hashing, zstd, the writes) run in C
with the GIL released, and measured on a 2-core machine (docs/performance.md, issue 17) threads
gave the same wall time as one process per drive, without pickling results and errors across
processes.

Which volume goes where: a volume whose newest complete generation is in the media set of the
medium a drive holds goes to that drive (its incremental continues its chain there); the others
(new volumes, or whose set no drive holds) are taken largest first (their size on disk; volumes
whose size is not known cheaply, such as NBD exports, come after, in the job's order), each by
the drive that frees first: the longest ones start at once and the short ones fill in at the end.

Media sets: each drive writes its own media set (the set of the medium it holds, or a new one on
a blank medium): a media set is written medium after medium by one writer, so two drives never
share one (a job file's ``media_set``, one set, is refused with ``drives`` > 1).

What stops what (as in a one-drive job, per drive): a volume's own failure fails that volume and
its drive goes on with the next; a failure of the medium, the changer or the catalog stops that
drive (its volume failed) while the other drives go on with the remaining volumes; an internal
error stops every drive after its current volume; Ctrl-C interrupts every drive's current volume
(each generation marked incomplete, as a one-drive backup's is) and nothing more is started.
"""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tapearc import interrupts
from tapearc.catalog.db import Catalog
from tapearc.catalog.states import GenerationState
from tapearc.catalog.views import media_sets
from tapearc.engine.drives import JobDrive, reopen
from tapearc.engine.encryption import BackupKey
from tapearc.engine.jobfile import JobSpec
from tapearc.engine.jobs import STOPS_RUN, JobRun, Outcome, VolumeRun, load_last_of_set, run_one, settle_run
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.tapefiles import LabelProbe, probe_label
from tapearc.errors import InternalError, Interrupted, TapearcError

_JOIN_POLL = 0.2


def source_size(source: str) -> int | None:
    """The size of a volume's source when a stat tells it (a file, a block device), else None."""
    if "://" in source:
        return None
    try:
        st = os.stat(source)
        if stat.S_ISREG(st.st_mode):
            return st.st_size
        if stat.S_ISBLK(st.st_mode):
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return os.lseek(fd, 0, os.SEEK_END)
            finally:
                os.close(fd)
    except OSError:
        return None
    return None


def volume_order(job: JobSpec) -> list[int]:
    """The job's volumes (indexes) in the order drives take them: largest first, those of
    unknown size after, in the job's order."""
    sizes = [source_size(v.source) for v in job.volumes]
    known = sorted((i for i, s in enumerate(sizes) if s is not None), key=lambda i: (-(sizes[i] or 0), i))
    return known + [i for i, s in enumerate(sizes) if s is None]


class StopCheck:
    """A volume's progress that raises KeyboardInterrupt in the drive's thread once the run is
    to stop (Ctrl-C reaches the main thread only)."""

    def __init__(self, inner: Progress, stop: threading.Event) -> None:
        self.inner = inner
        self.stop = stop

    def _check(self) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt

    def start(self, description: str, total: int | None) -> None:
        self._check()
        self.inner.start(description, total)

    def advance(self, nbytes: int) -> None:
        self._check()
        self.inner.advance(nbytes)

    def finish(self) -> None:
        self.inner.finish()


@dataclass(slots=True)
class _Shared:
    """What the drives' threads share: the queue of volumes and the run they fill in."""

    job: JobSpec
    run: JobRun
    queue: list[int]
    full: bool
    now: int
    clock: Callable[[], float]
    encrypt: BackupKey | None
    progress: Callable[[str], Progress]
    open_catalog: Callable[[], Catalog]
    homes: list[uuid.UUID | None]  # each volume's media set: that of its newest complete generation
    sets: list[uuid.UUID | None]  # each drive's media set: that of the medium it holds (None: blank, empty)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # Ctrl-C: cut every drive's volume
    no_more: threading.Event = field(default_factory=threading.Event)  # take no further volume

    def take(self, drive: int) -> int | None:
        """The next volume for drive number ``drive`` (in the run's list): the first in the
        queue whose chain is in the drive's media set, else the first whose chain is in no
        other drive's set (those wait for their own drive); None: nothing for this drive."""
        with self.lock:
            if self.stop.is_set() or self.no_more.is_set():
                return None
            mine = self.sets[drive]
            others = {s for k, s in enumerate(self.sets) if k != drive and s is not None}
            pick = next((i for i in self.queue if mine is not None and self.homes[i] == mine), None)
            if pick is None:
                pick = next((i for i in self.queue if self.homes[i] is None or self.homes[i] not in others), None)
            if pick is not None:
                self.queue.remove(pick)
            return pick

    def give_back(self, volume: int | None) -> None:
        """A volume a drive took and cannot write goes back to the front of the queue."""
        if volume is not None:
            with self.lock:
                self.queue.insert(0, volume)

    def drive_set(self, drive: int, media_set: uuid.UUID | None) -> None:
        with self.lock:
            self.sets[drive] = media_set

    def note(self, text: str) -> None:
        with self.lock:
            self.run.notes.append(text)


def run_job_on_drives(
    job: JobSpec,
    drives: list[MediaSource],
    catalog: Catalog,
    *,
    full: bool = False,
    now: int | None = None,
    progress: Callable[[str], Progress] = lambda _name: NoProgress(),
    clock: Callable[[], float] = time.time,
    encrypt: BackupKey | None = None,
    open_catalog: Callable[[], Catalog] | None = None,
    stop: threading.Event | None = None,
    drive_progress: Callable[[str, str], Progress] | None = None,
) -> JobRun:
    """Back up every volume of ``job`` over ``drives`` at once (module docstring).
    ``open_catalog``: a new connection to the catalog for each drive's thread (default: the
    catalog ``catalog`` names); ``stop``: set to interrupt the run as Ctrl-C does;
    ``drive_progress``: a volume's progress by its drive (the drive's spec, the volume's name;
    instead of ``progress``)."""
    started = time.monotonic()
    at = int(clock()) if now is None else now
    run = JobRun(job.name, os.path.abspath(job.path), at, [VolumeRun(v.name, v.source) for v in job.volumes])
    if drive_progress is not None:
        progress = on_drive(run, drive_progress)
    opener = open_catalog or (lambda: reopen(catalog))
    homes = [home_set(catalog, v.name) for v in job.volumes]
    shared = _Shared(
        job,
        run,
        volume_order(job),
        full,
        at,
        clock,
        encrypt,
        progress,
        opener,
        homes,
        prepare_drives(drives, catalog, homes, run.notes),
    )
    if stop is not None:
        shared.stop = stop
    firsts = [shared.take(k) for k in range(len(drives))]  # every drive starts at once, whatever the scheduler
    threads = [
        threading.Thread(target=_drive_thread, args=(shared, k, d, firsts[k]), name=f"tapearc-drive-{k}", daemon=True)
        for k, d in enumerate(drives)
    ]
    for t in threads:
        t.start()
    wait_for(threads, shared.stop)
    run.interrupted = any(v.outcome == Outcome.INTERRUPTED for v in run.volumes)
    if run.interrupted:
        first = next(v for v in run.volumes if v.outcome == Outcome.INTERRUPTED)
        run.stopped = f"interrupted (Ctrl-C) during volume {first.name!r}"
    elif run.stopped is None and (left := [v.name for v in run.volumes if v.outcome == Outcome.NOT_RUN]):
        run.stopped = f"no drive was left to take volume{'s' if len(left) > 1 else ''} {', '.join(left)}"
    run.seconds = time.monotonic() - started
    run.drives = [d.clock.to_json(run.seconds) for d in drives if isinstance(d, JobDrive)]
    return run


def on_drive(run: JobRun, drive_progress: Callable[[str, str], Progress]) -> Callable[[str], Progress]:
    """A volume's progress (by its name) from the drive it is on: a drive's thread names its
    drive in the volume's VolumeRun before it starts the volume."""
    runs = {v.name: v for v in run.volumes}
    return lambda name: drive_progress(runs[name].drive or "", name)


def wait_for(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Join the drives' threads; Ctrl-C (in this, the main thread) tells each to stop, and the
    wait goes on until each has closed its generation (marked incomplete). A second Ctrl-C
    stops waiting (KeyboardInterrupt): the process ends as a killed one would, the generations
    being written left for the next run (a drive blocked in a wait does not hold the user)."""
    for t in threads:
        while t.is_alive():
            try:
                t.join(_JOIN_POLL)
            except KeyboardInterrupt:
                if stop.is_set():
                    raise
                stop.set()


def home_set(catalog: Catalog, volume: str) -> uuid.UUID | None:
    """The media set of the volume's newest complete generation (None: it has none), where its
    next incremental goes: the drive holding that set takes it."""
    gens = [
        g for s in media_sets(catalog) for g in catalog.generations(s, volume) if g.state == GenerationState.COMPLETE
    ]
    return max(gens, key=lambda g: (g.created, g.id)).set_uuid if gens else None


def prepare_drives(
    drives: list[MediaSource], catalog: Catalog, homes: list[uuid.UUID | None], notes: list[str]
) -> list[uuid.UUID | None]:
    """Before the run, one drive after the other: the media set each drive continues (None: a
    blank medium, a new set). A drive holding the last medium of a set no other drive took keeps
    it (its set's last medium is loaded first, as for a one-drive job); a drive that is empty or
    blank, or whose set another drive took (or whose set's last medium another drive holds),
    loads the last medium of a set that volumes of the job continue and no drive took yet, else
    a blank medium."""
    sets: list[uuid.UUID | None] = []
    for d in drives:
        held, ok = _held_set(d, catalog, notes)
        if held is None or held in sets or not ok:
            wanted = [h for h in sorted(set(homes) - set(sets), key=lambda h: -homes.count(h)) if h is not None]
            held = _continue_one(d, catalog, wanted, notes)
            if held is None and not ok:
                _blank(d, catalog, notes)
        sets.append(held)
    return sets


def _held_set(drive: MediaSource, catalog: Catalog, notes: list[str]) -> tuple[uuid.UUID | None, bool]:
    """The set of the medium the drive holds after loading its set's last medium (None: empty
    or blank), and False when that could not be done (the medium is not its set's last)."""
    try:
        notes += [f"drive {drive.spec}: {n}" for n in load_last_of_set(drive, catalog)]
        label = probe_label(drive.current()).label
    except TapearcError:
        return None, False
    return (label.media_set_uuid if label is not None else None), True


def _continue_one(drive: MediaSource, catalog: Catalog, sets: list[uuid.UUID], notes: list[str]) -> uuid.UUID | None:
    """Load the last medium of the first of ``sets`` that the changer can give; its set."""
    for s in sets:
        last = max(catalog.media_of_set(s), key=lambda m: m.sequence, default=None)
        if last is None or not drive.can_change or drive.is_operator:
            continue
        try:
            drive.medium_by_sequence(s, last.sequence)
        except TapearcError:
            continue
        notes.append(
            f"drive {drive.spec}: loaded {last.label or 'sequence ' + str(last.sequence)}, the last medium of set {s}"
        )
        return s
    return None


def _blank(drive: MediaSource, catalog: Catalog, notes: list[str]) -> None:
    """Load a blank medium (its first backup starts a new set); a failure is left for the
    drive's first backup to report."""
    known = set(catalog.known_labels())

    def blank(p: LabelProbe) -> bool | str:
        return True if p.blank else "a medium that is not blank"

    try:
        drive.obtain(f"a blank medium for drive {drive.spec}", blank, drive.unknown_barcodes(known))
    except TapearcError as e:
        notes.append(f"drive {drive.spec}: no medium to continue or start a set on: {e}")


def _drive_thread(shared: _Shared, k: int, drive: MediaSource, first: int | None) -> None:
    """One drive's writer: its first volume, then those it takes, one after the other."""
    try:
        cat = shared.open_catalog()
    except TapearcError as e:
        shared.note(f"drive {drive.spec}: not used: {e}")
        shared.give_back(first)
        shared.drive_set(k, None)
        return
    try:
        drive.catalog = cat  # the drive's own look-ups (known media) use this thread's connection
        drive.defer_sync = True  # one drive stop per run, not per volume (engine.jobs)
        i = first
        while i is not None:
            out = shared.run.volumes[i]
            out.drive = drive.spec
            if not _volume(shared, i, out, drive, cat):
                break
            if out.result is not None and out.result.parts:  # the set this drive writes now
                shared.drive_set(k, _set_of(cat, out.result.parts[-1]))
            i = shared.take(k)
    finally:
        drive.defer_sync = False
        settle_run(drive, shared.run.volumes)  # with this thread's catalog, before it closes
        shared.drive_set(k, None)  # a drive that stopped keeps no volume waiting for it
        cat.close()


def _set_of(cat: Catalog, part: dict[str, object]) -> uuid.UUID | None:
    row = cat.medium(uuid.UUID(str(part.get("medium_uuid"))))
    return row.set_uuid if row is not None else None


def _volume(shared: _Shared, i: int, out: VolumeRun, drive: MediaSource, cat: Catalog) -> bool:
    """Back up volume ``i`` on ``drive``; False when the drive must stop."""
    job, vol = shared.job, shared.job.volumes[i]
    t0 = time.monotonic()
    try:
        run_one(
            job,
            vol,
            out,
            drive,
            cat,
            full=shared.full,
            now=shared.now,
            progress=StopCheck(shared.progress(vol.name), shared.stop),
            clock=shared.clock,
            encrypt=shared.encrypt,
        )
        return True
    except KeyboardInterrupt:
        out.outcome, out.error = Outcome.INTERRUPTED, Interrupted(interrupts.message())
        shared.stop.set()
        return False
    except STOPS_RUN as e:
        out.outcome, out.error = Outcome.FAILED, e
        shared.note(
            f"drive {drive.spec} stopped after volume {vol.name!r}: {e.kind} failure of the medium, changer or "
            "catalog; the other drives went on"
        )
        return False
    except TapearcError as e:
        out.outcome, out.error = Outcome.FAILED, e
        return True
    except Exception as e:  # a bug: this volume fails, and no drive takes another
        out.outcome, out.error = Outcome.FAILED, InternalError(f"internal error: {type(e).__name__}: {e}")
        with shared.lock:
            shared.run.internal = e
            shared.run.stopped = f"the run stopped after volume {vol.name!r}: internal error"
        shared.no_more.set()
        return False
    finally:
        out.seconds = time.monotonic() - t0
