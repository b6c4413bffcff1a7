"""A simulated autoloader (tape library): slots, drives and the tapes that move between them.

A library lives in a folder ``DIR``::

    DIR/library.json              the inventory (see below), replaced atomically
    DIR/library.lock              flock'ed (exclusively) during every operation
    DIR/tapes/<BARCODE>.tap       the cartridges: SIMH images ...
    DIR/tapes/<BARCODE>.tap.tapesim   ... and their settings sidecars (barcode set)
    DIR/drive-<i>.tap             while drive i holds a tape: relative symlink to tapes/<BARCODE>.tap
    DIR/drive-<i>.tap.tapesim     ... and to its sidecar
    DIR/drive-<i>.tap.tapesim-stats   drive i's figures when its tapes have a rate (tapesim.transport)

Images never move: loading a tape makes the drive's symlinks, unloading removes them. So
``SimDrive("DIR/drive-0.tap")`` opens the tape in drive 0, and an empty drive gives ENOENT.

``library.json``::

    {"format": "tapesim-library", "version": 1, "slots": 4, "drives": 1,
     "slot_contents": {"1": "TAP001", "2": null, ...},
     "drive_contents": {"0": {"barcode": "TAP001", "from": 1}}}

Slots are numbered from 1, drives from 0 (as in TALP/1, ``docs/serial-autoloader.md``). An
absent or null slot entry is an empty slot; an absent drive entry is an empty drive.

Errors are :class:`LibraryError` carrying the TALP/1 error code (``E101`` ... ``E200``).
The simulator never imports tapearc.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from .drive import create_image
from .sidecar import DEFAULT_BUFFER, DEFAULT_CAPACITY, DEFAULT_MAX_RECORD, SIDECAR_SUFFIX, TapeSettings, load_json_file

__all__ = [
    "BARCODE_RE",
    "DriveInfo",
    "Library",
    "LibraryError",
    "LibraryStatus",
    "SlotInfo",
    "create_library",
    "valid_barcode",
]

LIBRARY_FORMAT = "tapesim-library"
LIBRARY_VERSION = 1
LIBRARY_FILE = "library.json"
LOCK_FILE = "library.lock"
TAPES_DIR = "tapes"

#: TALP/1 barcodes: 1-32 characters ``[A-Za-z0-9_-]`` (``-`` alone means "no label" there,
#: so the library refuses it).
BARCODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# TALP/1 error codes
E_NO_SUCH = "E101"
E_SOURCE_EMPTY = "E102"
E_DRIVE_FULL = "E103"
E_DRIVE_EMPTY = "E104"
E_DEST_FULL = "E105"
E_OTHER = "E200"


def valid_barcode(barcode: object) -> TypeGuard[str]:
    """A barcode the library (and TALP/1) accepts."""
    return isinstance(barcode, str) and barcode != "-" and BARCODE_RE.match(barcode) is not None


class LibraryError(Exception):
    """A library operation failed; ``code`` is the TALP/1 error code (``E101`` ... ``E200``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class SlotInfo:
    number: int
    barcode: str | None


@dataclass(frozen=True)
class DriveInfo:
    number: int
    barcode: str | None
    source_slot: int | None


@dataclass(frozen=True)
class LibraryStatus:
    slots: list[SlotInfo]
    drives: list[DriveInfo]


@dataclass
class _State:
    """The content of library.json."""

    slots: int
    drives: int
    slot_contents: dict[int, str]  # only full slots
    drive_contents: dict[int, tuple[str, int]]  # drive -> (barcode, source slot)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": LIBRARY_FORMAT,
            "version": LIBRARY_VERSION,
            "slots": self.slots,
            "drives": self.drives,
            "slot_contents": {str(k): self.slot_contents.get(k) for k in range(1, self.slots + 1)},
            "drive_contents": {
                str(i): {"barcode": b, "from": src} for i, (b, src) in sorted(self.drive_contents.items())
            },
        }

    def barcodes(self) -> set[str]:
        return set(self.slot_contents.values()) | {b for b, _ in self.drive_contents.values()}


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_state(data: object, where: str) -> _State:
    def bad(why: str) -> LibraryError:
        return LibraryError(E_OTHER, f"{where}: invalid library file: {why}")

    if not isinstance(data, dict):
        raise bad("expected a JSON object")
    if data.get("format") != LIBRARY_FORMAT:
        raise bad(f"format is {data.get('format')!r}, expected {LIBRARY_FORMAT!r}")
    if data.get("version") != LIBRARY_VERSION:
        raise bad(f"unsupported version {data.get('version')!r}")
    slots, drives = data.get("slots"), data.get("drives")
    if not _is_int(slots) or slots < 1:
        raise bad(f"slots must be a positive integer, not {slots!r}")
    if not _is_int(drives) or drives < 1:
        raise bad(f"drives must be a positive integer, not {drives!r}")
    sc = data.get("slot_contents") or {}
    dc = data.get("drive_contents") or {}
    if not isinstance(sc, dict) or not isinstance(dc, dict):
        raise bad("slot_contents and drive_contents must be objects")
    state = _State(slots, drives, {}, {})
    seen: set[str] = set()
    for key, barcode in sc.items():
        if not (isinstance(key, str) and key.isdigit() and 1 <= int(key) <= slots):
            raise bad(f"no slot {key!r}")
        if barcode is None:
            continue
        if not valid_barcode(barcode) or barcode in seen:
            raise bad(f"slot {key}: invalid or duplicate barcode {barcode!r}")
        seen.add(barcode)
        state.slot_contents[int(key)] = barcode
    for key, entry in dc.items():
        if not (isinstance(key, str) and key.isdigit() and 0 <= int(key) < drives):
            raise bad(f"no drive {key!r}")
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise bad(f"drive {key}: expected an object")
        barcode, src = entry.get("barcode"), entry.get("from")
        if not valid_barcode(barcode) or barcode in seen:
            raise bad(f"drive {key}: invalid or duplicate barcode {barcode!r}")
        if not (_is_int(src) and 1 <= src <= slots):
            raise bad(f"drive {key}: invalid source slot {src!r}")
        seen.add(barcode)
        state.drive_contents[int(key)] = (barcode, src)
    return state


