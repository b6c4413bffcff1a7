"""What a path given as a medium really is, before anything is written on it.

tapearc writes only on a medium that is its own (a valid volume label) or provably blank: a
``sim:`` image that is missing or empty (0 bytes), a ``dir:`` folder that is missing or empty, a
tape drive whose first read says blank. These helpers tell the backends what a path holds:

* :func:`refuse_special` -- a block device (a disk), a FIFO, a socket or a character device
  that is not a tape drive is never a tape image (and opening a FIFO would hang);
* :func:`refuse_creating_in_dev` -- nothing is ever created under ``/dev``;
* :func:`image_content_error` -- a non-empty image whose bytes do not parse as a tape from
  offset 0 is foreign content, or a damaged tapearc label when its first record starts like one;
* :func:`classify_bare_path` -- what a ``--media PATH`` without a prefix names: an existing
  tapearc image or folder, or something that needs an explicit ``sim:``/``dir:``.

Nothing here writes.
"""

from __future__ import annotations

import os
import stat
import struct

from ..errors import (
    DamagedDataError,
    MediumUnavailableError,
    NotTapearcMediumError,
    TapearcError,
)
from ..format.constants import LABEL_MAGIC

__all__ = [
    "classify_bare_path",
    "describe_bytes",
    "file_kind",
    "image_content_error",
    "is_tapearc_image",
    "object_id",
    "refuse_creating_in_dev",
    "refuse_special",
]

_HEAD = 4096
_WORD = struct.Struct("<I")


def file_kind(path: str) -> str:
    """``missing``, ``regular``, ``directory``, ``block device``, ``character device``, ``FIFO``,
    ``socket`` or ``special file`` (symlinks followed)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    if stat.S_ISREG(mode):
        return "regular"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def object_id(path: str) -> tuple[str, int, int] | None:
    """The identity of what ``path`` names (symlinks followed): ``("dev", major, minor)`` for a
    device (two nodes of one device are the same object), else ``("ino", st_dev, st_ino)``;
    None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return ("blk" if stat.S_ISBLK(st.st_mode) else "chr", os.major(st.st_rdev), os.minor(st.st_rdev))
    return ("ino", st.st_dev, st.st_ino)


def _in_dev(path: str) -> bool:
    return any(p == "/dev" or p.startswith("/dev/") for p in (os.path.abspath(path), os.path.realpath(path)))


def refuse_creating_in_dev(path: str, name: str) -> None:
    """Raise MediumUnavailableError for a missing ``path`` under ``/dev``: tapearc never creates
    an image or a folder there (a missing ``/dev/sda`` is a missing disk, not a new tape)."""
    if _in_dev(path):
        raise MediumUnavailableError(
            "no such device (tapearc never creates a file or folder under /dev); nothing was written",
            medium=name,
            hint="a tape drive is st:/dev/nstN; check that the device exists",
        )


def _special_message(path: str, kind: str) -> tuple[str, str]:
    base = os.path.basename(os.path.realpath(path))
    if kind == "block device":
        return (
            (
                "a block device (a disk or partition), not a tape drive or tape image; "
                "tapearc never writes on it; nothing was written"
            ),
            "a tape drive is st:/dev/nstN (a character device); a disk is a backup SOURCE, not a --media",
        )
    if kind == "character device" and base.startswith(("nst", "st")):
        return (
            "a tape drive, not a tape image; nothing was written",
            f"write st:{path} for the tape drive",
        )
    if kind == "FIFO":
        return (
            "a FIFO (named pipe), not a tape image; nothing was read or written",
            "to read or write a record stream through a pipe give --media - and redirect",
        )
    return (
        f"a {kind}, not a tape image; nothing was written",
        "give sim:IMAGE (a regular file), dir:FOLDER or st:/dev/nstN",
    )


def refuse_special(path: str, name: str, kind: str | None = None) -> None:
    """Raise NotTapearcMediumError unless ``path`` is missing or a regular file."""
    kind = kind or file_kind(path)
    if kind in ("missing", "regular"):
        return
    if kind == "directory":
        raise NotTapearcMediumError(
            "a folder, not a tape image; nothing was written",
            medium=name,
            hint=f"write dir:{path} for a folder medium",
        )
    message, hint = _special_message(path, kind)
    raise NotTapearcMediumError(message, medium=name, hint=hint, found=kind)


