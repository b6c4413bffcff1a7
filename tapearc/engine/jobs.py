"""A job: the volumes of a job file (engine.jobfile) backed up one after the other, in one run.

Each volume is one :func:`tapearc.engine.backup.backup` with the options a ``tapearc backup``
of it would take, onto the job's one :class:`~tapearc.engine.mediasource.MediaSource`: several
volumes per medium, a generation spanning onto the next medium as a backup does, the changer
loading media as a backup makes it.

What stops what:

- a volume's own failure (its source missing or failing, a volume-identity refusal, a change
  file that does not parse, ...) fails that volume; the run goes on with the next;
- a failure of the medium, the changer or the catalog (:data:`STOPS_RUN`: further writes are
  not safe) fails that volume and stops the run: the volumes after it are "not run";
- Ctrl-C interrupts the volume being backed up (as a backup is: its generation marked
  incomplete) and the volumes after it are "not run";
- anything unexpected (a bug) fails the volume and stops the run too; the exception is kept in
  :attr:`JobRun.internal` for the caller to report.

One drive stop per run, not per volume: a volume's generation ends with an immediate filemark
and the drive streams on into the next volume; the drive writes its buffer out once, when the run
ends or before its medium changes, and only then does the catalog record those generations
complete (:meth:`MediaSource.settle`, :func:`settle_run`). Should that fail, their volumes fail
with the drive's error and their generations are recorded incomplete.

Fulls: ``full`` makes every volume's generation a full; else a volume's ``full_every`` (or the
job's) makes it a full when the volume's last complete full is that many days old (by ``now``)
or that many runs back (:func:`full_due`); else the backup chooses (incremental when the volume
has a complete generation in the media set). Nothing here prints.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from tapearc import interrupts
from tapearc.catalog.db import Catalog
from tapearc.catalog.states import GenerationState
from tapearc.catalog.views import media_sets, zoned_time
from tapearc.engine.backup import DEFAULT_BLOCK_SIZE, DEFAULT_CHUNK_SIZE, BackupOptions, BackupResult, backup
from tapearc.engine.encryption import BackupKey
from tapearc.engine.jobfile import FullEvery, JobSpec, VolumeSpec, change_options
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.tapefiles import probe_label
from tapearc.errors import (
    CatalogError,
    FormatError,
    InternalError,
    Interrupted,
    JobPartialError,
    MediumError,
    MediumIOError,
    MediumUnavailableError,
    TapearcError,
    TrackerMissedError,
)

#: Failures after which the run stops: the medium, the changer or the catalog cannot be trusted
#: with further writes.
STOPS_RUN: tuple[type[TapearcError], ...] = (MediumError, CatalogError, FormatError)
DAY = 86400


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_RUN = "not-run"
    INTERRUPTED = "interrupted"


@dataclass(slots=True)
class VolumeRun:
    """What became of one volume of the job."""

    name: str
    source: str
    outcome: Outcome = Outcome.NOT_RUN
    kind: str | None = None  # "full" | "incremental" (None: no generation written)
    full_reason: str | None = None  # why a full was forced (--full, full_every)
    generation: int | None = None
    bytes_read: int = 0  # from the source
    bytes_written: int = 0  # to the media (chunk payloads as stored)
    media: list[str] = field(default_factory=list)  # labels (else names) of the media it is on, in order
    seconds: float = 0.0
    error: TapearcError | None = None
    warnings: list[str] = field(default_factory=list)
    result: BackupResult | None = None
    drive: str | None = None  # the drive it was written on (a job on several drives)

    def to_json(self) -> dict[str, object]:
        return {
            "volume": self.name,
            "source": self.source,
            "outcome": str(self.outcome),
            "kind": self.kind,
            "full_reason": self.full_reason,
            "generation": self.generation,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "media": self.media,
            "seconds": round(self.seconds, 3),
            "error": self.error.to_json() if self.error is not None else None,
            "warnings": self.warnings,
            "drive": self.drive,
        }


@dataclass(slots=True)
class JobRun:
    """A run of a job: each volume's outcome, in the job's order."""

    job: str
    file: str
    now: int  # unix seconds: the time full_every was judged at (JSON: ISO 8601, zoned)
    volumes: list[VolumeRun]
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped before its last volume
    interrupted: bool = False
    internal: BaseException | None = None  # an unexpected exception (a bug) that stopped the run
    notes: list[str] = field(default_factory=list)  # what the run did beyond the backups (a medium loaded)
    drives: list[dict[str, object]] = field(default_factory=list)  # several drives: what each was given

    @property
    def ok(self) -> bool:
        """Every volume backed up, none with an error (a tracker found lying is one)."""
        return all(v.outcome == Outcome.OK and v.error is None for v in self.volumes)

    def error(self) -> TapearcError | None:
        """The run's own error: None when every volume was backed up; Interrupted after Ctrl-C;
        else JobPartialError naming the volumes that were not."""
        if self.interrupted:
            cut = next((v.name for v in self.volumes if v.outcome == Outcome.INTERRUPTED), "?")
            return Interrupted(
                f"{interrupts.message()}: job {self.job!r} stopped during volume {cut!r}, the volumes after it not run"
            )
        bad = [v for v in self.volumes if v.outcome != Outcome.OK or v.error is not None]
        if not bad:
            return None
        shown = ", ".join(
            f"{v.name} ({v.outcome}" + (f": exit {v.error.exit_code} {v.error.kind})" if v.error else ")") for v in bad
        )
        what = "not backed up" if all(v.outcome != Outcome.OK for v in bad) else "not backed up or with an error"
        return JobPartialError(
            f"job {self.job!r}: {len(bad)} of {len(self.volumes)} volumes {what}: {shown}"
            + (f"; {self.stopped}" if self.stopped else ""),
            hint="the summary gives each volume's error; run the job again once they are fixed",
        )

    def to_json(self) -> dict[str, object]:
        err = self.error()
        return {
            "job": self.job,
            "file": self.file,
            "now": zoned_time(self.now),
            "ok": self.ok,
            "exit_code": err.exit_code if err is not None else 0,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
            "volumes": [v.to_json() for v in self.volumes],
            "drives": self.drives,
        }


def backup_options(job: JobSpec, vol: VolumeSpec, *, full: bool, encrypt: BackupKey | None = None) -> BackupOptions:
    """The options a ``tapearc backup`` of the volume would take from the job file's keys
    (``encrypt``: the job's key, opened once by the caller)."""
    return BackupOptions(
        block_size=vol.block_size if vol.block_size is not None else DEFAULT_BLOCK_SIZE,
        block_size_given=vol.block_size is not None,
        record_size=job.record_size,
        compress=vol.compress,
        volume_name=vol.name,
        full=full,
        media_set=uuid.UUID(job.media_set) if job.media_set else None,
        chunk_size=vol.chunk_size if vol.chunk_size is not None else DEFAULT_CHUNK_SIZE,
        verify=vol.verify,
        changes=change_options(vol),
        pool=job.pool,
        encrypt=encrypt,
    )


def full_due(catalog: Catalog, volume: str, rule: FullEvery | None, now: int) -> str | None:
    """Why the volume's next generation must be a full by ``rule`` (None: it need not be).
    Counted over the volume's complete generations in the catalog, of any media set: the last
    full is ``rule.days`` days old or more at ``now``, or it and the generations after it make
    ``rule.runs`` or more."""
    if rule is None:
        return None
    gens = sorted(
        (g for s in media_sets(catalog) for g in catalog.generations(s, volume) if g.state == GenerationState.COMPLETE),
        key=lambda g: (g.created, g.id),
    )
    fulls = [i for i, g in enumerate(gens) if g.kind == "full"]
    if not fulls:
        return None  # no full yet: the backup writes one anyway
    last = gens[fulls[-1]]
    if rule.days is not None:
        age = now - last.created
        if age >= rule.days * DAY:
            return f"full_every {rule.describe()}: the last full is {age // DAY} days old"
        return None
    since = len(gens) - fulls[-1]
    assert rule.runs is not None
    if since >= rule.runs:
        return f"full_every {rule.runs}: {since} runs since the last full (itself included)"
    return None


def run_job(
    job: JobSpec,
    media: MediaSource,
    catalog: Catalog,
    *,
    full: bool = False,
    now: int | None = None,
    progress: Callable[[str], Progress] = lambda _name: NoProgress(),
    clock: Callable[[], float] = time.time,
    encrypt: BackupKey | None = None,
) -> JobRun:
    """Back up every volume of ``job`` in order (module docstring: what stops what). ``now``:
    the time ``full_every`` is judged at (default ``clock()``); ``progress(volume)``: the
    progress display of each volume's backup; ``encrypt``: the job's key (``encrypt`` in the
    job file), opened by the caller once for every volume."""
    started = time.monotonic()
    at = int(clock()) if now is None else now
    run = JobRun(job.name, os.path.abspath(job.path), at, [VolumeRun(v.name, v.source) for v in job.volumes])
    media.defer_sync = True
    try:
        _volumes_in_turn(job, media, catalog, run, full, at, progress, clock, encrypt)
    finally:
        media.defer_sync = False
        settle_run(media, run.volumes)
    run.seconds = time.monotonic() - started
    return run


def _volumes_in_turn(
    job: JobSpec,
    media: MediaSource,
    catalog: Catalog,
    run: JobRun,
    full: bool,
    at: int,
    progress: Callable[[str], Progress],
    clock: Callable[[], float],
    encrypt: BackupKey | None,
) -> None:
    for vol, out in zip(job.volumes, run.volumes, strict=True):
        t0 = time.monotonic()
        try:
            if vol is job.volumes[0]:
                run.notes += load_last_of_set(media, catalog)
            run_one(
                job,
                vol,
                out,
                media,
                catalog,
                full=full,
                now=at,
                progress=progress(vol.name),
                clock=clock,
                encrypt=encrypt,
            )
        except KeyboardInterrupt:
            out.outcome, out.error = Outcome.INTERRUPTED, Interrupted(interrupts.message())
            run.interrupted, run.stopped = True, f"interrupted (Ctrl-C) during volume {vol.name!r}"
        except STOPS_RUN as e:
            out.outcome, out.error = Outcome.FAILED, e
            run.stopped = (
                f"the run stopped after volume {vol.name!r}: {e.kind} failure of the medium, changer or catalog"
            )
        except TapearcError as e:
            out.outcome, out.error = Outcome.FAILED, e
        except Exception as e:  # a bug: this volume fails, and the run stops (nothing is known to be safe)
            out.outcome, out.error = Outcome.FAILED, InternalError(f"internal error: {type(e).__name__}: {e}")
            run.internal, run.stopped = e, f"the run stopped after volume {vol.name!r}: internal error"
        finally:
            out.seconds = time.monotonic() - t0
        if run.stopped:
            break


def settle_run(media: MediaSource, volumes: list[VolumeRun]) -> None:
    """The drive writes out what the run wrote on it and the catalog records those generations
    complete (MediaSource.settle). A failed sync (now or at a medium change before) fails the
    volumes whose generations it left unconfirmed, with the drive's error."""
    try:
        media.settle()
    except TapearcError:
        pass  # kept in media.unsettled with the generations it concerns
    finally:  # (a Ctrl-C held through a failed sync comes out as KeyboardInterrupt: the volumes fail all the same)
        _fail_unsettled(media, volumes)


def _fail_unsettled(media: MediaSource, volumes: list[VolumeRun]) -> None:
    unsettled, media.unsettled = media.unsettled, []
    for p, e in unsettled:
        for out in volumes:
            if out.name == p.volume and out.generation == p.generation and out.outcome == Outcome.OK:
                out.outcome = Outcome.FAILED
                out.error = MediumIOError(
                    f"{p.what} was written, but the drive did not confirm it on the medium: {e.message}",
                    hint="the catalog records it incomplete; tapearc scan reads what the medium holds",
                ).at(medium=e.medium)
                if out.result is not None:
                    out.result.complete = False


def load_last_of_set(media: MediaSource, catalog: Catalog) -> list[str]:
    """With a changer that loads media itself (not an operator): when the drive holds a medium of
    a set that the catalog says continues on a later sequence (a restore or verify left it
    there), load the set's last medium, where a backup appends; an unattended job would
    otherwise stop at the first volume (wrong-medium). Returns what it did, for the summary."""
    if not media.can_change or media.is_operator:
        return []
    try:
        probe = probe_label(media.current())
    except MediumUnavailableError:
        return []  # an empty drive and no tape: the backup says so
    label = probe.label
    if label is None:
        return []
    later = [m for m in catalog.media_of_set(label.media_set_uuid) if m.sequence > label.sequence]
    if not later:
        return []
    last = max(later, key=lambda m: m.sequence)
    media.medium_by_sequence(label.media_set_uuid, last.sequence)
    held = f"sequence {label.sequence}" + (f" ({label.text})" if label.text else "")
    return [
        f"the drive held {held} of media set {label.media_set_uuid}; loaded its last medium, sequence "
        f"{last.sequence}" + (f" ({last.label})" if last.label else "") + ", to append to"
    ]


def run_one(
    job: JobSpec,
    vol: VolumeSpec,
    out: VolumeRun,
    media: MediaSource,
    catalog: Catalog,
    *,
    full: bool,
    now: int,
    progress: Progress,
    clock: Callable[[], float],
    encrypt: BackupKey | None = None,
) -> None:
    """Back up one volume of the job into ``out``."""
    reason = "--full" if full else full_due(catalog, vol.name, job.full_every_of(vol), now)
    opts = backup_options(job, vol, full=reason is not None, encrypt=encrypt)
    res = backup(vol.source, media, catalog, opts, progress, clock=clock)
    out.result = res
    out.outcome = Outcome.OK
    out.kind, out.generation = res.kind, res.generation
    out.full_reason = reason if res.kind == "full" else None
    out.bytes_read, out.bytes_written = res.source_bytes_read, res.stored_bytes
    out.media = [_medium_name(catalog, p) for p in res.parts]
    out.warnings = list(res.warnings)
    if res.tracker_missed:  # verify_unchanged: the generation is right, the tracker is not (exit 27)
        out.error = _tracker_missed(res)


def _tracker_missed(res: BackupResult) -> TrackerMissedError:
    spans = res.tracker_missed
    total = sum(b - a + 1 for a, b in spans)
    shown = ", ".join(f"{a}-{b}" if b != a else str(a) for a, b in spans[:20]) + (" ..." if len(spans) > 20 else "")
    tracker = (res.change or {}).get("source", "the change tracker")
    return TrackerMissedError(
        f"{tracker} called {total} changed blocks unchanged (blocks {shown}, {res.block_size}-byte blocks); they were "
        "read and backed up anyway: the generation is complete and correct, but the tracker cannot be trusted",
        hint="leave the tracker out of the job (or keep verify_unchanged) until its cause is found; docs/changes.md",
        ranges=len(spans),
    )


def _medium_name(catalog: Catalog, part: dict[str, object]) -> str:
    """A medium a generation part is on, by its label (else the name of its drive)."""
    try:
        row = catalog.medium(uuid.UUID(str(part.get("medium_uuid"))))
    except ValueError:
        row = None
    return row.label if row is not None and row.label else str(part.get("medium", "?"))


def summary_line(run: JobRun) -> str:
    """The run as one line of JSON (for a monitoring log)."""
    return json.dumps(run.to_json(), separators=(",", ":"), default=str)


def append_summary(path: str, run: JobRun) -> None:
    """Append the run's summary line to ``path`` (made if missing; its folder must exist).
    An OSError is the caller's to report."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(summary_line(run) + "\n")
