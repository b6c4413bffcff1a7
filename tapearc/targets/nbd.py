"""Restore onto an NBD export: a qcow2 (or any image) served by qemu-nbd or qemu-storage-daemon,
a remote disk served by nbdkit, named by its URI (``nbd+unix:///EXPORT?socket=PATH``,
``nbd://HOST[:PORT]/EXPORT``).

The rules are a block device's (engine/volume.py RestoreTarget):

- an export smaller than the volume is refused (TargetTooSmallError) before anything is written;
  a larger one gets the volume's bytes at its start and the rest is not touched (``tail_note``
  says so when the rest holds data: the restore's result warns);
- a read-only export is refused (TargetError);
- an export that holds data (NBD block status, ``base:allocation``: somewhere not reading as
  zeros) is refused unless the caller forces it (restore first reads it through
  :meth:`NbdTarget.next_data` and :meth:`NbdTarget.read_into` to find which generation of the
  volume it holds, as of a block device);
- data goes as NBD writes (at most 32 MiB each, several in flight), zero runs as NBD WRITE_ZEROES
  that may punch holes (a qcow2 deallocates), or as written zeros where the export cannot zero;
  an export that block status says reads as zeros everywhere gets no zero requests at all (one
  without block status does: only its first MiB was looked at);
- the server going away, or staying silent for TAPEARC_NBD_TIMEOUT seconds (a stopped server
  keeps its socket open), is a TargetError naming the URI and the byte offset; commit flushes
  (NBD FLUSH, when the server offers it) and its failure is a TargetError too.

One connection is used from the first look to the last flush: a ``qemu-nbd`` started without
``--persistent`` serves one client and exits when it leaves.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import Any

from tapearc.errors import TargetError, TargetTooSmallError
from tapearc.format import is_zero
from tapearc.nbdclient import (
    ALLOCATION,
    STATE_ZERO,
    Deadline,
    await_command,
    close,
    connect,
    disconnect,
    error_number,
    libnbd,
    nbd_error_text,
)

MAX_REQUEST = 32 * 1024 * 1024  # bytes of one NBD write (qemu-nbd's limit)
ZERO_REQUEST = 1 << 30  # bytes of one NBD WRITE_ZEROES (under the protocol's 4 GiB)
STATUS_REQUEST = 1 << 31  # bytes asked of one NBD block status
FLUSH_WAIT = 10  # a flush may be silent for 10 times TAPEARC_NBD_TIMEOUT (gigabytes of a write-back cache)
TAIL_READ = 2 * 1024 * 1024  # bytes read past the volume's end (qcow2's largest cluster) for tail_note
ZERO_FILL = 4 * 1024 * 1024  # bytes of zeros written at a time where the export cannot zero
# NBD writes in flight at once, and their bytes at most (memory: peak RSS of a 1 GiB restore onto
# qemu-nbd 100 MB, 73 MB one at a time). Measured writing 1 GiB in 4 MiB writes
# to nbdkit (memory plugin) over TCP: 2.18 s one at a time, 1.51 s with 4 in flight; with 5 ms
# of latency per write (nbdkit's delay filter, a remote disk): 3.5-3.8 s, 2.0-2.2 s with 4,
# 1.6-1.8 s with 8.
IN_FLIGHT = 8
IN_FLIGHT_BYTES = 32 * 1024 * 1024
UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL)


class NbdTarget:
    """An NBD export as a restore target (the interface of engine/volume.py's RestoreTarget).

    ``data_at`` is the first byte where the export held data when it was opened (None: it read
    as zeros everywhere); with data and without ``force``, TargetError."""

    is_block_device = False

    def __init__(self, uri: str, volume_size: int, *, force: bool) -> None:
        self.path = uri
        self.volume_size = volume_size
        self.h: Any = connect(uri, TargetError, contexts=(ALLOCATION,), writable=True)
        self._nbd = libnbd(TargetError, uri)
        self._pending: deque[tuple[int, int, memoryview]] = deque()  # (cookie, offset, buffer kept alive)
        self._pending_bytes = 0
        self._data_run = (0, 0)  # [start, end) of bytes known to hold data (next_data)
        self._deadline = Deadline()  # how long the server may stay silent (TAPEARC_NBD_TIMEOUT)
        try:
            self.size = int(self._call("reading the size of", 0, self.h.get_size))
            if self.size < volume_size:
                raise TargetTooSmallError(
                    f"NBD export {uri} holds {self.size} bytes, the volume needs {volume_size}",
                    hint="restore to a larger export (qemu-img resize the image) or to a file",
                )
            self.align = max(1, int(self.h.get_block_size(self._nbd.SIZE_MINIMUM) or 1))
            self.can_zero = bool(self.h.can_zero())
            self.allocation = bool(self.h.can_meta_context(ALLOCATION))
            self.data_at = self._first_data()
            self.tail_note = self._tail_note()
            if self.data_at is not None and not force:
                raise TargetError(
                    f"NBD export {uri} is not empty (it holds data at byte {self.data_at})",
                    hint="add --force to overwrite it",
                )
        except BaseException:
            self._close()
            raise

    # -- looking before writing ---------------------------------------------------------------

    def _first_data(self) -> int | None:
        """The first byte of the export that does not read as zeros, by NBD block status
        (base:allocation); a server without it: its first MiB is read, as of a block device."""
        if not self.allocation:
            probe = self._pread("reading", min(self.size, 1 << 20), 0)
            return None if bytes(probe).count(0) == len(probe) else 0
        extents: list[tuple[int, int]] = []

        def got(context: str, start: int, entries: list[int], err: Any) -> int:
            if context == ALLOCATION:
                extents.extend(zip(entries[0::2], entries[1::2], strict=False))
            return 0

        offset = 0
        while offset < self.size:
            extents.clear()
            count = min(self.size - offset, STATUS_REQUEST)
            self._sync("reading the allocation of", offset, self.h.aio_block_status, count, offset, got)
            if not extents:
                return offset  # the server said nothing: assume data
            before = offset
            for length, flags in extents:
                if not flags & STATE_ZERO:
                    return offset
                offset += length
                if offset >= self.size:
                    break
            if offset == before:
                return offset  # extents of no length: assume data
        return None

    def _tail_note(self) -> str | None:
        """What to say of the export's bytes past the volume, which a restore leaves as they are
        (a block device's rule): None when there are none or they read as zeros."""
        v, size = self.volume_size, self.size
        if size <= v or (self.data_at is None and self.allocation) or not self._tail_holds_data():
            return None
        return (
            f"NBD export {self.path} holds {size} bytes, the volume {v}: bytes {v}-{size - 1} were left as "
            "they were: they may hold data from before"
            + ("" if self.allocation else " (no block status: not looked at)")
        )

    def _tail_holds_data(self) -> bool:
        """Whether bytes past the volume may be data, by block status; the first TAIL_READ bytes
        past it are read where block status says data (an image's cluster holding the volume's
        end is allocated, its zeros past the end too). Without block status: True."""
        if not self.allocation:
            return True
        start = min(self.size, -(-self.volume_size // self.align) * self.align)  # block status: aligned
        near = min(self.size, start + TAIL_READ)
        at = self.next_data(start, near)
        if at < near and not is_zero(self._pread("reading", near - at, at), 0, near - at):
            return True
        return near < self.size and self.next_data(near, self.size) < self.size

    def next_data(self, offset: int, length: int) -> int:
        """The first byte at or after ``offset`` (below ``length``) that may hold data, by NBD
        block status: holes and zero extents are skipped; ``offset`` without base:allocation.
        (Generation detection reads the export through this and :meth:`read_into`.)"""
        if self._data_run[0] <= offset < self._data_run[1]:
            return offset
        if not self.allocation:
            return offset
        extents: list[tuple[int, int]] = []

        def got(context: str, start: int, entries: list[int], err: Any) -> int:
            if context == ALLOCATION:
                extents.extend(zip(entries[0::2], entries[1::2], strict=False))
            return 0

        while offset < length:
            extents.clear()
            count = min(length - offset, STATUS_REQUEST)
            self._sync("reading the allocation of", offset, self.h.aio_block_status, count, offset, got)
            if not extents or not extents[0][0]:
                return offset  # the server said nothing useful: assume data
            for n, flags in extents:
                if not flags & STATE_ZERO:
                    self._data_run = (offset, offset + n)
                    return offset
                offset += n
                if offset >= length:
                    break
        return length

    def read_into(self, view: memoryview, offset: int) -> int:
        """Read ``len(view)`` bytes at ``offset`` (requests of at most 32 MiB); the bytes read."""
        done = 0
        while done < len(view):
            n = min(MAX_REQUEST, len(view) - done)
            self._sync("reading", offset + done, self.h.aio_pread, view[done : done + n], offset + done)
            done += n
        return done

    @property
    def zero_needs_writing(self) -> bool:
        """False for an export that block status says read as zeros everywhere (a new qcow2, a
        sparse file). A server without block status was probed in its first MiB only: whatever
        follows may be old data, so zeros are sent there too."""
        return self.data_at is not None or not self.allocation

    # -- writing ------------------------------------------------------------------------------

    def _call(self, what: str, offset: int, fn: Any, *args: Any) -> Any:
        """``fn(*args)``; a libnbd error becomes a TargetError naming the URI and offset."""
        try:
            return fn(*args)
        except self._nbd.Error as e:
            raise self._error(what, offset, e) from None

    def _sync(self, what: str, offset: int, aio_fn: Any, *args: Any, deadline: Deadline | None = None) -> None:
        """One NBD command (``aio_fn(*args)``, a libnbd ``aio_*`` call) sent and waited for: its
        failure, or a server silent for TAPEARC_NBD_TIMEOUT seconds (``deadline``), is a TargetError."""
        self._await(self._call(what, offset, aio_fn, *args), what, offset, deadline)

    def _await(self, cookie: int, what: str, offset: int, deadline: Deadline | None = None) -> None:
        deadline = deadline or self._deadline
        try:
            answered = await_command(self.h, cookie, deadline)
        except self._nbd.Error as e:
            raise self._error(what, offset, e) from None
        if not answered:
            raise self._silent(what, offset, deadline)

    def _silent(self, what: str, offset: int, deadline: Deadline | None = None) -> TargetError:
        """The error of a server that stopped answering; the connection is dropped (a polite
        disconnect would wait for it too)."""
        self._close()
        return TargetError(
            f"NBD export {self.path} did not answer within {(deadline or self._deadline).shown} ({what} at byte {offset})",
            hint="is its server stopped or overloaded? TAPEARC_NBD_TIMEOUT sets how long to wait",
        )

    def _pread(self, what: str, length: int, offset: int) -> bytearray:
        """``length`` bytes at ``offset``, read into a bytearray: libnbd 1.14's ``aio_pread``
        keeps every ``nbd.Buffer`` it is given alive for ever (measured: 100 reads of 4 MiB into
        new ones, RSS 430 MB; into bytearrays, 30 MB)."""
        buf = bytearray(length)
        self._sync(what, offset, self.h.aio_pread, buf, offset)
        return buf

    def _error(self, what: str, offset: int, e: Any) -> TargetError:
        if error_number(e) == errno.ENOSPC:
            return TargetTooSmallError(
                f"NBD export {self.path} ran out of space at byte {offset}",
                hint="free space where the export's image lives or restore elsewhere",
            )
        return TargetError(f"{what} NBD export {self.path} at byte {offset} failed: {nbd_error_text(e)}")

    def _edges(self, offset: int, end: int) -> tuple[int, int]:
        """(lo, hi): [offset, end) is a head [offset, lo) and a tail [hi, end) that are parts of
        one block of the export's minimum block size each, and [lo, hi) of whole blocks."""
        a = self.align
        lo = min(end, -(-offset // a) * a)
        return lo, max(lo, end - end % a)

    def write_at(self, data: bytes | memoryview, offset: int) -> None:
        """Write ``data`` at ``offset`` (requests of at most 32 MiB, up to IN_FLIGHT at once;
        the last ones may still be in flight when this returns: commit waits for them)."""
        view = memoryview(data).cast("B")
        end = offset + len(view)
        lo, hi = self._edges(offset, end)
        if offset < lo:
            self._patch(view[: lo - offset], offset)
        if lo < hi:
            middle = view[lo - offset : hi - offset]
            if not isinstance(middle.obj, bytes):  # bytes cannot change under a write in flight;
                middle = memoryview(bytes(middle))  # a caller may reuse other buffers when we return
            for done in range(0, len(middle), MAX_REQUEST):
                self._submit(middle[done : done + MAX_REQUEST], lo + done)
        if hi < end:
            self._patch(view[hi - offset :], hi)

    def _submit(self, piece: memoryview, offset: int) -> None:
        while self._pending and (len(self._pending) >= IN_FLIGHT or self._pending_bytes + len(piece) > IN_FLIGHT_BYTES):
            self._wait_one()
        cookie = self._call("writing", offset, self.h.aio_pwrite, piece, offset)
        self._pending.append((cookie, offset, piece))
        self._pending_bytes += len(piece)

    def _wait_one(self) -> None:
        cookie, offset, _ = self._pending[0]
        try:
            self._await(cookie, "writing", offset)
        except TargetError:
            self._pending.clear()
            self._pending_bytes = 0
            raise
        self._pending_bytes -= len(self._pending.popleft()[2])

    def _drain(self) -> None:
        while self._pending:
            self._wait_one()

    def _patch(self, piece: memoryview, offset: int) -> None:
        """Write ``piece``, part of one block of the export's minimum block size: the block is
        read, patched and written back whole (after the writes in flight)."""
        self._drain()
        lo = offset - offset % self.align
        hi = min(lo + self.align, self.size)
        buf = self._pread("reading", hi - lo, lo)
        buf[offset - lo : offset - lo + len(piece)] = piece
        self._sync("writing", lo, self.h.aio_pwrite, buf, lo)

    def zero_range(self, offset: int, length: int) -> None:
        """Make ``length`` bytes at ``offset`` read as zeros: NBD WRITE_ZEROES, which may punch
        holes (not on an export that read as zeros everywhere: nothing to do there); zeros are
        written where the export cannot zero, and for parts of its minimum block size."""
        if length <= 0 or not self.zero_needs_writing:
            return
        self._drain()
        end = offset + length
        lo, hi = self._edges(offset, end)
        self._write_zeros(offset, lo - offset)
        pos = lo
        while pos < hi:
            n = min(ZERO_REQUEST, hi - pos)
            if not self._zero(pos, n):
                self._write_zeros(pos, hi - pos)
                break
            pos += n
        self._write_zeros(hi, end - hi)

    def _zero(self, offset: int, length: int) -> bool:
        """One WRITE_ZEROES; False when the export cannot zero (then zeros are written)."""
        if not self.can_zero:
            return False
        try:
            answered = await_command(self.h, self.h.aio_zero(length, offset), self._deadline)
        except self._nbd.Error as e:
            if error_number(e) in UNSUPPORTED:
                self.can_zero = False
                return False
            raise self._error("zeroing", offset, e) from None
        if not answered:
            raise self._silent("zeroing", offset)
        return True

    def _write_zeros(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        zeros = bytes(min(length, ZERO_FILL))
        end = offset + length
        while offset < end:
            n = min(len(zeros), end - offset)
            self.write_at(memoryview(zeros)[:n], offset)
            offset += n
        self._drain()

    def commit(self) -> None:
        """Wait for the writes in flight, flush the export to stable storage, disconnect."""
        self._drain()
        if self.h.can_flush():  # (a server's cache written out may take a while: FLUSH_WAIT times the wait)
            self._sync("flushing", 0, self.h.aio_flush, deadline=Deadline(FLUSH_WAIT))
        self._close(graceful=True)

    def abort(self) -> None:
        """Give up: disconnect (what was written stays written, as on a block device)."""
        self._close(graceful=True)

    def _close(self, graceful: bool = False) -> None:
        h, self.h = self.h, None
        if h is None:
            return
        self._pending.clear()
        self._pending_bytes = 0
        if graceful:
            disconnect(h, self._deadline)  # NBD_CMD_DISC, the server's close waited for (not for ever)
        else:
            close(h)
