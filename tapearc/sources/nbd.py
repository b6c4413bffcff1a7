"""NBD exports as sources, through libnbd (tapearc.nbdclient): a disk served by qemu-nbd,
qemu-storage-daemon or nbdkit, on this host (``nbd+unix:///EXPORT?socket=PATH``) or another
(``nbd://HOST[:PORT]/EXPORT``).

The size is the export's. Extents come from the ``base:allocation`` metadata context (an
extent flagged hole or zero reads as zeros and is not read); a server without it is all data.
Reads of a window are split into requests of :data:`REQUEST_SIZE` bytes, :data:`IN_FLIGHT` of
them sent at once (``aio_pread`` into persistent buffers), which keeps the server's disk busy
while the replies come back; a server that goes away is a SourceError naming the URI and the
byte offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tapearc.errors import SourceError
from tapearc.nbdclient import ALLOCATION, STATE_HOLE, STATE_ZERO, close_handle, connect, libnbd, nbd_error_text
from tapearc.sources.base import Extent

__all__ = ["IN_FLIGHT", "REQUEST_SIZE", "NbdSource", "uri_volume_name"]

#: Bytes per read request and requests in flight (measured: docs/sources.md, the commit log).
REQUEST_SIZE = 1 << 20
IN_FLIGHT = 4
#: Largest block status request (the protocol's count is 32-bit; servers cap it lower anyway).
MAX_STATUS = 1 << 30


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


def _error(text: str) -> SourceError:
    return SourceError(text)


class NbdSource:
    """An NBD export as a :class:`tapearc.sources.base.Source` (see the module's text)."""

    def __init__(self, uri: str, *, request_size: int = REQUEST_SIZE, in_flight: int = IN_FLIGHT) -> None:
        self.path = uri
        self.uri = uri
        self._nbd = libnbd(_error, uri)
        self.h: Any = connect(uri, _error, contexts=(ALLOCATION,))
        self._bytes_read = 0
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

    @property
    def bytes_read(self) -> int:
        """Bytes read from the export so far."""
        return self._bytes_read

    def _failed(self, e: BaseException, offset: int) -> SourceError:
        return SourceError(f"reading NBD export {self.uri} at byte {offset} failed: {nbd_error_text(e)}")

    def readinto_at(self, buf: memoryview, offset: int) -> int:
        """Fill ``buf`` from ``offset`` (short only at the end of the export)."""
        n = max(0, min(len(buf), self.size - offset))
        if n == 0:
            return 0
        if self.in_flight == 1 or n <= self.request_size:
            try:
                buf[:n] = self.h.pread(n, offset)
            except self._nbd.Error as e:
                raise self._failed(e, offset) from None
        else:
            self._read_parallel(buf, offset, n)
        self._bytes_read += n
        return n

    def _view(self, i: int) -> memoryview:
        v = self._views[i]
        if v is None:
            v = self._views[i] = memoryview(self._buffers[i].to_buffer())
        return v

    def _read_parallel(self, buf: memoryview, offset: int, n: int) -> None:
        """Requests of ``request_size`` bytes, up to ``in_flight`` at once, each copied into
        ``buf`` as it completes (in order)."""
        h, rs = self.h, self.request_size
        pieces = [(o, min(rs, n - o)) for o in range(0, n, rs)]
        pending: list[tuple[int, int, int, int, Any]] = []  # (cookie, buffer index, piece offset, length, buffer)
        nxt = 0
        try:
            while nxt < len(pieces) or pending:
                while nxt < len(pieces) and len(pending) < self.in_flight:
                    used = {p[1] for p in pending}
                    i = next(k for k in range(self.in_flight) if k not in used)
                    o, ln = pieces[nxt]
                    b = self._buffers[i] if ln == rs else self._nbd.Buffer(ln)
                    cookie = h.aio_pread(b, offset + o, None, 0)
                    pending.append((cookie, i if ln == rs else -1, o, ln, b))
                    nxt += 1
                cookie, i, o, ln, b = pending[0]
                while not h.aio_command_completed(cookie):
                    h.poll(-1)
                pending.pop(0)
                src = self._view(i) if i >= 0 else memoryview(b.to_buffer())
                buf[o : o + ln] = src[:ln]
        except self._nbd.Error as e:
            at = offset + (pending[0][2] if pending else 0)
            raise self._failed(e, at) from None

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
            self.h.block_status(count, pos, cb)
        except self._nbd.Error as e:
            raise SourceError(
                f"asking NBD export {self.uri} for its allocation at byte {pos} failed: {nbd_error_text(e)}"
            ) from None
        out = [(ln, d) for ln, d in out if ln > 0]
        return out or [(count, True)]

    def current_size(self) -> int | None:
        """The export's size (NBD gives it at connection time; None once the server is gone)."""
        try:
            if self.h is None or self.h.aio_is_dead() or self.h.aio_is_closed():
                return None
        except self._nbd.Error:
            return None
        return self.size

    def close(self) -> None:
        h, self.h = self.h, None
        if h is not None:
            try:
                h.shutdown()
            except Exception:  # the server is gone: nothing to shut down
                pass
            close_handle(h)

    def __enter__(self) -> NbdSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
