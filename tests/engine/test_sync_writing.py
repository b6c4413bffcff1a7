"""A job killed between a generation's immediate filemark and the drive's sync leaves its catalog
row ``writing``. What the medium holds decides what a later verify, list or restore says of it,
never the catalog's word alone: whole on the medium, it is learnt complete and restored; not on
the medium, it is incomplete and a restore names it as skipped."""

from __future__ import annotations

from pathlib import Path

from tapearc.catalog.db import Catalog
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.scan import sync_medium
from tapearc.engine.verify import run_verify
from tests.engine.test_deferred_sync import killed_before_the_sync, run, states, three_volumes
from tests.engine.test_jobs import change
from tests.engine.test_verify import records, write_image


def _killed_before_sync(tmp_path: Path) -> tuple[str, dict[str, bytes], bytes]:
    """Volumes a, b, c backed up; then a's generation 2 written by a job killed before the sync."""
    spec = f"sim:{tmp_path / 't.tap'}"
    path, datas = three_volumes(tmp_path, spec)
    run(path)
    new = change(tmp_path / "a.img", 3)
    killed_before_the_sync(path)
    assert ("a", 2, "writing") in states()
    return spec, datas, new


def _verify_then_restore(spec: str, out: Path):  # type: ignore[no-untyped-def]
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        d = media.current()
        sync_medium(d, cat)
        rep = run_verify(d, cat)
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        res = restore(media, cat, str(out), RestoreOptions(volume="a"))
    return rep, res


def test_a_generation_whole_on_the_medium_is_not_called_incomplete(tmp_path: Path, _private_catalog: Path) -> None:
    spec, _, new = _killed_before_sync(tmp_path)
    rep, res = _verify_then_restore(spec, tmp_path / "o.img")
    assert rep.ok and rep.media[0].files[-1].generation == 2
    assert ("a", 2, "complete") in states()  # was: incomplete, on the stale row's word
    assert res.generation == 2 and not res.skipped_generations
    assert (tmp_path / "o.img").read_bytes() == new  # was: generation 1 restored


def test_a_generation_the_medium_never_got_is_incomplete_and_named(tmp_path: Path, _private_catalog: Path) -> None:
    spec, datas, _ = _killed_before_sync(tmp_path)
    img = Path(spec[4:])
    write_image(img, records(img)[:4])  # the drive's buffer was lost: tape file 4 never written
    rep, res = _verify_then_restore(spec, tmp_path / "o.img")
    assert rep.ok and [f.tape_file for f in rep.media[0].files] == [1, 2, 3]
    assert ("a", 2, "incomplete") in states()
    assert res.generation == 1 and [g["generation"] for g in res.skipped_generations] == [2]
    assert (tmp_path / "o.img").read_bytes() == datas["a"]
