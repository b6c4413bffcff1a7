"""Fault injection: media errors, power cuts, write errors, early end of medium, short reads.

Faults live in the cartridge's settings sidecar (``IMAGE.tapesim``, key ``faults``: a list of
JSON objects, each with a ``kind``), so they persist across opens and can be set from tests
(``add_fault``) or from the command line (``tapesim fault IMAGE add KIND ...``). A
:class:`tapesim.drive.SimDrive` reads them when it opens the image (and again on MTLOAD or
:meth:`~tapesim.drive.SimDrive.reload_faults`).

Positions are logical object numbers (records and filemarks counted from 0 at BOT, as MTIOCPOS
reports them).

================  ==========================  ==================================================
kind              parameters                  behaviour
================  ==========================  ==================================================
``unreadable``    ``at`` P, ``count`` C (1)   reading a record at P..P+C-1 gives EIO and the
                                              tape is past the record (st after a medium
                                              error). Filemarks in the range read normally;
                                              spacing is not affected. **Persistent** (a bad
                                              spot of the medium: rewriting there does not
                                              clear it).
``short_read``    ``at`` P, ``length`` L      reading the record at P returns only its first L
                                              bytes (the drive returns a record shorter than
                                              written; a buffer smaller than L gives ENOMEM as
                                              for an L-byte record). **Persistent.**
``write_error``   ``at`` P, ``count`` C (1)   writing a record at P..P+C-1 gives EIO and writes
                                              nothing; the position does not move (filemarks
                                              are written normally). **Persistent.**
``power_cut``     ``after`` N or ``at`` P     the write of record N+1 of the session (or of the
                                              record at P) stops half-way: the image ends in
                                              the middle of that record (leading length word +
                                              the first ``len // 2`` data bytes, no trailing
                                              length word), the write and every later
                                              operation (read, write, mtop, mtget, mtpos) give
                                              EIO; ``close()`` just releases the image (no
                                              filemark). **One-shot**: once it has happened it
                                              is removed from the sidecar (the drive rebooted);
                                              the image then opens with a damaged tail.
``early_eom``     ``offset`` X                the medium ends early: the capacity behaves as if
                                              it were ``min(capacity, X)`` and the early warning
                                              starts at ``X - early_warning`` (at least 0). The
                                              ``capacity`` property still reports the nominal
                                              one. **Persistent.**
================  ==========================  ==================================================

"Session" means since the ``SimDrive`` was opened; only successful record writes count
(``write()`` calls that wrote a record; filemarks do not).

Several faults may apply at once: for a read, ``unreadable`` wins over ``short_read``; for a
write, the end-of-medium checks come first, then ``write_error``, then ``power_cut``; the
smallest ``early_eom`` offset wins.

    from tapesim.faults import add_fault, list_faults, clear_faults
    add_fault("t.tap", "unreadable", at=3, count=2)
    add_fault("t.tap", "power_cut", after=10)
    list_faults("t.tap")          # -> [{"kind": "unreadable", "at": 3, "count": 2}, ...]
    clear_faults("t.tap")         # -> 2 (number removed); clear_faults("t.tap", "power_cut")
"""

from __future__ import annotations

import os
from typing import Any

from .sidecar import SidecarError, read_sidecar, sidecar_path, write_sidecar

__all__ = [
    "FAULT_KINDS",
    "FaultError",
    "add_fault",
    "clear_faults",
    "list_faults",
    "load_faults",
    "normalize_fault",
    "remove_fault",
    "save_faults",
]

# kind -> (required parameters, optional parameters with defaults)
FAULT_KINDS: dict[str, tuple[tuple[str, ...], dict[str, int]]] = {
    "unreadable": (("at",), {"count": 1}),
    "short_read": (("at", "length"), {}),
    "write_error": (("at",), {"count": 1}),
    "power_cut": ((), {}),  # exactly one of "after" and "at"
    "early_eom": (("offset",), {}),
}
_POWER_CUT_PARAMS = ("after", "at")
PERSISTENT = frozenset({"unreadable", "short_read", "write_error", "early_eom"})
ONE_SHOT = frozenset({"power_cut"})