def _write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _symlink_atomic(target: str, link: str) -> None:
    tmp = f"{link}.tmp{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Library:
    """An existing simulated library in folder ``path`` (see the module docstring).

    Every method reads ``library.json`` afresh under the library lock, so several
    ``Library`` objects, threads and processes can work on one folder.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._dir = os.fspath(path)
        self._json = os.path.join(self._dir, LIBRARY_FILE)
        self._lock = os.path.join(self._dir, LOCK_FILE)
        if not os.path.isfile(self._json):
            raise LibraryError(E_OTHER, f"{self._dir}: not a tapesim library (no {LIBRARY_FILE})")
        with self._locked(shared=True):
            st = self._read()
        self._slots, self._drives = st.slots, st.drives

    # ------------------------------------------------------------------ basics

    @property
    def path(self) -> str:
        """The library folder."""
        return self._dir

    @property
    def num_slots(self) -> int:
        return self._slots

    @property
    def num_drives(self) -> int:
        return self._drives

    def drive_path(self, drive: int = 0) -> str:
        """Path of drive ``drive``'s image: ``DIR/drive-<i>.tap`` (missing while empty)."""
        self._check_drive(drive)
        return os.path.join(self._dir, f"drive-{drive}.tap")

    def tape_path(self, barcode: str) -> str:
        """Path of the image of the tape ``barcode``: ``DIR/tapes/<BARCODE>.tap``."""
        return os.path.join(self._dir, TAPES_DIR, f"{barcode}.tap")

    def _check_slot(self, slot: object) -> int:
        if not _is_int(slot) or not 1 <= slot <= self._slots:
            raise LibraryError(E_NO_SUCH, f"no slot {slot} (slots are 1-{self._slots})")
        return slot

    def _check_drive(self, drive: object) -> int:
        if not _is_int(drive) or not 0 <= drive < self._drives:
            raise LibraryError(E_NO_SUCH, f"no drive {drive} (drives are 0-{self._drives - 1})")
        return drive

    @contextlib.contextmanager
    def _locked(self, *, shared: bool = False) -> Iterator[None]:
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _read(self) -> _State:
        try:
            data = load_json_file(self._json)
        except FileNotFoundError:
            raise LibraryError(E_OTHER, f"{self._dir}: not a tapesim library (no {LIBRARY_FILE})") from None
        except (OSError, ValueError) as e:
            raise LibraryError(E_OTHER, f"cannot read {self._json}: {e}") from None
        st = _parse_state(data, self._json)
        if (st.slots, st.drives) != (getattr(self, "_slots", st.slots), getattr(self, "_drives", st.drives)):
            raise LibraryError(E_OTHER, f"{self._json}: the library changed size")
        return st

    def _write(self, st: _State) -> None:
        _write_json_atomic(self._json, st.to_json())

    # ------------------------------------------------------------------ inventory

    def status(self) -> LibraryStatus:
        """The inventory: every slot (1..n) and drive (0..d-1) with its tape's barcode."""
        with self._locked(shared=True):
            st = self._read()
        return LibraryStatus(
            slots=[SlotInfo(k, st.slot_contents.get(k)) for k in range(1, st.slots + 1)],
            drives=[DriveInfo(i, *st.drive_contents.get(i, (None, None))) for i in range(st.drives)],
        )

    # ------------------------------------------------------------------ motions

    def load(self, slot: int, drive: int = 0) -> str:
        """Move the tape in ``slot`` into ``drive``; returns its barcode.

        E101 no such slot/drive, E102 the slot is empty, E103 the drive holds a tape.
        """
        self._check_slot(slot)
        self._check_drive(drive)
        with self._locked():
            st = self._read()
            barcode = st.slot_contents.get(slot)
            if barcode is None:
                raise LibraryError(E_SOURCE_EMPTY, f"slot {slot} is empty")
            if drive in st.drive_contents:
                raise LibraryError(E_DRIVE_FULL, f"drive {drive} is full")
            image = self.tape_path(barcode)
            if not os.path.isfile(image):
                raise LibraryError(E_OTHER, f"tape {barcode} has no image ({image} is missing)")
            link = self.drive_path(drive)
            rel = os.path.join(TAPES_DIR, f"{barcode}.tap")
            # sidecar first: when the image link appears, its settings are there
            _symlink_atomic(rel + SIDECAR_SUFFIX, link + SIDECAR_SUFFIX)
            _symlink_atomic(rel, link)
            del st.slot_contents[slot]
            st.drive_contents[drive] = (barcode, slot)
            self._write(st)
            return barcode

    def unload(self, drive: int = 0, slot: int | None = None) -> int:
        """Move the tape in ``drive`` into ``slot``; returns the slot number.

        ``slot=None``: back to the slot it came from, or, if that is full now, the first
        empty slot. E101 no such slot/drive, E104 the drive is empty, E105 the slot is full
        (or no slot is empty), E200 the drive is busy (its image is open in a ``SimDrive``).
        """
        self._check_drive(drive)
        if slot is not None:
            self._check_slot(slot)
        with self._locked():
            st = self._read()
            entry = st.drive_contents.get(drive)
            if entry is None:
                raise LibraryError(E_DRIVE_EMPTY, f"drive {drive} is empty")
            barcode, src = entry
            if slot is None:
                if src not in st.slot_contents:
                    slot = src
                else:
                    free = [k for k in range(1, st.slots + 1) if k not in st.slot_contents]
                    if not free:
                        raise LibraryError(E_DEST_FULL, "no empty slot")
                    slot = free[0]
            elif slot in st.slot_contents:
                raise LibraryError(E_DEST_FULL, f"slot {slot} is full")
            link = self.drive_path(drive)
            # Hold the image's flock (the one SimDrive takes) while removing the links: a
            # SimDrive that has the tape open makes the drive busy, and none can open it
            # between the check and the removal.
            with self._image_lock(drive, self.tape_path(barcode)):
                _unlink_quiet(link)
                _unlink_quiet(link + SIDECAR_SUFFIX)
            del st.drive_contents[drive]
            st.slot_contents[slot] = barcode
            self._write(st)
            return slot

    @contextlib.contextmanager
    def _image_lock(self, drive: int, image: str) -> Iterator[None]:
        try:
            fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield  # nothing to hold: the image is gone
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LibraryError(E_OTHER, f"drive {drive} is busy (the tape is in use)") from None
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ import / export

    def add_tape(
        self,
        slot: int,
        barcode: str,
        capacity: int = DEFAULT_CAPACITY,
        *,
        early_warning: int | None = None,
        max_record: int = DEFAULT_MAX_RECORD,
        write_protected: bool = False,
        rate: int = 0,
        buffer: int = DEFAULT_BUFFER,
    ) -> None:
        """Import tape ``barcode`` into the empty ``slot`` (the mail slot of a real library).

        If ``tapes/<BARCODE>.tap`` exists (a tape exported by :meth:`remove_tape`) it comes
        back with its content; otherwise a blank tape is made with the given settings.
        E101 no such slot, E105 the slot is full, E200 invalid barcode or already in the library.
        """
        self._check_slot(slot)
        if not valid_barcode(barcode):
            raise LibraryError(E_OTHER, f"invalid barcode {barcode!r} (1-32 of A-Z a-z 0-9 _ -)")
        with self._locked():
            st = self._read()
            if slot in st.slot_contents:
                raise LibraryError(E_DEST_FULL, f"slot {slot} is full")
            if barcode in st.barcodes():
                raise LibraryError(E_OTHER, f"tape {barcode} is already in the library")
            image = self.tape_path(barcode)
            if not os.path.exists(image):
                os.makedirs(os.path.dirname(image), exist_ok=True)
                try:
                    create_image(
                        image,
                        capacity=capacity,
                        early_warning=early_warning,
                        max_record=max_record,
                        write_protected=write_protected,
                        barcode=barcode,
                        overwrite=False,
                        rate=rate,
                        buffer=buffer,
                    )
                except ValueError as e:
                    raise LibraryError(E_OTHER, f"tape {barcode}: {e}") from None
            st.slot_contents[slot] = barcode
            self._write(st)

    def remove_tape(self, slot: int) -> str:
        """Export the tape in ``slot``; returns its barcode. Its image stays in ``tapes/``.

        E101 no such slot, E102 the slot is empty.
        """
        self._check_slot(slot)
        with self._locked():
            st = self._read()
            barcode = st.slot_contents.pop(slot, None)
            if barcode is None:
                raise LibraryError(E_SOURCE_EMPTY, f"slot {slot} is empty")
            self._write(st)
            return barcode

    def __repr__(self) -> str:
        return f"<Library {self._dir!r} {self._slots} slots {self._drives} drives>"


