"""Opening a source by what the user named: an NBD URI or a path."""

from __future__ import annotations

from tapearc.nbdclient import check_source_name, is_nbd_uri
from tapearc.sources.file import SourceVolume
from tapearc.sources.nbd import NbdSource

__all__ = ["open_source"]


def open_source(spec: str) -> SourceVolume | NbdSource:
    """The source ``spec`` names: an NBD export for an NBD URI (``nbd://``, ``nbd+unix://``, ...),
    else a regular file or block device. A name that looks like another URI (``http://``, a typo
    of a scheme, qemu's legacy ``nbd:HOST:PORT``) is refused, not looked for as a file."""
    check_source_name(spec)
    if is_nbd_uri(spec):
        return NbdSource(spec)
    return SourceVolume(spec)
