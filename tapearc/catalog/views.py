"""The catalog as people browse it: volumes, generations and media, with what a restore needs.

Read-only queries over :class:`tapearc.catalog.db.Catalog` returning plain dataclasses (each
with ``to_json``); ``tapearc catalog volumes|generations|media`` prints them. Media are named as
people name them: their label text (a library's barcode), else the first 8 hex digits of their
UUID. Times are the catalog's unix seconds; :func:`local_time` and :func:`zoned_time` write them
as ISO 8601 in local time (``$TZ``).

The media a generation needs (:class:`RestoreNeeds`): its chain as ``tapearc restore`` loads it
(the caller passes :func:`tapearc.engine.plan.load_chain`, the one definition of a chain: the
generation, its base, the base's base ... down to a full one, each complete; the catalog layer
does not import the engine), and every tape file (part) of each generation of the chain, in the
order a restore reads them: medium by medium in media-set sequence, each forward. A restore may
skip a tape file whose blocks later generations all replaced (``tapearc plan`` shows the exact
reads); it never needs one that is not listed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from tapearc.catalog.db import Catalog, GenerationRow
from tapearc.catalog.states import GenerationState
from tapearc.errors import NoSuchGenerationError, TapearcError


def local_time(ts: int) -> str:
    """``2026-12-01 03:00:00``: unix seconds as local time, ISO 8601, no zone (text output)."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def zoned_time(ts: int, sep: str = "T") -> str:
    """``2026-12-01T03:00:00+01:00``: unix seconds as local time with its offset (JSON, messages)."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(sep=sep, timespec="seconds")


#: ``load_chain(catalog, set_uuid, volume, number)``: the generations restoring ``number`` reads, full first.
ChainLoader = Callable[[Catalog, UUID, str, "int | None"], list[GenerationRow]]


def short_uuid(u: UUID) -> str:
    return u.hex[:8]


@dataclass(frozen=True, slots=True)
class MediumRef:
    """A medium as the catalog knows it."""

    uuid: UUID
    set_uuid: UUID
    sequence: int
    label: str  #: its label text (a library's barcode); "" when it has none
    last_name: str | None  #: the --media it was last used as (a hint)

    @property
    def name(self) -> str:
        """Its label text, else its short UUID."""
        return self.label or short_uuid(self.uuid)

    @property
    def shown(self) -> str:
        """Its label text, else its short UUID and the --media it was last used as."""
        if self.label or not self.last_name:
            return self.name
        return f"{self.name} ({self.last_name})"

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label or None,
            "uuid": str(self.uuid),
            "media_set": str(self.set_uuid),
            "sequence": self.sequence,
            "last_seen_as": self.last_name,
        }


@dataclass(frozen=True, slots=True)
class Part:
    """One tape file of a generation: its part number, on which medium, where."""

    generation_id: int
    generation: int  #: the generation's number
    part: int
    medium: MediumRef
    tape_file: int
    logical: int  #: LOCATE position of its first record


@dataclass(frozen=True, slots=True)
class MediumNeed:
    """A medium a restore reads, and its tape files to read (tape file, generation), in order."""

    medium: MediumRef
    tape_files: tuple[tuple[int, int], ...]

    def to_json(self) -> dict[str, object]:
        return {
            **self.medium.to_json(),
            "tape_files": [{"tape_file": f, "generation": g} for f, g in self.tape_files],
        }

    def describe(self) -> str:
        """``TAPE01: files 2 3``, ``TAPE01: files 1-40 42``."""
        runs: list[list[int]] = []
        for f, _ in self.tape_files:
            if runs and runs[-1][1] + 1 == f:
                runs[-1][1] = f
            else:
                runs.append([f, f])
        files = " ".join(f"{a}-{b}" if b - a >= 2 else " ".join(str(x) for x in range(a, b + 1)) for a, b in runs)
        return f"{self.medium.shown}: file{'s' if len(self.tape_files) > 1 else ''} {files}"


@dataclass(frozen=True, slots=True)
class RestoreNeeds:
    """What restoring a generation takes: its chain (generation numbers, full first) and the
    media in read order; or why it cannot be restored (``problem``)."""

    chain: tuple[int, ...] = ()
    media: tuple[MediumNeed, ...] = ()
    problem: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "restorable": self.problem is None,
            "problem": self.problem,
            "chain": list(self.chain),
            "media": [m.to_json() for m in self.media],
        }

    def describe(self) -> str:
        if self.problem is not None:
            return f"not restorable: {self.problem}"
        return "; ".join(m.describe() for m in self.media)


@dataclass(frozen=True, slots=True)
class CatalogFilter:
    """What to show: a volume's name, a time range (unix seconds, both ends included) of the
    generations' creation, the media (UUIDs) a generation must have a part on. None: any."""

    volume: str | None = None
    since: int | None = None
    until: int | None = None
    media: frozenset[UUID] | None = None

    @property
    def selects_generations(self) -> bool:
        """Whether rows are chosen by their generations (a time range or media)."""
        return self.since is not None or self.until is not None or self.media is not None

    def takes(self, g: GenerationRow, parts: Sequence[Part]) -> bool:
        """Whether generation ``g`` (whose tape files are ``parts``) passes the filter."""
        if self.volume is not None and g.volume != self.volume:
            return False
        if (self.since is not None and g.created < self.since) or (self.until is not None and g.created > self.until):
            return False
        return self.media is None or any(p.medium.uuid in self.media for p in parts)


