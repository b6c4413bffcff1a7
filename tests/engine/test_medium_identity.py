"""Medium identity at the engine level: what is blank, what is foreign or damaged, and which
objects a job may not use both ways (issue 12; the CLI side is tests/cli/test_cli_medium_identity.py)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import backup, prepare_medium_for_append
from tapearc.engine.copy import copy_medium
from tapearc.engine.identity import (
    known_medium,
    refuse_same_restore_target,
    refuse_source_is_medium,
    refuse_unless_blank,
)
from tapearc.engine.labeling import label_medium
from tapearc.engine.restore import restore
from tapearc.engine.tapefiles import probe_label as probe
from tapearc.errors import DamagedDataError, NotTapearcMediumError, SameObjectError
from tapearc.media import open_medium
from tapearc.media.identity import (
    classify_bare_path,
    describe_bytes,
    image_content_error,
)

pytest.importorskip("tapesim.drive")


def _backed_up(tmp_path: Path, cat: Catalog, name: str = "t.tap") -> Path:
    src = tmp_path / "src.img"
    if not src.exists():
        src.write_bytes(os.urandom(100_000))
    img = tmp_path / name
    with open_medium(f"sim:{img}", write=True) as d:
        backup(str(src), d, cat)
    return img


def test_only_missing_or_empty_images_are_blank(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tap"
    empty.write_bytes(b"")
    for spec in (f"sim:{tmp_path / 'new.tap'}", f"sim:{empty}"):
        with open_medium(spec, write=True) as d:
            p = probe(d)
            assert p.blank and p.error is None
    foreign = tmp_path / "f.img"
    foreign.write_bytes(os.urandom(50_000))
    before = foreign.read_bytes()
    with open_medium(f"sim:{foreign}", write=True) as d:
        p = probe(d)
        assert not p.blank and isinstance(p.error, NotTapearcMediumError) and not p.damaged
        with pytest.raises(NotTapearcMediumError, match="not a blank medium"):
            prepare_medium_for_append(d, None, 0)
        with (
            Catalog(tmp_path / "c.sqlite") as cat,
            pytest.raises(NotTapearcMediumError, match="labeling would erase it"),
        ):
            label_medium(d, cat)
    assert foreign.read_bytes() == before


def test_damaged_label_is_not_blank(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.sqlite") as cat:
        img = _backed_up(tmp_path, cat)
    raw = bytearray(img.read_bytes())
    n = struct.unpack_from("<I", raw, 0)[0]
    raw[4 + n + (n & 1) + 1] ^= 0x80  # the label record's trailing length word
    img.write_bytes(raw)
    err = image_content_error(str(img), f"sim:{img}")
    assert isinstance(err, DamagedDataError) and err.hint and "scan" in err.hint
    with open_medium(f"sim:{img}", write=True) as d:
        p = probe(d)
        assert not p.blank and p.damaged
        with pytest.raises(DamagedDataError, match="volume label is damaged"):
            prepare_medium_for_append(d, None, 0)
    assert img.read_bytes() == bytes(raw)


def test_catalog_knowledge_counts(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.sqlite") as cat:
        img = _backed_up(tmp_path, cat)
        img.write_bytes(b"")
        with open_medium(f"sim:{img}", write=True) as d:
            assert probe(d).blank  # the medium alone cannot tell...
            assert known_medium(cat, d.name) is not None  # ...the catalog can
            with pytest.raises(NotTapearcMediumError, match="catalog holds"):
                refuse_unless_blank(d, cat)
            with pytest.raises(NotTapearcMediumError, match="catalog holds"):
                prepare_medium_for_append(d, None, 0, catalog=cat)
            with pytest.raises(NotTapearcMediumError, match="catalog holds"):
                label_medium(d, cat)
        assert img.read_bytes() == b""
        # the same path named differently (relative, through a symlink) is the same place
        os.symlink(img, tmp_path / "alias.tap")
        assert known_medium(cat, f"sim:{tmp_path / 'alias.tap'}") is not None
        assert known_medium(cat, f"sim:{tmp_path / 'other.tap'}") is None
        erased: list[str] = []
        with open_medium(f"sim:{img}", write=True) as d:
            label_medium(d, cat, force=True, erasing=erased.append)
        assert erased and "catalog holds" in erased[0]


def test_copy_never_overwrites_foreign_bytes_even_with_force(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.sqlite") as cat:
        img = _backed_up(tmp_path, cat)
    target = tmp_path / "notes.txt"
    target.write_text("meeting notes\n" * 1000)
    with open_medium(f"sim:{img}", write=False) as s, open_medium(f"sim:{target}", write=True) as t:
        for force in (False, True):
            with pytest.raises(NotTapearcMediumError, match="of text"):
                copy_medium(s, t, force=force)
    assert target.read_text() == "meeting notes\n" * 1000


def test_same_object_checks(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.sqlite") as cat:
        img = _backed_up(tmp_path, cat)
        os.link(img, tmp_path / "hard.tap")
        before = img.read_bytes()
        with pytest.raises(SameObjectError) as info:
            refuse_same_restore_target(f"sim:{img}", str(tmp_path / "hard.tap"))
        assert info.value.exit_code == 8 and "hard.tap" in str(info.value) and f"sim:{img}" in str(info.value)
        with open_medium(f"sim:{img}", write=False) as d, pytest.raises(SameObjectError):
            restore(d, cat, str(img))
        with open_medium(f"sim:{img}", write=True) as d, pytest.raises(SameObjectError):
            backup(str(tmp_path / "hard.tap"), d, cat)
        assert img.read_bytes() == before
    refuse_same_restore_target(f"sim:{img}", str(tmp_path / "out.img"))  # another file is fine
    refuse_same_restore_target(f"sim:{img}", "-")
    folder = tmp_path / "m"
    (folder / "file-000000").mkdir(parents=True)
    with pytest.raises(SameObjectError, match="inside"):
        refuse_same_restore_target(f"dir:{folder}", str(folder / "file-000000" / "new.img"))
    with pytest.raises(SameObjectError, match="inside"):
        refuse_source_is_medium(str(folder / "file-000000"), f"dir:{folder}")
    refuse_source_is_medium(str(tmp_path / "src.img"), f"dir:{folder}")


def test_describe_bytes_and_bare_paths(tmp_path: Path) -> None:
    mbr = bytes(510) + b"\x55\xaa" + os.urandom(100)
    assert "MBR" in describe_bytes(mbr, 1 << 30)
    assert "text" in describe_bytes("héllo wörld\n".encode() * 10, 130)
    assert "zeros" in describe_bytes(bytes(4096), 4096)
    assert "not a tape image" in describe_bytes(b"\xff\xfe\x00\x01" * 100, 400)
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(1000))
    assert classify_bare_path(str(f))[0] is None
    assert classify_bare_path(str(f), write=False)[0] == "sim"
    assert classify_bare_path(str(tmp_path / "missing"))[0] is None
    assert classify_bare_path(str(tmp_path)) == ("dir", "")


def test_newer_label_version_is_refused_not_called_damage(tmp_path: Path) -> None:
    import uuid

    from tapearc import format as fmt
    from tapearc.errors import UnsupportedVersionError
    from tapesim.drive import SimDrive

    rec = bytearray(
        fmt.encode_label(
            fmt.Label(
                medium_uuid=uuid.uuid4(),
                media_set_uuid=uuid.uuid4(),
                sequence=1,
                record_size=65536,
                created=0,
                text="",
            )
        )
    )
    rec[7:8] = b"9"  # TALABEL9: a newer format version
    img = tmp_path / "newer.tap"
    with SimDrive(str(img), create=True) as d:
        d.write(bytes(rec))
    before = img.read_bytes()
    with open_medium(f"sim:{img}", write=True) as d:
        p = probe(d)
        assert not p.blank and p.label is None and p.damaged
        with pytest.raises(UnsupportedVersionError) as info:
            prepare_medium_for_append(d, None, 0)
        assert "damaged" not in str(info.value)
        with Catalog(tmp_path / "c.sqlite") as cat, pytest.raises(UnsupportedVersionError):
            label_medium(d, cat)
    assert img.read_bytes() == before
