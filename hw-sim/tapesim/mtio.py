"""Linux magnetic-tape ioctl constants (``include/uapi/linux/mtio.h``), x86_64 values.

The numbers are the exact kernel ones, so a backend that drives a real st device through
``fcntl.ioctl`` can share them with the simulator (see TAPE-FACTS §1.1 and §1.8). Nothing here
touches a device: ``MTOP``/``MTGET``/``MTPOS`` are only the struct layouts and the ``MTIOC*``
request numbers computed from them (asm-generic encoding: not valid on ppc/mips/sparc/alpha).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# struct mtop {short mt_op; int mt_count;}, struct mtget {long x5; int x2}, struct mtpos {long}
MTOP = struct.Struct("@hi")
MTGET = struct.Struct("@5l2i")
MTPOS = struct.Struct("@l")


def _IOC(direction: int, typ: str, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(typ) << 8) | nr


MTIOCTOP = _IOC(1, "m", 1, MTOP.size)  # 0x40086d01 on x86_64
MTIOCGET = _IOC(2, "m", 2, MTGET.size)  # 0x80306d02
MTIOCPOS = _IOC(2, "m", 3, MTPOS.size)  # 0x80086d03

# MTIOCTOP operations
MTRESET = 0
MTFSF = 1
MTBSF = 2
MTFSR = 3
MTBSR = 4
MTWEOF = 5
MTREW = 6
MTOFFL = 7
MTNOP = 8
MTRETEN = 9
MTBSFM = 10
MTFSFM = 11
MTEOM = 12
MTERASE = 13
MTRAS1 = 14
MTRAS2 = 15
MTRAS3 = 16
MTSETBLK = 20
MTSETDENSITY = 21
MTSEEK = 22
MTTELL = 23
MTSETDRVBUFFER = 24
MTFSS = 25
MTBSS = 26
MTWSM = 27
MTLOCK = 28
MTUNLOCK = 29
MTLOAD = 30
MTUNLOAD = 31
MTCOMPRESSION = 32
MTSETPART = 33
MTMKPART = 34
MTWEOFI = 35

# mt_gstat bits (GMT_xxx)
GMT_EOF = 0x80000000
GMT_BOT = 0x40000000
GMT_EOT = 0x20000000
GMT_SM = 0x10000000
GMT_EOD = 0x08000000
GMT_WR_PROT = 0x04000000
GMT_ONLINE = 0x01000000
GMT_D_6250 = 0x00800000
GMT_D_1600 = 0x00400000
GMT_D_800 = 0x00200000
GMT_DR_OPEN = 0x00040000
GMT_IM_REP_EN = 0x00010000
GMT_CLN = 0x00008000

# mt_type values
MT_ISSCSI1 = 0x71
MT_ISSCSI2 = 0x72

# mt_dsreg layout
MT_ST_BLKSIZE_MASK = 0xFFFFFF
MT_ST_DENSITY_SHIFT = 24
MT_ST_SOFTERR_MASK = 0xFFFF

# MTSETDRVBUFFER command selectors and option bits
MT_ST_BOOLEANS = 0x10000000
MT_ST_SETBOOLEANS = 0x30000000
MT_ST_CLEARBOOLEANS = 0x40000000
MT_ST_WRITE_THRESHOLD = 0x20000000
MT_ST_DEF_BLKSIZE = 0x50000000
MT_ST_DEF_OPTIONS = 0x60000000
MT_ST_TIMEOUTS = 0x70000000
MT_ST_SET_LONG_TIMEOUT = 0x70100000
MT_ST_SET_CLN = 0x80000000
MT_ST_BUFFER_WRITES = 0x1
MT_ST_ASYNC_WRITES = 0x2
MT_ST_READ_AHEAD = 0x4
MT_ST_DEBUGGING = 0x8
MT_ST_TWO_FM = 0x10
MT_ST_FAST_MTEOM = 0x20
MT_ST_AUTO_LOCK = 0x40
MT_ST_DEF_WRITES = 0x80
MT_ST_CAN_BSR = 0x100
MT_ST_NO_BLKLIMS = 0x200
MT_ST_CAN_PARTITIONS = 0x400
MT_ST_SCSI2LOGICAL = 0x800
MT_ST_SYSV = 0x1000
MT_ST_NOWAIT = 0x2000
MT_ST_SILI = 0x4000
MT_ST_NOWAIT_EOF = 0x8000


class MtGet(NamedTuple):
    """The fields of ``struct mtget`` in kernel order (``MtGet(*MTGET.unpack(buf))``).

    ``mt_resid`` holds the partition number (st's convention), ``mt_dsreg`` is
    ``blksize | density << 24``, ``mt_fileno``/``mt_blkno`` are -1 when unknown.
    """

    mt_type: int
    mt_resid: int
    mt_dsreg: int
    mt_gstat: int
    mt_erreg: int
    mt_fileno: int
    mt_blkno: int


GSTAT_NAMES: tuple[tuple[int, str], ...] = (
    (GMT_EOF, "EOF"),
    (GMT_BOT, "BOT"),
    (GMT_EOT, "EOT"),
    (GMT_SM, "SM"),
    (GMT_EOD, "EOD"),
    (GMT_WR_PROT, "WR_PROT"),
    (GMT_ONLINE, "ONLINE"),
    (GMT_D_6250, "D_6250"),
    (GMT_D_1600, "D_1600"),
    (GMT_D_800, "D_800"),
    (GMT_DR_OPEN, "DR_OPEN"),
    (GMT_IM_REP_EN, "IM_REP_EN"),
    (GMT_CLN, "CLN"),
)


def gstat_names(gstat: int) -> list[str]:
    """The names of the GMT_* bits set in ``gstat``, in mt-st's order (for messages and tests)."""
    return [name for bit, name in GSTAT_NAMES if gstat & bit]