@dataclass(frozen=True, slots=True)
class VolumeView:
    name: str
    uuid: UUID
    set_uuid: UUID
    source_path: str | None  #: the source of its latest generation that recorded one
    generations: int
    complete: int  #: how many of them are complete
    first_backup: int | None
    last_backup: int | None
    size: int  #: the volume size of its latest generation
    stored_bytes: int  #: bytes its generations hold on media, all together

    def to_json(self) -> dict[str, object]:
        return {
            "volume": self.name,
            "uuid": str(self.uuid),
            "media_set": str(self.set_uuid),
            "source_path": self.source_path,
            "generations": self.generations,
            "complete_generations": self.complete,
            "first_backup": None if self.first_backup is None else zoned_time(self.first_backup),
            "last_backup": None if self.last_backup is None else zoned_time(self.last_backup),
            "size": self.size,
            "stored_bytes": self.stored_bytes,
        }


@dataclass(frozen=True, slots=True)
class GenerationView:
    row: GenerationRow
    parts: tuple[Part, ...]  #: where the generation itself is, part by part
    restore: RestoreNeeds

    @property
    def kind(self) -> str:
        """``full``, or ``incremental on N``."""
        return "full" if self.row.base == 0 else f"incremental on {self.row.base}"

    def to_json(self) -> dict[str, object]:
        g = self.row
        return {
            "volume": g.volume,
            "media_set": str(g.set_uuid),
            "generation": g.number,
            "kind": g.kind,
            "base": g.base or None,
            "state": str(g.state),
            "created": zoned_time(g.created),
            "volume_size": g.volume_size,
            "stored_bytes": g.stored_bytes,
            "raw_bytes": g.raw_bytes,
            "source_path": g.source_path,
            "change": None if g.change is None else g.change.to_json(),  # how it was read (None: not known)
            "parts": [{"part": p.part, **p.medium.to_json(), "tape_file": p.tape_file} for p in self.parts],
            "restore": self.restore.to_json(),
        }


