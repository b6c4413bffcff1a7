"""Changer backends behind :class:`tapearc.media.changer.Changer`; :func:`open_changer` picks one.

``sim:DIR``
    the simulated autoloader of hw-sim (a ``tapesim library`` folder), :mod:`.sim`.
``mtx:/dev/sgN``
    a SCSI medium changer through the ``mtx`` program, :mod:`.mtx`.
``serial:URL``
    a TALP/1 autoloader on a serial line, a pty or ``socket://HOST:PORT`` (everything after
    the first colon is pyserial's URL), :mod:`.serial`.
``operator``
    a person at the terminal, :mod:`.operator`.
"""

from __future__ import annotations

from ..changer import Changer, ChangerError, ChangerStatus, DriveBayStatus, SlotStatus

__all__ = [
    "ACCEPTED_FORMS",
    "Changer",
    "ChangerError",
    "ChangerStatus",
    "DriveBayStatus",
    "SlotStatus",
    "open_changer",
]

ACCEPTED_FORMS = (
    "sim:DIR, mtx:/dev/sgN, serial:PORT (e.g. serial:/dev/ttyUSB0 or serial:socket://HOST:PORT), or operator"
)


def open_changer(spec: str) -> Changer:
    """Open the changer named by ``spec`` (one of :data:`ACCEPTED_FORMS`).

    Raises ChangerError for an unknown or incomplete spec, and whatever the backend raises
    when it cannot be opened (a serial changer checks that a TALP/1 device answers).
    """
    spec = (spec or "").strip()
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if spec.lower() == "operator":
        from .operator import OperatorChanger

        return OperatorChanger()
    if sep and kind in ("sim", "mtx", "serial"):
        if not rest:
            raise ChangerError(f"changer {spec!r}: nothing after {kind}:; expected {ACCEPTED_FORMS}")
        if kind == "sim":
            from .sim import SimChanger

            return SimChanger(rest)
        if kind == "mtx":
            from .mtx import MtxChanger

            return MtxChanger(rest)
        from .serial import SerialChanger

        return SerialChanger(rest)
    shown = repr(spec) if spec else "(none given)"
    raise ChangerError(f"unknown changer {shown}; expected {ACCEPTED_FORMS}")
