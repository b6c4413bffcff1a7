"""A saved object index beside a large image (``IMAGE + ".tapesim-index"``).

Opening an image walks the length words of every record to find its objects (:func:`tapesim.simh.scan_fd`):
one small read per record, about 0.1 ms each when the image is not in the page cache, so 0.2 s
for a 2 GiB image of 1 MiB records and minutes for a terabyte. A real drive does not read its
tape to find end of data: the cartridge keeps a directory (LTO's cartridge memory and
housekeeping data; mhvtl keeps an ``indx`` file per tape). tapesim does the same for images of at
least :func:`tapesim.sidecar.index_min_bytes` bytes: the drive saves its index when it closes the
image, and the next open uses it instead of walking the image, if it still describes that image.

The index is a hint, never trusted blindly:

* it is used only when the image's device, inode, size, modification and change times are those
  it was saved with, its own CRC-32 holds, its objects lie in order inside the image, and the
  length words of its first and last three objects read back as it says;
* a drive that opened with a saved index checks each object's length words as it reads the
  object (a record's leading and trailing words, a filemark's word); a word that disagrees is an
  I/O error naming the image, and the index file is removed, so the next open walks the image;
* a damaged image (a truncated or unreadable tail) gets no index: every open walks it and reports
  the damage, as without an index.

Layout (little-endian): ``b"TSIMIDX1"``, then ``u64`` fields ``count``, ``nerrs``, ``st_dev``,
``st_ino``, ``st_size``, ``st_mtime_ns``, ``st_ctime_ns``, ``end_offset``; ``count`` ``i64``
offsets, ``count`` ``i64`` lengths (-1: a filemark), ``nerrs`` ``i64`` positions of records
carrying the SIMH error flag; a ``u32`` CRC-32 (zlib) of everything before it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from array import array
from dataclasses import dataclass

from .simh import MTR_MAXLEN, MTR_TMK, WORD, WORD_SIZE

INDEX_SUFFIX = ".tapesim-index"
MAGIC = b"TSIMIDX1"
_HEAD = struct.Struct("<8s8Q")
_CRC = struct.Struct("<I")


@dataclass
class SavedIndex:
    """An image's objects as a saved index gives them (what the drive's own index holds)."""

    offs: array[int]
    lens: array[int]
    errs: list[int]
    end: int
    file_size: int
    truncated: bool = False  # (a scan's: a saved index is never of a damaged image)
    damage: str | None = None


def index_path(image: str) -> str:
    """The index file of ``image``: beside the file the image's path resolves to (a library
    drive's image is a symlink to its cartridge)."""
    return os.path.realpath(image) + INDEX_SUFFIX


def _stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def save_index(image: str, fd: int, idx: SavedIndex) -> bool:
    """Write the index of the image open on ``fd`` (call after its last write and fsync);
    atomically (a temporary file renamed over the old one). False when it cannot be written (a
    read-only folder): the next open walks the image, nothing else changes."""
    st = os.fstat(fd)
    if st.st_size != idx.file_size:
        return False
    head = _HEAD.pack(MAGIC, len(idx.offs), len(idx.errs), *_stamp(st), idx.end)
    body = head + idx.offs.tobytes() + idx.lens.tobytes() + array("q", idx.errs).tobytes()
    data = body + _CRC.pack(zlib.crc32(body))
    path = index_path(image)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def remove_index(image: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(index_path(image))


def load_index(image: str, fd: int) -> SavedIndex | None:
    """The saved index of the image open on ``fd``, or None when there is none or it does not
    describe the image as it is now (see the module's text)."""
    try:
        with open(index_path(image), "rb") as f:
            data = f.read()
    except OSError:
        return None
    idx = _decode(data, os.fstat(fd))
    if idx is None or not _ends_agree(fd, idx):
        return None
    return idx


def _decode(data: bytes, st: os.stat_result) -> SavedIndex | None:
    if len(data) < _HEAD.size + _CRC.size or zlib.crc32(data[: -_CRC.size]) != _CRC.unpack_from(data, len(data) - 4)[0]:
        return None
    magic, count, nerrs, *stamp, end = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or tuple(stamp) != _stamp(st) or len(data) != _HEAD.size + 8 * (2 * count + nerrs) + _CRC.size:
        return None
    at = _HEAD.size
    offs, lens, errs = array("q"), array("q"), array("q")
    offs.frombytes(data[at : at + 8 * count])
    lens.frombytes(data[at + 8 * count : at + 16 * count])
    errs.frombytes(data[at + 16 * count : at + 16 * count + 8 * nerrs])
    idx = SavedIndex(offs, lens, sorted(errs), end, st.st_size)
    return idx if _in_order(idx) else None


def _in_order(idx: SavedIndex) -> bool:
    """Objects follow each other inside the image and the end of data is after the last one."""
    pos = 0
    for off, ln in zip(idx.offs, idx.lens, strict=True):
        if off < pos or ln < -1:
            return False
        pos = off + (WORD_SIZE if ln < 0 else 2 * WORD_SIZE + ln + (ln & 1))
    return pos <= idx.end <= idx.file_size and all(0 <= e < len(idx.offs) and idx.lens[e] >= 0 for e in idx.errs)


def object_words_agree(fd: int, off: int, ln: int) -> bool:
    """Whether the image holds at ``off`` the object the index says: a filemark's word, or a
    record's leading and trailing length words (the SIMH error flag aside)."""
    try:
        if ln < 0:
            w = os.pread(fd, WORD_SIZE, off)
            return len(w) == WORD_SIZE and WORD.unpack(w)[0] == MTR_TMK
        lead = os.pread(fd, WORD_SIZE, off)
        trail = os.pread(fd, WORD_SIZE, off + WORD_SIZE + ln + (ln & 1))
    except OSError:
        return False
    if len(lead) != WORD_SIZE or len(trail) != WORD_SIZE or lead != trail:
        return False
    word: int = WORD.unpack(lead)[0]
    return word & 0x7F000000 == 0 and word & MTR_MAXLEN == ln


def _ends_agree(fd: int, idx: SavedIndex) -> bool:
    if not idx.offs:
        return True
    n = len(idx.offs)
    return all(object_words_agree(fd, idx.offs[i], idx.lens[i]) for i in {0, *range(max(0, n - 3), n)})
