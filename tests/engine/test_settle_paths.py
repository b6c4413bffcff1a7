"""MediaSource.settle and close on the paths of a run: a drive closed from another thread than
the one that wrote its pending generations, a close whose steps fail, and a job's drive that
syncs before its medium changes without holding up the other drives' moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapearc.engine.mediasource import MediaSource


def test_a_drive_closed_from_another_thread_leaves_that_threads_generations_writing(tmp_path: Path) -> None:
    """A second Ctrl-C during a run on several drives: the main thread stops waiting and closes
    the drives while their threads may still write. Generations a drive's thread queued are
    recorded by that thread only (its catalog connection, e.g. SQLite's, belongs to it): the
    main thread neither records them nor trips over that connection; their rows stay
    ``writing``, as after a killed process (the next run marks them incomplete)."""
    import sqlite3
    import threading

    from tapearc.engine.mediasource import PendingGeneration

    media = MediaSource(f"sim:{tmp_path / 't.tap'}", write=True)
    done: list[str] = []

    def drive_thread() -> None:
        conn = sqlite3.connect(":memory:")  # as the thread's catalog connection
        media.current().write_record(b"x" * 512)
        media.current().write_filemark(immediate=True)

        def record() -> None:
            conn.execute("SELECT 1")
            done.append("record")

        media.pending.append(PendingGeneration(1, "a", 1, "generation 1 of volume 'a'", record, lambda: None))

    t = threading.Thread(target=drive_thread)
    t.start()
    t.join()
    media.close()
    assert done == []


def test_close_releases_the_drive_lease_when_closing_the_changer_fails(tmp_path: Path) -> None:
    """MediaSource.close lets go of everything it holds whatever fails on the way: a changer
    whose close fails (its connection gone) does not keep the drive's lease held until it
    expires."""
    from tapearc.errors import ChangerError

    released: list[str] = []

    class Changer:
        name = "fake"

        def close(self) -> None:
            raise ChangerError("the changer's connection is gone")

    class Lease:
        resource = "drive:x"

        def release(self) -> None:
            released.append("drive")

    media = MediaSource(
        f"sim:{tmp_path / 't.tap'}",
        write=True,
        changer=Changer(),  # type: ignore[arg-type]
        drive_lease=Lease(),  # type: ignore[arg-type]
    )
    with pytest.raises(ChangerError):
        media.close()
    assert released == ["drive"]


def test_a_job_drive_writes_its_buffer_out_before_it_holds_up_the_other_drives_moves(
    tmp_path: Path, _private_catalog: Path
) -> None:
    """Before its medium changes, a drive of a job on several drives syncs (on a tape drive:
    seconds, its whole buffer written out). It does so before it takes the job's changer-move
    lock, so the other drives' loads and unloads meanwhile do not wait for it."""
    import threading

    from tapearc.catalog.db import Catalog
    from tapearc.engine.drives import library_of, open_drives
    from tapearc.engine.mediasource import PendingGeneration

    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), 4, 4 << 20, drives=2, early_warning=256 << 10)
    seen: dict[str, bool] = {}
    asked: list[int] = []

    def accept(_probe: object) -> bool | str:
        asked.append(1)
        return True if len(asked) != 2 else "the medium written first"  # 2nd: the loaded one is not wanted

    with Catalog() as cat, open_drives(library_of(f"sim:{tmp_path / 'lib'}", None), 2, write=True, catalog=cat) as ds:
        a = ds[0]
        drive = a.obtain("a medium", accept)
        drive.write_record(b"x" * 4096)
        drive.write_filemark(immediate=True)
        a.pending.append(PendingGeneration(1, "v", 1, "generation 1 of volume 'v'", lambda: None, lambda: None))
        sync = drive.sync

        def watched_sync() -> None:
            def other_drive() -> None:  # another drive's thread, wanting to move a medium now
                got = a.moves.acquire(blocking=False)
                seen["moves free during the sync"] = got
                if got:
                    a.moves.release()

            t = threading.Thread(target=other_drive)
            t.start()
            t.join()
            sync()

        drive.sync = watched_sync  # type: ignore[method-assign]
        a.obtain("another medium", accept)
    assert seen == {"moves free during the sync": True}
    assert len(asked) == 3  # the first load, the loaded one refused, the next slot's
