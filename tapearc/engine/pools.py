"""Media pools: what each medium of a pool holds and when it expires, and which medium a pooled
backup writes to (the pool's current set, a blank medium, or a recyclable one: never an
off-site or write-protected medium, never one holding a generation still needed).

The retention rules are tapearc/engine/retention.py's; the rows tapearc/catalog/pools.py's.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field

from tapearc.catalog import pools as cp
from tapearc.catalog.db import Catalog
from tapearc.engine.identity import known_medium
from tapearc.engine.labeling import DEFAULT_RECORD_SIZE, write_label
from tapearc.engine.layout import new_label
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.retention import Gen, Policy, Verdict, check_policy, generation_ranges, media_verdicts
from tapearc.engine.tapefiles import LabelProbe
from tapearc.errors import MediumUnavailableError, PoolError, PoolNoMediumError, WriteProtectedError
from tapearc.media.base import TapeDrive


@dataclass(frozen=True, slots=True)
class MediumStatus:
    medium: cp.PoolMedium
    bytes_used: int
    generations: tuple[Gen, ...]
    verdict: Verdict | None  # None: in no pool (never recycled)

    def expiry(self) -> str:
        from tapearc.catalog.views import local_time

        v = self.verdict
        if v is None:
            return "in no pool"
        if v.recyclable:
            return f"recyclable ({v.why})"
        return v.why + (f" (until {local_time(v.until)} at least)" if v.until is not None else "")

    def to_json(self) -> dict[str, object]:
        from tapearc.catalog.views import zoned_time

        m, v = self.medium, self.verdict
        return {
            "medium": m.name,
            "label": m.label,
            "uuid": str(m.uuid),
            "media_set": str(m.set_uuid),
            "sequence": m.sequence,
            "pool": m.pool,
            "location": m.location,
            "write_protected": m.write_protected,
            "bytes_used": self.bytes_used,
            "generations": [{"volume": g.volume, "generation": g.number, "state": g.state} for g in self.generations],
            "recyclable": None if v is None else v.recyclable,
            "expiry": self.expiry(),
            "expires": None if v is None or v.until is None else zoned_time(v.until),
        }


def get_pool(cat: Catalog, name: str) -> cp.PoolRow:
    p = cp.pool(cat, name)
    if p is None:
        known = ", ".join(x.name for x in cp.pools(cat)) or "none"
        raise PoolError(f"no media pool named {name!r} (pools: {known})", hint="tapearc pool create NAME ...")
    return p


def create(cat: Catalog, name: str, policy: Policy, allocation: str, now: int) -> cp.PoolRow:
    why = check_policy(policy)
    if why is not None:
        raise PoolError(f"pool {name!r}: {why}")
    if allocation not in cp.ALLOCATIONS:
        raise PoolError(f"pool {name!r}: allocation {allocation!r} is not one of {', '.join(cp.ALLOCATIONS)}")
    if not name or name.strip() != name:
        raise PoolError(f"pool name {name!r}: give a name without leading or trailing spaces")
    if cp.pool(cat, name) is not None:
        raise PoolError(f"a media pool named {name!r} exists already; nothing was changed")
    return cp.create_pool(cat, name, policy, allocation, now)


def statuses(cat: Catalog, now: int, pool_name: str | None = None) -> list[MediumStatus]:
    """Every medium in use (of one pool if named), with what it holds and its expiry."""
    if pool_name is not None:
        get_pool(cat, pool_name)
    media = cp.media(cat, pool_name)
    sizes = cp.set_sizes(cat)
    verdicts: dict[int, Verdict] = {}
    gens_on: dict[int, list[Gen]] = {}
    for p in cp.pools(cat):
        gens = cp.retention_rows(cat, p.id)
        ids = [m.id for m in media if m.pool == p.name]
        verdicts.update(media_verdicts(ids, gens, p.policy, now))
    for g in cp.retention_rows(cat):
        for m in g.media:
            gens_on.setdefault(m, []).append(g)
    return [
        MediumStatus(m, sizes.get(m.id, 0), tuple(gens_on.get(m.id, [])), verdicts.get(m.id) if m.pool else None)
        for m in media
    ]


def find_medium(cat: Catalog, text: str) -> cp.PoolMedium:
    found = [m for m in cp.media(cat) if text in (m.label, str(m.uuid)) or str(m.uuid).startswith(text.lower())]
    if len(found) != 1:
        known = ", ".join(m.name for m in cp.media(cat)) or "none"
        what = "no medium" if not found else f"{len(found)} media"
        raise PoolError(f"{what} of the catalog has the label, barcode or UUID {text!r} (it knows: {known})")
    return found[0]


# ------------------------------------------------------------------ choosing a medium to write


@dataclass(frozen=True, slots=True)
class Choice:
    """The medium a pooled backup writes to."""

    kind: str  # "append" | "blank" | "recycle"
    barcode: str | None  # in the library
    medium: cp.PoolMedium | None = None  # append, recycle: the catalog's medium
    held: tuple[Gen, ...] = ()  # recycle: the generations that were on it
    warnings: list[str] = field(default_factory=list)


def current_set(media: list[cp.PoolMedium]) -> uuid.UUID | None:
    """The pool's current media set: that of its most recently labelled medium."""
    if not media:
        return None
    return max(media, key=lambda m: (m.created, m.id)).set_uuid