@dataclass(frozen=True, slots=True)
class MediumView:
    medium: MediumRef
    labeled: int  #: when its label was written
    generations: tuple[tuple[str, int], ...]  #: (volume, generation) of each generation with a part on it
    tape_files: int
    bytes_used: int  #: chunk bytes stored on it (labels, trailers and end records not counted)
    first_write: int  #: its label's time
    last_write: int  #: the start of the newest generation written on it (its label's time if none)

    def to_json(self) -> dict[str, object]:
        return {
            **self.medium.to_json(),
            "generations": [{"volume": v, "generation": n} for v, n in self.generations],
            "tape_files": self.tape_files,
            "bytes_used": self.bytes_used,
            "first_write": zoned_time(self.first_write),
            "last_write": zoned_time(self.last_write),
        }


@dataclass(slots=True)
class _Index:
    """The catalog's media and tape files, read once (a recycled medium's old label and the
    generations recycled with it left out: they are gone from the media)."""

    media: dict[UUID, MediumRef] = field(default_factory=dict)
    created: dict[UUID, int] = field(default_factory=dict)
    parts: dict[int, list[Part]] = field(default_factory=lambda: defaultdict(list))  # generation id -> parts
    by_medium: dict[UUID, list[Part]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, catalog: Catalog) -> _Index:
        ix = cls()
        for mu, su, seq, label, last, created in catalog.db.execute(
            """SELECT m.uuid, s.uuid, m.sequence, m.label, m.last_name, m.created
               FROM media m JOIN media_sets s ON s.id = m.set_id
               WHERE m.recycled IS NULL ORDER BY s.id, m.sequence, m.id"""
        ):
            ref = MediumRef(UUID(str(mu)), UUID(str(su)), int(seq), str(label or ""), last)
            ix.media[ref.uuid] = ref
            ix.created[ref.uuid] = int(created)
        for gid, number, part, mu, tf, logical in catalog.db.execute(
            """SELECT t.generation_id, g.number, t.part, m.uuid, t.file_number, t.logical
               FROM tape_files t JOIN media m ON m.id = t.medium_id JOIN generations g ON g.id = t.generation_id
               WHERE m.recycled IS NULL AND g.recycled IS NULL
               ORDER BY t.generation_id, t.part, m.sequence, t.file_number"""
        ):
            p = Part(int(gid), int(number), int(part), ix.media[UUID(str(mu))], int(tf), int(logical))
            ix.parts[p.generation_id].append(p)
            ix.by_medium[p.medium.uuid].append(p)
        return ix


def has_catalog(spec: str | None) -> bool:
    """Whether the catalog ``spec`` names (None: ``$TAPEARC_CATALOG``, else the default) holds
    something to browse, found out without writing anything: an SQLite file that exists; a
    PostgreSQL database with tapearc's schema in it (its ``meta`` table's schema version), or
    with tables of another program (opening it refuses it, untouched). An empty database, or one
    whose schema another tapearc is making this moment, holds nothing yet: browsing shows it
    empty and makes no table (opening it with :class:`Catalog` would make the schema)."""
    from tapearc.catalog import spec as catalog_spec
    from tapearc.catalog.connect import connect_existing
    from tapearc.catalog.schema import tables as schema_tables

    parsed = catalog_spec.parse(spec, "--catalog" if spec is not None else "TAPEARC_CATALOG")
    if parsed.path is not None or parsed.url is None:
        return parsed.path is not None and parsed.path.is_file()
    db = connect_existing(parsed.url)
    try:
        names = {
            str(r[0])
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchall()
        }
        if "meta" in names:
            return True  # a catalog (Catalog checks its version), or another program's table of that name
        return bool(names - schema_tables())
    finally:
        db.close()


def media_sets(catalog: Catalog) -> list[UUID]:
    """Every media set the catalog knows, oldest first."""
    return [UUID(str(r[0])) for r in catalog.db.execute("SELECT uuid FROM media_sets ORDER BY id")]


def all_media(catalog: Catalog) -> list[MediumRef]:
    """Every medium the catalog knows, by media set then sequence."""
    return list(_Index.read(catalog).media.values())