def describe_bytes(head: bytes, size: int) -> str:
    """A few words on what a file starting with ``head`` (of ``size`` bytes in all) holds."""
    from ..units import format_size

    total = format_size(size) if size >= 1024 else f"{size} bytes"
    if not head.strip(b"\0"):
        what = "zeros"
    elif len(head) >= 512 and head[510:512] == b"\x55\xaa":
        what = "a disk image (MBR boot signature)" + (
            " with a GPT partition table" if head[512:520] == b"EFI PART" else ""
        )
    elif len(head) >= 1082 and head[1080:1082] == b"\x53\xef":
        what = "an ext2/3/4 file system"
    else:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            # a multi-byte character cut at the end of the head is still text
            try:
                text = head[:-3].decode("utf-8")
            except UnicodeDecodeError:
                text = ""
        if text and all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
            what = "text"
        else:
            what = "data that is not a tape image"
    return f"{total} of {what}" if what in ("zeros", "text") else f"{what}, {total}"


def _read_head(path: str) -> tuple[bytes, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, _HEAD, 0), size
    finally:
        os.close(fd)


def _first_record(path: str) -> tuple[int, bytes, bool] | None:
    """(length, first bytes of its payload, trailing length word matches) of the SIMH record
    that starts at offset 0, or None when the first word is not a plausible record length."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 4 + 16, 0)
        if len(head) < 4:
            return None
        word = _WORD.unpack_from(head, 0)[0]
        if word == 0 or word & 0x7F000000:
            return None
        length = word & 0x00FFFFFF
        trailer_at = 4 + length + (length & 1)
        ok = False
        if trailer_at + 4 <= size:
            ok = os.pread(fd, 4, trailer_at) == head[:4]
        return length, head[4:], ok
    finally:
        os.close(fd)


def _starts_like_label(payload: bytes) -> bool:
    return payload[:7] == LABEL_MAGIC[:7]


def is_tapearc_image(path: str) -> bool:
    """Does the regular file ``path`` start with an intact SIMH record holding a tapearc label?"""
    try:
        rec = _first_record(path)
    except OSError:
        return False
    return rec is not None and rec[2] and _starts_like_label(rec[1])


def image_content_error(path: str, name: str, damage: str | None = None) -> TapearcError | None:
    """What a ``sim:`` image holds when its first read at the beginning found end of data.

    None when it is provably blank (missing or 0 bytes). Otherwise the error to refuse a write
    with (not raised): DamagedDataError when its first record starts like a tapearc volume label
    (a damaged tapearc medium, never blank), NotTapearcMediumError for any other content (a
    disk image, a text file, random data). ``damage`` is what the tape scanner said of the
    image's start, when known.
    """
    try:
        head, size = _read_head(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return NotTapearcMediumError(
            f"cannot read {path} to see what it holds: {err.strerror}; nothing was written", medium=name
        )
    if size == 0:
        return None
    why = f" ({damage} at its start)" if damage else ""
    rec = _first_record(path)
    if rec is not None and _starts_like_label(rec[1]):
        return DamagedDataError(
            f"the volume label is damaged{why}: this is a damaged tapearc medium of {size} bytes, "
            "not a blank one; nothing was written",
            medium=name,
            tape_file=0,
            record=0,
            hint=f"`tapearc scan --media {name}` shows what can still be read; only `tapearc label --force` erases it",
        )
    found = describe_bytes(head, size)
    return NotTapearcMediumError(
        f"not a blank medium: it holds {found}{why}; tapearc writes only on "
        "a blank medium or its own; nothing was written",
        medium=name,
        hint="check the medium named (--media, or copy's --to); `tapearc label --force` erases it and makes it a tapearc medium",
        found=f"{found}{why}",
    )


def classify_bare_path(path: str, write: bool = True) -> tuple[str | None, str]:
    """What a ``--media PATH`` without a prefix names: ``("sim", "")`` for an existing tapearc
    tape image (or an empty image with tapesim settings beside it; for reading, any regular
    file: reading harms nothing and says what it holds), ``("dir", "")`` for an existing folder
    (the folder backend refuses one that is neither empty nor a dir medium), ``("st", "")`` for
    ``/dev/nst*`` and ``/dev/st*``, else ``(None, what it is)``."""
    if path.startswith(("/dev/nst", "/dev/st")):
        return "st", ""
    kind = file_kind(path)
    if kind == "directory":
        return "dir", ""
    if kind == "missing":
        return None, "it does not exist"
    if kind != "regular":
        return None, f"it is a {kind}"
    if not write:
        return "sim", ""
    try:
        head, size = _read_head(path)
    except OSError as err:
        return None, f"it cannot be read ({err.strerror})"
    if size == 0:
        if os.path.exists(path + ".tapesim"):
            return "sim", ""
        return None, "it is an empty file"
    if is_tapearc_image(path):
        return "sim", ""
    rec = _first_record(path)
    if rec is not None and rec[2]:
        return None, "it is a tape image whose first record is not a tapearc volume label"
    if rec is not None and _starts_like_label(rec[1]):
        return None, "it starts like a tapearc tape image whose volume label is damaged"
    return None, f"it holds {describe_bytes(head, size)}"
