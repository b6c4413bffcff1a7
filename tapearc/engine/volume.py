"""Source volumes (read side of a backup) and restore targets (write side of a restore)."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tapearc.buffers import buffer_address, direct_io_enabled
from tapearc.errors import SourceError, TargetError, TargetTooSmallError
from tapearc.media.writeback import Writeback
from tapearc.sources.base import Extent

BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t) on Linux (x86_64, arm64)
DIRECT_ALIGN = 4096  # O_DIRECT alignment used for source reads (covers 512- and 4096-byte sectors)
BLKZEROOUT = 0x127F  # _IO(0x12, 127): zero a byte range of a block device


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


def default_volume_name(source: str) -> str:
    """A volume's default name: the source's file name (``/dev/vg0/root`` -> ``root``)."""
    name = Path(source).name or source
    return name


class SourceVolume:
    """A volume to back up: a regular file (a disk image) or a block device, read sequentially.

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
        """All data (holes are not looked for yet)."""
        if length > 0:
            yield Extent(offset, length, True)

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


@dataclass
class _TargetInfo:
    is_block_device: bool
    exists: bool
    size: int


def pwrite_all(fd: int, path: str, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of a restore target; ENOSPC -> TargetTooSmallError."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        try:
            done += os.pwrite(fd, view[done:], offset + done)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise TargetTooSmallError(
                    f"target {path} ran out of space at byte {offset + done}",
                    hint="free space on the target's file system or restore elsewhere",
                ) from None
            raise TargetError(f"writing target {path} at byte {offset + done} failed: {e.strerror}") from None


def zero_fill(fd: int, path: str, offset: int, length: int, *, device: bool) -> None:
    """Make a byte range of a restore target read as zeros: BLKZEROOUT on a device, a punched
    hole in a file, else (either failing) by writing zeros."""
    if length <= 0:
        return
    try:
        if device:
            fcntl.ioctl(fd, BLKZEROOUT, struct.pack("=QQ", offset, length))
        else:
            _punch_hole(fd, offset, length)
        return
    except OSError:
        pass
    zeros = bytes(min(length, 1 << 20))
    end = offset + length
    while offset < end:
        n = min(len(zeros), end - offset)
        pwrite_all(fd, path, memoryview(zeros)[:n], offset)
        offset += n


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE): the range reads as zeros and uses no space."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
    rc = libc.fallocate(
        ctypes.c_int(fd),
        ctypes.c_int(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE),
        ctypes.c_longlong(offset),
        ctypes.c_longlong(length),
    )
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class RestoreTarget:
    """Where a restored volume goes: a regular file (made sparse) or a block device.

    A regular-file target is written under a temporary name beside it and renamed into place
    only when the restore succeeded, so a failed restore never leaves a file that looks complete.
    """

    def __init__(self, path: str, volume_size: int, *, force: bool) -> None:
        self.path = path
        self.volume_size = volume_size
        self.fd = -1
        self._writeback = Writeback()
        self._tmp: str | None = None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise TargetError(f"cannot use target {path}: {e.strerror}") from None
        if st is not None and stat.S_ISBLK(st.st_mode):
            self.is_block_device = True
            try:
                self.fd = os.open(path, os.O_RDWR | os.O_EXCL)
            except OSError as e:
                raise TargetError(f"cannot open target device {path}: {e.strerror}") from None
            size = blockdev_size(self.fd)
            if size < volume_size:
                os.close(self.fd)
                raise TargetTooSmallError(
                    f"target device {path} holds {size} bytes, the volume needs {volume_size}",
                    hint="restore to a larger device or to a file",
                )
            if not force and self._device_has_data():
                os.close(self.fd)
                raise TargetError(
                    f"target device {path} is not empty (its first MiB holds data)",
                    hint="add --force to overwrite it",
                )
            return
        self.is_block_device = False
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise TargetError(f"target {path} is a directory", hint="name a file or a block device to restore to")
            if not stat.S_ISREG(st.st_mode):
                raise TargetError(f"target {path} is neither a regular file nor a block device")
            if st.st_size > 0 and not force:
                raise TargetError(
                    f"target {path} exists and is not empty ({st.st_size} bytes)",
                    hint="add --force to overwrite it",
                )
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise TargetError(f"target folder {parent} does not exist")
        self._tmp = os.path.join(parent, f".{os.path.basename(path)}.tapearc-partial")
        try:
            self.fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            os.ftruncate(self.fd, volume_size)  # sparse: unwritten ranges read as zeros
        except OSError as e:
            self._discard()
            if e.errno in (errno.ENOSPC, errno.EFBIG):
                raise TargetTooSmallError(
                    f"target {path}: cannot make a {volume_size}-byte file: {e.strerror}"
                ) from None
            raise TargetError(f"cannot create target {path}: {e.strerror}") from None

    def _device_has_data(self) -> bool:
        probe = os.pread(self.fd, 1 << 20, 0)
        return probe.count(0) != len(probe)

    @property
    def zero_needs_writing(self) -> bool:
        """False for a fresh sparse file (holes read as zeros), True for a device."""
        return self.is_block_device

    def write_at(self, data: bytes | memoryview, offset: int) -> None:
        pwrite_all(self.fd, self.path, data, offset)
        self._writeback.wrote(self.fd, len(data))  # the disk writes start now, not at commit's fsync

    def zero_range(self, offset: int, length: int) -> None:
        """Make ``length`` bytes at ``offset`` read as zeros."""
        if length <= 0 or not self.zero_needs_writing:
            return
        zero_fill(self.fd, self.path, offset, length, device=True)

    def commit(self) -> None:
        """Flush to stable storage and, for a file, move it into place."""
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise TargetError(f"flushing target {self.path} failed: {e.strerror}") from None
        os.close(self.fd)
        self.fd = -1
        if self._tmp is not None:
            os.replace(self._tmp, self.path)
            self._tmp = None

    def _discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def abort(self) -> None:
        """Give up: remove a partial file (a device is left as it is)."""
        self._discard()
