"""The simulated tape backend (``sim:PATH``): the st adapter over ``tapesim.drive.SimDrive``.

``SimDrive`` behaves like an open Linux st no-rewind device, errno for errno, so this backend
runs exactly the code that will drive a real ``/dev/nstN`` (:mod:`tapearc.media.stlike`).
"""

from __future__ import annotations

import errno
import os

from ..errors import MediumUnavailableError
from .stlike import StLikeDrive, translate_oserror

__all__ = ["open_sim"]


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
    from tapesim.drive import SimDrive, create_image  # the simulator is optional at import time

    name = name or f"sim:{path}"
    if not os.path.exists(path):
        if not create:
            raise MediumUnavailableError(
                f"no such simulated tape: {path}",
                medium=name,
                hint="a sim: tape is created when it is first opened for writing "
                "(or with `tapesim new`)",
            )
        try:
            create_image(path)
        except OSError as err:
            raise MediumUnavailableError(
                f"cannot create simulated tape {path}: {err.strerror or err}", medium=name
            ) from err
    try:
        try:
            ops = SimDrive(path, readonly=not write)
        except OSError as err:
            if not (write and err.errno == errno.EROFS):
                raise
            # write-protected tape: as the contract says, open it with writable False
            write = False
            ops = SimDrive(path, readonly=True)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise MediumUnavailableError(f"no such simulated tape: {path}", medium=name) from err
        raise translate_oserror(err, f"cannot open simulated tape {path}", medium=name) from err
    except ValueError as err:  # tapesim.drive.SidecarError: unreadable or invalid settings
        raise MediumUnavailableError(
            f"bad settings for simulated tape {path}: {err}", medium=name,
            hint=f"fix or remove {path}.tapesim",
        ) from err
    try:
        return StLikeDrive(ops, name=name, writable=write, max_record_size=max_record_size)
    except BaseException:
        ops.close()
        raise
