"""Volume identity: which volume of a media set a backup's source is.

A volume gets its identity at its first generation: a random ``volume_uuid`` and its source
(the absolute path as given, the path with symlinks resolved, device and inode numbers),
recorded in every generation header (formats/SPEC.md 7.1) and in the catalog. The rules
(docs/user-guide.md, "Volume identity"):

* the **same source** is the same path as given, or the same path with symlinks resolved, as
  the source of the volume's latest generation that recorded one. Size, device and inode do not
  count: volumes grow and shrink, a tool that rewrites an image gives it a new inode, an LV
  recreated from a snapshot keeps its path, and ``/dev/dm-N`` numbers change across reboots
  (``/dev/vg0/root`` stays);
* without ``--volume``, a source that is the source of a volume continues that volume (whatever
  its name: a symlink to it finds it too); otherwise the default name (the file name) is used,
  and if that name belongs to a volume of another source the backup is refused
  (:class:`VolumeMismatchError`, exit 7) with a name to give it;
* ``--volume NAME`` of an existing volume with another source is that volume **moved**: the
  chain continues, the new source is recorded, and a warning says so;
* ``--new-volume`` always starts a new volume: under ``--volume NAME`` (which must be unused),
  the default name if unused, or the name the refusal would suggest;
* a volume whose generations recorded no source (written before sources were recorded) takes
  the source of its next backup, with a warning.
"""

from __future__ import annotations

import os
import shlex
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, GenerationRow, VolumeRow, path_text
from tapearc.engine.volume import default_volume_name
from tapearc.errors import VolumeMismatchError
from tapearc.nbdclient import is_nbd_uri
from tapearc.sources.nbd import uri_volume_name


@dataclass(slots=True)
class VolumeChoice:
    """The volume a backup writes: its name, identity and the generations it already has."""

    name: str
    volume_uuid: uuid.UUID
    known: list[GenerationRow]  # empty: a new volume
    warnings: list[str] = field(default_factory=list)


def _fit(p: str) -> str:
    """A path too long for the header is "not known" (SPEC 7.1)."""
    return p if len(p.encode("utf-8", "surrogateescape")) <= fmt.MAX_SOURCE_PATH else ""


def source_identity(path: str, st: os.stat_result | None) -> fmt.VolumeSource:
    """The source as recorded: ``st`` is the opened source's fstat. An NBD export (``path`` is
    its URI, ``st`` None) is recorded by its URI, as path and resolved path, device and inode 0."""
    if st is None or is_nbd_uri(path):
        return fmt.VolumeSource(path=_fit(path), real_path=_fit(path), dev=0, ino=0)
    fit = _fit
    if stat.S_ISBLK(st.st_mode):
        dev, ino = st.st_rdev, 0
    else:
        dev, ino = st.st_dev, st.st_ino
    return fmt.VolumeSource(path=fit(os.path.abspath(path)), real_path=fit(os.path.realpath(path)), dev=dev, ino=ino)


def _recorded(v: VolumeRow) -> str | None:
    """The volume's recorded source path, None when it has none."""
    return v.source_path or v.source_real or None


def same_source(ident: fmt.VolumeSource, v: VolumeRow) -> bool:
    """Is ``ident`` the volume's recorded source (same path as given or same resolved path)?"""
    p, r = path_text(ident.path), path_text(ident.real_path)
    return bool((p and p == v.source_path) or (r and r == v.source_real))


def suggest_name(source: str, taken: set[str]) -> str:
    """A name for a new volume whose default name is taken: its folder and file name
    (``/data/hostB/root`` -> ``hostB/root``; for an NBD URI its host or socket and export
    name), then with ``-2``, ``-3``, ... until unused."""
    if is_nbd_uri(source):
        first = _uri_suggestion(source)
    else:
        p = Path(os.path.abspath(source))
        base = p.name or "volume"
        first = f"{p.parent.name}/{base}" if p.parent.name else base
    if first not in taken:
        return first
    i = 2
    while f"{first}-{i}" in taken:
        i += 1
    return f"{first}-{i}"


