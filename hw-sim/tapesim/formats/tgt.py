"""tgt (Linux SCSI target framework) SSC tape files, as made by ``tgtimg`` and used by tgtd's
``bs_ssc`` backing store (fujita/tgt ``usr/bs_ssc.h``, ``usr/libssc.c``, ``usr/tgtimg.c``;
TAPE-FACTS §3.4). All numbers are big-endian except the header checksum::

    @0     BOT block header (blk_type 0x10; blk_sz = capacity in MB, for display; next = 1152)
    @48    MAM, 1104 bytes (tape_fmt_version 2 @0, remaining_capacity @8, max_capacity @16,
           medium_serial_number @264, medium_type @336, barcode @568 ("%-31s"), ...)
    @1152  blocks: a 48-byte header then ondisk_sz bytes of data; the last header is EOD

    block header: u32 h_csum | u32 ondisk_sz | u32 blk_sz | u32 blk_type | u64 blk_num |
                  u64 prev | u64 curr | u64 next
    h_csum = CRC-32C (Castagnoli) of header bytes 4..47, stored little-endian
    blk_type: 0x02 data (uncompressed), 0x40 filemark, 0x20 EOD, 0x10 BOT
              (0x01 compressed, 0x04 encrypted, 0x80 setmark: refused, the event model has none)
    blk_num: BOT 0, then 1, 2, ... (the EOD header has the number of the next object);
    prev/curr/next: absolute offsets (the first block's prev is 0, the BOT header; EOD has
    next == curr).

tgtd refuses a write that would not leave room for the block and the EOD header within
``max_capacity`` (stlab patch) so an image made here always satisfies
``EOD offset + 48 <= max_capacity``.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..simh import ScanResult
from ._crc32c import crc32c
from .events import Event, EventWriter, Obj, TapeFormatError, events_of, located_error, scan_result_of

NAME = "tgt"
SUFFIXES = (".tgt", ".ssc")

HDR = struct.Struct(">IIIQQQQ")  # bytes 4..47 of a block header
HDR_SIZE = 48
MAM_OFFSET = 48
MAM_SIZE = 1104
FIRST_BLOCK = MAM_OFFSET + MAM_SIZE  # 1152
TAPE_FMT_VERSION = 2
MiB = 1 << 20

BLK_NOOP = 0x00
BLK_COMPRESSED_DATA = 0x01
BLK_UNCOMPRESS_DATA = 0x02
BLK_ENCRYPTED_DATA = 0x04
BLK_BOT = 0x10
BLK_EOD = 0x20
BLK_FILEMARK = 0x40
BLK_SETMARK = 0x80

CART_DATA = 1
MAX_BARCODE = 31

# MAM field offsets (struct MAM in bs_ssc.h)
_M_VERSION = 0
_M_REMAINING = 8
_M_MAX_CAPACITY = 16
_M_SPACE_REMAINING = 40
_M_MANUFACTURER = 256
_M_SERIAL = 264
_M_LENGTH = 296
_M_WIDTH = 300
_M_TYPE = 336
_M_APP_VENDOR = 344
_M_BARCODE = 568
_M_VENDOR_UNIQUE_SIZE = 256

_TYPE_NAMES = {
    BLK_NOOP: "no-op",
    BLK_COMPRESSED_DATA: "compressed data",
    BLK_ENCRYPTED_DATA: "encrypted data",
    BLK_SETMARK: "setmark",
    BLK_BOT: "BOT",
    BLK_EOD: "EOD",
}


def pack_header(ondisk_sz: int, blk_sz: int, blk_type: int, blk_num: int, prev: int, curr: int, nxt: int) -> bytes:
    """A 48-byte block header, checksum included."""
    body = HDR.pack(ondisk_sz, blk_sz, blk_type, blk_num, prev, curr, nxt)
    return struct.pack("<I", crc32c(body)) + body


@dataclass
class BlockHeader:
    csum_ok: bool
    ondisk_sz: int
    blk_sz: int
    blk_type: int
    blk_num: int
    prev: int
    curr: int
    next: int


def unpack_header(raw: bytes) -> BlockHeader:
    body = raw[4:HDR_SIZE]
    stored = struct.unpack_from("<I", raw, 0)[0]
    return BlockHeader(stored == crc32c(body), *HDR.unpack(body))


@dataclass
class MamInfo:
    """The MAM fields this module reads and writes."""

    tape_fmt_version: int
    max_capacity: int
    remaining_capacity: int
    barcode: str | None
    serial: str
    medium_type: int


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def read_mam(f: BinaryIO) -> MamInfo:
    f.seek(MAM_OFFSET)
    m = f.read(MAM_SIZE)
    if len(m) < MAM_SIZE:
        raise located_error("image too short for the MAM (not a tgt tape file)", MAM_OFFSET)
    version = struct.unpack_from(">I", m, _M_VERSION)[0]
    barcode = _cstr(m[_M_BARCODE : _M_BARCODE + 32]).rstrip(" ") or None
    return MamInfo(
        tape_fmt_version=version,
        remaining_capacity=struct.unpack_from(">Q", m, _M_REMAINING)[0],
        max_capacity=struct.unpack_from(">Q", m, _M_MAX_CAPACITY)[0],
        barcode=barcode,
        serial=_cstr(m[_M_SERIAL : _M_SERIAL + 32]),
        medium_type=m[_M_TYPE],
    )


def build_mam(
    *,
    max_capacity: int,
    remaining_capacity: int,
    barcode: str,
    serial: str,
    manufacturer: str = "tapesim",
    application_vendor: str = "tapesim",
) -> bytes:
    """A MAM as ``tgtimg --op new --type data`` writes it (with our vendor strings)."""
    m = bytearray(MAM_SIZE)
    struct.pack_into(">I", m, _M_VERSION, TAPE_FMT_VERSION)
    struct.pack_into(">Q", m, _M_REMAINING, remaining_capacity)
    struct.pack_into(">Q", m, _M_MAX_CAPACITY, max_capacity)
    struct.pack_into(">Q", m, _M_SPACE_REMAINING, _M_VENDOR_UNIQUE_SIZE)
    m[_M_MANUFACTURER : _M_MANUFACTURER + 8] = manufacturer.encode("ascii")[:8].ljust(8)
    ser = serial.encode("ascii")[:31]
    m[_M_SERIAL : _M_SERIAL + len(ser)] = ser
    struct.pack_into(">I", m, _M_LENGTH, 384)  # 384 tracks (as tgtimg)
    struct.pack_into(">I", m, _M_WIDTH, 127)  # 12.7 mm
    m[_M_TYPE] = CART_DATA
    m[_M_APP_VENDOR : _M_APP_VENDOR + 8] = application_vendor.encode("ascii")[:8].ljust(8)
    m[_M_BARCODE : _M_BARCODE + 31] = barcode.encode("ascii").ljust(31)  # "%-31s" + NUL
    return bytes(m)


def check_barcode(barcode: str) -> str:
    if not barcode or len(barcode) > MAX_BARCODE or not barcode.isascii() or not barcode.isprintable():
        raise TapeFormatError(f"invalid tgt barcode {barcode!r} (1 to {MAX_BARCODE} printable ASCII characters)")
    return barcode


def walk(f: BinaryIO, *, with_data: bool = True) -> Iterator[Obj]:
    """Objects of the tgt tape file open on ``f``, following the ``next`` links from BOT."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    raw = f.read(HDR_SIZE)
    if len(raw) < HDR_SIZE:
        raise located_error("image too short for the BOT header (not a tgt tape file)", 0)
    bot = unpack_header(raw)
    if bot.blk_type != BLK_BOT:
        raise located_error(f"first header is not BOT (blk_type 0x{bot.blk_type:X}; not a tgt tape file)", 0)
    if not bot.csum_ok:
        raise located_error("BOT header checksum mismatch", 0)
    mam = read_mam(f)
    if mam.tape_fmt_version != TAPE_FMT_VERSION:
        raise located_error(f"unknown tgt tape format version {mam.tape_fmt_version}", MAM_OFFSET)
    prev, pos, num = 0, bot.next, 1
    link_at = 0  # the header whose next link led to pos
    while True:
        if pos > size:  # reported at the header holding the bad link (inside the image)
            raise located_error(f"next link {pos} points beyond the end of the image ({size} bytes)", link_at)
        if pos + HDR_SIZE > size:
            raise located_error("block header beyond the end of the image (no EOD)", pos)
        f.seek(pos)
        h = unpack_header(f.read(HDR_SIZE))
        if not h.csum_ok:
            raise located_error("block header checksum mismatch", pos)
        if h.curr != pos:
            raise located_error(f"block header says it is at {h.curr}", pos)
        if h.prev != prev:
            raise located_error(f"block header's prev is {h.prev}, expected {prev}", pos)
        if h.blk_num != num:
            raise located_error(f"block number {h.blk_num}, expected {num}", pos)
        if h.blk_type == BLK_EOD:
            yield Obj("eod", pos)
            return
        if h.next != pos + HDR_SIZE + h.ondisk_sz:
            raise located_error(f"block header's next is {h.next}, expected {pos + HDR_SIZE + h.ondisk_sz}", pos)
        if h.blk_type == BLK_FILEMARK:
            yield Obj("filemark", pos)
        elif h.blk_type == BLK_UNCOMPRESS_DATA:
            if h.blk_sz != h.ondisk_sz:
                raise located_error(f"data block sizes differ (blk_sz {h.blk_sz}, ondisk_sz {h.ondisk_sz})", pos)
            if h.next > size:
                raise located_error(f"truncated data block ({h.ondisk_sz} bytes)", pos)
            data = None
            if with_data:
                data = f.read(h.ondisk_sz)
                if len(data) != h.ondisk_sz:
                    raise located_error(f"truncated data block ({h.ondisk_sz} bytes)", pos)
            yield Obj("record", pos, h.ondisk_sz, False, data)
        else:
            what = _TYPE_NAMES.get(h.blk_type, f"unknown type 0x{h.blk_type:X}")
            raise located_error(f"{what} block (cannot be converted losslessly)", pos)
        prev, pos, num, link_at = pos, h.next, num + 1, pos


