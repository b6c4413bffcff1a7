"""Recycling never destroys a generation still needed: adversarial cases of retention (a full
whose parts are not all known, a generation dated after now) and of the choice of the medium a
pooled backup writes over (a medium holding more than the catalog knows of it)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tapearc.catalog import pools as cp
from tapearc.catalog.db import Catalog
from tapearc.engine import pools
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.retention import DAY, KEEP_DAYS, KEEP_FULL, Gen, Policy, kept_generations, media_verdicts
from tapearc.errors import PoolNoMediumError
from tests.pgsupport import pg_server, pg_url  # noqa: F401 (fixtures)


def gen(key: int, number: int, day: float, medium: int, state: str = "complete", chain: int = 1) -> Gen:
    return Gen(key, "x", chain, number, 0, state, int(day * DAY), frozenset({medium}))


def test_a_full_missing_parts_does_not_count_as_a_kept_full() -> None:
    """complete-pending: the last part is known, an earlier one not: not (yet) restorable. It
    must not push the last good full out of keep-full 1."""
    gens = [gen(1, 1, 0, 0), gen(2, 1, 1, 1, "complete-pending", chain=2)]
    v = media_verdicts([0, 1], gens, Policy(KEEP_FULL, 1), 2 * DAY)
    assert not v[0].recyclable and not v[1].recyclable, v
    assert 1 in kept_generations(gens, Policy(KEEP_FULL, 1), 2 * DAY)


def test_only_complete_fulls_count_as_kept_fulls() -> None:
    """An incomplete, a damaged and a still-writing full after the last good one: none of them
    is one of keep-full 1's fulls, so the good full's medium stays (sound on main too)."""
    gens = [
        gen(1, 1, 0, 0),
        *(gen(k, 1, k, k - 1, st, chain=k) for k, st in ((2, "incomplete"), (3, "damaged"), (4, "writing"))),
    ]
    v = media_verdicts([0, 1, 2, 3], gens, Policy(KEEP_FULL, 1), 9 * DAY)
    assert not v[0].recyclable and not v[3].recyclable, v


def test_a_generation_dated_after_now_does_not_expire_the_newest() -> None:
    """Clock skew: a full written while the clock was a year ahead is not the newest full; the
    fulls written since (the newest of them above all) are not recyclable because of it."""
    gens = [gen(1, 1, 400, 0), gen(2, 1, 1, 1, chain=2), gen(3, 1, 2, 2, chain=3)]
    for policy in (Policy(KEEP_FULL, 1), Policy(KEEP_DAYS, 1)):
        v = media_verdicts([0, 1, 2], gens, policy, 3 * DAY)
        assert not v[2].recyclable, (policy, v)  # the real newest full
        assert not v[1].recyclable, (policy, v)  # which one is newer is not known
        assert "dated after now" in v[0].why, v[0]


# ------------------------------------------------------------------ a medium the catalog is out of step with


KIB = 1024
T0 = 1_800_000_000


def library(tmp_path: Path, slots: int) -> str:
    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), slots, 1536 * KIB, early_warning=256 * KIB, max_record=1024 * KIB)
    return f"sim:{tmp_path / 'lib'}"


def opts(src: Path, pool: str | None = "p") -> BackupOptions:
    return BackupOptions(
        block_size=16 * KIB, chunk_size=64 * KIB, record_size=16 * KIB, full=True, pool=pool, volume_name=src.stem
    )


def night(spec: str, cat: Catalog, src: Path, day: int) -> list[str]:
    with MediaSource(spec, write=True, catalog=cat) as media:
        res = backup(str(src), media, cat, opts(src), clock=lambda: float(T0 + day * DAY))
    assert res.complete
    return res.warnings


def test_a_medium_holding_generations_another_catalog_wrote_is_not_recycled(tmp_path: Path) -> None:
    """Catalog A thinks TAP001 holds only an expired generation; catalog B has since appended a
    backup to it. A's next backup must not write TAP001 over: it reads the medium first, finds
    more than A knows of, and refuses naming the medium (barcode and uuid)."""
    spec = library(tmp_path, 2)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(128 * KIB))
    other = tmp_path / "b.img"
    other.write_bytes(random.Random(2).randbytes(128 * KIB))
    with Catalog() as a:
        pools.create(a, "p", Policy(KEEP_DAYS, 1), "new-set-per-full", T0)
        night(spec, a, src, 0)  # TAP001
        night(spec, a, src, 1)  # TAP002: a new set
        tap1 = next(m for m in cp.media(a) if m.label == "TAP001")
        with Catalog(tmp_path / "b.sqlite") as b, MediaSource(spec, write=True, catalog=b) as media:
            media.medium(tap1.uuid, tap1.set_uuid, tap1.sequence, tap1.label)
            assert backup(str(other), media, b, opts(other, None), clock=lambda: float(T0 + 2 * DAY)).complete
        with pytest.raises(PoolNoMediumError) as e:
            night(spec, a, src, 3)
    msg = str(e.value)
    assert "TAP001" in msg and str(tap1.uuid) in msg and "holds 1 tape file past the 1 " in msg, msg
    assert "nothing was written" in msg and e.value.exit_code == 36
    with (
        Catalog(tmp_path / "b.sqlite") as b,
        MediaSource(spec, write=False, catalog=b) as media,
    ):  # B's generation is still there
        media.medium(tap1.uuid, tap1.set_uuid, tap1.sequence, tap1.label)


def test_a_foreign_medium_is_not_counted_as_blank(tmp_path: Path) -> None:
    """A tape of another tool (bytes that are not a tapearc label) sits in the library under a
    barcode the catalog does not know. It is never written on, and it does not stand in the way
    of recycling an expired tape of the pool either."""
    spec = library(tmp_path, 3)
    foreign = tmp_path / "lib" / "tapes" / "TAP003.tap"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_bytes(b"ustar\0" + bytes(range(256)) * 40)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(128 * KIB))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 1), "new-set-per-full", T0)
        night(spec, cat, src, 0)  # TAP001
        night(spec, cat, src, 1)  # TAP002: a new set
        warnings = night(spec, cat, src, 2)  # TAP001 recycled; TAP003 left alone
        cp.set_location(cat, next(m.id for m in cp.media(cat) if m.label == "TAP002"), cp.OFFSITE)
        with pytest.raises(PoolNoMediumError) as e:  # nothing left but the foreign tape
            night(spec, cat, src, 3)
    assert "no blank medium in the library (TAP003: not tapearc's (" in str(e.value), str(e.value)
    assert any(w.startswith("recycled TAP001 ") for w in warnings), warnings
    assert foreign.read_bytes() == b"ustar\0" + bytes(range(256)) * 40


def test_a_swapped_barcode_does_not_make_a_kept_tape_recyclable(tmp_path: Path) -> None:
    """The cartridges of TAP001 (expired) and TAP002 (the kept full) swapped barcodes. The tape
    recycled is the one whose label the catalog calls expired (read before anything is written),
    not the one under barcode TAP001; its new label takes the barcode it really has."""
    spec = library(tmp_path, 2)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(128 * KIB))
    tapes = tmp_path / "lib" / "tapes"
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 1), "new-set-per-full", T0)
        night(spec, cat, src, 0)  # TAP001
        night(spec, cat, src, 1)  # TAP002: a new set, the kept full
        kept = next(m for m in cp.media(cat) if m.label == "TAP002")
        for ext in (".tap", ".tap.tapesim"):
            (tapes / f"TAP001{ext}").rename(tapes / f"x{ext}")
            (tapes / f"TAP002{ext}").rename(tapes / f"TAP001{ext}")
            (tapes / f"x{ext}").rename(tapes / f"TAP002{ext}")
        warnings = night(spec, cat, src, 2)
        assert any(w.startswith("recycled TAP001 ") for w in warnings), warnings
        assert kept.id in {m.id for m in cp.media(cat)}  # the kept full's medium is still in use
        new = max(cp.media(cat), key=lambda m: m.id)
    assert new.label == "TAP002"  # the barcode the recycled cartridge bears
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        media.medium(kept.uuid, kept.set_uuid, kept.sequence, "TAP001")  # its label is intact
        assert media.loaded_barcode() == "TAP001"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_recyclable_tape_another_job_took_first_is_not_written_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, backend: str
) -> None:
    """Two jobs share a pool (on a SQLite or a PostgreSQL catalog): both chose the oldest
    recyclable tape, TAP001; job A got there first and wrote its backup on it. Job B finds
    TAP001 relabelled by A: it leaves it alone and chooses again (here: appending to A's new
    set), instead of failing or writing it over."""
    spec = library(tmp_path, 4)
    src, other = tmp_path / "a.img", tmp_path / "b.img"
    src.write_bytes(random.Random(1).randbytes(128 * KIB))
    other.write_bytes(random.Random(2).randbytes(128 * KIB))
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with Catalog(url) as cat:
        pools.create(cat, "p", Policy(KEEP_DAYS, 1), "new-set-per-full", T0)
        for day in range(4):
            night(spec, cat, src, day)  # TAP001..TAP004
        pool = cp.pool(cat, "p")
        assert pool is not None
        stale = pools.choose(cat, pool, ["TAP001", "TAP002", "TAP003", "TAP004"], "a", True, T0 + 5 * DAY)
        assert stale.kind == "recycle" and stale.barcode == "TAP001"
        night(spec, cat, src, 5)  # job A: TAP001 recycled
        a_gen = max(g.key for g in cp.retention_rows(cat))
        real = pools.choose
        calls: list[pools.Choice] = []

        def racing(*args: object, **kw: object) -> pools.Choice:
            calls.append(stale)
            return stale if len(calls) == 1 else real(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(pools, "choose", racing)
        with MediaSource(spec, write=True, catalog=cat) as media:
            assert backup(str(other), media, cat, opts(other), clock=lambda: float(T0 + 5 * DAY)).complete
        assert len(calls) == 2
        assert a_gen in {g.key for g in cp.retention_rows(cat)}  # A's generation was not recycled


def test_label_force_on_a_pool_tape_does_not_make_the_last_good_full_recyclable(tmp_path: Path) -> None:
    """keep-full 1: day 0's full spans TAP001-TAP002, day 1's TAP003-TAP004. TAP003 is erased
    with `label --force`: day 1's full lost its first part, so day 0's is the newest full that
    can be restored, and the next backup must not recycle TAP001 or TAP002 for it. The pool is
    not stuck on the erased tape either (it is no longer its set's last medium)."""
    from tapearc.engine.labeling import label_medium

    spec = library(tmp_path, 5)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(1400 * KIB))  # a full spans two tapes
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 1), "new-set-per-full", T0)
        night(spec, cat, src, 0)
        day0 = max(g.key for g in cp.retention_rows(cat))
        night(spec, cat, src, 1)
        assert {m.label for m in cp.media(cat)} == {"TAP001", "TAP002", "TAP003", "TAP004"}
        tap3 = next(m for m in cp.media(cat) if m.label == "TAP003")
        with MediaSource(spec, write=True, catalog=cat) as media:
            drive = media.medium(tap3.uuid, tap3.set_uuid, tap3.sequence, tap3.label)
            label_medium(drive, cat, force=True, barcode=media.loaded_barcode(), by_place=False)
        night(spec, cat, src, 2)
        first = {m.id for m in cp.media(cat, with_recycled=True) if m.label in ("TAP001", "TAP002")}
        assert first <= {m.id for m in cp.media(cat, "p")}, cp.media(cat, with_recycled=True)
        assert day0 in {g.key for g in cp.retention_rows(cat)}


