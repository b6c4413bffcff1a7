"""Thin st ops over a real Linux ``/dev/nstN`` (os.read / os.write / fcntl.ioctl).

NOT WIRED UP AND NOT TESTED YET (issue 5): ``open_medium("st:/dev/nst0")`` still reports that
the st backend is not available. This module only shows that the st-semantics adapter
(:class:`tapearc.media.stlike.StLikeDrive`) needs nothing more than these six calls from the
real driver. Before wiring it, check on hardware:

* variable-block mode (``MTSETBLK 0``) and ``MT_ST_SCSI2LOGICAL`` (so MTSEEK / MTIOCPOS use
  logical object numbers; setting it needs CAP_SYS_ADMIN -- otherwise read the driver's
  ``/sys/class/scsi_tape/nstN/options`` and refuse when the bit is clear);
* the maximum record size: st exposes no READ BLOCK LIMITS ioctl, so it is a setting
  (TAPE-FACTS §1.4, §6: tgt's emulation refuses records over 1 MiB);
* that ``MTWEOF 0`` flushes without writing a filemark and keeps st from writing one at close;
* MTIOCGET flushes the driver buffer (consider ``check_eot_every_write=False``).

The ioctl request numbers are computed from the struct sizes (TAPE-FACTS §1.8), which is right
for the asm-generic ioctl layout (x86, arm, arm64, riscv) but not for ppc, mips, sparc, alpha.
"""

from __future__ import annotations

import fcntl
import os

from . import mtio

__all__ = ["LinuxStOps"]


class LinuxStOps:
    """The st ops (see :class:`tapearc.media.stlike.StOps`) of an open no-rewind st device."""

    def __init__(self, path: str, *, readonly: bool, max_record: int = 1 << 20) -> None:
        flags = os.O_RDONLY if readonly else os.O_RDWR
        self.path = path
        self.max_record = max_record
        self.capacity: int | None = None
        self.used: int | None = None
        self._fd: int | None = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
        try:
            self.mtop(mtio.MTSETBLK, 0)  # variable-block mode
        except OSError:
            self.close()
            raise

    def _fileno(self) -> int:
        if self._fd is None:
            raise OSError(9, "device closed")  # EBADF
        return self._fd

    def read(self, n: int) -> bytes:
        return os.read(self._fileno(), n)

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        return os.write(self._fileno(), buf)

    def mtop(self, op: int, count: int = 1) -> None:
        fcntl.ioctl(self._fileno(), mtio.MTIOCTOP, mtio.MTOP_STRUCT.pack(op, count))

    def mtget(self) -> mtio.MtGetLike:
        buf = bytearray(mtio.MTGET_STRUCT.size)
        fcntl.ioctl(self._fileno(), mtio.MTIOCGET, buf, True)
        return mtio.MtGetLike(*mtio.MTGET_STRUCT.unpack(buf))

    def mtpos(self) -> int:
        buf = bytearray(mtio.MTPOS_STRUCT.size)
        fcntl.ioctl(self._fileno(), mtio.MTIOCPOS, buf, True)
        return int(mtio.MTPOS_STRUCT.unpack(buf)[0])

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
