"""qemu dirty bitmaps as change maps, with the real tools: a qcow2 image with a persistent bitmap
(qemu-img bitmap --add), written with qemu-io, served by qemu-nbd -B NAME; and whether a
bitmap is trusted (the base generation recorded it as present when it was read)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tapearc.catalog.db import Catalog, ChangeRecord
from tapearc.engine.backup import BackupOptions, backup
from tapearc.errors import SourceError
from tapearc.media import open_medium
from tapearc.sources import changes_nbd
from tapearc.sources.changes_nbd import read_dirty_bitmap
from tapearc.sources.changes_trust import ChangeOptions, choose_change_map, open_tracker
from tests.nbdsupport import needs_qemu_nbd, qemu_img, qemu_io, qemu_nbd

M = 1024 * 1024
K64 = 64 * 1024
SIZE = 64 * M

pytestmark = needs_qemu_nbd


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """64 MiB qcow2: 8 MiB of data, then bitmap b0 added, then writes it records."""
    img = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(img), "64M")
    qemu_io(img, "qcow2", "write -P 1 0 8M")
    qemu_img("bitmap", "--add", str(img), "b0")
    qemu_io(img, "qcow2", "write -P 2 1M 64k", "write -P 3 10M 128k", "write -P 4 40M 4k", "write -P 5 63M 1M")
    return img


EXPECTED = [(M, M + K64), (10 * M, 10 * M + 2 * K64), (40 * M, 40 * M + K64), (63 * M, 64 * M)]


def test_dirty_extents_are_the_writes_since_the_bitmap(image: Path) -> None:
    with qemu_nbd(image, "qcow2", bitmap="b0") as uri:
        m = read_dirty_bitmap(uri, "b0")
    assert m is not None
    assert (m.name, m.size, m.requests) == ("dirty-bitmap:b0", SIZE, 1)
    got = list(m.changed(0, SIZE))
    assert sum(n for _, n, _ in got) == SIZE
    assert [(s, s + n) for s, n, c in got if c] == EXPECTED  # 4 KiB write: one 64 KiB granule
    assert m.runs.count == 4  # kept as runs, not per block
    assert list(m.changed(10 * M + K64, 2 * K64)) == [(10 * M + K64, K64, True), (10 * M + 2 * K64, K64, False)]
    assert list(m.changed(SIZE - K64, 2 * K64)) == [(SIZE - K64, K64, True), (SIZE, K64, True)]  # past the end


def test_block_status_in_pieces(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked piece by piece (2 GiB at most per request; 5 MiB here): the same runs."""
    monkeypatch.setattr(changes_nbd, "MAX_STATUS", 5 * M)
    with qemu_nbd(image, "qcow2", bitmap="b0") as uri:
        m = read_dirty_bitmap(uri, "b0")
    assert m is not None
    assert list(m.runs.pairs()) == EXPECTED and m.requests >= 13


def test_the_bitmap_connection_is_closed_before_the_disk_is_read(image: Path) -> None:
    """qemu-nbd serves one client at a time by default: the bitmap's connection is gone when
    the tracker is open, so the source's connection is served."""
    import nbd

    with qemu_nbd(image, "qcow2", bitmap="b0", shared=1) as uri:
        t = open_tracker(uri, ChangeOptions(dirty_bitmap="b0"))
        h = nbd.NBD()
        h.connect_uri(uri)  # would wait for ever while another client is connected
        assert h.get_size() == SIZE
        h.shutdown()
    t.fit(SIZE)
    assert t.map is not None and t.problem is None
    t.fit(SIZE + K64)
    assert t.problem == f"the bitmap's export has {SIZE} bytes, the volume {SIZE + K64}"


def test_a_bitmap_the_export_does_not_offer(image: Path) -> None:
    with qemu_nbd(image, "qcow2") as uri:
        assert read_dirty_bitmap(uri, "b0") is None
    with qemu_nbd(image, "qcow2", bitmap="b0") as uri:
        assert read_dirty_bitmap(uri, "nope") is None


