"""Whether an incremental may trust a change tracker: the one place that decides (docs/changes.md).

A tracker (a qemu dirty bitmap, a changed-block file) is trusted only for a volume whose base
generation it was started at, and only when the catalog can show it:

- every generation records the change source it was read with and the *checkpoint* it was read
  at (``dirty-bitmap:NAME`` when that bitmap was offered by the export as the read began;
  ``--checkpoint ID``, or the changed-block file's ``until``, otherwise);
- an incremental trusts a tracker only when its starting checkpoint (the bitmap's name; the
  file's ``since``: thin_delta's ``left``, JSON ``since``, ``--changed-since``) equals the
  checkpoint the base generation recorded, the base is the volume's latest generation (no
  interrupted or damaged one after it) and its source's latest read anywhere in the catalog (no
  backup of the same disk to another media set after it): a tracker reset may have followed
  those; and the volume has the base's size.

Anything else -- no base (a full backup), a missing bitmap, a base without a recorded checkpoint
(written by an older tapearc or learnt from the media by ``scan``), another checkpoint, a size
change -- gives a warning and a full-read incremental (every block read and compared, as
without a tracker); it is never a silent trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tapearc.catalog.db import Catalog, ChangeRecord, GenerationRow, path_text
from tapearc.errors import UsageError
from tapearc.nbdclient import is_nbd_uri
from tapearc.sources.base import ChangeMap

if TYPE_CHECKING:
    from tapearc.engine.genplan import GenerationPlan

FULL_READ = "full-read"
BITMAP_PREFIX = "dirty-bitmap:"


@dataclass(frozen=True, slots=True)
class ChangeOptions:
    """What the backup was told of change tracking (the ``backup`` options of the same names)."""

    dirty_bitmap: str | None = None  # --dirty-bitmap NAME
    changed_blocks: str | None = None  # --changed-blocks FILE
    change_block_size: int | None = None  # --change-block-size: a tracker block, where the file does not say
    changed_since: str | None = None  # --changed-since ID: the checkpoint the file starts at
    checkpoint: str | None = None  # --checkpoint ID: the checkpoint this generation is read at
    verify_unchanged: bool = False  # --verify-unchanged: read everything, report what the tracker missed

    @property
    def tracker(self) -> bool:
        return self.dirty_bitmap is not None or self.changed_blocks is not None


@dataclass(slots=True)
class Tracker:
    """A change source as opened by :func:`open_tracker`, then fitted to the volume's size by
    :meth:`fit`: ``name`` as the catalog records it, its ``map`` (None: no tracker, or a bitmap
    the export does not offer), the checkpoints it goes ``since`` and this generation is read at
    (``checkpoint``), and a ``problem`` already known against trusting it."""

    name: str
    map: ChangeMap | None = None
    since: str | None = None
    checkpoint: str | None = None
    problem: str | None = None
    size: int | None = None  # the size of the bitmap's export
    opts: ChangeOptions | None = None  # a --changed-blocks file, read by fit()
    fitted: bool = False

    def fit(self, size: int) -> None:
        """Check the tracker against the volume (``size`` bytes): read a changed-block file (bad
        input raises ChangeSourceError), compare a bitmap's export size."""
        if self.opts is not None and self.opts.changed_blocks is not None:
            _fit_file(self, self.opts.changed_blocks, size, self.opts)
        elif self.size is not None and self.size != size:
            self.problem = f"the bitmap's export has {self.size} bytes, the volume {size}"
        if self.problem is not None and (self.opts is None or self.opts.checkpoint is None):
            self.checkpoint = None  # a tracker wrong about itself does not say where this read is either
        self.fitted = True


@dataclass(slots=True)
class ChangeChoice:
    """The tracker an incremental uses (``map``; None: read everything), what the catalog records
    of it, and the warnings to show (why a tracker is not trusted)."""

    map: ChangeMap | None
    record: ChangeRecord
    warnings: list[str] = field(default_factory=list)

    def caught(self, missed: bool) -> ChangeRecord:
        """The record once the read is done: a tracker that ``--verify-unchanged`` caught missing
        changed blocks is recorded as not trusted and with no checkpoint, so that no later
        incremental trusts it from this generation on."""
        r = self.record
        return ChangeRecord(r.source, False, r.since, None) if missed else r