def _last_in(media: list[cp.PoolMedium], set_uuid: uuid.UUID | None, barcodes: frozenset[str]) -> bool:
    """Whether the last medium of the set is one of ``barcodes``."""
    ms = [m for m in media if m.set_uuid == set_uuid]
    return bool(ms) and max(ms, key=lambda m: m.sequence).label in barcodes


def _held_set(media: list[cp.PoolMedium], held: str | None) -> uuid.UUID | None:
    """The pool's set whose last medium is ``held`` (the medium in the backup's drive)."""
    m = next((m for m in media if held and m.label == held), None)
    if m is None or any(o.set_uuid == m.set_uuid and o.sequence > m.sequence for o in media):
        return None
    return m.set_uuid


def _unusable(m: cp.PoolMedium, in_library: set[str]) -> str | None:
    if m.write_protected:
        return "write-protected"
    if m.location != cp.LIBRARY:
        return "off-site" if m.location == cp.OFFSITE else f"at {m.location!r}"
    if m.label not in in_library:
        return "not in the library"
    return None


def choose(
    cat: Catalog,
    pool: cp.PoolRow,
    barcodes: list[str],
    volume: str,
    full: bool,
    now: int,
    drives: tuple[str | None, frozenset[str]] = (None, frozenset()),
) -> Choice:
    """The medium of the library (``barcodes``: those in its slots and drive) a backup of
    ``volume`` into ``pool`` writes to. With allocation new-set-per-full, a full backup of a
    volume that has a generation in the current set starts a new set (the other volumes of a
    job then join that set). ``drives``: the medium in the backup's drive and those in the
    library's other drives; when the current set's last medium is in another drive (a job on
    several drives), the set whose last medium this drive holds is continued instead. Raises
    PoolNoMediumError naming why each medium was not usable."""
    in_library = set(barcodes)
    media = cp.media(cat, pool.name)
    why: list[str] = []
    cur = current_set(media)
    held, elsewhere = drives
    for n, s in enumerate([cur, _held_set(media, held)]):
        if s is None or (n == 1 and (s == cur or not _last_in(media, cur, elsewhere))):
            continue
        if full and pool.allocation == "new-set-per-full" and cat.generations(s, volume):
            why.append(f"a full backup starts a new media set (allocation {pool.allocation})")
            continue
        last = max((m for m in media if m.set_uuid == s), key=lambda m: m.sequence)
        bad = _unusable(last, in_library)
        if bad is None:
            return Choice("append", last.label, last)
        why.append(f"{last.name} (its {'current ' if n == 0 else ''}set's last medium): {bad}")
    known = {m.label for m in cp.media(cat, with_recycled=True)}
    blanks = [b for b in barcodes if b and b not in known]
    if blanks:
        return Choice("blank", sorted(blanks)[0])
    why.append("no blank medium in the library")
    return recyclable(cat, pool, barcodes, now, why)


def recyclable(cat: Catalog, pool: cp.PoolRow, barcodes: list[str], now: int, why: list[str]) -> Choice:
    """The oldest recyclable medium of the pool in the library (PoolNoMediumError: none, with
    ``why`` and why each medium is not)."""
    in_library = set(barcodes)
    media = cp.media(cat, pool.name)
    gens = cp.retention_rows(cat, pool.id)
    verdicts = media_verdicts([m.id for m in media], gens, pool.policy, now)
    candidates = []
    for m in media:
        v = verdicts[m.id]
        bad = _unusable(m, in_library) if v.recyclable else v.why
        if bad is None:
            candidates.append(m)
        else:
            why.append(f"{m.name}: {bad}")
    if candidates:
        m = min(candidates, key=lambda m: (m.created, m.id))  # the oldest first
        held = tuple(g for g in gens if m.id in g.media)
        return Choice("recycle", m.label, m, held)
    raise PoolNoMediumError(
        f"pool {pool.name!r} has no medium to write to: " + "; ".join(why) + "; nothing was written",
        hint="load a blank medium into the library, or bring a recyclable one back (tapearc media move)",
    )


