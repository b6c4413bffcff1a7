"""A qemu dirty bitmap as a change map: the NBD export's ``qemu:dirty-bitmap:NAME`` metadata
context (``qemu-nbd -B NAME``, or a QEMU NBD server exporting the bitmap).

The map has its own libnbd connection to the export (asking for that context only) and asks
for block status piece by piece (at most 2 GiB per request) as the backup moves forward; the
answers are kept as changed runs (tapearc.sources.changes.ChangedRuns: 16 bytes per dirty run),
never per block. A dirty extent is changed; a clean one is vouched unchanged since the bitmap
was started.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tapearc import nbdclient
from tapearc.errors import SourceError
from tapearc.sources.changes import ChangedRuns, clipped

#: The largest block-status request (bytes): NBD block status counts are 32-bit.
MAX_STATUS = 1 << 31


def bitmap_context(name: str) -> str:
    return nbdclient.DIRTY_BITMAP_PREFIX + name


class DirtyBitmapMap:
    """The dirty bitmap ``bitmap`` of the NBD export ``uri``; open with :func:`open_dirty_bitmap`."""

    def __init__(self, uri: str, bitmap: str, handle: Any) -> None:
        self.name = f"dirty-bitmap:{bitmap}"
        self.uri = uri
        self.bitmap = bitmap
        self.context = bitmap_context(bitmap)
        self.h = handle
        self.size = int(handle.get_size())
        self.runs = ChangedRuns()
        self.known = 0  # block status is known for [0, known)
        self.requests = 0

    def changed(self, offset: int, length: int) -> Iterator[tuple[int, int, bool]]:
        end = min(offset + length, self.size)
        while self.known < end:
            self._fetch(self.known, min(MAX_STATUS, self.size - self.known))
        return clipped(self.runs, offset, length, self.size)

    def _fetch(self, offset: int, count: int) -> None:
        """Ask for the block status of ``[offset, offset + count)``; the server may answer for a
        shorter range (never none)."""
        got: list[tuple[int, int, bool]] = []

        def extent(ctx: str, start: int, entries: list[int], err: Any) -> int:
            if ctx == self.context:
                pos = start
                for i in range(0, len(entries) - 1, 2):
                    n = int(entries[i])
                    got.append((pos, n, bool(int(entries[i + 1]) & nbdclient.STATE_DIRTY)))
                    pos += n
            return 0

        nbd = nbdclient.libnbd(SourceError, self.uri)
        try:
            self.h.block_status(count, offset, extent)
        except nbd.Error as e:
            raise SourceError(
                f"NBD export {self.uri}: block status of dirty bitmap {self.bitmap} at byte {offset}: "
                f"{nbdclient.nbd_error_text(e)}"
            ) from None
        self.requests += 1
        pos = offset
        for s, n, dirty in got:
            if s != pos or n <= 0:
                break
            stop = min(s + n, offset + count)
            if dirty:
                self.runs.add(s, stop)
            pos = stop
            if pos >= offset + count:
                break
        if pos <= offset:
            raise SourceError(f"NBD export {self.uri}: no block status for dirty bitmap {self.bitmap} at byte {offset}")
        self.known = pos

    def close(self) -> None:
        if self.h is not None:
            nbdclient.close(self.h)
            self.h = None


def open_dirty_bitmap(uri: str, bitmap: str) -> DirtyBitmapMap | None:
    """The dirty bitmap ``bitmap`` of the export ``uri``, or None when the export does not offer
    it (not exported with ``-B NAME``, or no such bitmap). An export that cannot be reached is a
    SourceError naming it."""
    nbd = nbdclient.libnbd(SourceError, uri)
    h = nbdclient.connect(uri, SourceError, contexts=(bitmap_context(bitmap),))
    try:
        offered = bool(h.can_meta_context(bitmap_context(bitmap)))
    except nbd.Error:  # the server negotiated no metadata contexts at all
        offered = False
    if not offered:
        nbdclient.close(h)
        return None
    return DirtyBitmapMap(uri, bitmap, h)
