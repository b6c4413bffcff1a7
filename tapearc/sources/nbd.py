"""NBD exports as sources, through libnbd (tapearc.nbdclient): a disk served by qemu-nbd,
qemu-storage-daemon or nbdkit, on this host (``nbd+unix:///EXPORT?socket=PATH``) or another
(``nbd://HOST[:PORT]/EXPORT``).

The size is the export's. Extents come from the ``base:allocation`` metadata context (an
extent flagged hole or zero reads as zeros and is not read); a server without it is all data.
Reads of a window are split into requests of :data:`REQUEST_SIZE` bytes, :data:`IN_FLIGHT` of
them sent at once (``aio_pread`` into persistent buffers), which keeps the server's disk busy
while the replies come back; a server that goes away, or stays silent for TAPEARC_NBD_TIMEOUT
seconds (a stopped server keeps its socket open), is a SourceError naming the URI and the byte
offset.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tapearc.errors import SourceError
from tapearc.nbdclient import (
    ALLOCATION,
    STATE_HOLE,
    STATE_ZERO,
    Deadline,
    await_command,
    canonical_uri,
    close,
    connect,
    disconnect,
    libnbd,
    nbd_error_text,
    new_handle,
)
from tapearc.sources.base import Extent

__all__ = ["IN_FLIGHT", "RECHECK_SECONDS", "REQUEST_SIZE", "NbdSource", "uri_volume_name"]

#: Bytes per read request and requests in flight (measured: docs/sources.md, the commit log).
REQUEST_SIZE = 512 * 1024
IN_FLIGHT = 8
#: Largest block status request (the protocol's count is 32-bit; servers cap it lower anyway).
MAX_STATUS = 1 << 30
#: Seconds a second connection is given to say the export's size at the end of a backup
#: (a local server answers in milliseconds; one serving one client at a time never does).
RECHECK_SECONDS = 2.0
MAX_SHORT_BUFFERS = 32  # short read buffers kept for reuse (at most 32 x REQUEST_SIZE bytes)


def uri_volume_name(uri: str) -> str:
    """A default volume name for an export: its export name's last part (``nbd://h/vm1`` ->
    ``vm1``), else the socket's file name, else the host."""
    parts = urlsplit(uri)
    export = unquote(parts.path.lstrip("/")).rstrip("/")
    if export:
        return export.rsplit("/", 1)[-1]
    sock = parse_qs(parts.query).get("socket", [""])[0]
    if sock:
        return sock.rstrip("/").rsplit("/", 1)[-1] or "nbd"
    return parts.hostname or "nbd"


def _size_now(nbd: Any, uri: str, timeout: float) -> int | None:
    """The size the export's server gives a new connection, or None when it does not answer
    within ``timeout`` seconds (never a hang) or fails."""
    h = new_handle(nbd)
    try:
        h.aio_connect_uri(canonical_uri(uri))
        deadline = time.monotonic() + timeout
        while h.aio_is_connecting():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            h.poll(max(1, int(left * 1000)))
        return int(h.get_size()) if h.aio_is_ready() else None
    except nbd.Error:
        return None
    finally:
        with contextlib.suppress(Exception):
            if h.aio_is_ready():
                h.shutdown()
        close(h)


def _error(text: str) -> SourceError:
    return SourceError(text)


@dataclass(frozen=True, slots=True)
class _Short:
    """A read buffer shorter than the request size, and a view of its bytes."""

    buffer: Any
    view: memoryview


