"""Restore targets (the write side of a restore) and volume names; the read side of a backup,
sources, is tapearc.sources."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from tapearc.errors import TargetError, TargetTooSmallError
from tapearc.media.writeback import Writeback
from tapearc.nbdclient import is_nbd_uri
from tapearc.sources.file import blockdev_size
from tapearc.sources.nbd import uri_volume_name

__all__ = ["RestoreTarget", "blockdev_size", "default_volume_name", "pwrite_all", "zero_fill"]

BLKZEROOUT = 0x127F  # _IO(0x12, 127): zero a byte range of a block device


def default_volume_name(source: str) -> str:
    """A volume's default name: the source's file name (``/dev/vg0/root`` -> ``root``); for an
    NBD URI its export name (``nbd+unix:///vm1?socket=...`` -> ``vm1``)."""
    if is_nbd_uri(source):
        return uri_volume_name(source)
    name = Path(source).name or source
    return name


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
