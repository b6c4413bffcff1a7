"""Job files (``tapearc run JOBFILE``): TOML read with tomllib into :class:`JobSpec`.

A job file has one ``[job]`` table, an optional ``[defaults]`` table (per-volume keys every
volume takes unless it says otherwise) and one ``[[volume]]`` table per volume, backed up in
the order written. docs/operations.md ("Jobs") lists every key. Every key is checked here, before
anything is opened: a missing key, an unknown key, a value of the wrong type or out of range and
two volumes of one name are each a :class:`~tapearc.errors.JobFileError` (exit 34) of one line
naming the file, the table and the key.

Paths in the file (``source`` unless an NBD URI, ``changed_blocks``, ``summary_log``,
``catalog``, ``encrypt``, ``passphrase_file``) are taken relative to the job file's folder (a systemd unit runs in ``/``);
``media`` and ``changer`` are taken as the command line takes them; ``media`` may be a list of
drives (a library's, in its changer's order: the list's index is the changer's drive number,
the first is its drive 0): the job takes the first free one, or ``drives`` of them. ``changer_drive`` (optional, with a ``media`` that
names one drive): the changer's number of that drive, as ``--changer-drive N``.

``drives`` (optional, default 1): the volumes are spread over that many drives of the library
at once (tapearc.engine.jobdrives), each drive writing its own media set.

``encrypt`` and ``passphrase_file`` (optional, ``[job]`` only): every volume is encrypted with that
key, as ``backup --encrypt KEY --passphrase-file FILE`` does; the key is opened once per run.

``pool`` (optional): every volume's medium is chosen from the library ``media`` names for that
media pool, as ``backup --pool`` does (docs/operations.md, "Media pools and retention").
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tapearc.errors import JobFileError, UsageError
from tapearc.sources.changes_trust import ChangeOptions, check_change_options
from tapearc.units import parse_size

T = TypeVar("T")

#: The keys of ``[job]`` (besides the per-volume keys it does not take: see ``[defaults]``).
#: ``pool``: the media pool the volumes' media are chosen for (from the library ``media`` names).
JOB_KEYS = (
    "name",
    "media",
    "changer",
    "changer_drive",
    "wait",
    "catalog",
    "record_size",
    "media_set",
    "full_every",
    "drives",
    "pool",
)
#: ``encrypt``/``passphrase_file``: one key for the whole job (a media set has one key, so every
#: volume of the job is encrypted with it, or none is); the key is opened once per run.
JOB_KEYS_ALL = (*JOB_KEYS, "summary_log", "encrypt", "passphrase_file")
#: The keys a ``[[volume]]`` may give, and ``[defaults]`` for every volume.
VOLUME_OPTION_KEYS = (
    "block_size",
    "chunk_size",
    "compress",
    "verify",
    "full_every",
    "dirty_bitmap",
    "changed_blocks",
    "change_block_size",
    "verify_unchanged",
)
VOLUME_KEYS = ("name", "source", *VOLUME_OPTION_KEYS)
TOP_TABLES = ("job", "defaults", "volume")
COMPRESSIONS = ("zstd", "none")
#: Most drives a job may use at once (engine.jobdrives).
MAX_DRIVES = 64
_DAYS = re.compile(r"^\s*(\d+)\s*d\s*$")
_NAME = re.compile(r"^[^\x00-\x1f/][^\x00-\x1f]*$")


@dataclass(frozen=True, slots=True)
class FullEvery:
    """When a volume's backup is a full: its last full is ``days`` old or more, or ``runs``
    complete generations (the full included) were made since it."""

    days: int | None = None
    runs: int | None = None

    def describe(self) -> str:
        return f"{self.days}d" if self.days is not None else f"{self.runs} runs"


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    """One ``[[volume]]`` of a job, with ``[defaults]`` applied."""

    name: str
    source: str
    block_size: int | None = None  # None: 64K, or the volume's own
    chunk_size: int | None = None  # None: the backup's default (4M)
    compress: str = "none"
    verify: bool = False
    full_every: FullEvery | None = None  # None: the job's
    dirty_bitmap: str | None = None
    changed_blocks: str | None = None
    change_block_size: int | None = None
    verify_unchanged: bool = False


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job file, checked."""

    path: str
    name: str
    media: str
    volumes: tuple[VolumeSpec, ...]
    changer: str | None = None
    #: the changer's number of the drive ``media`` (``--changer-drive``; None: as the CLI decides)
    changer_drive: int | None = None
    wait: float | None = None  # the operator's time to load a medium (changer = "operator")
    catalog: str | None = None
    record_size: int | None = None
    media_set: str | None = None
    full_every: FullEvery | None = None
    drives: int = 1  # drives of the library used at once (engine.jobdrives)
    #: ``media`` given as a list: the library's drives, in its changer's order (``media`` is the first)
    drive_media: tuple[str, ...] = ()
    summary_log: str | None = None
    pool: str | None = None  # the media pool of the job's media
    encrypt: str | None = None  # a key file: every volume encrypted with it (backup --encrypt)
    passphrase_file: str | None = None  # its passphrase (an unattended run has no terminal)

    def full_every_of(self, vol: VolumeSpec) -> FullEvery | None:
        return vol.full_every if vol.full_every is not None else self.full_every


