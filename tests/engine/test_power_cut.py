"""A power cut during any record of a backup: earlier generations stay restorable, the cut one is
marked incomplete with its complete chunks listed (complete, with a note, when the cut is in its
end record: the whole trailer is there), and the next backup continues correctly.

The cut is made the way a real interrupted write leaves a SIMH image: the image ends inside the
record being written (no trailing length word, no filemark after it)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.scan import scan_medium
from tapearc.errors import DamagedDataError
from tapearc.media import open_medium
from tapesim import simh

BS = 4096
OPTS = {"volume_name": "v.img", "block_size": BS, "record_size": 8192, "chunk_size": 16384}


def _backup(img: Path, src: Path, cat: Path) -> object:
    with Catalog(cat) as c, open_medium(f"sim:{img}", write=True) as d:
        return backup(str(src), d, c, BackupOptions(**OPTS))  # type: ignore[arg-type]


def _restore(img: Path, out: Path, cat: Path, generation: int | None = None) -> object:
    with Catalog(cat) as c, open_medium(f"sim:{img}", write=False) as d:
        return restore(d, c, str(out), RestoreOptions(generation=generation, force=True))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], Path]:
    tmp = tmp_path_factory.mktemp("chain")
    rng = random.Random(99)
    img = tmp / "t.tap"
    src = tmp / "v.img"
    cat = tmp / "cat.sqlite"
    v1 = bytearray(rng.randbytes(14 * BS) + bytes(3 * BS) + rng.randbytes(1000))
    src.write_bytes(bytes(v1))
    _backup(img, src, cat)
    v2 = bytearray(v1)
    for b in (1, 2, 9):
        v2[b * BS + 5] ^= 1
    v2 += rng.randbytes(2 * BS)
    src.write_bytes(bytes(v2))
    _backup(img, src, cat)
    return img, [bytes(v1), bytes(v2)], src


def _cuts(img: Path) -> list[tuple[int, int, int]]:
    """(cut offset, tape file, record index) for the middle of every record of the image."""
    out = []
    tf = rec = 0
    for o in simh.scan(str(img)).objects:
        if o.kind == simh.ObjKind.FILEMARK:
            tf += 1
            rec = 0
            continue
        out.append((o.offset + 4 + max(1, o.length // 2), tf, rec))
        rec += 1
    return out


def test_power_cut_at_every_record(chain: tuple[Path, list[bytes], Path], tmp_path: Path) -> None:
    img0, versions, src0 = chain
    cuts = _cuts(img0)
    assert len(cuts) >= 15  # a small chain, but every record of it
    last: dict[int, int] = {}  # tape file -> index of its last record (the end record)
    for _, tf_, rec_ in cuts:
        last[tf_] = rec_
    v3 = bytearray(versions[1])
    v3[3 * BS] ^= 0xFF
    for k, (offset, tf, rec) in enumerate(cuts):
        case = tmp_path / f"cut{k}"
        case.mkdir()
        img = case / "t.tap"
        shutil.copyfile(img0, img)
        shutil.copyfile(str(img0) + ".tapesim", str(img) + ".tapesim")
        with open(img, "r+b") as f:
            f.truncate(offset)
        cat = case / "cat.sqlite"  # the catalog is lost with the machine: rebuild from the medium
        where = f"cut in tape file {tf} record {rec}"
        if tf == 0:  # inside the label: a damaged label, never taken for a blank medium
            with Catalog(cat) as c, open_medium(f"sim:{img}", write=False) as d:
                with pytest.raises(DamagedDataError, match="volume label is damaged"):
                    scan_medium(d, c, deep=True)
            cut = img.read_bytes()
            with pytest.raises(DamagedDataError):
                _backup(img, src0, cat)
            assert img.read_bytes() == cut  # nothing written
            continue
        with Catalog(cat) as c, open_medium(f"sim:{img}", write=False) as d:
            res = scan_medium(d, c, deep=True)
        states = {f.generation: f.state for f in res.files}
        cut_gen = tf  # tape file k holds generation k
        if rec == last[tf]:  # inside the end record: the whole trailer is there, every chunk too
            assert states[cut_gen] == "complete", (where, states)
            cut_file = next(f for f in res.files if f.generation == cut_gen)
            assert cut_file.problem and "after this tape file's trailer" in cut_file.problem, where
        else:
            assert states.get(cut_gen, "incomplete") == "incomplete", (where, states)
        for g in range(1, cut_gen):
            assert states[g] == "complete", (where, states)
            out = case / f"g{g}"
            _restore(img, out, cat, g)
            assert out.read_bytes() == versions[g - 1], where
        if cut_gen in states:
            cut_file = next(f for f in res.files if f.generation == cut_gen)
            assert cut_file.problem, where  # says what is wrong (no trailer / ends inside)
        # the next backup continues correctly, and the chain stays restorable
        src = case / "v.img"
        src.write_bytes(bytes(v3))
        nxt = _backup(img, src, cat)
        assert nxt.complete, where  # type: ignore[attr-defined]
        out = case / "next"
        _restore(img, out, cat)
        assert out.read_bytes() == bytes(v3), where
        for g in range(1, cut_gen):
            out = case / f"again{g}"
            _restore(img, out, cat, g)
            assert out.read_bytes() == versions[g - 1], where