def read_info(path: str | os.PathLike[str]) -> MamInfo:
    """The MAM of a tgt tape file (barcode, capacity)."""
    with open(path, "rb") as f:
        raw = f.read(HDR_SIZE)
        if len(raw) < HDR_SIZE or unpack_header(raw).blk_type != BLK_BOT:
            raise TapeFormatError(f"{os.fspath(path)}: not a tgt tape file (no BOT header)")
        return read_mam(f)


def read_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    """The events of a tgt tape file, read as they are consumed."""
    with open(path, "rb", buffering=1 << 20) as f:
        yield from events_of(walk(f))


def scan_image(path: str | os.PathLike[str]) -> ScanResult:
    """The object index of a tgt tape file (header offsets; damage reported, not raised)."""
    with open(path, "rb", buffering=1 << 16) as f:
        return scan_result_of(walk(f, with_data=False), os.fstat(f.fileno()).st_size)


def _ceil_mib(n: int) -> int:
    return -(-n // MiB) * MiB


class TgtWriter(EventWriter):
    """Writes events to a new tgt tape file, sequentially.

    ``capacity`` (MAM ``max_capacity``, bytes of image) may be given; then data that does not
    fit (EOD header included) raises TapeFormatError as soon as it is known. Without it the
    capacity becomes the image's size rounded up to a whole MiB, written when the writer
    finishes (the MAM is rewritten then, so ``f`` must be seekable). ``serial`` defaults to
    ``BARCODE_<unix time>`` as tgtimg makes it; ``manufacturer`` and ``application_vendor``
    are the MAM's vendor strings (tgtimg writes "Foo" and "Bar"). ``remaining_capacity`` is
    the capacity less the blocks written, so an empty tape is byte for byte what
    ``tgtimg --op new`` makes.
    """

    name = NAME

    def __init__(
        self,
        f: BinaryIO,
        *,
        barcode: str,
        capacity: int | None = None,
        serial: str | None = None,
        manufacturer: str = "tapesim",
        application_vendor: str = "tapesim",
    ) -> None:
        self._f = f
        self._vendor = (manufacturer, application_vendor)
        self.barcode = check_barcode(barcode)
        if capacity is not None and capacity < FIRST_BLOCK + HDR_SIZE:
            raise TapeFormatError(
                f"capacity {capacity} too small for a tgt tape file (at least {FIRST_BLOCK + HDR_SIZE} bytes)"
            )
        self.capacity = capacity
        self.serial = serial if serial is not None else f"{barcode}_{int(time.time())}"
        self.offset = FIRST_BLOCK  # where the next header goes
        self._prev = 0
        self._num = 1
        self.records = 0
        self.filemarks = 0
        self.finished = False
        f.seek(0)
        f.write(bytes(FIRST_BLOCK))  # BOT header + MAM, written for real in finish()

    def _block(self, data: bytes, blk_type: int) -> None:
        n = len(data)
        nxt = self.offset + HDR_SIZE + n
        if self.capacity is not None and nxt + HDR_SIZE > self.capacity:
            raise TapeFormatError(
                f"the data does not fit in a tgt tape of capacity {self.capacity} bytes "
                f"(object {self._num} would end at {nxt + HDR_SIZE}, EOD header included)"
            )
        self._f.write(pack_header(n, n, blk_type, self._num, self._prev, self.offset, nxt))
        if n:
            self._f.write(data)
        self._prev, self.offset, self._num = self.offset, nxt, self._num + 1

    def record(self, data: bytes, *, error: bool = False) -> None:
        if error:
            raise TapeFormatError(f"record {self.records + 1} carries the SIMH error flag, which tgt cannot represent")
        if len(data) > 0xFFFFFFFF:
            raise TapeFormatError(f"record {self.records + 1} too large for tgt")
        self._block(data, BLK_UNCOMPRESS_DATA)
        self.records += 1

    def filemark(self) -> None:
        self._block(b"", BLK_FILEMARK)
        self.filemarks += 1

    def finish(self) -> None:
        """Write the EOD header, then the BOT header and the MAM (capacity now known)."""
        if self.finished:
            return
        eod = self.offset
        self._f.write(pack_header(0, 0, BLK_EOD, self._num, self._prev, eod, eod))
        used = eod + HDR_SIZE
        cap = self.capacity if self.capacity is not None else _ceil_mib(used)
        self.capacity = cap
        self._f.seek(0)
        self._f.write(pack_header(0, min(-(-cap // MiB), 0xFFFFFFFF), BLK_BOT, 0, 0, 0, FIRST_BLOCK))
        written = eod - FIRST_BLOCK  # bytes of blocks (headers included) after BOT and MAM
        self._f.write(
            build_mam(
                max_capacity=cap,
                remaining_capacity=max(cap - written, 0),
                barcode=self.barcode,
                serial=self.serial,
                manufacturer=self._vendor[0],
                application_vendor=self._vendor[1],
            )
        )
        self._f.seek(used)
        self.finished = True
