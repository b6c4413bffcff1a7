"""Issue 12, finding 12 (the smaller items), below the command line: the JSON depth limit, the
catalog's open checks, the environment readers, deferred Ctrl-C, verify's --generation check,
restore's terminal and spool checks."""

from __future__ import annotations

import errno
import io
import os
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tapearc.catalog.db import Catalog, CatalogError
from tapearc.errors import NoSuchGenerationError, TargetError, UsageError


def test_parse_json_depth() -> None:
    from tapearc.format.jsonio import json_depth, parse_json

    assert parse_json('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    assert json_depth([[[]]]) == 3 and json_depth(5) == 0
    for doc in ("[" * 100_000 + "]" * 100_000, "[" * 65 + "]" * 65):
        with pytest.raises(ValueError, match="nested more than 64 levels"):
            parse_json(doc)
    assert parse_json("[" * 64 + "]" * 64) is not None


def test_tapesim_json_depth(tmp_path: Path) -> None:
    from tapesim.drive import SidecarError, load_settings  # type: ignore[import-not-found,unused-ignore]

    img = tmp_path / "t.tap"
    img.write_bytes(b"")
    Path(str(img) + ".tapesim").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SidecarError, match=r"t.tap.tapesim: JSON nested more than 64 levels"):
        load_settings(img)


def test_catalog_refuses_a_foreign_database_untouched(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE meta (k TEXT, v TEXT)")  # a table named like ours, but not ours
    db.commit()
    db.close()
    before = p.read_bytes()
    with pytest.raises(CatalogError, match="not a tapearc catalog"):
        Catalog(p)
    assert p.read_bytes() == before
    # an empty SQLite database, or a tapearc catalog, opens
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    Catalog(empty).close()
    Catalog(empty).close()


def test_catalog_folder_must_exist_for_a_given_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog(tmp_path / "a" / "b" / "c.sqlite")
    assert not (tmp_path / "a").exists()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CatalogError, match="is not a folder"):
        Catalog(f / "c.sqlite")
    monkeypatch.delenv("TAPEARC_CATALOG")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    Catalog().close()  # the default location makes its folder
    assert (tmp_path / "xdg" / "tapearc" / "catalog.sqlite").exists()


def _env() -> Any:
    from tapearc import settings

    return settings


@pytest.mark.parametrize(
    "reader, value, ok",
    [
        (lambda: _env().flag("TAPEARC_PIPELINE", True), "OFF", False),
        (lambda: _env().flag("TAPEARC_PIPELINE", True), "", True),
        (lambda: _env().flag("TAPEARC_PIPELINE", True), "maybe", None),
        (lambda: _env().seconds("TAPEARC_PIPELINE", 3.0), "2.5", 2.5),
        (lambda: _env().seconds("TAPEARC_PIPELINE", 3.0), "-1", None),
        (lambda: _env().seconds("TAPEARC_PIPELINE", 3.0), "inf", None),
        (lambda: _env().size("TAPEARC_PIPELINE"), "64K", 65536),
        (lambda: _env().size("TAPEARC_PIPELINE"), "0", None),
    ],
)
def test_env_readers(monkeypatch: pytest.MonkeyPatch, reader: object, value: str, ok: object) -> None:
    from tapearc import settings  # noqa: F401 (the readers above import it when called)

    monkeypatch.setenv("TAPEARC_PIPELINE", value)
    if ok is None:
        with pytest.raises(UsageError, match=f"TAPEARC_PIPELINE={value!r}"):
            reader()  # type: ignore[operator]
    else:
        assert reader() == ok  # type: ignore[operator]


def test_old_readers_no_longer_default_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    from tapearc.catalog.db import busy_timeout
    from tapearc.engine.pipeline import pipeline_enabled
    from tapearc.locks import lock_timeout

    for name, fn in (
        ("TAPEARC_CATALOG_TIMEOUT", busy_timeout),
        ("TAPEARC_LOCK_TIMEOUT", lock_timeout),
        ("TAPEARC_PIPELINE", pipeline_enabled),
    ):
        monkeypatch.setenv(name, "banana")
        with pytest.raises(UsageError, match=name):
            fn()
        monkeypatch.delenv(name)


def test_deferred_holds_ctrl_c_until_the_section_ends() -> None:
    from tapearc import interrupts

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler has run by now; nothing raised
            pass
        done.append(1)
    assert done == [1]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts.deferred():
        pass  # no signal, no exception
    interrupts.clear_notes()
    interrupts.note("generation 3 is complete")
    assert interrupts.message() == "interrupted; generation 3 is complete"
    interrupts.clear_notes()


