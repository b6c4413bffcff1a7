"""Opening a source by what the user named: an NBD URI or a path."""

from __future__ import annotations

from tapearc.errors import UsageError
from tapearc.nbdclient import is_nbd_uri, not_an_nbd_uri
from tapearc.sources.file import SourceVolume
from tapearc.sources.nbd import NbdSource

__all__ = ["open_source"]


def open_source(spec: str) -> SourceVolume | NbdSource:
    """The source ``spec`` names: an NBD export for an NBD URI (``nbd://``, ``nbd+unix://``, ...),
    else a regular file or block device. A name that looks like another URI (``http://``, a typo
    of a scheme, qemu's legacy ``nbd:HOST:PORT``) is refused, not looked for as a file."""
    mistake = not_an_nbd_uri(spec)
    if mistake is not None:
        raise UsageError(f"source {mistake}", hint="a file of that name: give it as ./NAME")
    if is_nbd_uri(spec):
        return NbdSource(spec)
    return SourceVolume(spec)