def test_label_refusals_name_the_barcode_and_the_uuid(tmp_path: Path) -> None:
    """`tapearc label` without --force in a library: a labeled tape (exit 18) and a tape of
    another tool (exit 11) are refused in one line naming the barcode (and the label's uuid)."""
    from tapearc.engine.labeling import label_medium
    from tapearc.errors import MediumInUseError, NotTapearcMediumError

    spec = library(tmp_path, 2)
    foreign = tmp_path / "lib" / "tapes" / "TAP002.tap"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_bytes(b"ustar\0" + bytes(range(256)) * 40)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        lab = label_medium(media.current(), cat, barcode=media.loaded_barcode(), by_place=False)
        with pytest.raises(MediumInUseError) as e:
            label_medium(media.current(), cat, barcode=media.loaded_barcode(), by_place=False)
        assert "TAP001" in e.value.message and str(lab.medium_uuid) in e.value.message, e.value.message
        assert "\n" not in e.value.message and e.value.exit_code == 18
        media.release()
        assert media.changer is not None
        media.changer.unload(0)
        media.changer.load(2, 0)
        with pytest.raises(NotTapearcMediumError) as f:
            label_medium(media.current(), cat, barcode=media.loaded_barcode(), by_place=False)
        assert "TAP002" in f.value.message and e.value.exit_code != f.value.exit_code == 11, f.value.message
    assert foreign.read_bytes() == b"ustar\0" + bytes(range(256)) * 40