def test_deferred_ctrl_c_wins_over_an_error_of_the_section_and_says_it() -> None:
    """A Ctrl-C held through a section that then fails: KeyboardInterrupt all the same (the user
    asked to stop), the error's text among the notes, the error kept as its cause."""
    from tapearc import interrupts
    from tapearc.errors import MediumIOError

    interrupts.clear_notes()
    try:
        with pytest.raises(KeyboardInterrupt) as ki, interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            raise MediumIOError("the drive did not write its buffer out")
        assert isinstance(ki.value.__cause__, MediumIOError)
        assert interrupts.message() == "interrupted; the drive did not write its buffer out"
        with pytest.raises(MediumIOError), interrupts.deferred():  # no Ctrl-C: the error as it is
            raise MediumIOError("x")
        interrupts.note("generation 3 is written")
        interrupts.note("generation 4 is written")
        interrupts.note("generation 3 is complete", replaces="generation 3 is written")
        assert (
            interrupts.message()
            == "interrupted; the drive did not write its buffer out; generation 3 is complete; generation 4 is written"
        )
        interrupts.note("generation 4 is written", replaces="nothing noted")  # an unknown one: just added (once)
        assert interrupts.message().count("generation 4") == 1
    finally:
        interrupts.clear_notes()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_generation_interrupted_after_its_end_record_is_complete_in_the_catalog(tmp_path: Path) -> None:
    """Ctrl-C while the filemark after the end record is written: the filemark and the catalog
    row still follow, then KeyboardInterrupt; the catalog says complete, the note says so."""
    from tapearc import interrupts
    from tapearc.engine.backup import backup
    from tapearc.media import open_medium
    from tapearc.media.base import WriteStatus
    from tapearc.media.stlike import StLikeDrive

    src = tmp_path / "v.img"
    src.write_bytes(os.urandom(300_000))
    spec = f"sim:{tmp_path / 't.tap'}"
    with Catalog() as cat, open_medium(spec, write=True) as d:
        backup(str(src), d, cat)  # labels the medium
    orig = StLikeDrive.write_filemark
    calls = []

    def fm(self: StLikeDrive, *, immediate: bool = False) -> WriteStatus:
        calls.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        return orig(self, immediate=immediate)

    interrupts.clear_notes()
    try:
        StLikeDrive.write_filemark = fm  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt), Catalog() as cat, open_medium(spec, write=True) as d:
            backup(str(src), d, cat)
    finally:
        StLikeDrive.write_filemark = orig  # type: ignore[method-assign]
    assert calls == [1]
    assert "generation 2 of volume 'v.img' is complete on medium" in interrupts.message()
    interrupts.clear_notes()
    with Catalog() as cat:
        gens = {g.number: g.state for g in cat.generations(_set_of(cat), "v.img")}
    assert gens == {1: "complete", 2: "complete"}


def _set_of(cat: Catalog) -> uuid.UUID:
    row = cat.db.execute("SELECT uuid FROM media_sets").fetchone()
    return uuid.UUID(row[0])


def test_verify_selection_not_found() -> None:
    from tapearc.engine.verify import (
        FileReport,
        MediumReport,
        Problem,
        check_selection_found,
    )

    m = MediumReport(medium="sim:x", medium_uuid="u", others=[(1, "v", 1), (2, "v", 2)])
    with pytest.raises(NoSuchGenerationError, match=r"no generation 9 on this medium .it holds generations 1, 2"):
        check_selection_found([m], 9, None)
    check_selection_found([m], None, None)  # nothing chosen: nothing to find
    found = MediumReport(medium="sim:x", medium_uuid="u", files=[FileReport(tape_file=1, volume="v", generation=9)])
    check_selection_found([found], 9, None)
    damaged = MediumReport(medium="sim:x", medium_uuid="u", others=[(1, None, None)])
    check_selection_found([damaged], 9, None)  # tape file 1 could be it: damage, not 'no such'
    assert damaged.problems and isinstance(damaged.problems[0], Problem) and not damaged.ok
    unreadable = MediumReport(medium="sim:x")  # the label could not be read: that is the report
    check_selection_found([unreadable], 9, None)


def test_restore_to_a_terminal_reads_nothing(tmp_path: Path) -> None:
    from tapearc.engine.restore import restore

    class Tty(io.BytesIO):
        def isatty(self) -> bool:
            return True

    class NoMedia:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the medium was used: {name}")

    with Catalog() as cat, pytest.raises(UsageError, match="terminal"):
        restore(NoMedia(), cat, "-", stdout=Tty())  # type: ignore[arg-type]


def test_stream_spool_without_room(monkeypatch: pytest.MonkeyPatch) -> None:
    from tapearc.engine import restore as r

    class Plan:
        block_size = 4096
        volume_size = 3 * 4096
        nblocks = 3
        reads: ClassVar[list[object]] = []

    def full(**kw: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tempfile.TemporaryFile", full)
    sink = r._StreamSink(io.BytesIO(), Plan())  # type: ignore[arg-type]
    sink.need[:] = [(0, 3)]
    with pytest.raises(TargetError, match=r"temporary file in .*No space left on device") as info:
        sink.write(4096, memoryview(b"x" * 4096))  # block 1 before block 0: to the spool
    assert info.value.hint and "TMPDIR" in info.value.hint
    sink.abort()


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (
            OSError(errno.EIO, "Input/output error"),
            r"reading back out-of-order blocks from a temporary file in .*Input/output",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device"),
            r"cannot keep out-of-order blocks in a temporary file in .*No space",
        ),
        (None, r"temporary file in .* holding out-of-order blocks ended at byte 4096, before block 1"),
    ],
)
def test_stream_spool_read_back_fails(fault: OSError | None, words: str) -> None:
    """The spool fails when its blocks are read back (a disk error, buffered writes that meet a
    full TMPDIR late, a file cut short): one line naming the folder, never a wrong stream."""
    from tapearc.engine import restore as r

    class Plan:
        block_size = 4096
        volume_size = 3 * 4096
        nblocks = 3
        reads: ClassVar[list[object]] = []

    out = io.BytesIO()
    sink = r._StreamSink(out, Plan())  # type: ignore[arg-type]
    sink.need[:] = [(0, 3)]
    sink.write(4096, memoryview(b"x" * 4096))  # block 1 before block 0: to the spool
    assert sink.spool is not None
    if fault is None:
        sink.spool.truncate(4096)
    else:
        real = sink.spool

        class Failing:
            def seek(self, off: int) -> int:
                return real.seek(off)

            def read(self, n: int) -> bytes:
                raise fault

        sink.spool = Failing()  # type: ignore[assignment]
    with pytest.raises(TargetError, match=words):
        sink.write(0, memoryview(b"y" * 4096))
    assert out.getvalue() == b"y" * 4096  # block 0 went out; nothing after it
    sink.spool = None
    sink.abort()
