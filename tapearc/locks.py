"""Locks that keep two tapearc processes off the same medium (and name the one in the way).

A medium or drive is locked with ``flock`` on a lock file beside it, ``PATH.tapearc-lock``:

* ``sim:PATH`` (a tape image): ``PATH.tapearc-lock``; a drive of a simulated library
  (``sim:LIB`` or ``sim:LIB/drive-N.tap``): ``LIB/drive-N.tap.tapearc-lock`` (one lock per drive,
  whichever tape it holds);
* ``dir:PATH`` (a removable-disk folder): ``PATH.tapearc-lock`` beside the folder;
* ``st:/dev/nstN``: no lock file (nothing is created in /dev): the st driver allows one open at
  a time and answers EBUSY ("drive busy: ... is in use by another program");
* ``-`` (a stream): nothing to lock.

Writers take the lock exclusively; readers share it on a ``dir:`` medium (the folder backend
allows several readers) and take it exclusively on a ``sim:`` tape (a tape drive has one user at
a time, like st). The holder writes its pid into the lock file; a process that cannot get the
lock within ``TAPEARC_LOCK_TIMEOUT`` seconds (default 0: fail at once) gets a one-line
:class:`~tapearc.errors.MediumUnavailableError` (exit 10) such as ``medium sim:t.tap is in use
by another process (pid 4242)``. The pid comes from ``/proc/locks`` (every holder, readers
included) or else from the lock file.

``flock`` locks die with their process, so a crashed tapearc never leaves a stale lock: the
file may stay behind, and is reused. The last holder removes the file when it lets go.

The backends lock as well (tapesim's SimDrive takes an exclusive flock on its image, a
DirDrive one on its folder); this lock is taken first, so the message names the holder.

The drives of a library used with a catalog (``sim:DIR`` of a simulated library, a drive with
``--changer``) are not locked here: they are leased in the catalog instead
(:mod:`tapearc.catalog.leases`, docs/leases.md), which works between hosts too; a command takes
one or the other for a drive, never both. These file locks remain for single media (an image, a
folder) and for the commands that open no catalog (``list``, ``key recover``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from tapearc import settings
from tapearc.errors import MediumUnavailableError, TapearcError

LOCK_SUFFIX = ".tapearc-lock"
DEFAULT_TIMEOUT = settings.DEFAULT_LOCK_TIMEOUT
_POLL = 0.05
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")


def lock_timeout() -> float:
    """Seconds to wait for a lock, from ``TAPEARC_LOCK_TIMEOUT`` (a bad value is a UsageError)."""
    return settings.lock_timeout()


def lock_holders(*paths: str, write_only: bool = False) -> list[int]:
    """Pids (other than ours) holding a flock or POSIX lock on any of ``paths``, from /proc/locks."""
    keys = set()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        keys.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    if not keys:
        return []
    pids: list[int] = []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    me = os.getpid()
    for line in lines:
        f = line.split()
        # "1: FLOCK  ADVISORY  WRITE 10394 fe:00:2383879 0 EOF" ("->" marks a blocked waiter)
        if len(f) < 6 or f[1] == "->":
            continue
        try:
            pid = int(f[4])
            maj, mnr, ino = f[5].split(":")
            key = (int(maj, 16), int(mnr, 16), int(ino))
        except ValueError:
            continue
        if key in keys and pid != me and pid > 0 and pid not in pids:
            if write_only and f[3] != "WRITE":
                continue
            pids.append(pid)
    return pids


def describe_holders(pids: list[int]) -> str:
    if not pids:
        return "another process"
    if len(pids) == 1:
        return f"another process (pid {pids[0]})"
    return "other processes (pids " + ", ".join(map(str, pids)) + ")"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLock:
    """An flock on a lock file, held from :meth:`acquire` to :meth:`release`.

    ``busy(holders)`` makes the error raised when the lock cannot be had within ``timeout``.
    """

    def __init__(
        self,
        path: str,
        *,
        exclusive: bool,
        timeout: float,
        busy: Callable[[list[int]], TapearcError],
    ) -> None:
        self.path = path
        self.exclusive = exclusive
        self.timeout = timeout
        self.busy = busy
        self.fd = -1

    def acquire(self) -> FileLock:
        deadline = time.monotonic() + self.timeout
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOENT, errno.ENOTDIR):
                    return self  # cannot lock here (read-only place): the backend's own lock must do
                raise MediumUnavailableError(f"cannot create lock file {self.path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    return self  # a file system without flock: the backend's own lock must do
                holders = lock_holders(self.path) or self._pid_in_file(fd)
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise self.busy(holders) from None
                time.sleep(_POLL)
                continue
            # the last holder may have removed the file between our open and our flock
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            self.fd = fd
            if self.exclusive:
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                except OSError:
                    pass
            return self

    @staticmethod
    def _pid_in_file(fd: int) -> list[int]:
        try:
            pid = int(os.pread(fd, 32, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [pid] if pid != os.getpid() and _pid_alive(pid) else []

    def release(self) -> None:
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            # the last holder removes the file (an exclusive lock means nobody else holds it)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def medium_lock_path(spec: str) -> tuple[str, bool] | None:
    """(lock file, whether readers share it) for a ``--media`` value, None when there is
    nothing to lock (a stream, an st device, an unknown form)."""
    if not spec or spec == "-":
        return None
    m = _PREFIX.match(spec)  # the forms of tapearc.media.open_medium
    kind, path = (m.group(1).lower(), m.group(2)) if m else ("", spec)
    if not kind:
        if path.startswith("/dev/"):
            return None
        kind = "dir" if os.path.isdir(path) else "sim"
    if kind not in ("sim", "dir") or not path:
        return None
    path = os.path.abspath(path)
    if path.startswith("/dev/") or os.path.realpath(path).startswith("/dev/"):
        return None  # nothing is created in /dev (the backends refuse such a medium anyway)
    if kind == "sim":
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "library.json")):
            path = os.path.join(path, "drive-0.tap")  # a simulated library: its drive 0
        return path + LOCK_SUFFIX, False
    return path.rstrip("/") + LOCK_SUFFIX, True


@contextmanager
def medium_lock(spec: str, *, write: bool, timeout: float | None = None) -> Iterator[None]:
    """Hold the lock of the medium (drive) ``spec`` for the duration of a job."""
    where = medium_lock_path(spec)
    if where is None or not os.path.isdir(os.path.dirname(where[0])):
        yield  # nothing to lock (or a missing folder: opening the medium will say so)
        return
    path, shared_reads = where

    def busy(holders: list[int]) -> TapearcError:
        return MediumUnavailableError(
            f"medium {spec} is in use by {describe_holders(holders)}",
            hint=f"wait for it to finish (lock file {path}; TAPEARC_LOCK_TIMEOUT=SECONDS waits)",
            holders=",".join(map(str, holders)),
        )

    lock = FileLock(
        path,
        exclusive=write or not shared_reads,
        timeout=lock_timeout() if timeout is None else timeout,
        busy=busy,
    )
    with lock:
        yield


@contextmanager
def media_locks(specs: list[tuple[str, bool]], timeout: float | None = None) -> Iterator[None]:
    """Hold the locks of several media (``(spec, write)`` pairs), taken in a fixed order."""
    seen: dict[str, tuple[str, bool]] = {}
    for spec, write in specs:
        where = medium_lock_path(spec)
        key = where[0] if where else spec
        prev = seen.get(key)
        seen[key] = (spec, write or (prev[1] if prev else False))
    with ExitStack() as stack:
        for key in sorted(seen):
            spec, write = seen[key]
            stack.enter_context(medium_lock(spec, write=write, timeout=timeout))
        yield
