"""The drives of one library, for a job or a restore that uses several at once.

A library is a changer and the drives it loads, numbered from 0 as the changer numbers them:

- ``sim:DIR`` of a simulated library (hw-sim) names both: its changer and its drives
  ``DIR/drive-<i>.tap``;
- a ``changer`` (``mtx:/dev/sgN``, ...) with the drives given as a list, in the changer's order
  (``media = ["/dev/nst0", "/dev/nst1"]`` in a job file).

:func:`open_drives` takes ``n`` free drives of a library (each locked against other tapearc
processes, as a ``--media`` drive is: tapearc.locks) and gives one :class:`JobDrive` per drive:
a :class:`~tapearc.engine.mediasource.MediaSource` bound to its drive number, sharing one
changer handle (:class:`SharedChanger`) and one lock for the changer's moves with the other
drives of the same job (two drives of one job never look
for a medium in the slots at the same time, so they never load the same one), and counting what
is written to its drive (:class:`DriveClock`: bytes, time in writes, first and last write).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from tapearc.catalog.db import Catalog
from tapearc.engine.mediasource import MediaSource, library_dir
from tapearc.errors import DrivesError, MediumUnavailableError
from tapearc.media.base import TapeDrive, WriteStatus
from tapearc.media.changer import Changer, ChangerStatus

if TYPE_CHECKING:
    from tapearc.catalog.leases import Lease, Leases

_POLL = 0.1
PURPOSE = "tapearc job on several drives"


@dataclass(frozen=True, slots=True)
class Library:
    """A changer and its drives (``drives[i]`` is the changer's drive ``i``)."""

    name: str  # for messages: sim:DIR, or the changer's spec
    changer: str  # the changer spec (sim:DIR, mtx:/dev/sgN, ...)
    drives: tuple[str, ...]  # the media spec of each drive, by the changer's number


def library_of(media: str | tuple[str, ...], changer: str | None) -> Library:
    """The library a job or restore names: ``sim:DIR`` of a simulated library (its drives from
    its inventory), or ``changer`` with the drives ``media`` lists. DrivesError when there is
    none (a lone drive)."""
    first = media if isinstance(media, str) else media[0]
    lib = library_dir(first)
    if lib is not None and (changer is None or changer == first):
        from tapearc.media.changers.sim import SimChanger

        ch = SimChanger(lib)
        try:
            count = len(ch.status().drives)
        finally:
            ch.close()
        drives = tuple(f"sim:{os.path.join(lib, f'drive-{i}.tap')}" for i in range(count))
        return Library(f"sim:{lib}", f"sim:{lib}", drives)
    if changer is not None and changer != "operator":
        listed = (media,) if isinstance(media, str) else media
        return Library(changer, changer, tuple(listed))
    raise DrivesError(
        f"several drives need a library: {first} is a lone drive"
        + (" with an operator" if changer == "operator" else ""),
        hint='give media = "sim:DIR" of a simulated library, or a changer and media = [drive 0, drive 1, ...]',
    )


@dataclass(slots=True)
class DriveClock:
    """What one drive was given during a run: bytes written, time spent in writes, and when its
    first and last write were (monotonic seconds). The time between writes is the time the
    drive waited for data."""

    drive: str
    bytes: int = 0
    writes: int = 0
    write_seconds: float = 0.0
    first: float | None = None
    last: float | None = None

    def note(self, started: float, ended: float, nbytes: int) -> None:
        self.bytes += nbytes
        self.writes += 1
        self.write_seconds += ended - started
        if self.first is None:
            self.first = started
        self.last = ended

    def to_json(self, run_seconds: float | None = None) -> dict[str, object]:
        span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        d: dict[str, object] = {
            "drive": self.drive,
            "bytes": self.bytes,
            "writes": self.writes,
            "write_seconds": round(self.write_seconds, 3),
            "span_seconds": round(span, 3),
            "waiting_seconds": round(max(0.0, span - self.write_seconds), 3),
            "mb_per_s": round(self.bytes / span / 1e6, 1) if span > 0 else None,
        }
        if run_seconds is not None:
            d["idle_seconds"] = round(max(0.0, run_seconds - self.write_seconds), 3)
        return d


class TimedDrive:
    """A TapeDrive that counts its writes into a :class:`DriveClock` (everything else is the
    drive's own)."""

    def __init__(self, drive: TapeDrive, clock: DriveClock) -> None:
        self._drive = drive
        self._clock = clock

    def write_record(self, data: bytes | bytearray | memoryview) -> WriteStatus:
        t0 = time.monotonic()
        st = self._drive.write_record(data)
        self._clock.note(t0, time.monotonic(), len(data))
        return st

    def __getattr__(self, name: str) -> Any:
        return getattr(self._drive, name)


class JobDrive(MediaSource):
    """One drive of a library used by a job or restore with several drives: the changer's moves
    are made under ``moves`` (shared by the job's drives) and the drive's writes are counted."""

    def __init__(self, spec: str, *, index: int, moves: threading.RLock, changer: Changer | None, **kw: Any) -> None:
        super().__init__(spec, changer=changer, drive_index=index, **kw)
        self.moves = moves
        self.clock = DriveClock(spec)

    def _open(self, write: bool | None = None) -> TapeDrive:
        return cast(TapeDrive, TimedDrive(super()._open(write), self.clock))

    def current(self) -> TapeDrive:
        with self.moves:
            return super().current()

    def obtain(self, describe: str, accept: Any, prefer: list[str] | None = None) -> TapeDrive:
        """As MediaSource.obtain; the drive writes its buffer out (settle: seconds on a tape
        drive, with up to its whole buffer to write) before ``moves`` is taken, so that the
        other drives' loads and unloads do not wait for it."""
        with self.moves:
            d, why = self.loaded_if(accept)
        if d is not None:
            return d
        self.refuse_without_changer(describe, why)
        self.settle()
        with self.moves:
            return self.change_medium(describe, accept, prefer, why)


class SharedChanger(Changer):
    """One changer handle for all the drives of a job or restore: a serial autoloader has one
    line (its simulator, one connection), so the drives must not each open their own. Each
    inventory, load and unload is one at a time (a lock of its own, held only for that one
    operation: the changer's lease and the job's ``moves`` are taken before it, never while it
    is held). Closing a drive leaves it open; :func:`open_drives` closes it at the end."""

    def __init__(self, changer: Changer) -> None:
        self.inner = changer
        self.name = changer.name
        self.lock = threading.Lock()

    def status(self) -> ChangerStatus:
        with self.lock:
            return self.inner.status()

    def load(self, slot: int, drive: int = 0) -> None:
        with self.lock:
            self.inner.load(slot, drive)

    def unload(self, drive: int = 0, slot: int | None = None) -> None:
        with self.lock:
            self.inner.unload(drive, slot)

    def close(self) -> None:
        pass


def reopen(catalog: Catalog) -> Catalog:
    """A connection of its own to the catalog ``catalog`` is open on, for another thread: its
    file (SQLite), else its URL with its password (``Catalog.connect_spec``, never shown)."""
    return Catalog(catalog.connect_spec)


def _pick_drives(
    library: Library, n: int, stack: ExitStack, *, write: bool, timeout: float | None, leases: Leases | None = None
) -> list[tuple[int, Lease | None]]:
    """Up to ``n`` free drives of ``library``, held for as long as ``stack`` is open: by drive
    leases (``drive:<library>:<i>``, tapearc.catalog.leases) when ``leases`` is given, else by the
    drive locks of tapearc.locks; waits up to ``timeout`` seconds while none is free (None: with
    leases as long as it takes, as a one-drive command waits; with drive locks
    $TAPEARC_LOCK_TIMEOUT, as a medium's lock)."""
    if leases is not None:
        return _lease_drives(library, n, stack, leases, timeout)
    from tapearc.locks import lock_timeout, medium_lock

    deadline = time.monotonic() + (lock_timeout() if timeout is None else timeout)
    while True:
        got: list[tuple[int, Lease | None]] = []
        busy: list[str] = []
        for i, spec in enumerate(library.drives):
            if len(got) == n:
                break
            try:
                stack.enter_context(medium_lock(spec, write=write, timeout=0))
            except MediumUnavailableError as e:
                busy.append(f"drive {i}: {e.message}")
                continue
            got.append((i, None))
        if got or time.monotonic() >= deadline:
            break
        time.sleep(_POLL)
    if not got:
        raise DrivesError(
            f"every drive of library {library.name} is in use: " + "; ".join(busy),
            hint="wait for the other process (TAPEARC_LOCK_TIMEOUT=SECONDS waits for a drive on this host)",
        )
    return got


def _lease_drives(
    library: Library, n: int, stack: ExitStack, leases: Leases, timeout: float | None
) -> list[tuple[int, Lease | None]]:
    """The drives' leases: the first free drive (waiting up to ``timeout``), then as many more
    as are free now."""
    from tapearc.engine.mediasource import drive_resource, library_id
    from tapearc.errors import LeaseBusyError
    from tapearc.media.changers import open_changer

    ch = open_changer(library.changer)
    try:
        lib_id = library_id(ch)
    finally:
        ch.close()
    assert lib_id is not None
    names = [drive_resource(lib_id, i) for i in range(len(library.drives))]
    got: list[tuple[int, Lease | None]] = []
    while len(got) < n:
        left = [r for r in names if r not in {names[i] for i, _ in got}]
        try:
            lease = leases.acquire_any(left, purpose=PURPOSE, wait=timeout if not got else 0)
        except LeaseBusyError as e:
            if got:
                break
            raise DrivesError(
                f"every drive of library {library.name} is in use: {e.message}",
                hint="wait for the other process, or give a longer wait (a job's wait, restore --wait)",
            ) from None
        stack.callback(lease.release)
        got.append((names.index(lease.resource), lease))
    return sorted(got, key=lambda x: x[0])


@contextmanager
def open_drives(
    library: Library,
    n: int,
    *,
    write: bool,
    catalog: Catalog | None = None,
    timeout: float | None = None,
    notes: list[str] | None = None,
) -> Iterator[list[JobDrive]]:
    """``n`` drives of ``library`` (fewer when only fewer are free: ``notes`` says so), each a
    JobDrive, one changer handle shared by all. DrivesError when the library has fewer than ``n``
    or none is free within ``timeout`` seconds (None: see :func:`_pick_drives`); the first free
    drive is waited for, the others are taken if they are free then."""
    from tapearc.media.changers import open_changer

    if n > len(library.drives):
        have = ", ".join(f"drive {i}" for i in range(len(library.drives)))
        raise DrivesError(f"{n} drives are asked for; library {library.name} has {len(library.drives)} ({have})")
    moves = threading.RLock()
    with ExitStack() as stack:
        leases = None
        if catalog is not None and library.changer != "operator":
            from tapearc.catalog.leases import Leases, stderr_notify
            from tapearc.engine.mediasource import catalog_spec

            me = f" pid {os.getpid()} "  # the job's drives wait for each other at the changer: not worth a line

            leases = Leases(catalog_spec(catalog), notify=lambda m: None if me in m else stderr_notify(m))
            stack.callback(leases.close)
        picked = _pick_drives(library, n, stack, write=write, timeout=timeout, leases=leases)
        if len(picked) < n and notes is not None:
            notes.append(
                f"{len(picked)} of the {n} drives asked for were free (drives {', '.join(str(i) for i, _ in picked)}); "
                "the volumes were spread over those"
            )
        out: list[JobDrive] = []
        ch = SharedChanger(open_changer(library.changer))
        stack.callback(ch.inner.close)
        for i, lease in picked:
            extra: dict[str, Any] = (
                {} if leases is None else {"leases": leases, "drive_lease": lease, "purpose": PURPOSE}
            )
            d = JobDrive(library.drives[i], index=i, moves=moves, changer=ch, write=write, catalog=catalog, **extra)
            stack.callback(d.close)
            out.append(d)
        yield out
