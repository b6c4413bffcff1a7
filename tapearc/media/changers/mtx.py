"""SCSI medium changers through the ``mtx`` command (``mtx:/dev/sgN``).

``mtx -f DEV status`` gives the inventory, ``mtx -f DEV load SLOT DRIVE`` and
``mtx -f DEV unload SLOT DRIVE`` move media. mtx numbers storage elements (slots) from 1, in
the order the changer reports them, import/export slots last, and drives (data transfer
elements) from 0: the same numbers are used here.

The parser (:func:`parse_mtx_status`) understands what mtx 1.3.x prints::

      Storage Changer /dev/sg3:2 Drives, 5 Slots ( 1 Import/Export )
    Data Transfer Element 0:Empty
    Data Transfer Element 1:Full (Storage Element 3 Loaded):VolumeTag = STL003L8
    Data Transfer Element 2:Full (Unknown Storage Element Loaded)
          Storage Element 1:Full :VolumeTag=STL001L8
          Storage Element 2:Empty:VolumeTag=
          Storage Element 3:Full
          Storage Element 5 IMPORT/EXPORT:Empty
          Storage Element 4:Full :VolumeTag=A1:AlternateVolumeTag=B1

(spaces around ``=`` vary between element kinds, volume tags are space-padded, an empty slot
may still print an empty ``VolumeTag=``, media without a readable label print no tag.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

from ..changer import Changer, ChangerError, ChangerStatus, DriveBayStatus, SlotStatus, log

STATUS_TIMEOUT = 120.0
MOTION_TIMEOUT = 900.0

_HEADER = re.compile(
    r"^\s*Storage\s+Changer\s+(?P<dev>.*?)\s*:\s*(?P<drives>\d+)\s+Drives?\s*,\s*(?P<slots>\d+)\s+Slots?"
    r"(?:\s*\(\s*(?P<ie>\d+)\s+Import/Export\s*\))?",
    re.IGNORECASE,
)
_DRIVE = re.compile(
    r"^\s*Data\s+Transfer\s+Element\s+(?P<num>\d+)\s*:\s*(?P<state>Empty|Full)(?P<rest>.*)$",
    re.IGNORECASE,
)
_SLOT = re.compile(
    r"^\s*Storage\s+Element\s+(?P<num>\d+)(?P<ie>\s+IMPORT/EXPORT)?\s*:\s*(?P<state>Empty|Full)(?P<rest>.*)$",
    re.IGNORECASE,
)
_SOURCE = re.compile(r"\(\s*Storage\s+Element\s+(\d+)\s+Loaded\s*\)", re.IGNORECASE)
# A tag runs up to the next ":AlternateVolumeTag" (or the end of the line).
_TAG = re.compile(r"(?<![A-Za-z])VolumeTag\s*=\s*(.*?)\s*(?=:\s*AlternateVolumeTag\b|$)", re.IGNORECASE)
_ALT_TAG = re.compile(r"AlternateVolumeTag\s*=\s*(.*?)\s*$", re.IGNORECASE)


def _tags(rest: str) -> tuple[str | None, str | None]:
    m = _TAG.search(rest)
    primary = m.group(1).strip() if m else ""
    a = _ALT_TAG.search(rest)
    alternate = a.group(1).strip() if a else ""
    return (primary or None, alternate or None)


def parse_mtx_status(text: str) -> ChangerStatus:
    """Turn the output of ``mtx status`` into a :class:`ChangerStatus`.

    Unknown lines are ignored; elements keep the numbers mtx prints. ``details`` holds
    ``device`` (from the header), ``import_export`` (the number of import/export slots) and,
    when any are printed, ``alternate_barcodes`` ({"slot 3": tag, "drive 0": tag}).
    Raises ChangerError when the text holds neither a header nor any element line.
    """
    inv = _Inventory()
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.strip():
            inv.feed(line)
    if not inv.header and not inv.slots and not inv.drives:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        raise ChangerError(
            "cannot understand the output of mtx status"
            + (f" (it begins: {first[:120]!r})" if first else " (it is empty)")
        )
    return inv.status()


class _Inventory:
    """What the lines of ``mtx status`` read so far say (see :func:`parse_mtx_status`)."""

    def __init__(self) -> None:
        self.slots: dict[int, SlotStatus] = {}
        self.drives: dict[int, DriveBayStatus] = {}
        self.details: dict[str, object] = {}
        self.alternates: dict[str, str] = {}
        self.header = False
        self.last: str | None = None  # "slot N" / "drive N": where a continuation line belongs

    def feed(self, line: str) -> None:
        if m := _HEADER.match(line):
            self.header = True
            self.details["device"] = m.group("dev")
            self.details["drives_reported"] = int(m.group("drives"))
            self.details["slots_reported"] = int(m.group("slots"))
            self.details["import_export"] = int(m.group("ie") or 0)
        elif m := _DRIVE.match(line):
            self._drive(m)
        elif m := _SLOT.match(line):
            self._slot(m)
        elif self.last:
            self._continuation(self.last, line.strip().lstrip(":").strip())

    def _drive(self, m: re.Match[str]) -> None:
        num = int(m.group("num"))
        full = m.group("state").lower() == "full"
        rest = m.group("rest")
        src = _SOURCE.search(rest)
        primary, alternate = _tags(rest)
        self.drives[num] = DriveBayStatus(
            number=num,
            full=full,
            barcode=primary if full else None,
            source_slot=int(src.group(1)) if (full and src) else None,
        )
        self.last = f"drive {num}"
        if alternate and full:
            self.alternates[self.last] = alternate

    def _slot(self, m: re.Match[str]) -> None:
        num = int(m.group("num"))
        full = m.group("state").lower() == "full"
        primary, alternate = _tags(m.group("rest"))
        self.slots[num] = SlotStatus(
            number=num,
            full=full,
            barcode=primary if full else None,
            import_export=bool(m.group("ie")),
        )
        self.last = f"slot {num}"
        if alternate and full:
            self.alternates[self.last] = alternate

    def _continuation(self, last: str, stripped: str) -> None:
        """Some builds print a tag on a line of its own after the element it belongs to."""
        if a := _ALT_TAG.match(stripped):
            if a.group(1).strip():
                self.alternates[last] = a.group(1).strip()
            return
        t = _TAG.match(stripped)
        if not (t and t.group(1).strip()):
            return
        kind, num_s = last.split()
        num = int(num_s)
        if kind == "slot" and self.slots[num].full and self.slots[num].barcode is None:
            s = self.slots[num]
            self.slots[num] = SlotStatus(s.number, s.full, t.group(1).strip(), s.import_export)
        elif kind == "drive" and self.drives[num].full and self.drives[num].barcode is None:
            d = self.drives[num]
            self.drives[num] = DriveBayStatus(d.number, d.full, t.group(1).strip(), d.source_slot)

    def status(self) -> ChangerStatus:
        if self.alternates:
            self.details["alternate_barcodes"] = self.alternates
        return ChangerStatus(
            slots=tuple(self.slots[k] for k in sorted(self.slots)),
            drives=tuple(self.drives[k] for k in sorted(self.drives)),
            details=self.details,
        )


_SENSE = re.compile(r"^mtx: Request Sense: (.*?)\s*=\s*(.*)$")


def mtx_error_line(text: str, limit: int = 300) -> str:
    """mtx's complaint in one line: its last line that is not a "Request Sense" detail, plus
    the sense key and additional sense code/qualifier when it printed them."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    sense: dict[str, str] = {}
    said: list[str] = []
    for ln in lines:
        if m := _SENSE.match(ln):
            sense[m.group(1).strip().lower()] = m.group(2).strip()
        else:
            said.append(ln)
    out = said[-1] if said else ""
    if said and said[0].lower().startswith("usage"):
        out = "mtx did not accept the command (it printed its usage)"
    key = sense.get("sense key")
    if key:
        asc, ascq = sense.get("additional sense code"), sense.get("additional sense qualifier")
        extra = f"sense key {key}" + (f", ASC {asc}h" if asc else "") + (f" ASCQ {ascq}h" if ascq else "")
        out = f"{out} ({extra})" if out else extra
    out = " ".join(out.split())
    return out if len(out) <= limit else out[: limit - 3] + "..."