def _uri_suggestion(uri: str) -> str:
    """``HOST/EXPORT`` (``SOCKETNAME/EXPORT`` for a Unix socket) of an NBD URI."""
    parts = urlsplit(uri)
    sock = parse_qs(parts.query).get("socket", [""])[0]
    where = Path(sock).stem if sock else (parts.hostname or "")
    base = uri_volume_name(uri)
    return f"{where}/{base}" if where and where != base else base


def _where(v: VolumeRow) -> str:
    return _recorded(v) or "an unrecorded source"


def choose_volume(
    catalog: Catalog,
    set_uuid: uuid.UUID,
    source: str,
    ident: fmt.VolumeSource,
    *,
    name: str | None,
    new_volume: bool,
) -> VolumeChoice:
    """The volume ``source`` is in media set ``set_uuid`` (rules in the module docstring).
    Raises VolumeMismatchError when it is refused; reads the catalog, writes nothing."""
    vols = {v.name: v for v in catalog.volume_rows(set_uuid) if v.generations > 0}
    here = path_text(ident.path) or source
    default = default_volume_name(source)

    if new_volume:
        if name is not None and name in vols:
            raise VolumeMismatchError(
                f"--new-volume: media set {set_uuid} already has a volume {name!r} (backed up from "
                f"{_where(vols[name])}); nothing was written",
                hint=f"give the new volume an unused name, e.g. --volume {shlex.quote(suggest_name(source, set(vols)))}",
            )
        chosen = name if name is not None else (default if default not in vols else suggest_name(source, set(vols)))
        return VolumeChoice(chosen, uuid.uuid4(), [])

    if name is not None:
        v = vols.get(name)
        if v is None:
            return VolumeChoice(name, uuid.uuid4(), [])
        return _continue(catalog, set_uuid, v, ident, here, moved_ok=True)

    matches = [v for v in vols.values() if _recorded(v) is not None and same_source(ident, v)]
    if len(matches) > 1:
        by_default = [v for v in matches if v.name == default]
        if not by_default:
            names = ", ".join(repr(v.name) for v in matches)
            raise VolumeMismatchError(
                f"source {here} is the source of several volumes of media set {set_uuid} ({names}); nothing was written",
                hint="choose one with --volume NAME",
            )
        matches = by_default
    if matches:
        return _continue(catalog, set_uuid, matches[0], ident, here, moved_ok=False)
    v = vols.get(default)
    if v is None:
        return VolumeChoice(default, uuid.uuid4(), [])
    if _recorded(v) is None:
        return _continue(catalog, set_uuid, v, ident, here, moved_ok=False)
    suggestion = shlex.quote(suggest_name(source, set(vols)))
    raise VolumeMismatchError(
        f"volume {default!r} of media set {set_uuid} was backed up from {_where(v)}, not from {here}; "
        "nothing was written",
        hint=f"if {here} is another volume, name it: --volume {suggestion} (or --new-volume, which picks that name); "
        f"if it is the same volume moved, say so with --volume {shlex.quote(default)}",
    )


def _continue(
    catalog: Catalog, set_uuid: uuid.UUID, v: VolumeRow, ident: fmt.VolumeSource, here: str, *, moved_ok: bool
) -> VolumeChoice:
    """Continue volume ``v`` (its chain and identity), with a warning when its source changes."""
    choice = VolumeChoice(v.name, v.uuid, catalog.generations(set_uuid, v.name))
    rec = _recorded(v)
    if rec is None:
        choice.warnings.append(
            f"volume {v.name!r} has no recorded source (its generations were written by an older tapearc); "
            f"its source is now recorded as {here}"
        )
    elif not same_source(ident, v):
        assert moved_ok  # only --volume NAME gets here with another source
        choice.warnings.append(
            f"volume {v.name!r} was backed up from {rec} (generation {v.source_generation}); --volume {v.name} "
            f"takes {here} as the same volume moved: the chain continues and the new source is recorded"
        )
    return choice
