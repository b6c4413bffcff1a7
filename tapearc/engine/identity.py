"""Medium identity before any write: is this medium blank, and is it the object the job reads?

* :func:`refuse_unless_blank` -- a medium whose first read found end of data is written on only
  when it is provably blank (the backend says so: a ``sim:`` image must be missing or empty)
  and the catalog holds no generation for a medium last seen there (a ``sim:``/``dir:`` path,
  outside a simulated library) or under its barcode.
* :func:`refuse_same_restore_target` -- a restore never writes onto the medium it reads (the
  image, its settings file, a file inside a ``dir:`` folder or a simulated library, the drive).
* :func:`refuse_source_is_medium` -- a backup never reads the medium it writes.

Objects are compared by identity (``st_dev``/``st_ino``, device numbers for devices, symlinks
followed), never by name.
"""

from __future__ import annotations

import os
import re
import uuid

from tapearc.catalog.db import Catalog
from tapearc.errors import (
    FormatError,
    NotTapearcMediumError,
    SameObjectError,
    UnsupportedVersionError,
)
from tapearc.media.base import TapeDrive, blank_check
from tapearc.media.identity import object_id
from tapearc.nbdclient import is_nbd_uri

__all__ = [
    "SCAN_HINT",
    "damaged_label",
    "known_medium",
    "known_medium_uuid",
    "medium_objects",
    "refuse_same_restore_target",
    "refuse_source_is_medium",
    "refuse_unless_blank",
]

_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")


def _split(spec: str) -> tuple[str, str]:
    m = _PREFIX.match(spec)
    if m:
        return m.group(1).lower(), m.group(2)
    if spec.startswith(("/dev/nst", "/dev/st")):
        return "st", spec
    return ("dir" if os.path.isdir(spec) else "sim"), spec


def _library_of(kind: str, path: str) -> str | None:
    """The simulated library folder ``path`` is (``sim:LIB``) or is a drive image of."""
    if kind != "sim" or not path:
        return None
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "library.json")):
        return path
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(os.path.join(parent, "library.json")):
        return parent
    return None


def _location(spec: str) -> str | None:
    """``sim:REALPATH`` or ``dir:REALPATH`` of a medium named by a path (outside a library, where
    the path names a drive, not a medium); None for anything else."""
    kind, path = _split(spec)
    if kind not in ("sim", "dir") or not path or _library_of(kind, path) is not None:
        return None
    return f"{kind}:{os.path.realpath(path)}"


def known_medium(catalog: Catalog, name: str, barcode: str | None = None, *, by_place: bool = True) -> str | None:
    """A description of the medium the catalog holds generations for that was last seen where
    the medium named ``name`` is (same ``sim:``/``dir:`` path; only ``by_place``: not when the
    path names a drive whose tapes a changer or an operator swaps) or bears ``barcode``; None
    when there is none."""
    found = known_medium_uuid(catalog, name, barcode, by_place=by_place)
    return None if found is None else found[1]


def known_medium_uuid(
    catalog: Catalog, name: str, barcode: str | None = None, *, by_place: bool = True
) -> tuple[uuid.UUID, str] | None:
    """:func:`known_medium`, with the uuid of that medium's label."""
    here = _location(name) if by_place else None
    for medium_uuid, set_uuid, sequence, text, last_name, numbers in catalog.media_holding_generations():
        by_place = here is not None and last_name is not None and _location(last_name) == here
        by_barcode = bool(barcode) and text == barcode
        if not (by_place or by_barcode):
            continue
        gens = ", ".join(map(str, numbers[:8])) + (", ..." if len(numbers) > 8 else "")
        seen = f"last seen as {last_name}" if by_place else f"barcode {barcode}"
        return uuid.UUID(str(medium_uuid)), (
            f"medium {medium_uuid} (sequence {sequence} of media set {set_uuid}, {seen}) holding "
            f"generation{'s' if len(numbers) != 1 else ''} {gens}"
        )
    return None


