"""Read-ahead: a thread that keeps reading while the caller digests, packs and writes.

The expensive parts of a backup, restore or verify release the GIL (``preadv``/``pwrite``,
BLAKE3, CRC-32C, zstd, writes to the medium), so one thread reading ahead into a small ring of
preallocated buffers overlaps the source's I/O with the rest of the work, without copying and
without allocating per block. Memory is fixed: ``depth`` buffers of one window each.

``ReadAhead`` yields ``(offset, buffer, base, length)`` for consecutive windows of a reader
function (the bytes are ``buffer[base:base + length]``, page-aligned for O_DIRECT);
a buffer belongs to the caller until it asks for the next window, then it goes back to the
reader. An exception in the reader (a SourceError naming the byte offset, an I/O error) is
raised in the caller at the window where it happened, after the windows before it. Closing it
early (the caller stopped: medium full, Ctrl-C, an error) stops the thread without a hang.

With a ``plan`` (spans ``(offset, length, read, tag)``: a backup's segments of data, holes and
blocks vouched unchanged), only the read spans are read, window by window; :meth:`ReadAhead.items`
hands over the others in order, unread (the reader runs at most ``MAX_SKIPS`` of them ahead).

``threaded=False`` reads in the caller's thread, with the same buffers and the same results:
the plain path the tests compare the pipelined one with (``TAPEARC_PIPELINE=0`` selects it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from tapearc import settings
from tapearc.buffers import PAGE, POOL, aligned_bytearray, buffer_address  # noqa: F401 (re-exported)

ReadFn = Callable[[memoryview, int], int]  # (buffer to fill, offset) -> bytes read
#: A span of a read plan: ``(offset, length, read, tag)``; read spans are read window by window,
#: the others are handed to the caller as they are (in order with the windows), unread.
Span = tuple[int, int, bool, object]
#: What the reader hands over: (offset, expected length, tag, buffer or None, bytes read)
_Item = tuple[int, int, object, "tuple[bytearray, int] | None", int]

#: Unread spans the reader may run ahead of the caller by (memory stays small).
MAX_SKIPS = 256

DEFAULT_DEPTH = 3
JOIN_TIMEOUT = 2.0  # seconds to wait for a reader thread that is inside a read


def pipeline_enabled() -> bool:
    """Threads on unless ``TAPEARC_PIPELINE=0`` (the plain, single-threaded path)."""
    return settings.pipeline()


class _Stop:
    pass


def plan_windows(plan: Iterable[Span], window: int) -> Iterator[tuple[int, int, bool, object]]:
    """``(offset, length, read, tag)``: a plan's read spans cut into windows of ``window``
    bytes, its other spans as they are, in order (what ReadAhead reads and hands over)."""
    for off, length, read, tag in plan:
        if not read:
            yield off, length, False, tag
            continue
        end = off + length
        while off < end:
            n = min(window, end - off)
            yield off, n, True, tag
            off += n


class ReadAhead:
    def __init__(
        self,
        read: ReadFn,
        size: int,
        window: int,
        *,
        start: int = 0,
        depth: int = DEFAULT_DEPTH,
        threaded: bool | None = None,
        plan: Iterable[Span] | None = None,
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.read = read
        self.size = size
        self.window = window
        self.start = start
        self.plan = plan
        self.threaded = pipeline_enabled() if threaded is None else threaded
        n = depth if self.threaded else 1
        self.buffers = [POOL.take_aligned(window) for _ in range(max(1, n))]  # back to the pool in close()
        self._free: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self._full: queue.Queue[_Item | BaseException | _Stop] = queue.Queue(maxsize=len(self.buffers) + MAX_SKIPS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reader side

    def _windows(self) -> Iterator[tuple[int, int, bool, object]]:
        """``(offset, length, read, tag)``: the windows to read and, with a plan, the spans not
        to read, in order."""
        if self.plan is None:
            off = self.start
            while off < self.size:
                n = min(self.window, self.size - off)
                yield off, n, True, None
                off += n
            return
        yield from plan_windows(self.plan, self.window)

    def _put(self, item: _Item | BaseException | _Stop) -> bool:
        """Hand ``item`` to the caller; False when the caller stopped."""
        while True:
            try:
                self._full.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False

    def _run(self) -> None:
        try:
            for off, n, read, tag in self._windows():
                if not read:
                    if not self._put((off, n, tag, None, 0)):
                        return
                    continue
                buf = self._free.get()
                if buf is None or self._stop.is_set():
                    return
                ba, base = buf
                got = self.read(memoryview(ba)[base : base + n], off)
                if not self._put((off, n, tag, buf, got)):
                    return
                if got < n:  # the source ended early: the caller says what that means
                    break
            self._put(_Stop())
        except BaseException as e:  # handed to the caller, raised there
            self._put(e)

    # ------------------------------------------------------------------ caller side

    def __iter__(self) -> Iterator[tuple[int, bytearray, int, int]]:
        """Yields ``(offset, buffer, base, got)``: the window's bytes are
        ``buffer[base:base + got]`` (``base`` keeps them page-aligned)."""
        for off, _n, _tag, buf, got in self.items():
            if buf is not None:
                yield off, buf[0], buf[1], got

    def items(self) -> Iterator[tuple[int, int, object, tuple[bytearray, int] | None, int]]:
        """Yields ``(offset, length, tag, buffer, got)`` in order: for a window read, ``buffer``
        is ``(bytearray, base)`` holding ``got`` bytes from ``base`` (``length`` were asked
        for); for a span not read (a plan's), ``buffer`` is None."""
        if not self.threaded:
            ba, base = self.buffers[0]
            for off, n, read, tag in self._windows():
                if not read:
                    yield off, n, tag, None, 0
                    continue
                got = self.read(memoryview(ba)[base : base + n], off)
                yield off, n, tag, (ba, base), got
                if got < n:
                    return
            return
        self.begin()
        if self._thread is None:  # closed before it started
            return
        try:
            while True:
                item = self._full.get()
                if isinstance(item, _Stop):
                    return
                if isinstance(item, BaseException):
                    raise item
                off, n, tag, buf, got = item
                yield off, n, tag, buf, got
                if buf is not None:
                    self._free.put(buf)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader. It finishes the read it is in; a read that hangs (a device that
        stopped answering) does not hold up the caller's exit: the thread is a daemon and is
        waited for only briefly."""
        t = self._thread
        if t is None:
            return
        self._thread = None
        self._stop.set()
        self._free.put(None)
        t.join(JOIN_TIMEOUT)
        if not t.is_alive():  # no read can fill them any more: the next volume's windows
            for ba, _base in self.buffers:
                POOL.give(ba)
            self.buffers = []

    def begin(self) -> None:
        """Start reading (threaded: the first windows are read while the caller does something
        else, e.g. writes the part's header; :meth:`items` starts it otherwise). Once."""
        if not self.threaded or self._thread is not None or self._stop.is_set():
            return
        for b in self.buffers:
            self._free.put(b)
        self._thread = threading.Thread(target=self._run, name="tapearc-readahead", daemon=True)
        self._thread.start()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Done:
    pass


class _Bounded:
    """A FIFO that holds at most ``limit`` bytes (one item always fits), for two threads."""

    def __init__(self, limit: int) -> None:
        import collections

        self.limit = limit
        self.items: collections.deque[tuple[object, int]] = collections.deque()
        self.bytes = 0
        self.cond = threading.Condition()
        self.closed = False

    def put(self, item: object, nbytes: int) -> bool:
        """False when the queue was closed (the other side stopped)."""
        with self.cond:
            while self.items and self.bytes + nbytes > self.limit and not self.closed:
                self.cond.wait()
            if self.closed:
                return False
            self.items.append((item, nbytes))
            self.bytes += nbytes
            self.cond.notify_all()
            return True

    def get(self) -> object:
        with self.cond:
            while not self.items:
                self.cond.wait()
            item, nbytes = self.items.popleft()
            self.bytes -= nbytes
            self.cond.notify_all()
            return item

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.items.clear()
            self.bytes = 0
            self.cond.notify_all()


def _nbytes(obj: object) -> int:
    try:
        return len(obj)  # type: ignore[arg-type]
    except TypeError:
        return 0


class RecordAhead:
    """Reads the records of one tape file in a thread, up to and including the first mark.

    ``next()`` returns what ``read_record()`` would have: a record, a Mark, or raises the
    read's error. The thread stops at the first mark, or after ``max_errors + 1`` read errors in
    a row (the caller gives up on the tape file there too), so the medium is left where the
    plain loop would have left it once the caller has had the mark. Memory: ``limit`` bytes of
    records read ahead.
    """

    def __init__(
        self,
        read_record: Callable[[], object],
        *,
        max_errors: int,
        limit: int = 16 * 1024 * 1024,
        threaded: bool | None = None,
    ) -> None:
        self.read_record = read_record
        self.max_errors = max_errors
        self.threaded = pipeline_enabled() if threaded is None else threaded
        self._q = _Bounded(limit)
        self._thread: threading.Thread | None = None
        if self.threaded:
            self._thread = threading.Thread(target=self._run, name="tapearc-records", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        from tapearc.errors import TapearcError
        from tapearc.media.base import Mark

        errors = 0
        try:
            while True:
                try:
                    rec = self.read_record()
                except TapearcError as e:
                    errors += 1
                    if not self._q.put(e, 0) or errors > self.max_errors:
                        return
                    continue
                errors = 0
                if not self._q.put(rec, _nbytes(rec)) or isinstance(rec, Mark):
                    return
        except BaseException as e:
            self._q.put(e, 0)
        finally:
            self._q.put(_Done(), 0)

    def next(self) -> object:
        if self.threaded:
            item = self._q.get()
            if not isinstance(item, _Done):
                if isinstance(item, BaseException):
                    raise item
                return item
            self.threaded = False  # the reader has stopped: read directly from here on
            self._thread = None
        return self.read_record()

    def close(self) -> None:
        t = self._thread
        if t is None:
            return
        self._thread = None
        self.threaded = False
        self._q.close()
        t.join(JOIN_TIMEOUT)

    def __enter__(self) -> RecordAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Worker:
    """Runs calls in order in one background thread (the restore's target writes), so reading
    and checking the next chunk overlaps writing this one. Holds at most ``limit`` bytes of
    data waiting. The first error of a call is raised in the caller at its next ``submit`` or at
    ``drain``; the calls after a failed one are dropped. ``threaded=False`` runs each call at
    once, in the caller's thread."""

    def __init__(self, *, limit: int = 16 * 1024 * 1024, threaded: bool | None = None) -> None:
        self.threaded = pipeline_enabled() if threaded is None else threaded
        self.error: BaseException | None = None
        self._q = _Bounded(limit)
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if self.threaded:
            self._thread = threading.Thread(target=self._run, name="tapearc-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if isinstance(item, _Done):
                return
            fn, args = cast("tuple[Callable[..., object], tuple[object, ...]]", item)
            if self.error is None:
                try:
                    fn(*args)
                except BaseException as e:  # raised in the caller
                    self.error = e
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def _raise(self) -> None:
        if self.error is not None:
            e, self.error = self.error, None
            self.close()
            raise e

    def submit(self, fn: Callable[..., object], *args: object, nbytes: int = 0) -> None:
        if not self.threaded:
            fn(*args)
            return
        self._raise()
        with self._lock:
            self._pending += 1
            self._idle.clear()
        if not self._q.put((fn, args), nbytes):
            with self._lock:
                self._pending -= 1
        self._raise()

    def drain(self) -> None:
        """Wait until every call submitted so far has run; raise the first error."""
        if self._thread is not None:
            self._idle.wait()
        self._raise()

    def close(self) -> None:
        """Stop the thread: the calls not yet run are dropped; a call that hangs does not hold
        up the caller (daemon thread, brief wait)."""
        t = self._thread
        if t is None:
            return
        self._thread = None
        self.threaded = False
        self._q.close()
        with self._q.cond:  # wake the thread with its stop item
            self._q.closed = False
            self._q.items.append((_Done(), 0))
            self._q.cond.notify_all()
        t.join(JOIN_TIMEOUT)