def test_a_write_protected_tape_chosen_for_recycling_keeps_its_generations(tmp_path: Path) -> None:
    """The tape the catalog calls recyclable has its write-protect tab set (the catalog does not
    know): the backup stops before anything is written, naming the tape, and the catalog still
    knows the generations on it (they were not marked recycled for a label never written)."""
    from tapearc.errors import WriteProtectedError
    from tapesim.sidecar import load_settings, save_settings

    spec = library(tmp_path, 2)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(128 * KIB))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 1), "new-set-per-full", T0)
        night(spec, cat, src, 0)  # TAP001
        night(spec, cat, src, 1)  # TAP002
        before = {g.key for g in cp.retention_rows(cat)}
        image = str(tmp_path / "lib" / "tapes" / "TAP001.tap")
        settings = load_settings(image)
        settings.write_protected = True
        save_settings(image, settings)
        with pytest.raises(WriteProtectedError) as e:
            night(spec, cat, src, 2)
        assert "TAP001" in e.value.message and "nothing was written" in e.value.message, e.value.message
        assert {g.key for g in cp.retention_rows(cat)} == before
        assert "TAP001" in {m.label for m in cp.media(cat, "p")}


def test_a_spanning_backup_skips_a_foreign_tape_for_its_next_medium(tmp_path: Path) -> None:
    """Fulls span two tapes; TAP005 holds another tool's data. Day 2's full starts on the
    recycled TAP001 and spans onto the recycled TAP002: the foreign tape is tried as the "next
    blank" and left alone (sound on main for the spanning step)."""
    spec = library(tmp_path, 5)
    foreign = tmp_path / "lib" / "tapes" / "TAP005.tap"
    foreign.parent.mkdir(exist_ok=True)
    content = b"ustar\0" + bytes(range(256)) * 40
    foreign.write_bytes(content)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(1400 * KIB))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 1), "new-set-per-full", T0)
        night(spec, cat, src, 0)  # TAP001-TAP002
        night(spec, cat, src, 1)  # TAP003-TAP004
        warnings = night(spec, cat, src, 2)
        newest = max(cp.retention_rows(cat), key=lambda g: g.key)
        labels = {m.id: m.label for m in cp.media(cat)}
    assert [w.split()[1] for w in warnings if w.startswith("recycled ")] == ["TAP001", "TAP002"], warnings
    assert sorted(labels[m] for m in newest.media) == ["TAP001", "TAP002"]
    assert foreign.read_bytes() == content


