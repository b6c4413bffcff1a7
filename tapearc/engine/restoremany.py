"""A restore of several volumes, on one or several drives of a library at once.

Each volume's generation is the newest complete one at ``at`` (default: now) in whichever media
set holds it (a job on several drives writes one set per drive). The planner
(:func:`tapearc.engine.plan.assign_drives`) gives each drive its volumes so that no medium is
needed by two drives: volumes whose generations share a medium go to one drive, one after the
other; the groups are spread largest first. Before the drives start, each drive loads the first
medium it reads (one after the other, under the job's changer lock), so no drive picks up a
medium that another one needs. Then one thread per drive restores its volumes in turn, each with
its own catalog connection, as ``tapearc restore`` does. A volume's failure fails that volume;
the drive goes on with its next. Ctrl-C stops every drive (reaching their threads through their
progress, as in engine.jobdrives).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tapearc import interrupts
from tapearc.catalog.db import Catalog, MediumRow
from tapearc.catalog.views import generation_at_any
from tapearc.engine.drives import reopen
from tapearc.engine.jobdrives import StopCheck, wait_for
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.plan import assign_drives, load_chain, make_plan
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.restore import RestoreOptions, RestoreResult, outcome, restore
from tapearc.errors import InternalError, Interrupted, NoSuchGenerationError, TapearcError


@dataclass(slots=True)
class VolumeRestore:
    """What became of one volume of the restore."""

    volume: str
    target: str
    generation: int | None = None
    media: list[uuid.UUID] = field(default_factory=list)  # what its plan reads, in order
    bytes: int = 0
    drive: str | None = None
    result: RestoreResult | None = None
    error: TapearcError | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "volume": self.volume,
            "target": self.target,
            "generation": self.generation,
            "drive": self.drive,
            "status": "interrupted"
            if isinstance(self.error, Interrupted)
            else ("not-run" if self.result is None and self.error is None else self.status()),
            "seconds": round(self.seconds, 3),
            "result": self.result.to_json() if self.result is not None else None,
            "error": self.error.to_json() if self.error is not None else None,
        }

    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return self.result.status if self.result is not None else "not-run"

    def exit_error(self) -> TapearcError | None:
        if self.error is not None:
            return self.error
        return outcome(self.result) if self.result is not None else None


def plan_volumes(
    catalog: Catalog, wanted: list[tuple[str, str]], at: int, *, newest: bool = False
) -> list[VolumeRestore]:
    """Each (volume, target): its generation at ``at`` (``newest``: ``at`` is now, no --at was
    given) and the media its restore reads. A volume with no generation then is a TapearcError
    for the caller (nothing was restored)."""
    out: list[VolumeRestore] = []
    for volume, target in wanted:
        try:
            g = generation_at_any(catalog, volume, at)
        except NoSuchGenerationError as e:
            if not newest:
                raise
            raise NoSuchGenerationError(
                f"volume {volume!r} has no complete generation in the catalog", hint=e.hint
            ) from None
        plan = make_plan(catalog, load_chain(catalog, g.set_uuid, volume, g.number))
        out.append(VolumeRestore(volume, target, g.number, [m for m, _ in plan.media], plan.bytes_to_read))
    return out


def restore_volumes(
    drives: list[MediaSource],
    catalog: Catalog,
    wanted: list[tuple[str, str]],
    options: RestoreOptions,
    *,
    progress: Callable[[str, str], Progress] = lambda _d, _v: NoProgress(),
    open_catalog: Callable[[], Catalog] | None = None,
    stop: threading.Event | None = None,
) -> list[VolumeRestore]:
    """Restore every (volume, target) of ``wanted`` over ``drives`` (module docstring).
    ``options``: those of each restore (``at``: the time the generations are chosen at,
    default now; ``volume`` and ``generation`` are set per volume); ``progress``: a volume's
    progress, by its drive's spec and its name."""
    at = options.at if options.at is not None else int(time.time())
    vols = plan_volumes(catalog, wanted, at, newest=options.at is None)
    by_name = {v.volume: v for v in vols}
    work = assign_drives({v.volume: (v.media, v.bytes) for v in vols}, len(drives))
    work = arrange(work, [_held(d, catalog) for d in drives], {v.volume: set(v.media) for v in vols})
    _clear(drives, catalog, work, by_name)
    for d, names in zip(drives, work, strict=True):
        if names:
            _preload(d, catalog, by_name[names[0]])
    opener = open_catalog or (lambda: reopen(catalog))
    halt = stop or threading.Event()
    opts = dataclasses.replace(options, at=at, generation=None)
    threads = [
        threading.Thread(
            target=_drive_thread,
            args=(d, [by_name[n] for n in names], opener, opts, progress, halt),
            name=f"tapearc-restore-drive-{k}",
            daemon=True,
        )
        for k, (d, names) in enumerate(zip(drives, work, strict=True))
        if names
    ]
    for t in threads:
        t.start()
    wait_for(threads, halt)
    return vols


