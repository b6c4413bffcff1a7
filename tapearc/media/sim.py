"""The simulated tape backend (``sim:PATH``): the st adapter over ``tapesim.drive.SimDrive``.

``SimDrive`` behaves like an open Linux st no-rewind device, errno for errno, so this backend
runs exactly the code that will drive a real ``/dev/nstN`` (:mod:`tapearc.media.stlike`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import TYPE_CHECKING, Any

from ..errors import MediumUnavailableError, TapearcError
from .base import DriveStatus
from .identity import (
    file_kind,
    image_content_error,
    refuse_creating_in_dev,
    refuse_special,
)
from .stlike import StLikeDrive, translate_oserror

if TYPE_CHECKING:
    from tapesim.drive import SimDrive

__all__ = ["SimTapeDrive", "open_sim"]


class SimTapeDrive(StLikeDrive):
    """The st adapter over a simulated drive, knowing the image file behind it.

    :meth:`blank_check` says whether a medium whose first read found end of data is provably
    blank: a simulated tape is blank only when its image is missing or empty; bytes that do not
    parse as a tape from offset 0 are foreign content or a damaged label (the scanner reads them
    as end of data, like a tape with damage). :meth:`status` reports an image this user cannot
    write as write-protected.
    """

    def __init__(self, ops: Any, *, path: str, created: bool = False, **kw: Any) -> None:
        self.image_path = path
        self._created = created  # this open made the (blank) image
        super().__init__(ops, **kw)

    def forget_created(self) -> None:
        """Remove the blank image (and its settings) this open made, when nothing was written on
        it: a refused job leaves no new file behind."""
        if not self._created:
            return
        self._created = False
        try:
            if os.path.getsize(self.image_path) == 0:
                os.unlink(self.image_path)
                os.unlink(self.image_path + ".tapesim")
        except OSError:
            pass

    def blank_check(self) -> TapearcError | None:
        damage = getattr(self._ops, "damage", None)
        return image_content_error(self.image_path, self.name, damage if isinstance(damage, str) else None)

    def status(self) -> DriveStatus:
        st = super().status()
        if not st.write_protected and not os.access(self.image_path, os.W_OK):
            details = dict(st.details)
            details["not_writable"] = (
                "this user cannot write the image (permissions, immutable attribute or read-only file system)"
            )
            return dataclasses.replace(st, write_protected=True, details=details)
        return st


def open_sim(
    path: str,
    *,
    write: bool,
    create: bool,
    name: str | None = None,
    max_record_size: int | None = None,
) -> StLikeDrive:
    """Open the simulated tape image ``path``.

    ``write``: open for reading and writing (a write-protected image is then opened read-only:
    ``writable`` is False and writes raise WriteProtectedError). ``create``: make a blank image (default capacity, tapesim's sidecar)
    when ``path`` is missing; otherwise a missing image raises MediumUnavailableError.
    ``name`` defaults to ``sim:PATH``. ``max_record_size`` defaults to the simulated drive's
    maximum (its sidecar's ``max_record``); a smaller one limits the read buffer too.
    """
    name = name or f"sim:{path}"
    kind = file_kind(path)
    refuse_special(path, name, kind)  # a disk, FIFO, device or folder is never a tape image
    if kind == "missing":
        _create_image(path, name, create)
    ops, write = _open_sim_drive(path, name, write)
    try:
        return SimTapeDrive(
            ops, path=path, created=kind == "missing", name=name, writable=write, max_record_size=max_record_size
        )
    except BaseException:
        ops.close()
        raise


def _create_image(path: str, name: str, create: bool) -> None:
    """Make the blank image ``path`` (missing) when ``create`` allows it; otherwise raise
    MediumUnavailableError."""
    from tapesim.drive import create_image  # the simulator is optional at import time

    if not create:
        raise MediumUnavailableError(
            f"no such simulated tape: {path}",
            medium=name,
            hint="a sim: tape is created when it is first opened for writing (or with `tapesim new`)",
        )
    refuse_creating_in_dev(path, name)  # a missing /dev/sda is a missing disk, not a new tape
    try:
        create_image(path)
    except OSError as err:
        raise MediumUnavailableError(
            f"cannot create simulated tape {path}: {err.strerror or err}", medium=name
        ) from err


def _open_sim_drive(path: str, name: str, write: bool) -> tuple[SimDrive, bool]:
    """The simulated drive of image ``path`` and whether it is open for writing (a write-protected
    image asked for writing opens read-only, as the TapeDrive contract says)."""
    from tapesim.drive import SimDrive  # the simulator is optional at import time

    try:
        try:
            return SimDrive(path, readonly=not write), write
        except OSError as err:
            if not (write and err.errno == errno.EROFS):
                raise
            return SimDrive(path, readonly=True), False
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise MediumUnavailableError(f"no such simulated tape: {path}", medium=name) from err
        raise translate_oserror(err, f"cannot open simulated tape {path}", medium=name) from err
    except ValueError as err:  # tapesim.drive.SidecarError: unreadable or invalid settings
        raise MediumUnavailableError(
            f"bad settings for simulated tape {path}: {err}",
            medium=name,
            hint=f"fix or remove {path}.tapesim",
        ) from err
