"""Generations that span media: a simulated library changes tapes; restore and scan follow."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

tapesim_library = pytest.importorskip("tapesim.library")

from tapearc.catalog.db import Catalog  # noqa: E402
from tapearc.engine.backup import BackupOptions, backup  # noqa: E402
from tapearc.engine.layout import read_label  # noqa: E402
from tapearc.engine.mediasource import MediaSource  # noqa: E402
from tapearc.engine.restore import RestoreOptions, prepare_plan, restore  # noqa: E402
from tapearc.engine.scan import follow_set, scan_medium  # noqa: E402
from tapearc.errors import MediumFullError, WrongMediumError  # noqa: E402

BS = 16 * 1024
RS = 64 * 1024


def make_library(tmp_path: Path, slots: int = 6, capacity: int = 1536 * 1024, ew: int = 256 * 1024) -> str:
    lib = tmp_path / "lib"
    tapesim_library.create_library(str(lib), slots, capacity, early_warning=ew, max_record=1024 * 1024)
    return f"sim:{lib}"


def do_backup(spec: str, src: Path, **kw: object):
    kw.setdefault("block_size", BS)
    kw.setdefault("record_size", RS)
    kw.setdefault("chunk_size", 256 * 1024)  # 4 records per chunk: early warning lands inside chunks
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        return backup(str(src), media, cat, BackupOptions(**kw))  # type: ignore[arg-type]


def do_restore(spec: str, dst: Path, **kw: object):
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        return restore(media, cat, str(dst), RestoreOptions(**kw))  # type: ignore[arg-type]


def test_backup_spans_media_and_restores(tmp_path: Path, _private_catalog: Path) -> None:
    spec = make_library(tmp_path)
    rng = random.Random(1)
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(3 * 1024 * 1024 + 777))
    src.write_bytes(bytes(data))
    res = do_backup(spec, src)
    assert res.complete and len(res.parts) >= 2
    assert [p["sequence"] for p in res.parts] == list(range(1, len(res.parts) + 1))
    # the early warning was hit while writing a chunk, not only between chunks
    assert any(int(w["record_in_chunk"]) > 0 for w in res.early_warnings), res.early_warnings
    out = tmp_path / "out.img"
    r = do_restore(spec, out)
    assert out.read_bytes() == bytes(data)
    assert r.chunks_read == res.chunks  # nothing lost, nothing duplicated
    # the plan lists the media needed, in order, each once
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        _, _, plan = prepare_plan(media, cat, RestoreOptions())
    seqs = [s for _, s in plan.media]
    assert seqs == sorted(set(seqs)) and len(seqs) == len(res.parts)

    # an incremental appends to the last medium of the set
    data[100:200] = rng.randbytes(100)
    src.write_bytes(bytes(data))
    inc = do_backup(spec, src)
    assert inc.kind == "incremental" and inc.parts[0]["sequence"] == len(res.parts)
    out2 = tmp_path / "out2.img"
    do_restore(spec, out2)
    assert out2.read_bytes() == bytes(data)

    # lose the catalog: scanning one medium follows the generation onto the others
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        scan_medium(media.current(), cat)
        follow_set(media, cat, read_label(media.current()), rescan=True)
        gens = cat.generations(read_label(media.current()).media_set_uuid, "vol.img")
    assert [g.state for g in gens] == ["complete", "complete"]
    for g, want in ((1, None), (2, bytes(data))):
        o = tmp_path / f"r{g}"
        do_restore(spec, o, generation=g)
        if want is not None:
            assert o.read_bytes() == want


def test_restore_after_catalog_loss_follows_media(tmp_path: Path, _private_catalog: Path) -> None:
    spec = make_library(tmp_path)
    rng = random.Random(2)
    src = tmp_path / "vol.img"
    data = rng.randbytes(2 * 1024 * 1024 + 5)
    src.write_bytes(data)
    res = do_backup(spec, src)
    assert len(res.parts) >= 2
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    out = tmp_path / "o"
    do_restore(spec, out)  # learns the set's other media through the changer
    assert out.read_bytes() == data


def test_physical_end_inside_a_chunk(tmp_path: Path) -> None:
    # an early-warning zone smaller than a chunk: the medium ends inside chunks
    spec = make_library(tmp_path, capacity=1024 * 1024, ew=8 * 1024)
    rng = random.Random(3)
    src = tmp_path / "vol.img"
    data = rng.randbytes(2 * 1024 * 1024)
    src.write_bytes(data)
    res = do_backup(spec, src)
    assert res.complete and len(res.parts) >= 2
    out = tmp_path / "o"
    r = do_restore(spec, out)
    assert out.read_bytes() == data and r.chunks_read == res.chunks


def test_no_changer_no_spanning(tmp_path: Path) -> None:
    from tapesim.drive import create_image

    img = tmp_path / "t.tap"
    create_image(str(img), capacity=1024 * 1024, early_warning=256 * 1024)
    src = tmp_path / "vol.img"
    src.write_bytes(random.Random(4).randbytes(2 * 1024 * 1024))
    with pytest.raises(MediumFullError, match="no next medium"):
        do_backup(f"sim:{img}", src)


def test_refuses_appending_to_an_earlier_medium_of_the_set(tmp_path: Path) -> None:
    spec = make_library(tmp_path)
    src = tmp_path / "vol.img"
    src.write_bytes(random.Random(5).randbytes(2 * 1024 * 1024))
    res = do_backup(spec, src)
    assert len(res.parts) >= 2
    lib = tapesim_library.Library(str(tmp_path / "lib"))
    lib.unload(0)
    lib.load(1, 0)  # sequence 1 of the set
    before = (tmp_path / "lib" / "tapes" / "TAP001.tap").read_bytes()
    with pytest.raises(WrongMediumError, match="continues on sequence"):
        do_backup(f"sim:{tmp_path / 'lib' / 'drive-0.tap'}", src)
    assert (tmp_path / "lib" / "tapes" / "TAP001.tap").read_bytes() == before


def test_operator_changes_the_tape(tmp_path: Path) -> None:
    """With --changer operator, tapearc asks for the next medium and waits until it is loaded."""
    import os
    import threading
    import time

    from tapearc.media.changers.operator import OperatorChanger
    from tapesim.drive import create_image

    drive = tmp_path / "drive.tap"
    create_image(str(drive), capacity=1536 * 1024, early_warning=256 * 1024)
    prompts: list[str] = []
    shelf: list[Path] = []

    def operator() -> None:  # waits for the prompt, then swaps the tape for a blank one
        deadline = time.monotonic() + 20
        seen = 0
        while time.monotonic() < deadline:
            if len(prompts) > seen and any(p.startswith("Please put a blank medium") for p in prompts[seen:]):
                seen = len(prompts)
                old = tmp_path / f"shelf-{len(shelf) + 1}.tap"
                os.rename(drive, old)
                os.rename(str(drive) + ".tapesim", str(old) + ".tapesim")
                shelf.append(old)
                time.sleep(0.1)  # the drive is empty for a moment
                create_image(str(drive), capacity=1536 * 1024, early_warning=256 * 1024)
            time.sleep(0.02)

    t = threading.Thread(target=operator, daemon=True)
    t.start()
    src = tmp_path / "vol.img"
    data = random.Random(7).randbytes(2 * 1024 * 1024)
    src.write_bytes(data)
    op = OperatorChanger(prompts.append, poll=0.05, timeout=15)
    with Catalog() as cat, MediaSource(f"sim:{drive}", write=True, changer=op, catalog=cat) as media:
        res = backup(str(src), media, cat, BackupOptions(block_size=BS, record_size=RS, chunk_size=256 * 1024))
    assert res.complete and len(res.parts) >= 2
    assert any("sequence 2" in p for p in prompts), prompts
    assert len(shelf) == len(res.parts) - 1
    # restore asks for sequence 1 first: the operator puts the shelf back in order
    tapes = [*shelf, tmp_path / "last.tap"]
    os.rename(drive, tapes[-1])
    os.rename(str(drive) + ".tapesim", str(tapes[-1]) + ".tapesim")
    want: list[str] = []

    def operator2() -> None:
        deadline = time.monotonic() + 20
        seen = 0
        while time.monotonic() < deadline:
            for p in prompts[seen:]:
                seen += 1
                if not p.startswith("Please put"):
                    continue  # a line saying what the drive holds now
                for i, tp in enumerate(tapes, 1):
                    if f"sequence {i} of" in p:
                        if drive.exists():
                            cur = Path(os.readlink(drive))
                            os.unlink(drive)
                            os.unlink(str(drive) + ".tapesim")
                            _ = cur
                        os.symlink(tp, drive)
                        os.symlink(str(tp) + ".tapesim", str(drive) + ".tapesim")
                        want.append(f"seq{i}")
            time.sleep(0.02)

    os.symlink(tapes[-1], drive)
    os.symlink(str(tapes[-1]) + ".tapesim", str(drive) + ".tapesim")
    prompts.clear()
    t2 = threading.Thread(target=operator2, daemon=True)
    t2.start()
    op2 = OperatorChanger(prompts.append, poll=0.05, timeout=15)
    out = tmp_path / "out"
    with Catalog() as cat, MediaSource(f"sim:{drive}", write=False, changer=op2, catalog=cat) as media:
        restore(media, cat, str(out), RestoreOptions())
    assert out.read_bytes() == data
    assert want and want[0] == "seq1"