def arrange(work: list[list[str]], held: list[uuid.UUID | None], media: dict[str, set[uuid.UUID]]) -> list[list[str]]:
    """The planner's lists of volumes given to the drives so that a drive that holds a medium
    one list reads gets that list (no tape moves between drives); ``held[k]``: the medium in
    drive ``k`` (None: empty, or not known)."""
    out: list[list[str] | None] = [None] * len(held)
    left = list(range(len(work)))
    for k, m in enumerate(held):
        j = next((j for j in left if m is not None and any(m in media[v] for v in work[j])), None)
        if j is not None:
            out[k] = work[j]
            left.remove(j)
    for k in range(len(out)):
        if out[k] is None:
            out[k] = work[left.pop(0)] if left else []
    return [w or [] for w in out]


def _held(drive: MediaSource, catalog: Catalog) -> uuid.UUID | None:
    """The medium in a drive of a library, by its barcode in the changer's inventory."""
    code = drive.loaded_barcode()
    row = next((m for m in _media(catalog) if m.label == code), None) if code else None
    return row.uuid if row is not None else None


def _media(catalog: Catalog) -> list[MediumRow]:
    from tapearc.catalog.views import media_sets

    return [m for s in media_sets(catalog) for m in catalog.media_of_set(s)]


def _clear(
    drives: list[MediaSource], catalog: Catalog, work: list[list[str]], by_name: dict[str, VolumeRestore]
) -> None:
    """Return to its slot a medium that one of the restore's drives holds and another of them
    reads (the drives are the restore's own: nobody else uses them)."""
    needs = [{m for v in names for m in by_name[v].media} for names in work]
    for k, d in enumerate(drives):
        m = _held(d, catalog)
        if m is not None and d.changer is not None and any(m in n for j, n in enumerate(needs) if j != k):
            d.release()
            try:
                d.changer.unload(d.drive_index)
            except TapearcError:
                pass  # the drive that needs it says so


def _preload(drive: MediaSource, catalog: Catalog, first: VolumeRestore) -> None:
    """Load the first medium the drive reads (a failure is left for its restore to report)."""
    if not first.media or not drive.can_change:
        return
    row = catalog.medium(first.media[0])
    if row is None:
        return
    try:
        drive.medium(row.uuid, row.set_uuid, row.sequence, row.label or None)
    except TapearcError:
        pass


def _drive_thread(
    drive: MediaSource,
    vols: list[VolumeRestore],
    opener: Callable[[], Catalog],
    opts: RestoreOptions,
    progress: Callable[[str, str], Progress],
    halt: threading.Event,
) -> None:
    try:
        cat = opener()
    except TapearcError as e:
        for v in vols:
            v.error = e
        return
    try:
        drive.catalog = cat
        for v in vols:
            if halt.is_set():
                break
            v.drive = drive.spec
            t0 = time.monotonic()
            try:
                o = dataclasses.replace(opts, volume=v.volume)
                v.result = restore(drive, cat, v.target, o, StopCheck(progress(drive.spec, v.volume), halt))
            except KeyboardInterrupt:
                v.error = Interrupted(interrupts.message())
                halt.set()
            except TapearcError as e:
                v.error = e
            except Exception as e:  # a bug: this volume fails; the others go on
                v.error = InternalError(f"internal error: {type(e).__name__}: {e}")
            finally:
                v.seconds = time.monotonic() - t0
    finally:
        cat.close()
