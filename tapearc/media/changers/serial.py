"""A serial-controlled autoloader speaking TALP/1 (``serial:URL``): the host side.

The protocol is ``docs/serial-autoloader.md``. ``URL`` is anything pyserial's
``serial.serial_for_url`` opens: a tty (``/dev/ttyUSB0``), a pty path (``/dev/pts/5``, e.g.
``tapesim autoloader DIR --pty``), or ``socket://HOST:PORT`` (``tapesim autoloader DIR
--listen HOST:PORT``).

How the host side behaves:

* At open it sends an empty line (a device discards it; it ends any half line a previous
  host left behind), then ``HELLO``; no answer within ``timeout``, or an answer that is not
  ``TALP 1`` -> ChangerError "no TALP/1 autoloader answers on URL".
* Tags are decimal numbers, incremented for every command, starting from a random number
  (so that a late answer to a previous host's command cannot be taken for an answer to ours).
  Lines with another tag (stale answers to a command that timed out) are discarded.
* ``HELLO`` and ``STATUS`` are given ``timeout`` seconds (default 5), ``LOAD`` and
  ``UNLOAD`` ``motion_timeout`` seconds (default 900). Each ``<tag> BUSY`` line restarts the
  wait (the device says it is alive), up to 4 times the command's timeout in all.
* ``ERR <code> <text>`` becomes ChangerError "<name>: <text> (<code>: <meaning>)", with
  ``code`` in the error's details. A peer that closes the line, an I/O error, a timeout: a
  ChangerError too.
"""

from __future__ import annotations

import random
import re
import threading
import time
from typing import Any

from ..changer import Changer, ChangerError, ChangerStatus, DriveBayStatus, SlotStatus, log

HELLO_TIMEOUT = 5.0
MOTION_TIMEOUT = 900.0
BUSY_CAP = 4  # BUSY lines extend a command's wait up to this many times its timeout
MAX_LINE = 200
_POLL = 0.2  # pyserial read timeout: how often the host looks at its deadline

ERROR_MEANINGS = {
    "E100": "unknown command or malformed line",
    "E101": "no such slot or drive",
    "E102": "source slot empty",
    "E103": "drive full",
    "E104": "drive empty",
    "E105": "destination slot full",
    "E200": "mechanical failure",
}

_NUM = r"(\d{1,9})"
_BARCODE = r"([A-Za-z0-9_-]{1,32})"
_HELLO = re.compile(r"^TALP (\S+) SLOTS (\d+) DRIVES (\d+)(?: VENDOR ?(.*))?$")
_SLOT_FULL = re.compile(rf"^SLOT {_NUM} FULL {_BARCODE}$")
_SLOT_EMPTY = re.compile(rf"^SLOT {_NUM} EMPTY$")
_DRIVE_FULL = re.compile(rf"^DRIVE {_NUM} FULL {_BARCODE}(?: FROM (\d{{1,9}}|-))?$")
_DRIVE_EMPTY = re.compile(rf"^DRIVE {_NUM} EMPTY$")


class _NoAnswer(Exception):
    pass