def test_an_unreachable_export_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot connect to NBD export"):
        read_dirty_bitmap(f"nbd+unix:///disk?socket={tmp_path}/none.sock", "b0")


def fake_plan(gens: Any, size: int = SIZE, base: int = 1) -> Any:
    """The parts of a GenerationPlan the decision reads."""
    header = SimpleNamespace(
        volume_name=gens[0].volume,
        media_set_uuid=gens[0].set_uuid,
        base_generation=base,
        volume_size=size,
        source=SimpleNamespace(path=gens[0].source_path, real_path=gens[0].source_real),  # the base's
    )
    return SimpleNamespace(header=header, incremental=base > 0)


@pytest.fixture
def base_catalog(tmp_path: Path) -> Any:
    """A catalog with one complete generation of a 64 MiB volume (its change record set by each test)."""
    vol = tmp_path / "vol"
    vol.write_bytes(bytes(SIZE))
    with Catalog() as cat, open_medium(f"sim:{tmp_path / 't.tap'}", write=True) as d:
        backup(str(vol), d, cat, BackupOptions())
    return Catalog()


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        (ChangeRecord("dirty-bitmap:b0", False, None, "dirty-bitmap:b0"), None),
        (ChangeRecord("dirty-bitmap:b1", True, "dirty-bitmap:b1", "dirty-bitmap:b1"), "was read at 'dirty-bitmap:b1'"),
        (ChangeRecord("dirty-bitmap:b0", False, None, None), "was not read at a tracker checkpoint"),
        (ChangeRecord("full-read", False, None, None), "was not read at a tracker checkpoint"),
        (None, "has no recorded change checkpoint"),
    ],
)
def test_trusting_a_bitmap(image: Path, base_catalog: Catalog, recorded: ChangeRecord | None, why: str | None) -> None:
    """Trusted only when the base generation was read with the same bitmap present (a bitmap
    created after the base, or one the base was not read with, is not)."""
    with base_catalog as cat:
        gens = cat.generations(cat.media_holding_generations()[0][1])
        if recorded is not None:
            cat.record_change(gens[0].id, recorded)
        else:  # as written by an older tapearc, or learnt from the medium by scan
            cat.db.execute("UPDATE generations SET change_source = NULL")
        with qemu_nbd(image, "qcow2", bitmap="b0") as uri:
            t = open_tracker(uri, ChangeOptions(dirty_bitmap="b0"))
        t.fit(SIZE)
        c = choose_change_map(cat, fake_plan(gens), t)
        assert c.record.source == "dirty-bitmap:b0" and c.record.checkpoint == "dirty-bitmap:b0"
        if why is None:
            assert (c.map, c.record.trusted, c.warnings) == (t.map, True, [])
        else:
            assert c.map is None and not c.record.trusted
            assert len(c.warnings) == 1 and why in c.warnings[0]
        full = choose_change_map(cat, fake_plan(gens, base=0), t)  # a full generation: never trusted
        assert full.map is None and full.warnings == []  # a full generation reads all: no warning
        resized = choose_change_map(cat, fake_plan(gens, size=SIZE + K64), t)
        assert resized.map is None and resized.warnings


def test_a_missing_bitmap_is_a_warning_and_no_checkpoint(image: Path, base_catalog: Catalog) -> None:
    with base_catalog as cat:
        gens = cat.generations(cat.media_holding_generations()[0][1])
        cat.record_change(gens[0].id, ChangeRecord("dirty-bitmap:b0", False, None, "dirty-bitmap:b0"))
        with qemu_nbd(image, "qcow2") as uri:
            t = open_tracker(uri, ChangeOptions(dirty_bitmap="b0"))
        t.fit(SIZE)
        c = choose_change_map(cat, fake_plan(gens), t)
    assert c.map is None and c.record == ChangeRecord("dirty-bitmap:b0", False, None, None)
    assert "does not offer dirty bitmap 'b0'" in c.warnings[0]
