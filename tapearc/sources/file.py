"""Regular files (disk images, sparse or not) and block devices as sources.

A regular file reports its holes (``lseek`` SEEK_DATA/SEEK_HOLE): a backup neither reads nor
hashes them. A block device, and a file system without SEEK_DATA, reports everything as data.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from collections.abc import Iterable, Iterator

from tapearc.buffers import buffer_address, direct_io_enabled
from tapearc.errors import SourceError
from tapearc.sources.base import Extent

__all__ = ["DIRECT_ALIGN", "SourceVolume", "blockdev_size"]

BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t) on Linux (x86_64, arm64)
DIRECT_ALIGN = 4096  # O_DIRECT alignment used for source reads (covers 512- and 4096-byte sectors)


def blockdev_size(fd: int) -> int:
    """The size in bytes of the block device open as ``fd`` (BLKGETSIZE64)."""
    buf = bytearray(8)
    fcntl.ioctl(fd, BLKGETSIZE64, buf, True)
    return int(struct.unpack("=Q", buf)[0])


def _not_a_volume(path: str, mode: int) -> SourceError:
    what = "a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else None
    if what is None:
        return SourceError(f"source {path} is neither a regular file nor a block device")
    return SourceError(f"source {path} is {what}; tapearc backs up block volumes (a disk image or block device)")


class SourceVolume:
    """A volume to back up: a regular file (a disk image) or a block device, read sequentially
    (:class:`tapearc.sources.base.Source`).

    The size is taken once, at open; a backup covers exactly that many bytes. A source that
    changes while it is read:

    * shrinks below a range not yet read: the read comes up short and the backup fails with a
      SourceError naming the offset (the generation is closed on the medium as incomplete);
    * grows (or shrinks after its last byte was read): :meth:`current_size` tells at the end;
      the backup completes for the size it started with and warns that the bytes after it were
      not backed up (a snapshot is the way to a consistent copy of a live volume);
    * is unlinked or renamed while open: the open descriptor keeps the file readable on Linux,
      so the backup completes with the contents as they were;
    * is a device that goes away (a pulled disk, a removed LV): reads fail with EIO, ENODEV or
      ENXIO, a SourceError naming the byte offset.

    FIFOs, character devices and sockets are refused: a backup needs a size and random access.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:  # refuse a FIFO or character device before opening it (opening /dev/st0 rewinds a tape)
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0  # os.open below says why
        if mode and not (stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode)):
            raise _not_a_volume(path, mode)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SourceError(f"source {path} does not exist", hint="check the path of the volume to back up") from None
        except IsADirectoryError:
            raise SourceError(
                f"source {path} is a directory; tapearc backs up block volumes (a disk image or block device)"
            ) from None
        except OSError as e:
            raise SourceError(f"cannot open source {path}: {e.strerror}") from None
        try:
            st = os.fstat(self.fd)
            if stat.S_ISBLK(st.st_mode):
                self.size = blockdev_size(self.fd)
                self.is_block_device = True
            elif stat.S_ISREG(st.st_mode):
                self.size = st.st_size
                self.is_block_device = False
            elif stat.S_ISDIR(st.st_mode):
                raise SourceError(
                    f"source {path} is a directory; tapearc backs up block volumes (a disk image or block device)"
                )
            else:
                raise _not_a_volume(path, st.st_mode)
            if self.fd >= 0:  # back to blocking reads (O_NONBLOCK was only for the open)
                fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(self.fd)
            raise
        if not self.is_block_device:
            try:
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:
                pass
        # A second descriptor with O_DIRECT for the bulk reads: the disk's data goes straight
        # into our (page-aligned) buffers, not through the page cache. Measured here on a 1 GiB
        # volume, cold: 0.04 s of system CPU instead of 2.08 s, 0.65 s instead of 2.16 s of wall
        # time; and a backup does not push the machine's working set out of the cache.
        # TAPEARC_DIRECT_IO=0 turns it off; file systems without O_DIRECT (tmpfs) fall back.
        self.dfd = -1
        self._bytes_read = 0
        self._seek_holes = hasattr(os, "SEEK_DATA")
        if direct_io_enabled():
            try:
                self.dfd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
            except (OSError, AttributeError):
                self.dfd = -1

    def _direct_ok(self, buf: memoryview, offset: int) -> bool:
        if self.dfd < 0 or offset % DIRECT_ALIGN or len(buf) % DIRECT_ALIGN or buf.readonly:
            return False
        return buffer_address(buf) % DIRECT_ALIGN == 0

    @property
    def bytes_read(self) -> int:
        """Bytes read from the source so far."""
        return self._bytes_read

    def extents(self, offset: int, length: int) -> Iterator[Extent]:
        """Extents of ``[offset, offset + length)``: a regular file's holes (SEEK_DATA/SEEK_HOLE)
        are not data; a block device, or a file system that cannot tell, is all data."""
        end = offset + length
        if length <= 0:
            return
        if self.is_block_device or not self._seek_holes:
            yield Extent(offset, length, True)
            return
        pos = offset
        while pos < end:
            data = self._seek(pos, os.SEEK_DATA)
            if data is None:  # no data at or after pos (ENXIO), or the file system cannot tell
                if not self._seek_holes:
                    yield Extent(pos, end - pos, True)
                    return
                yield from self._tail_hole(pos, end)
                return
            if data > pos:
                yield Extent(pos, min(data, end) - pos, False)
                pos = min(data, end)
                if pos >= end:
                    return
            hole = self._seek(pos, os.SEEK_HOLE)
            stop = end if hole is None else min(max(hole, pos + 1), end)
            yield Extent(pos, stop - pos, True)
            pos = stop

    def _seek(self, pos: int, whence: int) -> int | None:
        """lseek SEEK_DATA/SEEK_HOLE from ``pos``; None at ENXIO (nothing of that kind after
        ``pos``) or when the file system does not take them (then ``_seek_holes`` turns off)."""
        try:
            return os.lseek(self.fd, pos, whence)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return None
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                self._seek_holes = False
                return None
            raise SourceError(f"finding the data of source {self.path} at byte {pos} failed: {e.strerror}") from None

    def _tail_hole(self, pos: int, end: int) -> Iterator[Extent]:
        """No data after ``pos``: a hole to the end of the file; bytes past the file's end now
        (it shrank) are data, so the read of them comes up short and says so."""
        try:
            now = os.fstat(self.fd).st_size
        except OSError:
            now = end
        stop = max(pos, min(end, now))
        if stop > pos:
            yield Extent(pos, stop - pos, False)
        if end > stop:
            yield Extent(stop, end - stop, True)

    def advise(self, reads: Iterable[tuple[int, int]]) -> None:
        """Ignored: the bulk reads are O_DIRECT, which the page cache's read-ahead (what
        POSIX_FADV_WILLNEED would start) does not feed."""

    def readinto_at(self, buf: memoryview, offset: int) -> int:
        """Fill ``buf`` from ``offset``; returns the bytes read (short only at the end of the volume).

        Aligned requests (buffer address, length and offset multiples of 4096) go through the
        O_DIRECT descriptor; others, and all reads after O_DIRECT failed with EINVAL, through the
        page cache."""
        n = self._readinto_at(buf, offset)
        self._bytes_read += n
        return n

    def _readinto_at(self, buf: memoryview, offset: int) -> int:
        if len(buf) and self._direct_ok(buf, offset):
            done = 0
            try:
                while done < len(buf):
                    n = os.preadv(self.dfd, [buf[done:]], offset + done)
                    done += n
                    if n == 0 or n % DIRECT_ALIGN:
                        return done  # the end of the volume
                return done
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise SourceError(
                        f"reading source {self.path} at byte {offset + done} failed: {e.strerror}"
                    ) from None
                os.close(self.dfd)  # this file or device does not take O_DIRECT: page cache from here on
                self.dfd = -1
                return done + self._read_buffered(buf[done:], offset + done)
        return self._read_buffered(buf, offset)

    def _read_buffered(self, buf: memoryview, offset: int) -> int:
        done = 0
        while done < len(buf):
            try:
                n = os.preadv(self.fd, [buf[done:]], offset + done)
            except OSError as e:
                raise SourceError(f"reading source {self.path} at byte {offset + done} failed: {e.strerror}") from None
            if n == 0:
                break
            done += n
        return done

    def current_size(self) -> int | None:
        """The source's size now (None if it cannot be had: a device that went away)."""
        try:
            if self.is_block_device:
                return blockdev_size(self.fd)
            return os.fstat(self.fd).st_size
        except OSError:
            return None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if getattr(self, "dfd", -1) >= 0:
            os.close(self.dfd)
            self.dfd = -1

    def __enter__(self) -> SourceVolume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