def find_media(catalog: Catalog, text: str) -> list[MediumRef]:
    """The media ``text`` names: by label text (barcode), by the name it was last used as
    (``--media``), by UUID, or by the start of a UUID (at least 4 hex digits, as shown short)."""
    key = text.strip()
    low = key.lower().replace("-", "")
    hexa = len(low) >= 4 and all(c in "0123456789abcdef" for c in low)
    return [
        m
        for m in all_media(catalog)
        if (key and key in (m.label, m.last_name)) or (hexa and m.uuid.hex.startswith(low))
    ]


def restore_needs(
    catalog: Catalog, g: GenerationRow, parts: dict[int, list[Part]], load_chain: ChainLoader
) -> RestoreNeeds:
    """The chain a restore of ``g`` loads and every tape file of it, in read order; or why ``g``
    cannot be restored (its state, or a base's)."""
    try:
        chain = load_chain(catalog, g.set_uuid, g.volume, g.number)
    except TapearcError as e:
        return RestoreNeeds(problem=e.message)
    files = sorted(
        (p for c in chain for p in parts.get(c.id, ())),
        key=lambda p: (p.medium.sequence, str(p.medium.uuid), p.logical),
    )
    needs: list[MediumNeed] = []
    for p in files:
        if needs and needs[-1].medium.uuid == p.medium.uuid:
            needs[-1] = MediumNeed(p.medium, (*needs[-1].tape_files, (p.tape_file, p.generation)))
        else:
            needs.append(MediumNeed(p.medium, ((p.tape_file, p.generation),)))
    return RestoreNeeds(tuple(c.number for c in chain), tuple(needs))


class _VolumesReadOnce(Catalog):
    """The same open catalog (its connection shared, never closed here) with each volume's
    generations read once: ``load_chain`` reads all of a volume's generations for every
    generation it is asked about, which is quadratic over a catalog's listing."""

    def __init__(self, catalog: Catalog) -> None:  # an open catalog: nothing to open or create
        self.path, self.spec, self.kind = catalog.path, catalog.spec, catalog.kind
        self.connect_spec = catalog.connect_spec
        self.db = catalog.db
        self._backend = catalog._backend
        self.read: dict[tuple[UUID, str | None], list[GenerationRow]] = {}

    def generations(self, set_uuid: UUID, volume: str | None = None) -> list[GenerationRow]:
        key = (set_uuid, volume)
        if key not in self.read:
            self.read[key] = super().generations(set_uuid, volume)
        return list(self.read[key])


def _all_generations(catalog: Catalog) -> Iterable[GenerationRow]:
    for s in media_sets(catalog):
        yield from catalog.generations(s)


def generations(catalog: Catalog, flt: CatalogFilter, load_chain: ChainLoader) -> list[GenerationView]:
    """The generations the filter takes, by volume and time, each with where it is and what
    restoring it needs (``load_chain``: :func:`tapearc.engine.plan.load_chain`)."""
    ix = _Index.read(catalog)
    once = _VolumesReadOnce(catalog)
    out = []
    for g in _all_generations(catalog):
        parts = ix.parts.get(g.id, [])
        if flt.takes(g, parts):
            out.append(GenerationView(g, tuple(parts), restore_needs(once, g, ix.parts, load_chain)))
    out.sort(key=lambda v: (v.row.volume, v.row.created, v.row.number))
    return out


def volumes(catalog: Catalog, flt: CatalogFilter = CatalogFilter()) -> list[VolumeView]:
    """The volumes of every media set, by name: those the filter's volume names, and with a
    time range or media, those with at least one generation it takes. Each row describes the
    whole volume."""
    ix = _Index.read(catalog)
    out = []
    for s in media_sets(catalog):
        gens: dict[str, list[GenerationRow]] = defaultdict(list)
        for g in catalog.generations(s):
            gens[g.volume].append(g)
        for v in catalog.volume_rows(s):
            mine = gens.get(v.name, [])
            if flt.volume is not None and v.name != flt.volume:
                continue
            if flt.selects_generations and not any(flt.takes(g, ix.parts.get(g.id, [])) for g in mine):
                continue
            latest = max(mine, key=lambda g: g.number, default=None)
            out.append(
                VolumeView(
                    name=v.name,
                    uuid=v.uuid,
                    set_uuid=s,
                    source_path=v.source_path,
                    generations=len(mine),
                    complete=sum(g.state == GenerationState.COMPLETE for g in mine),
                    first_backup=min((g.created for g in mine), default=None),
                    last_backup=max((g.created for g in mine), default=None),
                    size=0 if latest is None else latest.volume_size,
                    stored_bytes=sum(g.stored_bytes for g in mine),
                )
            )
    out.sort(key=lambda v: v.name)
    return out