def refuse_unless_blank(
    drive: TapeDrive, catalog: Catalog | None, barcode: str | None = None, *, by_place: bool = True
) -> None:
    """Raise unless the medium in ``drive``, whose first read found end of data, is provably
    blank: the backend's verdict (foreign content: NotTapearcMediumError, exit 11; a damaged
    label: DamagedDataError, exit 20), then the catalog's knowledge of a medium there
    (:func:`known_medium`)."""
    err = blank_check(drive)
    if err is not None:
        raise err.at(medium=drive.name)
    if catalog is None:
        return
    known = known_medium(catalog, drive.name, barcode, by_place=by_place)
    if known is not None:
        forget = getattr(drive, "forget_created", None)
        if forget is not None:
            forget()  # a missing image this job made to write on: leave no new file behind
        raise NotTapearcMediumError(
            f"medium reads as blank, but the catalog holds {known}: it was erased, replaced or its "
            "beginning is damaged, and it is not taken for a blank medium; nothing was written",
            hint=f"`tapearc scan --media {drive.name}` shows what can still be read; to reuse it, "
            "`tapearc label --force` it first",
        ).at(medium=drive.name)


SCAN_HINT = "`tapearc scan --media {name}` shows what can still be read; only `tapearc label --force` erases it"


def damaged_label(err: FormatError, name: str) -> FormatError:
    """``err`` (a label that starts like tapearc's but does not decode) as the damage it is:
    its message says the volume label is damaged and nothing was written, its hint points to
    ``scan``. A label of a newer format version is not damage: it keeps its own message.
    Returns ``err``."""
    if isinstance(err, UnsupportedVersionError):
        return err.at(medium=name)  # type: ignore[return-value]
    if not err.message.startswith("the volume label is damaged"):
        err.message = f"the volume label is damaged: {err.message}; nothing was written"
        err.args = (err.message,)
    if err.hint is None:
        err.hint = SCAN_HINT.format(name=name)
    err.at(medium=name)
    return err


# ---------------------------------------------------------------------- same object


def medium_objects(spec: str) -> list[tuple[tuple[str, int, int], str, bool]]:
    """The objects a medium ``spec`` is made of: (identity, what it is, whether everything inside
    it belongs to the medium too)."""
    if not spec or spec == "-":
        return []
    kind, path = _split(spec)
    if not path:
        return []
    out: list[tuple[tuple[str, int, int], str, bool]] = []

    def add(p: str, what: str, inside: bool) -> None:
        oid = object_id(p)
        if oid is not None:
            out.append((oid, what, inside))

    lib = _library_of(kind, path)
    if lib is not None:
        add(lib, f"the simulated library {lib}", True)
    if kind == "sim" and lib != path:
        add(path, f"the tape image {path}", False)
        add(path + ".tapesim", f"the settings of tape image {path}", False)
    elif kind == "dir":
        add(path, f"the dir: medium folder {path}", True)
    elif kind == "st":
        add(path, f"the tape drive {path}", False)
        head, base = os.path.split(os.path.realpath(path))
        other = os.path.join(head, base[1:] if base.startswith("nst") else "n" + base)
        add(other, f"the tape drive {path}", False)  # /dev/stN and /dev/nstN: one drive
    return out


def _clash(path: str, spec: str) -> str | None:
    """What of medium ``spec`` the file ``path`` (existing or not) is or lies inside, or None."""
    objs = medium_objects(spec)
    if not objs:
        return None
    oid = object_id(path)
    if oid is not None:
        for o, what, _ in objs:
            if o == oid:
                return what
    containers = [(o, what) for o, what, inside in objs if inside]
    if containers:
        p = os.path.dirname(os.path.realpath(path))
        while True:
            pid = object_id(p)
            for o, what in containers:
                if pid == o:
                    return f"a file inside {what}"
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
    return None


def refuse_same_restore_target(medium_spec: str, target: str) -> None:
    """Raise SameObjectError (exit 8) when the restore target ``target`` is the medium it reads
    (or lies inside it); nothing is written."""
    if target == "-":
        return
    what = _clash(target, medium_spec)
    if what is not None:
        raise SameObjectError(
            f"restore target {target} is {what}, the medium {medium_spec} the restore reads: "
            "a medium cannot be restored onto itself; nothing was written",
            hint="give another --to",
            target=target,
        )


def refuse_source_is_medium(source: str, medium_spec: str) -> None:
    """Raise SameObjectError (exit 8) when the backup source ``source`` is the medium it writes
    (or lies inside it); nothing is read or written. An NBD export (a URI) is not a file here:
    it is not looked at."""
    if is_nbd_uri(source):
        return
    what = _clash(source, medium_spec)
    if what is not None:
        raise SameObjectError(
            f"backup source {source} is {what}, the medium {medium_spec} the backup writes: "
            "a medium cannot be backed up onto itself; nothing was written",
            hint="give another --media",
            source=source,
        )