class _Table:
    """A table of the file being read: its keys taken one by one, each checked, errors naming
    the file, the table and the key."""

    def __init__(self, path: str, where: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.path, self.where, self.data = path, where, data
        unknown = [k for k in data if k not in known]
        if unknown and where == "[job]" and unknown[0] in VOLUME_OPTION_KEYS:
            raise self.error(unknown[0], "a volume's key: give it in [defaults] (every volume) or in a [[volume]]")
        if unknown:
            raise self.error(unknown[0], f"unknown key (known keys: {', '.join(known)})")

    def error(self, key: str | None, problem: str) -> JobFileError:
        at = f"{self.where}: key {key!r}" if key is not None else self.where
        return JobFileError(f"{self.path}: {at}: {problem}", hint="docs/operations.md, 'Jobs', lists every key")

    def get(self, key: str, check: Callable[[str, Any], T], default: T | None = None, *, required: bool = False) -> T:
        if key not in self.data:
            if required:
                raise self.error(key, "missing (it is required)")
            return default  # type: ignore[return-value]
        return check(key, self.data[key])

    # ---------------------------------------------------------------- the value checkers

    def text(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_toml_type(value)} {value!r}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def name(self, key: str, value: Any) -> str:
        text = self.text(key, value)
        if not _NAME.match(text):
            raise self.error(key, f"{text!r} is not a name (no control characters, not starting with /)")
        return text

    def path_value(self, key: str, value: Any) -> str:
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), os.path.expanduser(self.text(key, value)))

    def catalog(self, key: str, value: Any) -> str:
        """A catalog URL (``postgresql://...``, ``sqlite:///...``) as given; a path relative to the job file's folder."""
        from tapearc.catalog.spec import is_url

        text = self.text(key, value)
        return text if is_url(text) else self.path_value(key, text)

    def source(self, key: str, value: Any) -> str:
        """An NBD URI as given (its scheme in any case); a path relative to the job file's folder.
        A name that looks like another URI (``http://``, qemu's legacy ``nbd:HOST:PORT``) is
        refused here, as the command line refuses it, never taken for a file next to the job."""
        from tapearc.nbdclient import is_nbd_uri, not_an_nbd_uri

        text = self.text(key, value)
        mistake = not_an_nbd_uri(text)
        if mistake is not None:
            raise self.error(key, f"{mistake} (a file of that name: give it as ./NAME)")
        return text if is_nbd_uri(text) else self.path_value(key, text)

    def flag(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_toml_type(value)} {value!r}")
        return value

    def whole(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, not {_toml_type(value)} {value!r}")
        if value < 1:
            raise self.error(key, f"{value} must be 1 or more")
        return value

    def drive_number(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(key, f"must be a drive number (0 or more), not {_toml_type(value)} {value!r}")
        return value

    def seconds(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise self.error(key, f"must be a number of seconds, 0 or more, not {value!r}")
        return float(value)

    def size(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.error(key, f'must be a size (65536, "64K", "1M"), not {_toml_type(value)} {value!r}')
        try:
            n = parse_size(value) if isinstance(value, str) else value
        except ValueError as e:
            raise self.error(key, str(e)) from None
        if n <= 0:
            raise self.error(key, f"{value!r} must be more than 0")
        return n

    def compress(self, key: str, value: Any) -> str:
        if value not in COMPRESSIONS:
            raise self.error(key, f'{value!r}: use "zstd" or "none"')
        return str(value)

    def full_every(self, key: str, value: Any) -> FullEvery:
        if isinstance(value, int) and not isinstance(value, bool):
            return FullEvery(runs=self.whole(key, value))
        m = _DAYS.match(value) if isinstance(value, str) else None
        if m is None or int(m.group(1)) < 1:
            raise self.error(
                key, f'{value!r} is not a number of days ("7d") or of runs (a whole number, 7), at least 1'
            )
        return FullEvery(days=int(m.group(1)))

    def drives(self, key: str, value: Any) -> int:
        n = self.whole(key, value)
        if n > MAX_DRIVES:
            raise self.error(key, f"{n}: at most {MAX_DRIVES} drives")
        return n

    def media(self, key: str, value: Any) -> tuple[str, ...]:
        """A drive (text), or the drives of a library in its changer's order (an array)."""
        if isinstance(value, list):
            if not value:
                raise self.error(key, "must name at least one drive")
            return tuple(self.text(key, v) for v in value)
        return (self.text(key, value),)


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "a table" if isinstance(value, dict) else type(value).__name__
    )


def read_job(path: str) -> JobSpec:
    """The job file at ``path``, checked (JobFileError, exit 34, on anything wrong with it)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise JobFileError(f"{path}: cannot read the job file: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise JobFileError(f"{path}: not a valid TOML file: {e}") from None
    top = _Table(path, "top level", doc, TOP_TABLES)
    for key, kind in (("job", dict), ("defaults", dict), ("volume", list)):
        if key in doc and not isinstance(doc[key], kind):
            raise top.error(key, f"must be {'a table [' + key + ']' if kind is dict else 'tables [[volume]]'}")
    if "job" not in doc:
        raise JobFileError(f"{path}: the [job] table is missing (it names the job and its media)")
    volumes = doc.get("volume", [])
    if not volumes:
        raise JobFileError(f"{path}: no [[volume]] table: a job backs up at least one volume")
    job = _Table(path, "[job]", doc["job"], JOB_KEYS_ALL)
    defaults = _Table(path, "[defaults]", doc.get("defaults", {}), VOLUME_OPTION_KEYS)
    vols = tuple(_volume(path, i, v, defaults) for i, v in enumerate(volumes, 1))
    _check_unique(path, vols)
    media = job.get("media", job.media, required=True)
    drives = job.get("drives", job.drives, 1)
    if drives > 1 and "media_set" in job.data:
        raise job.error("media_set", f"names one media set, and drives = {drives} writes one set per drive")
    return JobSpec(
        path=path,
        name=job.get("name", job.name, required=True),
        media=media[0],
        drive_media=media if len(media) > 1 else (),
        volumes=vols,
        changer=job.get("changer", job.text),
        changer_drive=_changer_drive(job, media),
        wait=job.get("wait", job.seconds),
        catalog=job.get("catalog", job.catalog),
        record_size=job.get("record_size", job.size),
        media_set=job.get("media_set", _media_set(job)),
        full_every=job.get("full_every", job.full_every),
        drives=drives,
        summary_log=job.get("summary_log", job.path_value),
        pool=job.get("pool", job.text),
        **_encryption(job),
    )


def _changer_drive(job: _Table, media: tuple[str, ...]) -> int | None:
    """``changer_drive``: the drive number of a ``media`` that names one drive of the ``changer``
    (in a list of drives, each one's index is its number)."""
    n = job.get("changer_drive", job.drive_number)
    if n is not None and len(media) > 1:
        raise job.error("changer_drive", "goes with one drive in media: in a list, each drive's index is its number")
    if n is not None and "changer" not in job.data and not media[0].startswith("sim:"):
        raise job.error("changer_drive", "goes with changer (the changer whose drive media is)")
    return n


def _encryption(job: _Table) -> dict[str, str | None]:
    """``encrypt`` and ``passphrase_file`` of ``[job]`` (a passphrase file alone is an error)."""
    key = job.get("encrypt", job.path_value)
    pw = job.get("passphrase_file", job.path_value)
    if pw is not None and key is None:
        raise job.error("passphrase_file", "is given without encrypt (the key file it opens)")
    return {"encrypt": key, "passphrase_file": pw}


def _media_set(job: _Table) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        import uuid

        text = job.text(key, value)
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise job.error(key, f"{text!r} is not a UUID") from None

    return check


def _volume(path: str, index: int, data: Any, defaults: _Table) -> VolumeSpec:
    """The ``index``-th ``[[volume]]``: its own keys, else ``[defaults]``'s."""
    label = f"[[volume]] #{index}"
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        label += f" {data['name']!r}"
    if not isinstance(data, dict):
        raise JobFileError(f"{path}: {label}: must be a table")
    own = _Table(path, label, data, VOLUME_KEYS)

    def opt(key: str, check: Callable[[_Table], Callable[[str, Any], T]], default: T | None = None) -> T:
        table = own if key in data else defaults
        return table.get(key, check(table), default)

    vol = VolumeSpec(
        name=own.get("name", own.name, required=True),
        source=own.get("source", own.source, required=True),
        block_size=opt("block_size", lambda t: t.size),
        chunk_size=opt("chunk_size", lambda t: t.size),
        compress=opt("compress", lambda t: t.compress, "none"),
        verify=opt("verify", lambda t: t.flag, False),
        full_every=opt("full_every", lambda t: t.full_every),
        dirty_bitmap=opt("dirty_bitmap", lambda t: t.text),
        changed_blocks=opt("changed_blocks", lambda t: t.path_value),
        change_block_size=opt("change_block_size", lambda t: t.size),
        verify_unchanged=opt("verify_unchanged", lambda t: t.flag, False),
    )
    try:
        check_change_options(change_options(vol))
    except UsageError as e:  # the options' names, as the job file spells them
        problem = re.sub(r"--([a-z-]+)", lambda m: m.group(1).replace("-", "_"), e.message)
        raise own.error(None, problem) from None
    return vol


def change_options(vol: VolumeSpec) -> ChangeOptions:
    """The change-tracking options of a volume (docs/changes.md)."""
    return ChangeOptions(
        dirty_bitmap=vol.dirty_bitmap,
        changed_blocks=vol.changed_blocks,
        change_block_size=vol.change_block_size,
        verify_unchanged=vol.verify_unchanged,
    )


def _check_unique(path: str, vols: tuple[VolumeSpec, ...]) -> None:
    seen: dict[str, int] = {}
    for i, v in enumerate(vols, 1):
        if v.name in seen:
            raise JobFileError(
                f"{path}: [[volume]] #{i} {v.name!r}: key 'name': volume #{seen[v.name]} has the same name; "
                "each volume of a job needs its own name",
                hint="docs/operations.md, 'Jobs', lists every key",
            )
        seen[v.name] = i
    files: dict[str, int] = {}
    for i, v in enumerate(vols, 1):
        real = None if v.changed_blocks is None else os.path.realpath(v.changed_blocks)
        if real is not None and real in files:
            raise JobFileError(
                f"{path}: [[volume]] #{i} {v.name!r}: key 'changed_blocks': volume #{files[real]} reads the same "
                f"file {v.changed_blocks}; a changed-blocks file describes one volume (a file of another volume's "
                "changes could be trusted for this one)",
                hint="give each volume its own changed_blocks (not one in [defaults])",
            )
        if real is not None:
            files[real] = i
