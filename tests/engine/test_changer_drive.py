"""The changer's number of a job's drive (``--changer-drive N``): MediaSource loads that drive,
leases ``drive:<library>:N``, checks N against the changer's inventory; a changer that is not a
simulated library (the serial autoloader simulator over TCP: hw-sim/tapesim/autoloader.py,
serving a simulated library's slots and drives) cannot tell which drive ``--media`` is by
itself; the drives of one restore share one handle of a changer that takes one connection."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

tapesim_library = pytest.importorskip("tapesim.library")
autoloader = pytest.importorskip("tapesim.autoloader")

from tapearc.catalog.db import Catalog  # noqa: E402
from tapearc.catalog.leases import Leases  # noqa: E402
from tapearc.engine.backup import BackupOptions, backup  # noqa: E402
from tapearc.engine.drives import Library, SharedChanger, open_drives  # noqa: E402
from tapearc.engine.mediasource import MediaSource, drive_index_of  # noqa: E402
from tapearc.errors import UsageError  # noqa: E402
from tapearc.media.changers import open_changer  # noqa: E402

BS = 16 * 1024


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    path = tmp_path / "lib"
    tapesim_library.create_library(str(path), 3, 8 << 20, drives=2)
    return path


@pytest.fixture
def serial(lib: Path) -> Iterator[str]:
    port, stop = autoloader.serve_tcp(str(lib), "127.0.0.1", 0)
    try:
        yield f"serial:socket://127.0.0.1:{port}"
    finally:
        stop()


def bays(lib: Path) -> dict[int, bool]:
    ch = open_changer(f"sim:{lib}")
    try:
        return {d.number: d.full for d in ch.status().drives}
    finally:
        ch.close()


def test_the_given_drive_is_loaded_and_leased(lib: Path, serial: str, _private_catalog: Path) -> None:
    Catalog(str(_private_catalog)).close()
    src = lib.parent / "v.img"
    data = random.Random(3).randbytes(40 * BS)
    src.write_bytes(data)
    spec = f"sim:{lib}/drive-1.tap"
    with Catalog() as cat, Leases(str(_private_catalog)) as leases:
        media = MediaSource(
            spec, write=True, changer=open_changer(serial), catalog=cat, leases=leases, drive_index=1, check_drive=True
        )
        with media:
            assert media.drive_index == 1
            assert media.drive_lease is not None and media.drive_lease.resource == f"drive:{serial}:1"
            assert backup(str(src), media, cat, BackupOptions(block_size=BS)).complete
            assert bays(lib) == {0: False, 1: True}  # drive 1 was loaded, drive 0 left alone
        assert leases.rows() == []


def test_without_a_number_a_non_sim_changer_means_drive_0(lib: Path, serial: str) -> None:
    ch = open_changer(serial)
    try:
        assert drive_index_of(f"sim:{lib}/drive-1.tap", ch) == 0  # it cannot tell: the reason for --changer-drive
        assert drive_index_of(f"sim:{lib}/drive-1.tap", ch, 1) == 1
    finally:
        ch.close()
    sim = open_changer(f"sim:{lib}")
    try:
        assert drive_index_of(f"sim:{lib}/drive-1.tap", sim) == 1
        assert drive_index_of(f"sim:{lib}/drive-1.tap", sim, 1) == 1
        with pytest.raises(UsageError, match=r"drive-1\.tap is drive 1 of library"):
            drive_index_of(f"sim:{lib}/drive-1.tap", sim, 0)
    finally:
        sim.close()


def test_a_drive_the_changer_does_not_have(lib: Path, serial: str) -> None:
    with pytest.raises(UsageError) as e:
        MediaSource(
            f"sim:{lib}/drive-0.tap", write=False, changer=open_changer(serial), drive_index=2, check_drive=True
        )
    assert str(e.value) == f"changer drive 2: changer {serial} has no drive 2 (its drives: 0, 1)"
    assert bays(lib) == {0: False, 1: False}
    # unchecked (a job's drives, numbered from the inventory): no inventory is asked for
    MediaSource(f"sim:{lib}/drive-0.tap", write=False, changer=open_changer(serial), drive_index=2).close()


def test_a_library_folder_alone_takes_the_drive_given(lib: Path) -> None:
    with MediaSource(f"sim:{lib}", write=True, drive_index=1, check_drive=True) as media:
        assert media.spec == f"sim:{lib / 'drive-1.tap'}" and media.drive_index == 1
        media.current()
    assert bays(lib) == {0: False, 1: True}
    with pytest.raises(UsageError, match="has no drive 5"):
        MediaSource(f"sim:{lib}", write=True, drive_index=5, check_drive=True)


def test_the_drives_of_a_restore_share_one_serial_changer(lib: Path, serial: str) -> None:
    """The autoloader takes one connection: two handles would wait for each other (no answer
    to HELLO); the drives of open_drives share one, and both load."""
    library = Library(serial, serial, (f"sim:{lib}/drive-0.tap", f"sim:{lib}/drive-1.tap"))
    with open_drives(library, 2, write=True, timeout=0) as drives:
        assert [d.drive_index for d in drives] == [0, 1]
        shared = {id(getattr(d.changer, "inner", d.changer)) for d in drives}
        assert len(shared) == 1 and isinstance(drives[0].changer, SharedChanger)
        for d in drives:
            d.current()
        assert bays(lib) == {0: True, 1: True}
    assert os.path.exists(lib / "drive-0.tap") and os.path.exists(lib / "drive-1.tap")