def recycled_line(choice: Choice, now: int, policy: Policy) -> str:
    from tapearc.catalog.views import local_time

    assert choice.medium is not None
    held = generation_ranges(choice.held) if choice.held else "nothing"
    return f"recycled {choice.medium.name} (held volume {held}, expired by {policy.describe()} at {local_time(now)})"


def check_recyclable(drive: TapeDrive, cat: Catalog, pool: cp.PoolRow, m: cp.PoolMedium) -> None:
    """Before the medium to recycle (loaded: its label is ``m``'s) is marked recycled: raise
    WriteProtectedError when its write-protect tab is set, PoolNoMediumError when it holds more
    tape files than the catalog knows of -- written by another catalog, or before this one was
    rebuilt or restored: what the catalog calls expired may not be all it holds."""
    if not drive.writable:
        raise WriteProtectedError(
            f"pool {pool.name!r}: medium {m.label or '(no barcode)'} ({m.uuid}), chosen for recycling, is "
            "write-protected; it is not recycled; nothing was written",
            hint=f"clear its write-protect tab, or `tapearc media protect {m.label or m.uuid}` so that it is "
            "not chosen again",
        ).at(medium=drive.name)
    known = cp.last_file(cat, m.id)
    end = drive.seek_end_of_data()
    extra = end.file - known - 1 + (1 if end.record > 0 else 0)
    if extra <= 0:
        return
    raise PoolNoMediumError(
        f"pool {pool.name!r}: medium {m.label or '(no barcode)'} ({m.uuid}) holds {extra} tape "
        f"file{'s' if extra != 1 else ''} past the {known} the catalog knows of (written by another catalog, "
        "or before this one was rebuilt or restored): it is not recycled; nothing was written",
        hint=f"`tapearc scan` it into this catalog first, or take {m.label or 'it'} out of the library "
        "(tapearc media move)",
    ).at(medium=drive.name)


def _library_barcodes(media: MediaSource) -> list[str]:
    ch = media.changer
    if ch is None or media.is_operator:
        raise PoolError(
            "a backup into a media pool chooses its medium from a library: give --changer (or sim:DIR of a library)"
        )
    st = ch.status()
    codes = [s.barcode for s in st.slots if s.full and s.barcode]
    codes += [d.barcode for d in st.drives if d.number == media.drive_index and d.full and d.barcode]
    return codes


def _drive_barcodes(media: MediaSource) -> tuple[str | None, frozenset[str]]:
    """The medium in the source's drive, and those in the library's other drives."""
    assert media.changer is not None
    st = media.changer.status()
    mine = next((d.barcode for d in st.drives if d.number == media.drive_index and d.full), None)
    return mine, frozenset(d.barcode for d in st.drives if d.number != media.drive_index and d.full and d.barcode)


@dataclass(slots=True)
class PoolUse:
    """A backup's use of its pool: the warnings of the media it recycled (at the start, and
    while spanning: ``media.spare``)."""

    pool_id: int
    warnings: list[str] = field(default_factory=list)
    spanning: list[str] = field(default_factory=list)


def load_for_pool(
    media: MediaSource,
    cat: Catalog,
    pool_name: str,
    volume: str,
    full: bool,
    now: int,
    record_size: int | None = None,
) -> PoolUse:
    """Put the medium a backup of ``volume`` into the pool writes to into the drive (relabelling
    a recyclable one into a new media set), and let a spanning backup recycle the next one when
    no blank is left."""
    pool = get_pool(cat, pool_name)
    use = PoolUse(pool.id)
    media.spare = lambda: load_spare(media, cat, pool, now, use.spanning)
    # a job on several drives: one drive at a time chooses and loads (the medium another drive
    # holds is not in this drive's library, so it continues another set or starts one)
    with getattr(media, "moves", None) or contextlib.nullcontext():
        for attempt in range(_TRIES):
            choice = choose(cat, pool, _library_barcodes(media), volume, full, now, _drive_barcodes(media))
            try:
                use.warnings = _load_choice(media, cat, pool, choice, now, record_size)
                break
            except MediumUnavailableError:
                if attempt == _TRIES - 1 or not _taken(cat, choice.medium):
                    raise
    return use


