"""Test-only runner: ``python killpoint.py ARGS`` runs ``tapearc ARGS`` and SIGKILLs it at one
chosen low-level operation, so no cleanup code of tapearc runs (as when the machine's OOM killer,
an operator's ``kill -9`` or a crashed session ends a backup). Used by test_kill_campaign.py.

Nothing in tapearc is changed: this script wraps, in its own process only, the operations that
change what is on the medium or in the catalog, and numbers them in the order they happen (a
backup writes from one thread, so the numbering is deterministic for given inputs):

===========  =====================================================  =========================
event        operation                                              phases (the kill moment)
===========  =====================================================  =========================
``rec``      a record written to a ``sim:`` image (SimDrive.write)  ``before``; ``torn``: the
                                                                    length word and half the
                                                                    data, no trailing word;
                                                                    ``after``
``rec``      a record file of a ``dir:`` medium                     ``before``; ``empty``: the
                                                                    file created, 0 bytes;
                                                                    ``torn``: half its bytes;
                                                                    ``after``
``mkdir``    a ``dir:`` tape file folder created                    ``after`` (no record yet)
``fm``       a filemark (sim: SimDrive filemarks; dir: FILEMARK)    ``before``, ``after``
``db``       a catalog transaction's COMMIT                         ``before``, ``after``
===========  =====================================================  =========================

Environment: ``KILLPOINT_TRACE=FILE`` appends one line per event to FILE (``N event detail``)
and kills nothing; ``KILLPOINT_AT=N:PHASE`` kills the process at event N (1-based) in PHASE.
A record's detail is the magic of the item it starts (``TAGENHD1``, ``TACHUNK1``, ``TATRAIL1``,
``TATREND1``, ``TALABEL1``) or ``cont``, and its size.
"""

from __future__ import annotations

import builtins
import os
import re
import signal
import sys
import types
from typing import Any, Self

TRACE = os.environ.get("KILLPOINT_TRACE")
_at = os.environ.get("KILLPOINT_AT")
KILL_N, KILL_PHASE = (int(_at.split(":")[0]), _at.split(":")[1]) if _at else (0, "")
counter = 0


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def event(kind: str, detail: str) -> str | None:
    """Number one event; returns the phase to kill in, if this is the chosen event."""
    global counter
    counter += 1
    if TRACE:
        with builtins.open(TRACE, "a") as f:
            f.write(f"{counter} {kind} {detail}\n")
    if counter == KILL_N:
        if KILL_PHASE == "before":
            die()
        return KILL_PHASE
    return None


def what(data: Any) -> str:
    mv = memoryview(data).cast("B")
    magic = bytes(mv[:8])
    return f"{magic.decode() if re.fullmatch(rb'TA[A-Z]{5}1', magic) else 'cont'} {mv.nbytes}"


# ------------------------------------------------------------------ sim: (the simulated drive)
from tapesim import drive as simdrive
from tapesim.simh import WORD

_sim_write = simdrive.SimDrive.write
_sim_marks = simdrive.SimDrive._write_filemarks


def sim_write(self: Any, buf: Any) -> int:
    mv = memoryview(buf).cast("B")
    if mv.nbytes == 0 or self._readonly:
        return _sim_write(self, buf)
    phase = event("rec", what(mv))
    if phase == "torn":  # an interrupted write: the leading length word and half the data
        start = self._offset_of(self._pos)
        part = mv.nbytes // 2
        os.pwrite(self._fd, WORD.pack(mv.nbytes) + bytes(mv[:part]), start)
        os.ftruncate(self._fd, start + len(WORD.pack(0)) + part)
        die()
    n: int = _sim_write(self, buf)
    if phase == "after":
        die()
    return n


def sim_marks(self: Any, count: int, **kw: Any) -> None:
    phase = event("fm", str(count)) if count > 0 else None
    _sim_marks(self, count, **kw)
    if phase == "after":
        die()


simdrive.SimDrive.write = sim_write  # type: ignore[method-assign]
simdrive.SimDrive._write_filemarks = sim_marks  # type: ignore[method-assign]

# ------------------------------------------------------------------ dir: (the folder medium)
from tapearc.media import dirmedium

_FOLDER = re.compile(r"file-\d{6,}$")
_REC = re.compile(r"rec-\d{9,}$")


class _RecordFile:
    """A record file being written: kills when its event's phase says so."""

    def __init__(self, fh: Any, phase: str | None) -> None:
        self.fh = fh
        self.phase = phase
        if phase == "empty":
            die()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()
        if self.phase == "after":
            die()

    def write(self, data: Any) -> int:
        if self.phase == "torn":
            mv = memoryview(data).cast("B")
            self.fh.write(mv[: mv.nbytes // 2])
            die()
        n: int = self.fh.write(data)
        return n

    def fileno(self) -> int:
        n: int = self.fh.fileno()
        return n

    def close(self) -> None:
        self.fh.close()


def dir_open(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
    if "w" in mode and _REC.search(str(path)):
        return _LazyRecord(str(path), mode, args, kw)
    return builtins.open(path, mode, *args, **kw)


class _LazyRecord:
    """``open(rec, "wb")`` of dirmedium: the record's event is numbered at its first write (its
    bytes are known then); ``before`` kills before the file exists."""

    def __init__(self, path: str, mode: str, args: Any, kw: Any) -> None:
        self.path, self.mode, self.args, self.kw = path, mode, args, kw
        self.inner: _RecordFile | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.inner is not None:
            self.inner.__exit__(*exc)

    def write(self, data: Any) -> int:
        if self.inner is None:
            phase = event("rec", what(data))
            self.inner = _RecordFile(builtins.open(self.path, self.mode, *self.args, **self.kw), phase)  # noqa: SIM115
        return self.inner.write(data)

    def fileno(self) -> int:
        assert self.inner is not None
        return self.inner.fileno()


def dir_makedirs(path: Any, *args: Any, **kw: Any) -> None:
    new = _FOLDER.search(str(path)) is not None and not os.path.isdir(path)
    os.makedirs(path, *args, **kw)
    if new and event("mkdir", os.path.basename(str(path))) == "after":
        die()


_dir_mark = dirmedium.DirDrive.write_filemark


def dir_filemark(self: Any, *, immediate: bool = False) -> Any:
    phase = event("fm", "1")
    st = _dir_mark(self, immediate=immediate)
    if phase == "after":
        die()
    return st


dirmedium.open = dir_open  # type: ignore[attr-defined]  # the module's open() shadows the builtin
dirmedium.os = types.SimpleNamespace(  # type: ignore[attr-defined,assignment]
    **{**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}, "makedirs": dir_makedirs}
)
dirmedium.DirDrive.write_filemark = dir_filemark  # type: ignore[method-assign]

# ------------------------------------------------------------------ the catalog
from tapearc.catalog import db as catalog_db

_tx_exit = catalog_db._Tx.__exit__


def tx_exit(self: Any, exc_type: object, *rest: object) -> None:
    phase = event("db", "commit") if self.outer and exc_type is None else None
    _tx_exit(self, exc_type, *rest)
    if phase == "after":
        die()


catalog_db._Tx.__exit__ = tx_exit  # type: ignore[method-assign]

from tapearc.cli.app import main

sys.argv[0] = "tapearc"
main()
