"""Opening a source by what the user named: an NBD URI or a path."""

from __future__ import annotations

from tapearc.nbdclient import is_nbd_uri
from tapearc.sources.file import SourceVolume
from tapearc.sources.nbd import NbdSource

__all__ = ["open_source"]


def open_source(spec: str) -> SourceVolume | NbdSource:
    """The source ``spec`` names: an NBD export for an NBD URI (``nbd://``, ``nbd+unix://``, ...),
    else a regular file or block device."""
    if is_nbd_uri(spec):
        return NbdSource(spec)
    return SourceVolume(spec)