def test_copy_refusal_names_the_target_label(tmp_path: Path) -> None:
    """`tapearc copy` onto a labeled medium without --force: one line naming the label's medium
    uuid (and its text), exit 18; the target is untouched."""
    from contextlib import closing

    from tapearc.engine.copy import copy_medium
    from tapearc.engine.labeling import label_medium
    from tapearc.errors import MediumInUseError
    from tapearc.media import open_medium

    with Catalog() as cat:
        for name in ("src", "dst"):
            with closing(open_medium(f"sim:{tmp_path / name}.tap", write=True)) as d:
                lab = label_medium(d, cat, text=name.upper())
    before = (tmp_path / "dst.tap").read_bytes()
    with (
        closing(open_medium(f"sim:{tmp_path / 'src.tap'}", write=False)) as src,
        closing(open_medium(f"sim:{tmp_path / 'dst.tap'}", write=True)) as dst,
        pytest.raises(MediumInUseError) as e,
    ):
        copy_medium(src, dst)
    assert str(lab.medium_uuid) in e.value.message and "DST" in e.value.message, e.value.message
    assert e.value.exit_code == 18 and "\n" not in e.value.message
    assert (tmp_path / "dst.tap").read_bytes() == before


def test_label_force_on_an_erased_pool_tape_retires_what_the_catalog_knew_on_it(tmp_path: Path) -> None:
    """keep-full 1: day 0's full on TAP001, day 1's on TAP002. TAP002 is found erased (it reads
    as blank) and is labelled anew with --force: the catalog must stop counting day 1's full
    (it is gone), so TAP001, holding the only full left, is not recycled by the next backup
    (which then has no tape: TAP002 was labelled outside the pool)."""
    from tapearc.engine.labeling import label_medium

    spec = library(tmp_path, 2)
    src = tmp_path / "a.img"
    src.write_bytes(random.Random(1).randbytes(128 * KIB))
    with Catalog() as cat:
        pools.create(cat, "p", Policy(KEEP_FULL, 1), "new-set-per-full", T0)
        night(spec, cat, src, 0)  # TAP001
        day0 = max(g.key for g in cp.retention_rows(cat))
        night(spec, cat, src, 1)  # TAP002
        tap1 = next(m for m in cp.media(cat) if m.label == "TAP001")
        (tmp_path / "lib" / "tapes" / "TAP002.tap").write_bytes(b"")  # erased: reads as blank
        with MediaSource(spec, write=True, catalog=cat) as media:
            assert media.changer is not None
            if media.loaded_barcode() != "TAP002":
                ch = media.changer
                ch.unload(0) if media.loaded_barcode() else None
                ch.load(next(x.number for x in ch.status().slots if x.barcode == "TAP002"), 0)
            label_medium(media.current(), cat, force=True, barcode=media.loaded_barcode(), by_place=False)
        with pytest.raises(PoolNoMediumError) as e:  # TAP002, labelled outside the pool, is not its blank
            night(spec, cat, src, 2)
        assert "TAP001: needed by volume a generation 1 " in str(e.value), str(e.value)
        assert tap1.id in {m.id for m in cp.media(cat, "p")}
        assert day0 in {g.key for g in cp.retention_rows(cat)}
