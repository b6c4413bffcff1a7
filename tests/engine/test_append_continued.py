"""A job's next volume on the same drive appends where the last one ended, without rewinding to
read the label and walking every tape file again (minutes of tape motion per volume on a real
drive): only while nothing can have changed (the same open drive, at the position the last
backup left it, the medium's lease held); otherwise the medium is inspected from its beginning
as always, with the same refusals."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.crypto.keys import Key
from tapearc.crypto.wrap import wrap_key
from tapearc.engine import backup as backup_mod
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.encryption import BackupKey
from tapearc.engine.layout import scan_generation_files
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import KeyRequiredError, WrongMediumError

tapesim_library = pytest.importorskip("tapesim.library")

KiB = 1024
OPTS = {"block_size": 4 * KiB, "record_size": 16 * KiB, "chunk_size": 64 * KiB}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The media a backup inspected from their beginning (label read, tape files walked)."""
    seen: list[str] = []
    orig = backup_mod.inspect_medium_for_append

    def inspect(drive, *a, **kw):  # type: ignore[no-untyped-def]
        seen.append(drive.name)
        return orig(drive, *a, **kw)

    monkeypatch.setattr(backup_mod, "inspect_medium_for_append", inspect)
    return seen


def _volumes(tmp_path: Path, n: int) -> list[tuple[Path, bytes]]:
    out = []
    for i in range(n):
        rng = random.Random(i)
        data = rng.randbytes(150 * KiB) + bytes(40 * KiB) + rng.randbytes(3 * KiB + 17)
        p = tmp_path / f"v{i}.img"
        p.write_bytes(data)
        out.append((p, data))
    return out


def _library(tmp_path: Path) -> str:
    lib = tmp_path / "lib"
    tapesim_library.create_library(str(lib), 3, 64 * 1024 * KiB)
    return f"sim:{lib}"


def _check_restores(spec: str, vols: list[tuple[Path, bytes]], tmp_path: Path) -> None:
    for src, data in vols:
        out = tmp_path / f"out-{src.name}"
        with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
            restore(media, cat, str(out), RestoreOptions(volume=src.name))  # type: ignore[call-arg]
        assert out.read_bytes() == data, src.name


def test_volumes_one_after_the_other_inspect_the_medium_once(tmp_path: Path, counted: list[str]) -> None:
    spec, vols = _library(tmp_path), _volumes(tmp_path, 4)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        files = [backup(str(p), media, cat, BackupOptions(**OPTS)).tape_file for p, _ in vols]  # type: ignore[arg-type]
        gens = scan_generation_files(media.current())
    assert files == [1, 2, 3, 4]
    assert len(counted) == 1  # the first volume's; the others appended where it ended
    assert [g.tape_file for g in gens] == [1, 2, 3, 4]
    _check_restores(spec, vols, tmp_path)


def test_a_drive_moved_in_between_is_inspected_again(tmp_path: Path, counted: list[str]) -> None:
    spec, vols = _library(tmp_path), _volumes(tmp_path, 3)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        backup(str(vols[0][0]), media, cat, BackupOptions(**OPTS))  # type: ignore[arg-type]
        media.current().rewind()  # someone moved the tape: the last backup's end is not where it is
        assert backup(str(vols[1][0]), media, cat, BackupOptions(**OPTS)).tape_file == 2  # type: ignore[arg-type]
        media.close_drive()  # reopened: another drive object, whatever its position
        assert backup(str(vols[2][0]), media, cat, BackupOptions(**OPTS)).tape_file == 3  # type: ignore[arg-type]
    assert len(counted) == 3
    _check_restores(spec, vols, tmp_path)


def test_read_back_check_and_other_media_set_fall_back_to_inspecting(tmp_path: Path, counted: list[str]) -> None:
    spec, vols = _library(tmp_path), _volumes(tmp_path, 3)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        backup(str(vols[0][0]), media, cat, BackupOptions(verify=True, **OPTS))  # type: ignore[arg-type]
        backup(str(vols[1][0]), media, cat, BackupOptions(**OPTS))  # type: ignore[arg-type]
        assert len(counted) == 2  # --verify read the part back: the drive moved
        other = __import__("uuid").uuid4()
        with pytest.raises(WrongMediumError, match="not " + str(other)):
            backup(str(vols[2][0]), media, cat, BackupOptions(media_set=other, **OPTS))  # type: ignore[arg-type]
    assert len(counted) == 3


def test_encrypted_set_keeps_its_key_rules_when_appending_where_the_last_ended(
    tmp_path: Path, counted: list[str]
) -> None:
    spec, vols = _library(tmp_path), _volumes(tmp_path, 3)
    raw = Key(random.Random(3).randbytes(32))
    key = BackupKey(wrap_key(raw, "pass phrase", log2_n=10), raw)
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        backup(str(vols[0][0]), media, cat, BackupOptions(encrypt=key, **OPTS))  # type: ignore[arg-type]
        assert backup(str(vols[1][0]), media, cat, BackupOptions(encrypt=key, **OPTS)).tape_file == 2  # type: ignore[arg-type]
        assert len(counted) == 1
        with pytest.raises(KeyRequiredError):  # a plain backup into the encrypted set: refused as always
            backup(str(vols[2][0]), media, cat, BackupOptions(**OPTS))  # type: ignore[arg-type]
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        out = tmp_path / "out.img"
        restore(media, cat, str(out), RestoreOptions(volume=vols[1][0].name, key=raw))  # type: ignore[call-arg]
    assert out.read_bytes() == vols[1][1]
