"""MediaSource with leases (engine level): a lost lease stops a backup before it writes; any free
drive of a library; the drive of ``sim:DIR/drive-N.tap``."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

tapesim_library = pytest.importorskip("tapesim.library")

from tapearc.catalog.db import Catalog  # noqa: E402
from tapearc.catalog.leases import Leases  # noqa: E402
from tapearc.engine.backup import BackupOptions, backup  # noqa: E402
from tapearc.engine.mediasource import MediaSource, library_id  # noqa: E402
from tapearc.errors import LeaseBusyError, LeaseLostError  # noqa: E402
from tapearc.media.changers import open_changer  # noqa: E402

BS = 16 * 1024


def until(cond: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def spec(_private_catalog: Path) -> Iterator[str]:
    Catalog(str(_private_catalog)).close()
    yield str(_private_catalog)


def make_library(tmp_path: Path, drives: int = 2) -> Path:
    lib = tmp_path / "lib"
    tapesim_library.create_library(str(lib), 3, 8 << 20, drives=drives)
    return lib


def test_a_lost_lease_stops_the_backup_before_it_writes(
    tmp_path: Path, spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = make_library(tmp_path, drives=1)
    src = tmp_path / "v.img"
    src.write_bytes(random.Random(1).randbytes(20 * BS))
    with Catalog() as cat, MediaSource(f"sim:{lib}", write=True, catalog=cat) as media:
        assert backup(str(src), media, cat, BackupOptions(block_size=BS)).complete  # TAP001 labelled
    monkeypatch.setattr(MediaSource, "lease_ttl", 0.6)
    with Catalog() as cat, Leases(spec) as leases, Leases(spec) as operator:
        media = MediaSource(f"sim:{lib}", write=True, catalog=cat, leases=leases, purpose="backup of v")
        with media:
            media.current()
            assert media.medium_lease is not None and media.drive_lease is not None
            assert media.drive_lease.resource == f"drive:{os.path.realpath(lib)}:0"
            operator.break_lease(media.medium_lease.resource)
            until(lambda: media.medium_lease is not None and media.medium_lease.lost is not None, "the loss")
            before = (lib / "tapes" / "TAP001.tap").read_bytes()
            with pytest.raises(LeaseLostError, match=r"lost the lease on medium .*: its row was deleted"):
                backup(str(src), media, cat, BackupOptions(block_size=BS))
            assert (lib / "tapes" / "TAP001.tap").read_bytes() == before  # not a byte written
        assert operator.rows() == []  # the drive lease was released at the end; nothing is left


def test_for_free_drive_and_the_drive_of_a_spec(tmp_path: Path, spec: str) -> None:
    lib = make_library(tmp_path, drives=2)
    real = os.path.realpath(lib)
    with Catalog() as cat, Leases(spec) as a, Leases(spec) as b:
        first = MediaSource.for_free_drive(f"sim:{lib}", write=True, leases=a, purpose="job 1", catalog=cat)
        second = MediaSource.for_free_drive(f"sim:{lib}", write=True, leases=b, purpose="job 2", catalog=cat)
        assert (first.drive_index, second.drive_index) == (0, 1)
        assert second.spec == f"sim:{lib}/drive-1.tap"
        with pytest.raises(LeaseBusyError, match=r"drive 0 of library .* held by .*job 1"):
            MediaSource.for_free_drive(f"sim:{lib}", write=True, leases=b, purpose="job 3", wait=0)
        first.close()
        second.close()
        explicit = MediaSource(
            f"sim:{lib}/drive-1.tap", write=False, changer=open_changer(f"sim:{lib}"), catalog=cat, leases=a
        )
        assert explicit.drive_index == 1 and explicit.drive_lease is not None
        assert explicit.drive_lease.resource == f"drive:{real}:1"
        d = explicit.current()  # the empty drive 1 gets the first tape, under the changer's lease
        assert d is not None and (lib / "drive-1.tap").exists()
        explicit.close()
        assert a.rows() == []
    assert library_id(open_changer(f"sim:{lib}")) == real


class FakeChanger:
    def __init__(self, name: str) -> None:
        self.name = name


def test_library_ids(tmp_path: Path) -> None:
    import socket

    from tapearc.engine.mediasource import drive_index_of

    host = socket.gethostname()
    lib = make_library(tmp_path, drives=3)
    link = tmp_path / "link"
    link.symlink_to(lib)
    sim = open_changer(f"sim:{link}")
    assert library_id(sim) == os.path.realpath(lib)  # the same library by any path
    assert library_id(FakeChanger("mtx:/nonexistent/sg9")) == f"{host}:/nonexistent/sg9"  # no sysfs serial
    assert library_id(FakeChanger("serial:socket://lib.example:4000")) == "serial:socket://lib.example:4000"
    assert library_id(FakeChanger("serial:/dev/ttyUSB0")) == f"{host}:serial:/dev/ttyUSB0"
    assert library_id(open_changer("operator")) is None
    assert library_id(None) is None
    assert drive_index_of(f"sim:{lib}/drive-2.tap", sim) == 2
    assert drive_index_of(f"sim:{tmp_path}/drive-2.tap", sim) == 0  # not the library's folder
    assert drive_index_of("/dev/nst1", FakeChanger("mtx:/dev/sg3")) == 0  # type: ignore[arg-type]