class FaultError(ValueError):
    """A fault description that is invalid (unknown kind, missing or bad parameter)."""


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def normalize_fault(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate a fault and return it as stored: ``{"kind": kind, **params}`` with defaults.

    Parameters given as None are ignored (convenient for the command line). Raises
    :class:`FaultError`.
    """
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r} (expected one of: {', '.join(FAULT_KINDS)})")
    given = {k: v for k, v in params.items() if v is not None}
    required, optional = FAULT_KINDS[kind]
    allowed = set(required) | set(optional) | (set(_POWER_CUT_PARAMS) if kind == "power_cut" else set())
    extra = sorted(set(given) - allowed)
    if extra:
        raise FaultError(
            f"{kind}: unexpected parameter{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
        )
    missing = [k for k in required if k not in given]
    if missing:
        raise FaultError(f"{kind}: missing parameter {', '.join(missing)}")
    if kind == "power_cut" and sum(k in given for k in _POWER_CUT_PARAMS) != 1:
        raise FaultError("power_cut: give exactly one of 'after' (records written) and 'at' (position)")
    out: dict[str, Any] = {"kind": kind}
    for k in (*required, *_POWER_CUT_PARAMS, *optional):
        if k in out:
            continue
        if k in given:
            v = given[k]
        elif k in optional:
            v = optional[k]
        else:
            continue
        if not _is_int(v) or v < 0:
            raise FaultError(f"{kind}: {k} must be a non-negative integer, not {v!r}")
        if k in ("count", "length") and v < 1:
            raise FaultError(f"{kind}: {k} must be at least 1")
        out[k] = v
    return out


def _validate_list(raw: object, source: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SidecarError(f"{source}: faults must be a list")
    out = []
    for i, f in enumerate(raw):
        if not isinstance(f, dict) or not isinstance(f.get("kind"), str):
            raise SidecarError(f'{source}: fault {i} must be an object with a "kind"')
        params = {k: v for k, v in f.items() if k != "kind"}
        try:
            out.append(normalize_fault(f["kind"], params))
        except FaultError as e:
            raise SidecarError(f"{source}: fault {i}: {e}") from None
    return out


def load_faults(image: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The faults in the sidecar of ``image`` (validated; :class:`SidecarError` if bad)."""
    raw = read_sidecar(image)
    if raw is None:
        return []
    return _validate_list(raw.get("faults"), sidecar_path(image))


def save_faults(image: str | os.PathLike[str], faults: list[dict[str, Any]]) -> None:
    """Replace the faults of ``image`` (atomically; other sidecar keys are kept).

    An empty list removes the key. A sidecar that is a symlink (a library drive) is updated
    at its target.
    """
    checked = _validate_list(list(faults), "faults")
    raw = read_sidecar(image) or {}
    if checked:
        raw["faults"] = checked
    else:
        raw.pop("faults", None)
    write_sidecar(image, raw)


def _check_image(image: str | os.PathLike[str]) -> None:
    if not os.path.exists(image):
        raise FileNotFoundError(2, "No such file or directory", os.fspath(image))


def add_fault(image: str | os.PathLike[str], kind: str, **params: Any) -> dict[str, Any]:
    """Add a fault to the cartridge ``image``; returns it as stored (defaults filled in).

    ``unreadable(at, count=1)``, ``short_read(at, length)``, ``write_error(at, count=1)``,
    ``power_cut(after=N | at=P)``, ``early_eom(offset)``. A missing image: FileNotFoundError;
    bad parameters: :class:`FaultError`. An open ``SimDrive`` sees it after MTLOAD or
    ``reload_faults()``.
    """
    _check_image(image)
    fault = normalize_fault(kind, params)
    save_faults(image, [*load_faults(image), fault])
    return fault


def list_faults(image: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The faults of the cartridge ``image``, in the order they were added."""
    _check_image(image)
    return load_faults(image)


def clear_faults(image: str | os.PathLike[str], kind: str | None = None) -> int:
    """Remove every fault of ``image`` (or only those of ``kind``); returns how many."""
    _check_image(image)
    if kind is not None and kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r} (expected one of: {', '.join(FAULT_KINDS)})")
    faults = load_faults(image)
    keep = [f for f in faults if kind is not None and f["kind"] != kind]
    if len(keep) != len(faults):
        save_faults(image, keep)
    return len(faults) - len(keep)


def remove_fault(image: str | os.PathLike[str], fault: dict[str, Any]) -> bool:
    """Remove the first fault equal to ``fault`` (used when a one-shot fault has happened)."""
    faults = load_faults(image)
    for i, f in enumerate(faults):
        if f == fault:
            del faults[i]
            save_faults(image, faults)
            return True
    return False


def describe_fault(fault: dict[str, Any]) -> str:
    """One line for ``tapesim fault IMAGE list`` / ``tapesim info``."""
    kind: str = fault["kind"]
    if kind == "unreadable":
        c = fault["count"]
        where = f"object {fault['at']}" if c == 1 else f"objects {fault['at']}..{fault['at'] + c - 1}"
        return f"unreadable: reading the record at {where} gives EIO (persistent)"
    if kind == "short_read":
        return (
            f"short_read: the record at object {fault['at']} reads back as its first "
            f"{fault['length']} bytes (persistent)"
        )
    if kind == "write_error":
        c = fault["count"]
        where = f"object {fault['at']}" if c == 1 else f"objects {fault['at']}..{fault['at'] + c - 1}"
        return f"write_error: writing a record at {where} gives EIO (persistent)"
    if kind == "power_cut":
        if "after" in fault:
            when = f"after {fault['after']} records written in a session"
        else:
            when = f"while writing the record at object {fault['at']}"
        return f"power_cut: {when} (one-shot)"
    if kind == "early_eom":
        return f"early_eom: the medium ends at byte {fault['offset']} (persistent)"
    return kind  # pragma: no cover