def check_change_options(opts: ChangeOptions) -> None:
    """Options that contradict each other are a usage error."""
    if opts.dirty_bitmap is not None and opts.changed_blocks is not None:
        raise UsageError("--dirty-bitmap and --changed-blocks exclude each other: give one change source")
    if opts.dirty_bitmap is not None and opts.checkpoint is not None:
        raise UsageError(
            "--checkpoint is for --changed-blocks: a dirty bitmap's checkpoint is its name",
            hint="leave --checkpoint out",
        )
    if opts.changed_blocks is None and (opts.changed_since is not None or opts.change_block_size is not None):
        raise UsageError("--changed-since and --change-block-size describe a --changed-blocks file; give one")
    if opts.verify_unchanged and not opts.tracker:
        raise UsageError("--verify-unchanged checks a change tracker: give --dirty-bitmap or --changed-blocks")
    for name, value in (("--checkpoint", opts.checkpoint), ("--changed-since", opts.changed_since)):
        if value is not None and not value.strip():
            raise UsageError(f"{name} must not be empty")
        if value is not None and value.startswith(BITMAP_PREFIX):
            raise UsageError(f"{name} {value}: checkpoints named dirty-bitmap:... are recorded by --dirty-bitmap only")


def open_tracker(source: str, opts: ChangeOptions) -> Tracker:
    """The change source the options name, for the volume ``source``; then :meth:`Tracker.fit`
    it to the volume's size. Bad options raise here. A dirty bitmap is read whole now, over a
    connection closed before this returns: open the tracker before the source, as qemu-nbd serves
    one client at a time unless told otherwise (``--shared``), and a second connection would wait
    for ever. An export that cannot be reached is a SourceError."""
    check_change_options(opts)
    if opts.dirty_bitmap is not None:
        return _dirty_bitmap(source, opts.dirty_bitmap)
    if opts.changed_blocks is not None:
        return Tracker(f"changed-blocks:{opts.changed_blocks}", opts=opts)
    return Tracker(FULL_READ, checkpoint=opts.checkpoint)


def _dirty_bitmap(source: str, bitmap: str) -> Tracker:
    name = BITMAP_PREFIX + bitmap
    if not is_nbd_uri(source):
        raise UsageError(
            f"--dirty-bitmap reads the bitmap through NBD: {source} is not an NBD export",
            hint=f"serve the disk with qemu-nbd -B {bitmap} and back up its nbd+unix:// URI (docs/changes.md)",
        )
    from tapearc.sources.changes_nbd import read_dirty_bitmap

    m = read_dirty_bitmap(source, bitmap)
    if m is None:
        return Tracker(
            name,
            problem=f"NBD export {source} does not offer dirty bitmap {bitmap!r} (qemu-nbd -B {bitmap}), so the next "
            "incremental cannot use it either",
        )
    return Tracker(name, m, since=name, checkpoint=name, size=m.size)


def _fit_file(t: Tracker, path: str, size: int, opts: ChangeOptions) -> None:
    from tapearc.sources.changes import RangeMap
    from tapearc.sources.changes_files import read_changed_blocks

    blocks = read_changed_blocks(path, size, opts.change_block_size)
    m = RangeMap(blocks, size)
    t.name, t.map, t.since = m.name, m, blocks.since
    t.checkpoint = opts.checkpoint if opts.checkpoint is not None else blocks.until
    if opts.changed_since is not None:
        if blocks.since is not None and blocks.since != opts.changed_since:
            t.problem = f"{path} starts at checkpoint {blocks.since!r}, --changed-since says {opts.changed_since!r}"
        t.since = opts.changed_since
    if t.problem is None and blocks.until is not None and t.checkpoint != blocks.until:
        t.problem = (
            f"{path} ends at checkpoint {blocks.until!r}, this generation is read at {t.checkpoint!r} (--checkpoint)"
        )
    if t.problem is None and blocks.volume_size is not None and blocks.volume_size != size:
        t.problem = f"{path} is for a volume of {blocks.volume_size} bytes, the volume has {size}"


