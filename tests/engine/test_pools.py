"""Media pools on a simulated library too small to hold every backup: many nights (``now``
advancing a day each) of backups of two volumes into a pool keeping 2 full generations. The
media recycled are exactly media whose generations had all expired (checked against the
retention rules before each night), never one holding a needed base or a part of a spanned
kept generation; an off-site medium is never chosen; every kept generation restores
byte-identical after all the recycling."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tapearc.catalog import pools as cp
from tapearc.catalog.db import Catalog
from tapearc.engine import pools
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.retention import DAY, KEEP_DAYS, KEEP_FULL, Policy, kept_generations, media_verdicts
from tapearc.errors import MediaMissingError, PoolError, PoolNoMediumError

KIB = 1024
BS = 16 * KIB
T0 = 1_800_000_000  # 2027-01-15


def library(tmp_path: Path, slots: int) -> str:
    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), slots, 1536 * KIB, early_warning=256 * KIB, max_record=1024 * KIB)
    return f"sim:{tmp_path / 'lib'}"


def night(spec: str, cat: Catalog, src: Path, day: int, full: bool, pool: str = "p") -> list[str]:
    opts = BackupOptions(
        block_size=BS, chunk_size=64 * KIB, record_size=16 * KIB, full=full, pool=pool, volume_name=src.stem
    )
    with MediaSource(spec, write=True, catalog=cat) as media:
        res = backup(str(src), media, cat, opts, clock=lambda: float(T0 + day * DAY))
    assert res.complete
    return [w for w in res.warnings if w.startswith("recycled ")]


def change(path: Path, day: int) -> None:
    data = bytearray(path.read_bytes())
    r = random.Random(day)
    for _ in range(2):
        at = r.randrange(len(data) // BS) * BS
        data[at : at + BS] = r.randbytes(BS)
    path.write_bytes(bytes(data))


def in_use(cat: Catalog) -> dict[int, cp.PoolMedium]:
    return {m.id: m for m in cp.media(cat, "p")}


@pytest.mark.parametrize(("allocation", "slots"), [("new-set-per-full", 9), ("continue", 7)])
def test_nights_recycle_only_expired_media(tmp_path: Path, allocation: str, slots: int) -> None:
    spec = library(tmp_path, slots)
    vols = {"a": tmp_path / "a.img", "b": tmp_path / "b.img"}
    vols["a"].write_bytes(random.Random(1).randbytes(1280 * KIB))  # a full of a and b spans two media
    vols["b"].write_bytes(random.Random(2).randbytes(256 * KIB))
    policy = Policy(KEEP_FULL, 2)
    expected: dict[int, bytes] = {}  # generations.id -> the volume's bytes that night
    recycled: list[str] = []
    offsite: str | None = None
    with Catalog() as cat:
        pools.create(cat, "p", policy, allocation, T0)
        for day in range(32):
            now = T0 + day * DAY
            before = in_use(cat)
            gens = cp.retention_rows(cat, cp.pool(cat, "p").id)  # type: ignore[union-attr]
            verdicts = media_verdicts(list(before), gens, policy, now)
            if day == 9:  # a medium that could be recycled goes off-site: it is never chosen
                offsite = next(m.label for i, m in before.items() if verdicts[i].recyclable)
                cp.set_location(cat, next(i for i, m in before.items() if m.label == offsite), cp.OFFSITE)
            for name, path in vols.items():
                if day:
                    change(path, day * 10 + len(name))
                lines = night(spec, cat, path, day, full=day % 4 == 0)
                recycled += lines
                for line in lines:  # the medium recycled was recyclable before the night began
                    label = line.split()[1]
                    assert label != offsite
                    ids = [i for i, m in before.items() if m.label == label]
                    assert ids and all(verdicts[i].recyclable for i in ids), (day, line, verdicts)
                g = max(cp.retention_rows(cat), key=lambda g: g.key)
                expected[g.key] = path.read_bytes()
            # after the night: no kept generation lost a medium
            gens = cp.retention_rows(cat, cp.pool(cat, "p").id)  # type: ignore[union-attr]
            kept = kept_generations(gens, policy, now)
            live = in_use(cat)
            for g in gens:
                if g.key in kept:
                    assert g.media <= set(live), (day, g)
        assert len(recycled) >= 2, "the library is too small: media must have been recycled"
        assert any(len(g.media) > 1 for g in cp.retention_rows(cat)), "no generation spanned media"
        off = [m for m in cp.media(cat, with_recycled=True) if m.label == offsite]
        assert len(off) == 1 and off[0].recycled is None and off[0].location == cp.OFFSITE
        rows = {g.key: g for g in cp.retention_rows(cat)}
        kept = kept_generations(list(rows.values()), policy, T0 + 31 * DAY)
        sets = {m.id: m for m in cp.media(cat)}
    assert len(kept) >= 8
    for key in kept:  # every kept generation restores byte-identical
        g = rows[key]
        medium = sets[min(g.media)]
        out = tmp_path / "out.img"
        out.unlink(missing_ok=True)
        with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
            media.medium(medium.uuid, medium.set_uuid, medium.sequence, medium.label)
            restore(media, cat, str(out), RestoreOptions(volume=g.volume, generation=g.number))
        assert out.read_bytes() == expected[key], (g, medium)


def test_no_usable_medium_names_each(tmp_path: Path) -> None:
    spec = library(tmp_path, 2)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(256 * KIB))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 1), "new-set-per-full", T0)
        night(spec, cat, src, 0, full=True)
        night(spec, cat, src, 1, full=True)  # TAP002: a new set
        with pytest.raises(PoolNoMediumError) as e:  # TAP002 holds the kept full, TAP001 not yet expired?
            cp.set_location(cat, in_use(cat)[min(in_use(cat))].id, "vault B")
            night(spec, cat, src, 2, full=True)
        msg = str(e.value)
        assert "pool 'p'" in msg and "TAP001: at 'vault B'" in msg and "TAP002: needed by volume a generation 1" in msg
        assert e.value.exit_code == 36
        with pytest.raises(PoolError):
            pools.create(cat, "p", Policy(KEEP_FULL, 1), "continue", T0)
        with pytest.raises(PoolError):
            pools.create(cat, "q", Policy(KEEP_FULL, 0), "continue", T0)
        with pytest.raises(PoolError):
            night(spec, cat, src, 3, full=True, pool="nope")


def test_keep_days_recycles_once_the_days_are_past(tmp_path: Path) -> None:
    spec = library(tmp_path, 2)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(256 * KIB))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_DAYS, 3), "new-set-per-full", T0)
        night(spec, cat, src, 0, full=True)  # TAP001
        night(spec, cat, src, 1, full=True)  # TAP002: a new set
        st = {s.medium.label: s for s in pools.statuses(cat, T0 + 2 * DAY)}
        assert not st["TAP001"].verdict.recyclable and st["TAP001"].verdict.until == T0 + 3 * DAY  # type: ignore[union-attr]
        with pytest.raises(PoolNoMediumError):  # day 2: TAP001 is 2 days old
            night(spec, cat, src, 2, full=True)
        assert night(spec, cat, src, 3, full=True)[0].startswith("recycled TAP001 (held volume a generation 1,")
        st = {s.medium.label: s for s in pools.statuses(cat, T0 + 3 * DAY)}
        assert st["TAP002"].verdict is not None and not st["TAP002"].verdict.recyclable  # 2 days old


def test_restore_at_loads_an_older_media_set(tmp_path: Path) -> None:
    """new-set-per-full: the fulls of day 0 and day 2 begin two media sets; a restore by date of
    day 1's incremental (in the older set, while the drive holds the newer) loads the older set's
    medium from the library by itself and restores it byte-identical. Without a changer the
    restore stops before writing, naming the set and its medium."""
    spec = library(tmp_path, 4)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(256 * KIB))
    versions = []
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 2), "new-set-per-full", T0)
        for day in range(3):
            if day:
                change(src, day)
            night(spec, cat, src, day, full=day != 1)
            versions.append(src.read_bytes())
        sets = {m.label: m.set_uuid for m in cp.media(cat)}
        assert len(set(sets.values())) == 2 and sets["TAP001"] != sets["TAP002"]
        out = tmp_path / "out.img"
        with MediaSource(spec, write=False, catalog=cat) as media:
            assert media.loaded_barcode() == "TAP002"  # the newer set's medium is in the drive
            res = restore(media, cat, str(out), RestoreOptions(volume="a", at=T0 + DAY + 3600))
            assert media.loaded_barcode() == "TAP001"
        assert out.read_bytes() == versions[1] and res.generation == 2
        out.unlink()
        with MediaSource(spec, write=False, catalog=cat) as media:  # the newest at or before: day 2's, TAP002
            res = restore(media, cat, str(out), RestoreOptions(volume="a", at=T0 + 5 * DAY))
            assert media.loaded_barcode() == "TAP002" and out.read_bytes() == versions[2]
        out.unlink()
        with MediaSource(spec, write=False, catalog=cat) as media:  # one drive, nobody to load it
            fixed = MediaSource.fixed(media.current(), cat)
            with pytest.raises(MediaMissingError) as e:
                restore(fixed, cat, str(out), RestoreOptions(volume="a", at=T0 + DAY))
        assert f"media set {sets['TAP001']}" in e.value.message and "load its media TAP001" in e.value.message
        assert "\n" not in e.value.message and not out.exists()
