"""Media backends behind one interface, :class:`~tapearc.media.base.TapeDrive`.

:func:`open_medium` turns what the user wrote (``--tape SPEC``) into an open drive:

``sim:PATH``
    a simulated tape image (tapesim); created blank when missing and opened for writing.
``dir:PATH``
    a removable-disk folder (:mod:`tapearc.media.dirmedium`); created when missing and opened
    for writing.
``st:/dev/nstN`` or ``/dev/nst*`` (``/dev/st*`` for reading only)
    the Linux st driver (:mod:`tapearc.media.linux_st`): probed without waiting, rewound at
    open; the largest record is ``TAPEARC_ST_MAX_RECORD`` (default 1 MiB).
``-``
    the stream medium (:mod:`tapearc.media.stream`): standard output when opened for writing,
    standard input for reading; records and filemarks in SIMH framing, in order only.
``PATH``
    an existing folder is ``dir:PATH``; for writing, an existing tapearc tape image is
    ``sim:PATH`` (so is an empty image with tapesim settings beside it) and anything else is
    refused naming what it is and the prefix to give (a bare path never creates anything:
    ``sim:PATH`` and ``dir:PATH`` do); for reading, any existing regular file is ``sim:PATH``.
"""

from __future__ import annotations

import re

from ..errors import MediumUnavailableError, NotTapearcMediumError
from .base import DriveStatus, Mark, Position, TapeDrive, WriteStatus

__all__ = [
    "ACCEPTED_FORMS",
    "DriveStatus",
    "Mark",
    "Position",
    "TapeDrive",
    "WriteStatus",
    "open_medium",
    "split_spec",
]

ACCEPTED_FORMS = "sim:PATH, dir:PATH, st:/dev/nstN (or /dev/nstN), - (standard input/output), or a PATH"
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")


def split_spec(spec: str) -> tuple[str | None, str]:
    """(prefix in lower case, path) of a medium spec: ``("sim", "t.tap")`` for ``SIM:t.tap``;
    ``(None, spec)`` without a prefix."""
    m = _PREFIX.match(spec)
    return (m.group(1).lower(), m.group(2)) if m else (None, spec)


def open_medium(spec: str, *, write: bool) -> TapeDrive:
    """Open the medium named by ``spec`` for reading, or for reading and writing.

    The drive's ``name`` is the spec in its explicit form (``sim:PATH``, ``dir:PATH``, ``-``).
    Raises MediumUnavailableError for a missing medium or an unknown ``xyz:`` prefix,
    NotTapearcMediumError for a non-empty folder that is not a dir medium, WriteProtectedError
    when ``write`` is asked of a write-protected tape image.
    """
    if not spec:
        raise MediumUnavailableError(f"no medium given; expected {ACCEPTED_FORMS}")
    if spec == "-":
        from .stream import open_stream

        return open_stream(write=write)
    kind, path = split_spec(spec)
    if not path:
        raise MediumUnavailableError(f"{spec!r} names no path; expected {ACCEPTED_FORMS}")
    if kind is None:
        kind = _bare_kind(path, write)
    if kind == "sim":
        from .sim import open_sim

        return open_sim(path, write=write, create=write, name=f"sim:{path}")
    if kind == "dir":
        from .dirmedium import DirDrive

        return DirDrive(path, write=write, name=f"dir:{path}")
    if kind == "st":
        from .linux_st import open_st

        return open_st(path, write=write, name=f"st:{path}")
    raise MediumUnavailableError(
        f"unknown medium type {kind + ':'!r} in {spec!r}; expected {ACCEPTED_FORMS}",
        medium=spec,
    )


def _bare_kind(path: str, write: bool) -> str:
    """The backend a ``--media PATH`` without a prefix names, or the refusal (see the module
    docstring): only an existing tapearc image or folder is taken without a prefix."""
    from .identity import classify_bare_path

    kind, what = classify_bare_path(path, write)
    if kind is not None:
        return kind
    hint = (
        f"write sim:{path} for a simulated tape image (made when missing or empty) or dir:{path} for a "
        "folder medium; a bare path names only an existing tapearc image or folder"
    )
    if what.startswith("it is a block device") or path.startswith("/dev/"):
        hint = "a tape drive is st:/dev/nstN (a character device); a disk is a backup SOURCE, not a --media"
    if what == "it does not exist" and not write:
        raise MediumUnavailableError(f"no such simulated tape or folder: {path}", medium=path, hint=hint)
    raise NotTapearcMediumError(
        f"not an existing tapearc medium ({what}); nothing was written", medium=path, hint=hint, found=what
    )