def choose_change_map(catalog: Catalog, plan: GenerationPlan, tracker: Tracker) -> ChangeChoice:
    """Whether ``plan``'s generation may trust ``tracker`` (see the module's text): the map to
    use (None: read every block), the record for the catalog, and why not (a warning)."""
    if not tracker.fitted:
        raise ValueError("Tracker.fit(volume size) comes before choose_change_map")
    if tracker.name == FULL_READ:
        return ChangeChoice(None, ChangeRecord(FULL_READ, False, None, tracker.checkpoint))
    if not plan.incremental and tracker.problem is None:
        # a full generation reads every block anyway: nothing to warn of; the tracker's
        # checkpoint is recorded for the next generation to start from
        return ChangeChoice(None, ChangeRecord(tracker.name, False, tracker.since, tracker.checkpoint))
    why = tracker.problem or distrust(catalog, plan, tracker.since)
    record = ChangeRecord(tracker.name, why is None, tracker.since, tracker.checkpoint)
    if why is None:
        return ChangeChoice(tracker.map, record)
    return ChangeChoice(None, record, [f"{tracker.name} is not trusted: {why}; every block is read"])


def distrust(catalog: Catalog, plan: GenerationPlan, since: str | None) -> str | None:
    """Why a tracker starting at checkpoint ``since`` cannot be trusted for ``plan``'s
    incremental, or None when it can."""
    h = plan.header
    if not plan.incremental:
        return "a full generation has no base to compare with (the tracker's checkpoint is recorded for the next one)"
    if since is None:
        return "the changed-block file does not say which checkpoint its changes start at (give --changed-since)"
    gens = catalog.generations(h.media_set_uuid, h.volume_name)
    base = next((g for g in gens if g.number == h.base_generation), None)
    if base is None:
        return f"base generation {h.base_generation} is not in the catalog"
    why = _read_since(catalog, gens, base, plan) or _other_export(base, plan, since)
    if why is not None:
        return why
    if base.change is None:
        return (
            f"base generation {base.number} has no recorded change checkpoint (written by an older tapearc, "
            "or learnt from the medium by scan)"
        )
    if base.change.checkpoint is None:
        return (
            f"base generation {base.number} was not read at a tracker checkpoint (none was given, the bitmap "
            "was not offered, or --verify-unchanged found its tracker missed changed blocks)"
        )
    if base.change.checkpoint != since:
        return (
            f"it starts at checkpoint {since!r}, base generation {base.number} was read at {base.change.checkpoint!r}"
        )
    if base.volume_size != h.volume_size:
        return f"the volume's size changed since base generation {base.number} ({base.volume_size} -> {h.volume_size} bytes)"
    return None


def _other_export(base: GenerationRow, plan: GenerationPlan, since: str) -> str | None:
    """A dirty bitmap lives in the export read: one of another export (a volume moved with
    --volume NAME to another disk, whose bitmap may have the same name) says nothing of the base."""
    src = plan.header.source
    here = None if src is None else path_text(src.path)
    if not since.startswith(BITMAP_PREFIX) or (here and here == base.source_path):
        return None
    return (
        f"the bitmap is of another source ({here}) than base generation {base.number} "
        f"was read from ({base.source_path or 'unrecorded'})"
    )


def _read_since(catalog: Catalog, gens: list[GenerationRow], base: GenerationRow, plan: GenerationPlan) -> str | None:
    """A generation after the base -- of the volume (an interrupted one too), or of the same
    source in any media set or under any name -- after which the tracker may have been reset
    (a bitmap cleared after each backup, wherever it went)."""
    later = [g for g in gens if g.number > base.number]
    if later:
        g = later[0]
        return (
            f"generation {g.number} ({g.state}) came after base generation {base.number}: "
            "the tracker may have been reset after it"
        )
    src = plan.header.source
    now = () if src is None else (path_text(src.path), path_text(src.real_path))
    paths = {p for p in (base.source_path, base.source_real, *now) if p}
    for path in sorted(paths):
        for g in catalog.generations_from_source(path):
            if g.id != base.id and (g.created, g.id) > (base.created, base.id):
                return (
                    f"{path} was read again after base generation {base.number}, as generation {g.number} of volume "
                    f"{g.volume!r} (media set {g.set_uuid}): the tracker may have been reset after that"
                )
    return None
