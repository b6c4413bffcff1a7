"""Linux <linux/mtio.h> constants used by the st-semantics adapter (see TAPE-FACTS §1.8).

Kept in tapearc (rather than imported from the simulator) because the same adapter drives the
real st device; the numbers are the kernel's, so the simulator uses the same values.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# MTIOCTOP operations
(MTRESET, MTFSF, MTBSF, MTFSR, MTBSR, MTWEOF, MTREW, MTOFFL, MTNOP, MTRETEN, MTBSFM, MTFSFM, MTEOM, MTERASE) = range(14)
MTSETBLK, MTSETDENSITY, MTSEEK, MTTELL, MTSETDRVBUFFER = 20, 21, 22, 23, 24
MTFSS, MTBSS, MTWSM, MTLOCK, MTUNLOCK, MTLOAD, MTUNLOAD = 25, 26, 27, 28, 29, 30, 31
MTCOMPRESSION, MTSETPART, MTMKPART, MTWEOFI = 32, 33, 34, 35

# mt_gstat bits
GMT_EOF, GMT_BOT, GMT_EOT, GMT_SM = 0x80000000, 0x40000000, 0x20000000, 0x10000000
GMT_EOD, GMT_WR_PROT, GMT_ONLINE = 0x08000000, 0x04000000, 0x01000000
GMT_DR_OPEN, GMT_IM_REP_EN, GMT_CLN = 0x00040000, 0x00010000, 0x00008000

# MTSETDRVBUFFER option bits (for LinuxStOps)
MT_ST_SETBOOLEANS, MT_ST_CLEARBOOLEANS = 0x30000000, 0x40000000
MT_ST_SCSI2LOGICAL = 0x800

# ioctl structs and request numbers (asm-generic _IOC layout; computed, not hard-coded)
MTOP_STRUCT = struct.Struct("@hi")
MTGET_STRUCT = struct.Struct("@5l2i")
MTPOS_STRUCT = struct.Struct("@l")


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


MTIOCTOP = _ioc(1, "m", 1, MTOP_STRUCT.size)
MTIOCGET = _ioc(2, "m", 2, MTGET_STRUCT.size)
MTIOCPOS = _ioc(2, "m", 3, MTPOS_STRUCT.size)


class MtGetLike(NamedTuple):
    """The fields of ``struct mtget`` the adapter reads (any object with these attributes works)."""

    mt_type: int
    mt_resid: int
    mt_dsreg: int
    mt_gstat: int
    mt_erreg: int
    mt_fileno: int
    mt_blkno: int


GSTAT_NAMES = {
    GMT_EOF: "EOF",
    GMT_BOT: "BOT",
    GMT_EOT: "EOT",
    GMT_SM: "SM",
    GMT_EOD: "EOD",
    GMT_WR_PROT: "WR_PROT",
    GMT_ONLINE: "ONLINE",
    GMT_DR_OPEN: "DR_OPEN",
    GMT_IM_REP_EN: "IM_REP_EN",
    GMT_CLN: "CLN",
}


def gstat_flags(gstat: int) -> list[str]:
    """The names of the GMT_* bits set in ``gstat`` (for status details)."""
    return [name for bit, name in GSTAT_NAMES.items() if gstat & bit]
