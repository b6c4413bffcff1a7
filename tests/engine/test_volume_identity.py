"""Volume identity at the engine level: backup() refuses another source under a volume's name
without touching medium or catalog, records the source in the header and the catalog (any
path bytes), and the naming rules of tapearc.engine.volumes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, path_text
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.layout import read_label, scan_generation_files
from tapearc.engine.volumes import choose_volume, source_identity, suggest_name
from tapearc.errors import VolumeMismatchError
from tapearc.media import open_medium

BS = 4096


def do_backup(spec: str, src: Path, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("block_size", BS)
    kw.setdefault("record_size", 16384)
    with Catalog() as cat, open_medium(spec, write=True) as d:
        return backup(str(src), d, cat, BackupOptions(**kw))  # type: ignore[arg-type]


def dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def test_backup_refuses_other_source_and_writes_nothing(tmp_path: Path, _private_catalog: Path) -> None:
    a, b = tmp_path / "hostA" / "root", tmp_path / "hostB" / "root"
    for p, n in ((a, 24), (b, 8)):
        p.parent.mkdir()
        p.write_bytes(os.urandom(n * BS))
    tape = tmp_path / "t.tap"
    spec = f"sim:{tape}"
    first = do_backup(spec, a)
    assert (first.volume, first.kind) == ("root", "full")
    image, cat = tape.read_bytes(), dump(_private_catalog)
    with pytest.raises(VolumeMismatchError) as e:
        do_backup(spec, b)
    assert e.value.exit_code == 7 and e.value.kind == "volume-mismatch"
    assert str(a) in str(e.value) and str(b) in str(e.value) and "--volume hostB/root" in (e.value.hint or "")
    assert tape.read_bytes() == image and dump(_private_catalog) == cat
    # the header on the medium carries the identity
    with open_medium(spec, write=False) as d:
        label = read_label(d)
        gens = scan_generation_files(d)
    assert label.medium_uuid
    hdr = gens[0].header
    st = os.stat(a)
    assert hdr.source == fmt.VolumeSource(path=str(a), real_path=str(a), dev=st.st_dev, ino=st.st_ino)
    assert str(hdr.volume_uuid) == first.volume_uuid


def test_non_utf8_source_path_round_trips(tmp_path: Path, _private_catalog: Path) -> None:
    """Linux paths are bytes: one that is not UTF-8 is recorded exactly on the medium and as
    ``\\xNN`` text in the catalog, and is still the same volume next time."""
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(folder)
    raw = folder + b"/disk"
    with open(raw, "wb") as f:
        f.write(os.urandom(4 * BS))
    src = Path(os.fsdecode(raw))
    spec = f"sim:{tmp_path / 't.tap'}"
    res = do_backup(spec, src)
    assert res.source_path == os.fsdecode(tmp_path) + "/caf\\xe9/disk"
    with open_medium(spec, write=False) as d:
        read_label(d)
        hdr = scan_generation_files(d)[0].header
    assert hdr.source is not None and os.fsencode(hdr.source.path) == raw
    again = do_backup(spec, src)
    assert (again.volume, again.generation, again.kind, again.warnings) == ("disk", 2, "incremental", [])
    with Catalog() as cat:
        g = cat.generations(hdr.media_set_uuid)[-1]
    assert g.source_path == path_text(str(src)) == res.source_path


def test_suggested_names() -> None:
    assert suggest_name("/data/hostB/root", {"root"}) == "hostB/root"
    assert suggest_name("/data/hostB/root", {"root", "hostB/root", "hostB/root-2"}) == "hostB/root-3"
    assert suggest_name("/root.img", {"root.img"}) == "root.img-2"
    assert suggest_name("/dev/vg1/root", {"root"}) == "vg1/root"


def test_a_source_of_several_volumes_needs_a_name(tmp_path: Path, _private_catalog: Path) -> None:
    """A source recorded for two volumes (one continued by --volume, one moved onto it) is
    ambiguous without --volume: refused, naming both."""
    spec = f"sim:{tmp_path / 't.tap'}"
    x, y = tmp_path / "x" / "img", tmp_path / "y" / "img2"
    for p in (x, y):
        p.parent.mkdir()
        p.write_bytes(os.urandom(4 * BS))
    do_backup(spec, x, volume_name="one")
    do_backup(spec, y, volume_name="two")
    moved = do_backup(spec, x, volume_name="two")  # "two" moved onto x
    assert moved.warnings and "as the same volume moved" in moved.warnings[0]
    with Catalog() as cat, open_medium(spec, write=False) as d:
        label = read_label(d)
        with pytest.raises(VolumeMismatchError, match=r"is the source of several volumes .*'one', 'two'"):
            choose_volume(
                cat, label.media_set_uuid, str(x), source_identity(str(x), os.stat(x)), name=None, new_volume=False
            )
        choice = choose_volume(
            cat, label.media_set_uuid, str(x), source_identity(str(x), os.stat(x)), name="one", new_volume=False
        )
        assert (choice.name, [g.number for g in choice.known], choice.warnings) == ("one", [1], [])
