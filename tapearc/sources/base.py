"""The source interface: what a backup needs of a volume it reads.

Every source (a regular file, a block device, an NBD export) gives its size, reads at an
offset, and reports its *extents*: which byte ranges hold data and which read as zeros without
being read (a hole of a sparse file, an unallocated range of a qcow2 disk, a zeroed range the
NBD server knows of). A source that knows nothing reports everything as data; an extent marked
data may still hold zeros (the classifier finds them); an extent marked zero must read as zeros.
A contract test suite (tests/sources/) runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Extent:
    """Bytes ``[offset, offset + length)`` of a source: ``data`` (must be read) or not (reads as
    zeros: a hole, unallocated, known zero)."""

    offset: int
    length: int
    data: bool


class Source(Protocol):
    """A volume a backup reads (see the module's text)."""

    path: str  # as the user gave it: a path or an NBD URI
    size: int  # bytes, taken once when opened

    @property
    def bytes_read(self) -> int:
        """Bytes read from the source so far (for results and benchmarks)."""
        ...

    def readinto_at(self, buf: memoryview, offset: int) -> int:
        """Fill ``buf`` from ``offset``; the bytes read (short only at the end of the volume).
        A read error is a SourceError naming the source and the byte offset."""
        ...

    def extents(self, offset: int, length: int) -> Iterator[Extent]:
        """Extents covering ``[offset, offset + length)`` exactly, in order, none empty."""
        ...

    def advise(self, reads: Iterable[tuple[int, int]]) -> None:
        """The reads that will follow, ``(offset, length)`` in the order of the coming
        ``readinto_at`` calls (lazily produced: a source takes only as many as it reads ahead).
        A hint: a source that gains nothing from it ignores it; reads that do not follow it
        still return the right bytes."""
        ...

    def current_size(self) -> int | None:
        """The size now (None when it cannot be had); a backup warns when it changed."""
        ...

    def close(self) -> None: ...


class ChangeMap(Protocol):
    """What a change tracker (a qemu dirty bitmap, a changed-block list) says changed since the
    base generation of an incremental: byte ranges changed or not. A range not changed is
    vouched for by the tracker (the backup neither reads nor hashes it, unless asked to check);
    a changed range is read and classified as usual (it may turn out unchanged after all)."""

    name: str  # what the catalog records of it, e.g. "dirty-bitmap:NAME"

    @property
    def changed_bytes(self) -> int:
        """Bytes it calls changed in all."""
        ...

    @property
    def changed_runs(self) -> int:
        """Runs of changed bytes it holds (a backup of short runs, scattered blocks, reads
        without threads: engine.backup._threads_for)."""
        ...

    def changed(self, offset: int, length: int) -> Iterator[tuple[int, int, bool]]:
        """Ranges ``(start, length, changed)`` covering ``[offset, offset + length)`` exactly, in
        order, none empty."""
        ...
