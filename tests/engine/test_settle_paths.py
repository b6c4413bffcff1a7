"""MediaSource.settle and close on the failure paths of a run: a drive closed from another
thread than the one that wrote its pending generations, and a close whose steps fail."""

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
