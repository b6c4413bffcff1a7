"""A refused backup writes nothing to the medium: every check that can refuse it (the medium,
the catalog, the sizes, the volume's identity) runs before the first write (the label of a blank
medium, the filemark that closes an interrupted tape file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.errors import UsageError, VolumeMismatchError
from tapearc.media import open_medium
from tapearc.media.dirmedium import MARKER_NAME
from tests.engine.test_crash_states import read_files, write_files

pytest.importorskip("tapesim.drive")

BS = 4096


def _snapshot(kind: str, med: Path) -> dict[str, bytes]:
    if kind == "sim":
        return {"": med.read_bytes()} if med.exists() else {}
    # a dir: medium's marker file is written when it is first opened for writing (the media
    # layer), before the backup looks at it: the records are what a refused backup must not touch
    return {
        str(p.relative_to(med)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(med.rglob("*"))
        if p.name != MARKER_NAME
    }


def _backup(kind: str, med: Path, src: Path, **kw: object) -> None:
    kw.setdefault("block_size", BS)
    kw.setdefault("record_size", 16384)
    with Catalog() as cat, open_medium(f"{kind}:{med}", write=True) as d:
        backup(str(src), d, cat, BackupOptions(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sim", "dir"])
def test_volume_mismatch_on_an_interrupted_medium_writes_nothing(
    tmp_path: Path, _private_catalog: Path, kind: str
) -> None:
    """The medium ends inside a tape file (a backup killed after some chunks): a backup of
    another source under the same volume name is refused (exit 7) before the filemark that
    would close that tape file is written."""
    a, b = tmp_path / "hostA" / "root", tmp_path / "hostB" / "root"
    for p, n in ((a, 24), (b, 8)):
        p.parent.mkdir()
        p.write_bytes(os.urandom(n * BS))
    med = tmp_path / ("t.tap" if kind == "sim" else "t")
    _backup(kind, med, a)
    _backup(kind, med, a)
    files, closed = read_files(kind, med)
    assert closed and len(files) == 3
    files[-1] = files[-1][:3]  # the second generation cut after its header and two records
    write_files(kind, med, files, last_closed=False)
    before = _snapshot(kind, med)
    with pytest.raises(VolumeMismatchError) as e:
        _backup(kind, med, b)
    assert e.value.exit_code == 7
    assert _snapshot(kind, med) == before
    assert read_files(kind, med) == (files, False)
    _backup(kind, med, a)  # the right source: the tape file is closed, the generation appended
    after, closed = read_files(kind, med)
    assert closed and after[:3] == files and len(after) == 4


@pytest.mark.parametrize("kind", ["sim", "dir"])
def test_bad_block_size_on_a_blank_medium_writes_no_label(tmp_path: Path, _private_catalog: Path, kind: str) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(8 * BS))
    med = tmp_path / ("t.tap" if kind == "sim" else "t")
    if kind == "sim":
        med.write_bytes(b"")
    else:
        med.mkdir()
    before = _snapshot(kind, med)
    with pytest.raises(UsageError, match="block size 1000 must be a multiple of 512"):
        _backup(kind, med, src, block_size=1000, record_size=None)
    assert _snapshot(kind, med) == before
