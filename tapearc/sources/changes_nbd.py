"""A qemu dirty bitmap as a change map: the NBD export's ``qemu:dirty-bitmap:NAME`` metadata
context (``qemu-nbd -B NAME``, or a QEMU NBD server exporting the bitmap).

The bitmap is read whole before the backup reads the disk, over a libnbd connection of its own
(asking for that context only) that is closed again at once -- qemu-nbd serves one client at a
time by default, so it must not stay open beside the source's -- in block-status requests of at
most 2 GiB; the answers are kept as changed runs (tapearc.sources.changes.ChangedRuns: 16 bytes
per dirty run), never per block. A dirty extent is changed; a clean one is vouched unchanged
since the bitmap was started.
"""

from __future__ import annotations

from typing import Any

from tapearc import nbdclient
from tapearc.errors import SourceError
from tapearc.sources.changes import ChangedRuns, RunsMap

#: The largest block-status request (bytes): NBD block status counts are 32-bit.
MAX_STATUS = 1 << 31


def bitmap_context(name: str) -> str:
    return nbdclient.DIRTY_BITMAP_PREFIX + name


class DirtyBitmapMap(RunsMap):
    """The dirty extents of bitmap ``bitmap`` of an export of ``size`` bytes, as changed runs
    (read by :func:`read_dirty_bitmap`)."""

    def __init__(self, bitmap: str, size: int, runs: ChangedRuns, requests: int) -> None:
        self.name = f"dirty-bitmap:{bitmap}"
        self.bitmap = bitmap
        self.size = size
        self.runs = runs
        self.requests = requests  # block-status requests it took


def read_dirty_bitmap(uri: str, bitmap: str) -> DirtyBitmapMap | None:
    """The dirty bitmap ``bitmap`` of the export ``uri``, read whole over a connection of its
    own (closed before this returns), or None when the export does not offer it (not exported
    with ``-B NAME``, or no such bitmap). An export that cannot be reached is a SourceError
    naming it."""
    nbd = nbdclient.libnbd(SourceError, uri)
    context = bitmap_context(bitmap)
    h = nbdclient.connect(uri, SourceError, contexts=(context,))
    try:
        try:
            offered = bool(h.can_meta_context(context))
        except nbd.Error:  # the server negotiated no metadata contexts at all
            offered = False
        if not offered:
            return None
        size = int(h.get_size())
        runs = ChangedRuns()
        known = requests = 0
        while known < size:
            known = _fetch(h, nbd, uri, bitmap, runs, known, min(MAX_STATUS, size - known))
            requests += 1
        return DirtyBitmapMap(bitmap, size, runs, requests)
    finally:
        nbdclient.close(h)


def _fetch(h: Any, nbd: Any, uri: str, bitmap: str, runs: ChangedRuns, offset: int, count: int) -> int:
    """Ask for the block status of ``[offset, offset + count)`` and add its dirty extents to
    ``runs``; the server may answer for a shorter range (never none). Returns where the answer
    ends."""
    context = bitmap_context(bitmap)
    got: list[tuple[int, int, bool]] = []

    def extent(ctx: str, start: int, entries: list[int], err: Any) -> int:
        if ctx == context:
            pos = start
            for i in range(0, len(entries) - 1, 2):
                n = int(entries[i])
                got.append((pos, n, bool(int(entries[i + 1]) & nbdclient.STATE_DIRTY)))
                pos += n
        return 0

    deadline = nbdclient.Deadline()
    try:
        answered = nbdclient.await_command(h, h.aio_block_status(count, offset, extent), deadline)
    except nbd.Error as e:
        raise SourceError(
            f"NBD export {uri}: block status of dirty bitmap {bitmap} at byte {offset}: {nbdclient.nbd_error_text(e)}"
        ) from None
    if not answered:
        raise SourceError(
            f"NBD export {uri} did not answer within {deadline.shown} (block status of dirty bitmap {bitmap} "
            f"at byte {offset}; TAPEARC_NBD_TIMEOUT sets how long to wait)"
        )
    pos, end = offset, offset + count
    for s, n, dirty in got:
        if s != pos or n <= 0:
            break
        stop = min(s + n, end)
        if dirty:
            runs.add(s, stop)
        pos = stop
        if pos >= end:
            break
    if pos <= offset:
        raise SourceError(f"NBD export {uri}: no block status for dirty bitmap {bitmap} at byte {offset}")
    return pos