def create_library(
    path: str | os.PathLike[str],
    slots: int,
    capacity: int,
    *,
    drives: int = 1,
    early_warning: int | None = None,
    max_record: int = DEFAULT_MAX_RECORD,
    barcode_prefix: str = "TAP",
    overwrite: bool = False,
    rate: int = 0,
    buffer: int = DEFAULT_BUFFER,
) -> Library:
    """Make a library in folder ``path`` with ``slots`` slots, ``drives`` empty drives and a
    blank tape in every slot (barcodes ``<prefix>001``, ``<prefix>002``, ...). ``rate`` and
    ``buffer``: every tape's drive transfer rate (bytes/s, 0 = unlimited; tapesim.transport).

    An existing library there is refused (``LibraryError`` E200) unless ``overwrite``, which
    erases it (its tapes too). Bad arguments: ``ValueError``.
    """
    d = os.fspath(path)
    if not _is_int(slots) or slots < 1:
        raise ValueError(f"slots must be a positive integer, not {slots!r}")
    if not _is_int(drives) or drives < 1:
        raise ValueError(f"drives must be a positive integer, not {drives!r}")
    width = max(3, len(str(slots)))
    barcodes = [f"{barcode_prefix}{k:0{width}d}" for k in range(1, slots + 1)]
    for b in (barcodes[0], barcodes[-1]):
        if not valid_barcode(b):
            raise ValueError(f"invalid barcode {b!r} (1-32 of A-Z a-z 0-9 _ -): check the prefix")
    # validates capacity / early_warning / max_record before touching anything
    TapeSettings(capacity=capacity, early_warning=early_warning, max_record=max_record, rate=rate, buffer=buffer)
    if os.path.exists(d) and not os.path.isdir(d):
        raise LibraryError(E_OTHER, f"{d} exists and is not a folder")
    os.makedirs(d, exist_ok=True)
    json_path = os.path.join(d, LIBRARY_FILE)
    lock_fd = os.open(os.path.join(d, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if os.path.exists(json_path):
            if not overwrite:
                raise LibraryError(E_OTHER, f"{d} already holds a library (use overwrite / --force)")
            _erase_library(d)
        tapes = os.path.join(d, TAPES_DIR)
        os.makedirs(tapes, exist_ok=True)
        for b in barcodes:
            create_image(
                os.path.join(tapes, f"{b}.tap"),
                capacity=capacity,
                early_warning=early_warning,
                max_record=max_record,
                barcode=b,
                rate=rate,
                buffer=buffer,
            )
        st = _State(slots, drives, dict(enumerate(barcodes, 1)), {})
        _write_json_atomic(json_path, st.to_json())
    finally:
        os.close(lock_fd)
    return Library(d)


def _erase_library(d: str) -> None:
    """Remove an existing library's drives and tapes (refused if a drive is busy)."""
    for name in os.listdir(d):
        m = re.fullmatch(r"drive-(\d+)\.tap", name)
        if m is None:
            continue
        link = os.path.join(d, name)
        try:
            fd = os.open(link, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LibraryError(E_OTHER, f"drive {m.group(1)} is busy (the tape is in use)") from None
            finally:
                os.close(fd)
    for name in os.listdir(d):
        if re.fullmatch(r"drive-\d+\.tap(\.tapesim|\.tapesim-stats)?", name):
            _unlink_quiet(os.path.join(d, name))
    shutil.rmtree(os.path.join(d, TAPES_DIR), ignore_errors=True)
    _unlink_quiet(os.path.join(d, LIBRARY_FILE))