class MtxChanger(Changer):
    """A SCSI medium changer driven by the ``mtx`` program (package ``mtx``).

    ``device`` is the changer's SCSI generic node (``lsscsi -g`` lists it as ``mediumx``).
    ``mtx`` is the program to run; ``timeout`` bounds each load/unload (seconds), status runs
    are bounded by 120 s. Every failure is a ChangerError quoting mtx's own words.
    """

    def __init__(
        self, device: str, *, mtx: str = "mtx", timeout: float = MOTION_TIMEOUT, status_timeout: float = STATUS_TIMEOUT
    ) -> None:
        if not device:
            raise ChangerError("mtx changer: no device given (expected mtx:/dev/sgN)")
        self.device = device
        self.mtx = mtx
        self.timeout = timeout
        self.status_timeout = status_timeout
        self.name = f"mtx:{device}"
        self._closed = False

    def __repr__(self) -> str:
        return f"MtxChanger({self.device!r})"

    # -- running mtx ------------------------------------------------------------------------

    def _run(self, args: list[str], timeout: float) -> str:
        if self._closed:
            raise ChangerError(f"{self.name}: the changer is closed")
        argv = [self.mtx, "-f", self.device, *args]
        shown = " ".join(["mtx", "-f", self.device, *args])
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except FileNotFoundError:
            raise ChangerError(
                f"{self.name}: cannot run {self.mtx!r}: not found",
                hint="install mtx (Debian: apt install mtx)",
            ) from None
        except OSError as err:
            raise ChangerError(f"{self.name}: cannot run {self.mtx!r}: {err.strerror or err}") from None
        try:
            out, errtext = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            raise ChangerError(
                f"{self.name}: `{shown}` timed out after {timeout:g} s",
                hint=f"the changer may still be moving; check it with `mtx -f {self.device} status` before retrying",
            ) from None
        except BaseException:  # Ctrl-C: do not leave mtx behind
            self._kill(proc)
            raise
        if proc.returncode != 0:
            said = mtx_error_line(errtext) or mtx_error_line(out) or f"exit status {proc.returncode}"
            raise ChangerError(f"{self.name}: `{shown}` failed: {said}", mtx_status=proc.returncode)
        return out

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # stuck in the kernel: give up on it, don't hang
            pass

    # -- the Changer protocol ---------------------------------------------------------------

    def status(self) -> ChangerStatus:
        out = self._run(["status"], self.status_timeout)
        try:
            return parse_mtx_status(out)
        except ChangerError as err:
            raise ChangerError(f"{self.name}: {err.message}") from None

    def load(self, slot: int, drive: int = 0) -> None:
        log.info("%s: load slot %d into drive %d", self.name, slot, drive)
        self._run(["load", str(int(slot)), str(int(drive))], self.timeout)

    def unload(self, drive: int = 0, slot: int | None = None) -> None:
        log.info("%s: unload drive %d%s", self.name, drive, "" if slot is None else f" into slot {slot}")
        if slot is None:
            st = self.status()
            bay = next((d for d in st.drives if d.number == drive), None)
            if bay is None:
                raise ChangerError(
                    f"{self.name}: no drive {drive} (drives: {', '.join(str(d.number) for d in st.drives) or 'none'})"
                )
            if not bay.full:
                raise ChangerError(f"{self.name}: drive {drive} is empty")
            free = {s.number for s in st.slots if not s.full}
            if bay.source_slot is not None and bay.source_slot in free:
                slot = bay.source_slot
            else:
                slot = next((s.number for s in st.slots if not s.full and not s.import_export), None)
                if slot is None:
                    raise ChangerError(f"{self.name}: no empty slot to unload drive {drive} into")
        self._run(["unload", str(int(slot)), str(int(drive))], self.timeout)

    def close(self) -> None:
        self._closed = True