_TRIES = 3  # choosing again after another job took the medium chosen, at most this often


def _taken(cat: Catalog, m: cp.PoolMedium | None) -> bool:
    """Whether medium ``m`` was recycled (by another job) since it was chosen: its tape bears
    another label now, and the choice is made again."""
    return m is not None and all(o.id != m.id for o in cp.media(cat))


def load_spare(media: MediaSource, cat: Catalog, pool: cp.PoolRow, now: int, notes: list[str]) -> TapeDrive:
    """The oldest recyclable medium of the pool in the library, loaded and marked recycled, for
    the caller to label (a spanning backup's next medium)."""
    for attempt in range(_TRIES):
        choice = _spare_choice(media, cat, pool, now)
        m = choice.medium
        assert m is not None
        try:
            drive = media.medium(m.uuid, m.set_uuid, m.sequence, m.label or None)
        except MediumUnavailableError:
            if attempt == _TRIES - 1 or not _taken(cat, m):
                raise
            continue
        check_recyclable(drive, cat, pool, m)
        cp.mark_recycled(cat, m.id, now)
        notes.append(recycled_line(choice, now, pool.policy))
        return drive
    raise AssertionError("unreachable")  # pragma: no cover


def _spare_choice(media: MediaSource, cat: Catalog, pool: cp.PoolRow, now: int) -> Choice:
    try:
        return recyclable(cat, pool, _library_barcodes(media), now, ["no blank medium in the library"])
    except PoolNoMediumError as e:
        raise PoolNoMediumError(
            e.message.replace("has no medium to write to", "has no next medium for the spanning generation").replace(
                "; nothing was written", ""
            ),
            hint=e.hint,
        ) from None


def _load_blank(media: MediaSource, cat: Catalog, pool: cp.PoolRow, choice: Choice) -> str | None:
    """Load a provably blank medium (``choice``'s barcode first); None, or why none was found:
    a barcode the catalog does not know may hold another tool's data or a tapearc medium of
    another catalog, which is never taken for blank."""
    known = {m.label for m in cp.media(cat, with_recycled=True)}
    rejected: dict[str, str] = {}  # the barcodes the catalog does not know: why each is not blank

    def blank(p: LabelProbe) -> bool | str:
        code = media.loaded_barcode()
        held = known_medium(cat, media.spec, code, by_place=False) if p.blank else None
        if p.blank and held is None:
            return True
        if held is not None:
            what = f"a medium that reads as blank but for which the catalog holds {held}"
        elif p.label is not None:
            what = f"a tapearc medium (medium {p.label.medium_uuid}, sequence {p.label.sequence} of media set {p.label.media_set_uuid})"
        else:
            what = f"not tapearc's ({p.foreign})"
        if code not in known:
            rejected[code or "no barcode"] = what
        return what

    try:
        media.obtain(f"blank medium {choice.barcode} for pool {pool.name!r}", blank, [choice.barcode or ""])
    except MediumUnavailableError:
        media.release()
        return (
            "no blank medium in the library (" + "; ".join(f"{c}: {w}" for c, w in rejected.items())
            or "none found" + ")"
        )
    return None


def _load_choice(
    media: MediaSource, cat: Catalog, pool: cp.PoolRow, choice: Choice, now: int, record_size: int | None
) -> list[str]:
    if choice.kind == "blank":
        why = _load_blank(media, cat, pool, choice)
        if why is None:
            return []
        choice = recyclable(cat, pool, _library_barcodes(media), now, [why])
    m = choice.medium
    assert m is not None
    drive = media.medium(m.uuid, m.set_uuid, m.sequence, m.label or None)
    if choice.kind == "append":
        return []
    check_recyclable(drive, cat, pool, m)
    cp.mark_recycled(cat, m.id, now)
    text = media.loaded_barcode() or m.label  # the barcode the cartridge bears (a swapped one too)
    label = new_label(record_size or min(DEFAULT_RECORD_SIZE, drive.max_record_size), now, text)
    write_label(drive, label)
    cat.record_medium(label, drive.name)
    cp.carry_over(cat, m.id, label.medium_uuid, pool.id)
    return [recycled_line(choice, now, pool.policy)]