class NbdSource:
    """An NBD export as a :class:`tapearc.sources.base.Source` (see the module's text)."""

    def __init__(self, uri: str, *, request_size: int = REQUEST_SIZE, in_flight: int = IN_FLIGHT) -> None:
        self.path = uri
        self.uri = uri
        self._nbd = libnbd(_error, uri)
        self.h: Any = connect(uri, _error, contexts=(ALLOCATION,))
        self._deadline = Deadline()  # how long the server may stay silent (TAPEARC_NBD_TIMEOUT)
        self._bytes_read = 0  # bytes asked of the server (read ahead and not used included)
        self._end = -1  # where the last read ended
        try:
            self.size = int(self.h.get_size())
            self._allocation = bool(self.h.can_meta_context(ALLOCATION))
            self.h.set_pread_initialize(False)  # the buffers are filled or the read fails
        except self._nbd.Error as e:
            self.close()
            raise SourceError(f"NBD export {uri}: {nbd_error_text(e)}") from None
        self.request_size = max(4096, request_size)
        self.in_flight = max(1, in_flight)
        self._buffers = [self._nbd.Buffer(self.request_size) for _ in range(self.in_flight)]
        self._views: list[memoryview | None] = [None] * self.in_flight
        self._free = list(range(self.in_flight))  # buffers not in a request
        # requests sent: (offset, length, cookie (None: read when due), buffer index, short buffer)
        self._ahead: deque[tuple[int, int, int | None, int, _Short | None]] = deque()
        self._short: dict[int, list[_Short]] = {}  # free short buffers by length
        self._short_count = 0
        self._todo: list[tuple[int, int]] = []  # requests planned, not sent yet
        self._advice: Iterator[tuple[int, int]] | None = None  # the reads that come next (advise)

    @property
    def bytes_read(self) -> int:
        """Bytes read from the export so far."""
        return self._bytes_read

    def _failed(self, e: BaseException, offset: int) -> SourceError:
        return SourceError(f"reading NBD export {self.uri} at byte {offset} failed: {nbd_error_text(e)}")

    def _wait(self, cookie: int, offset: int) -> None:
        """Wait for a request; a server silent for TAPEARC_NBD_TIMEOUT seconds is a SourceError
        (the connection is dropped: nothing more can be asked of it)."""
        if await_command(self.h, cookie, self._deadline):
            return
        h, self.h = self.h, None
        close(h)
        raise SourceError(  # (no hint: the backup's says the generation is incomplete)
            f"NBD export {self.uri} did not answer within {self._deadline.shown} (reading at byte {offset}; "
            "TAPEARC_NBD_TIMEOUT sets how long to wait)"
        )

    def _pread_now(self, n: int, offset: int) -> bytearray:
        """``n`` bytes at ``offset``, waited for (into a bytearray: libnbd 1.14 keeps every
        ``nbd.Buffer`` given to ``aio_pread`` alive)."""
        buf = bytearray(n)
        self._wait(self.h.aio_pread(buf, offset), offset)
        return buf

    def readinto_at(self, buf: memoryview, offset: int) -> int:
        """Fill ``buf`` from ``offset`` (short only at the end of the export)."""
        n = max(0, min(len(buf), self.size - offset))
        if n == 0:
            return 0
        if self.in_flight == 1:
            self._bytes_read += n
            try:
                buf[:n] = self._pread_now(n, offset)
            except self._nbd.Error as e:
                raise self._failed(e, offset) from None
        else:
            self._read_stream(buf, offset, n)
        self._end = offset + n
        return n

    def advise(self, reads: Iterable[tuple[int, int]]) -> None:
        """The reads that come next, ``(offset, length)`` in the order ``readinto_at`` will be
        called (a backup's plan: the changed blocks of an incremental, scattered over the
        volume). Requests for them are sent ahead, up to ``in_flight`` at a time, as for a
        sequential read: the server's disk works on the next reads while this one is handed on.
        Measured on a 2 GiB qcow2 with 1% of its 64 KiB blocks dirtied at random (327 reads,
        served by qemu-nbd --cache=none): see docs/performance.md, "Reads ahead of scattered blocks".
        A read that is not the next advised one drops the advice (reads go on as without it)."""
        self._advice = iter(reads)

    def _pieces(self, offset: int, n: int) -> list[tuple[int, int]]:
        return [(offset + o, min(self.request_size, n - o)) for o in range(0, n, self.request_size)]

    def _read_stream(self, buf: memoryview, offset: int, n: int) -> None:
        """Read ``[offset, offset + n)`` as requests of ``request_size`` bytes with ``in_flight``
        of them at the server at all times: while this window's replies are copied, the
        requests of the next window (taken to follow, of the same length) are already sent --
        only while the reads follow each other (this one starts where the last ended), so reads
        scattered over the volume (the changed blocks of an incremental) ask for nothing more. A
        read elsewhere first lets the requests sent ahead finish unused (they count as read)."""
        want = self._pieces(offset, n)
        if not self._ahead and not self._todo:
            self._take_advice()  # the first advised read is this one, if the advice holds
        planned = [(a[0], a[1]) for a in self._ahead] + self._todo
        k = min(len(planned), len(want))
        if planned[:k] != want[:k]:
            self._drain()
            self._advice = None  # the reads do not follow the advice (any more)
            planned = []
        if len(planned) < len(want):
            self._todo += want[len(planned) :]
        sequential = offset == self._end and self._advice is None
        if sequential and len(planned) <= len(want) and offset + n < self.size:  # the next window, ahead
            self._todo += self._pieces(offset + n, min(n, self.size - offset - n))
        for o, ln in want:
            self._send()
            po, pln, cookie, i, short = self._ahead.popleft()
            try:
                if cookie is None:  # a short piece, read now
                    buf[o - offset : o - offset + ln] = self._pread_now(pln, po)[:ln]
                else:
                    self._wait(cookie, po)
                    buf[o - offset : o - offset + ln] = (self._view(i) if short is None else short.view)[:ln]
            except self._nbd.Error as e:
                raise self._failed(e, po) from None
            finally:
                self._free.append(i)
                self._release(short)
        self._send()

    def _send(self) -> None:
        """Send the planned requests while buffers are free. A piece shorter than
        ``request_size`` (a window's or an extent's edge) goes into a short buffer of its length,
        kept for reuse: libnbd 1.14's Python ``aio_pread`` keeps every ``nbd.Buffer`` it is given
        alive (measured: 400 reads of 300 KB into new buffers left 115 MB behind; one buffer
        reused 2,000 times, nothing). Past MAX_SHORT_BUFFERS of them, a short piece is read
        synchronously when its turn comes."""
        while self._free and (self._todo or self._take_advice()):
            o, ln = self._todo.pop(0)
            i = self._free.pop()
            short = None if ln == self.request_size else self._short_buffer(ln)
            self._bytes_read += ln
            if ln != self.request_size and short is None:
                self._ahead.append((o, ln, None, i, None))
                continue
            try:
                cookie = self.h.aio_pread(self._buffers[i] if short is None else short.buffer, o)
            except self._nbd.Error as e:
                self._free.append(i)
                self._release(short)
                raise self._failed(e, o) from None
            self._ahead.append((o, ln, cookie, i, short))

    def _take_advice(self) -> bool:
        """Plan the requests of the next advised read; False when there is none."""
        if self._advice is None:
            return False
        for o, ln in self._advice:
            ln = min(ln, self.size - o)
            if ln > 0:
                self._todo += self._pieces(o, ln)
                return True
        self._advice = None
        return False

    def _short_buffer(self, ln: int) -> _Short | None:
        free = self._short.setdefault(ln, [])
        if free:
            return free.pop()
        if self._short_count >= MAX_SHORT_BUFFERS:
            return None
        self._short_count += 1
        b = self._nbd.Buffer(ln)
        return _Short(b, memoryview(b.to_buffer()))

    def _release(self, short: _Short | None) -> None:
        if short is not None:
            self._short[len(short.view)].append(short)

    def _drain(self) -> None:
        """Let the requests sent ahead finish; their bytes are not wanted."""
        self._todo = []
        while self._ahead:
            _o, _ln, cookie, i, short = self._ahead.popleft()
            try:
                if cookie is not None:
                    self._wait(cookie, _o)
            except self._nbd.Error:
                pass
            self._free.append(i)
            self._release(short)

    def _view(self, i: int) -> memoryview:
        v = self._views[i]
        if v is None:
            v = self._views[i] = memoryview(self._buffers[i].to_buffer())
        return v

    def extents(self, offset: int, length: int) -> Iterator[Extent]:
        """Extents of ``[offset, offset + length)`` from ``base:allocation`` (hole or zero: not
        data); all data when the server does not offer it."""
        end = offset + length
        if length <= 0:
            return
        if not self._allocation:
            yield Extent(offset, length, True)
            return
        pending: Extent | None = None
        pos = offset
        while pos < end:
            got = self._status(pos, min(end - pos, MAX_STATUS))
            for ln, data in got:
                ln = min(ln, end - pos)
                if ln <= 0:
                    break
                if pending is not None and pending.data == data:
                    pending = Extent(pending.offset, pending.length + ln, data)
                else:
                    if pending is not None:
                        yield pending
                    pending = Extent(pos, ln, data)
                pos += ln
        if pending is not None:
            yield pending

    def _status(self, pos: int, count: int) -> list[tuple[int, bool]]:
        """One block status request from ``pos``: (length, data) pairs, at least one byte."""
        if pos >= self.size:  # past the export's end: nothing to ask, reads come up short
            return [(count, True)]
        count = min(count, self.size - pos)
        out: list[tuple[int, bool]] = []

        def cb(context: str, start: int, entries: list[int], err: int) -> int:
            if context == ALLOCATION:
                for k in range(0, len(entries) - 1, 2):
                    out.append((int(entries[k]), not (int(entries[k + 1]) & (STATE_HOLE | STATE_ZERO))))
            return 0

        try:
            self._wait(self.h.aio_block_status(count, pos, cb), pos)
        except self._nbd.Error as e:
            raise SourceError(
                f"asking NBD export {self.uri} for its allocation at byte {pos} failed: {nbd_error_text(e)}"
            ) from None
        out = [(ln, d) for ln, d in out if ln > 0]
        return out or [(count, True)]

    def current_size(self) -> int | None:
        """The export's size now. NBD gives the size when a client connects, so a second
        connection is opened and asked (given :data:`RECHECK_SECONDS` to answer: a server that
        serves one client at a time, qemu-nbd's default ``--shared=1``, keeps it waiting); None
        once the server is gone or when the second connection gets no answer."""
        try:
            if self.h is None or self.h.aio_is_dead() or self.h.aio_is_closed():
                return None
        except self._nbd.Error:
            return None
        return _size_now(self._nbd, self.uri, RECHECK_SECONDS)

    def close(self) -> None:
        h, self.h = self.h, None
        if h is not None:
            disconnect(h, self._deadline)

    def __enter__(self) -> NbdSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