class SerialChanger(Changer):
    """A TALP/1 autoloader on ``url`` (see the module docstring).

    ``timeout``: seconds to wait for the answer to HELLO and STATUS; ``motion_timeout``: for
    LOAD and UNLOAD. Opening checks that a TALP/1 device answers.
    """

    def __init__(self, url: str, *, timeout: float = HELLO_TIMEOUT, motion_timeout: float = MOTION_TIMEOUT) -> None:
        if not url:
            raise ChangerError("serial changer: no port given (expected serial:PORT or serial:socket://HOST:PORT)")
        self.url = url
        self.name = f"serial:{url}"
        self.timeout = timeout
        self.motion_timeout = motion_timeout
        self._tag = random.randrange(1, 1_000_000)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._port: Any = None  # a pyserial port (pyserial has no type hints)
        self.vendor: str | None = None
        self.num_slots: int | None = None
        self.num_drives: int | None = None
        try:
            import serial  # typed by types-pyserial (test extras)
        except ImportError:
            raise ChangerError(f"{self.name}: pyserial is not installed", hint="pip install pyserial") from None
        self._serial = serial
        try:
            self._port = serial.serial_for_url(
                url,
                baudrate=9600,
                bytesize=8,
                parity="N",
                stopbits=1,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                timeout=min(_POLL, timeout),
                write_timeout=max(timeout, 1.0),
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise ChangerError(f"{self.name}: cannot open the port: {_oneline(err)}") from None
        try:
            self._hello()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SerialChanger({self.url!r})"

    # -- the line ---------------------------------------------------------------------------

    def _io_error(self, err: BaseException) -> ChangerError:
        return ChangerError(
            f"{self.name}: the autoloader line failed: {_oneline(err)}",
            hint="check that the autoloader is on and connected",
        )

    def _write_line(self, text: str) -> None:
        if self._port is None:
            raise ChangerError(f"{self.name}: the changer is closed")
        try:
            self._port.write(text.encode("ascii") + b"\n")
            self._port.flush()
        except (self._serial.SerialException, OSError) as err:
            raise self._io_error(err) from None

    def _read_line(self, deadline: float) -> str:
        """The next line (without CR LF); raises _NoAnswer at ``deadline``."""
        port = self._port
        if port is None:
            raise ChangerError(f"{self.name}: the changer is closed")
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if len(raw) > 4 * MAX_LINE:
                    continue  # garbage
                return raw.decode("ascii", "replace")
            if len(self._buf) > 4 * MAX_LINE:  # no LF in sight: noise on the line
                del self._buf[:]
            if time.monotonic() >= deadline:
                raise _NoAnswer
            try:
                waiting = port.in_waiting
                chunk = port.read(max(1, min(waiting, 4096)))
            except (self._serial.SerialException, OSError) as err:
                raise self._io_error(err) from None
            if chunk:
                self._buf += chunk

    def _command(self, command: str, timeout: float) -> list[str]:
        """Send ``command``; return its data lines (without the tag) when it ends with OK."""
        with self._lock:
            self._tag = self._tag + 1 if self._tag < 99_999_999 else 1
            tag = str(self._tag)
            self._write_line(f"{tag} {command}")
            start = time.monotonic()
            deadline = start + timeout
            cap = start + BUSY_CAP * timeout
            data: list[str] = []
            while True:
                try:
                    line = self._read_line(deadline)
                except _NoAnswer:
                    raise ChangerError(
                        f"{self.name}: no answer to {command} within {timeout:g} s",
                        hint="the autoloader may still be busy; check it before retrying",
                    ) from None
                t, _, rest = line.partition(" ")
                if t != tag:
                    continue  # a stale answer (or noise)
                if rest == "BUSY":
                    deadline = max(deadline, min(time.monotonic() + timeout, cap))
                    continue
                if rest == "OK":
                    return data
                if rest == "ERR" or rest.startswith("ERR "):
                    code, _, text = rest[4:].partition(" ")
                    code = code or "E???"
                    meaning = ERROR_MEANINGS.get(code, "device error")
                    said = text.strip() or meaning
                    raise ChangerError(f"{self.name}: {said} ({code}: {meaning})", code=code)
                data.append(rest)

    # -- protocol ---------------------------------------------------------------------------

    def _hello(self) -> None:
        fail = f"no TALP/1 autoloader answers on {self.url}"
        try:
            try:
                self._port.reset_input_buffer()
            except (self._serial.SerialException, OSError):
                pass
            self._write_line("")  # ends a half line left behind; devices ignore empty lines
            data = self._command("HELLO", self.timeout)
        except ChangerError as err:
            raise ChangerError(fail, hint=err.message) from None
        for line in data:
            m = _HELLO.match(line)
            if m is None:
                continue
            if m.group(1) != "1":
                raise ChangerError(fail, hint=f"the device speaks TALP {m.group(1)}")
            self.num_slots, self.num_drives = int(m.group(2)), int(m.group(3))
            self.vendor = (m.group(4) or "").strip() or None
            return
        raise ChangerError(fail, hint=f"unexpected answer to HELLO: {data!r}"[:200])

    def status(self) -> ChangerStatus:
        data = self._command("STATUS", self.timeout)
        slots: dict[int, SlotStatus] = {}
        drives: dict[int, DriveBayStatus] = {}
        for line in data:
            if m := _SLOT_FULL.match(line):
                k, bc = int(m.group(1)), m.group(2)
                slots[k] = SlotStatus(k, True, None if bc == "-" else bc)
            elif m := _SLOT_EMPTY.match(line):
                k = int(m.group(1))
                slots[k] = SlotStatus(k, False)
            elif m := _DRIVE_FULL.match(line):
                i, bc, src = int(m.group(1)), m.group(2), m.group(3)
                drives[i] = DriveBayStatus(i, True, None if bc == "-" else bc, int(src) if src and src != "-" else None)
            elif m := _DRIVE_EMPTY.match(line):
                i = int(m.group(1))
                drives[i] = DriveBayStatus(i, False)
            else:
                raise ChangerError(f"{self.name}: malformed STATUS line from the autoloader: {line[:MAX_LINE]!r}")
        details: dict[str, object] = {"url": self.url}
        if self.vendor:
            details["vendor"] = self.vendor
        return ChangerStatus(
            slots=tuple(slots[k] for k in sorted(slots)),
            drives=tuple(drives[k] for k in sorted(drives)),
            details=details,
        )

    def load(self, slot: int, drive: int = 0) -> None:
        log.info("%s: load slot %d into drive %d", self.name, slot, drive)
        self._command(f"LOAD {int(slot)} {int(drive)}", self.motion_timeout)

    def unload(self, drive: int = 0, slot: int | None = None) -> None:
        log.info("%s: unload drive %d%s", self.name, drive, "" if slot is None else f" into slot {slot}")
        dest = "-" if slot is None else str(int(slot))
        self._command(f"UNLOAD {int(drive)} {dest}", self.motion_timeout)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass


def _oneline(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return " ".join(text.split())[:300]