def media(catalog: Catalog, flt: CatalogFilter = CatalogFilter()) -> list[MediumView]:
    """The media, by media set and sequence: those the filter's media name, and with a volume
    or time range, those holding a part of a generation it takes. Each row describes the whole
    medium."""
    ix = _Index.read(catalog)
    used = {
        UUID(str(mu)): int(n)
        for mu, n in catalog.db.execute(
            """SELECT m.uuid, COALESCE(SUM(c.stored_len), 0) FROM chunks c
               JOIN tape_files t ON t.id = c.tape_file_id JOIN media m ON m.id = t.medium_id GROUP BY m.uuid"""
        )
    }
    rows = {g.id: g for g in _all_generations(catalog)}
    by_gen_filter = flt.volume is not None or flt.since is not None or flt.until is not None
    out = []
    for m in ix.media.values():
        if flt.media is not None and m.uuid not in flt.media:
            continue
        gens = [rows[p.generation_id] for p in ix.by_medium.get(m.uuid, []) if p.generation_id in rows]
        if by_gen_filter and not any(CatalogFilter(flt.volume, flt.since, flt.until).takes(g, ()) for g in gens):
            continue
        named = sorted({(g.volume, g.number) for g in gens})
        labeled = ix.created[m.uuid]
        out.append(
            MediumView(
                medium=m,
                labeled=labeled,
                generations=tuple(named),
                tape_files=len(ix.by_medium.get(m.uuid, [])),
                bytes_used=used.get(m.uuid, 0),
                first_write=labeled,
                last_write=max((g.created for g in gens), default=labeled),
            )
        )
    return out


def generation_at(catalog: Catalog, set_uuid: UUID, volume: str, at: int) -> GenerationRow:
    """The newest complete generation of ``volume`` (in the media set) created at or before
    ``at`` (unix seconds): what ``restore --at`` restores. NoSuchGenerationError naming the
    volume, the time and the oldest complete generation's time when there is none."""
    return _newest_at(catalog.generations(set_uuid, volume), volume, at)


def generation_at_any(catalog: Catalog, volume: str, at: int) -> GenerationRow:
    """:func:`generation_at` across every media set the catalog knows (recycled generations are
    gone from the media and not considered): with media pools a volume's generations live in
    several sets (a new set per full); the set of the one found is its ``set_uuid``."""
    gens = [g for s in media_sets(catalog) for g in catalog.generations(s, volume)]
    return _newest_at(gens, volume, at)


def _newest_at(gens: list[GenerationRow], volume: str, at: int) -> GenerationRow:
    complete = [g for g in gens if g.state == GenerationState.COMPLETE]
    when = zoned_time(at, " ")
    before = [g for g in complete if g.created <= at]
    if before:
        return max(before, key=lambda g: (g.created, g.number))
    if not complete:
        raise NoSuchGenerationError(
            f"volume {volume!r} has no complete generation (asked for the newest at or before {when})"
        )
    oldest = min(complete, key=lambda g: (g.created, g.number))
    raise NoSuchGenerationError(
        f"volume {volume!r} has no complete generation at or before {when}: its oldest, generation "
        f"{oldest.number}, was made {zoned_time(oldest.created, ' ')}",
        hint=f"give a later --at, or --generation {oldest.number}",
    )
