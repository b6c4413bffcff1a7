"""The cartridge's settings sidecar (``IMAGE + ".tapesim"``) and the simulator's environment.

The sidecar is a JSON object: ``capacity`` (bytes of image, framing included),
``early_warning`` (size of the early-warning zone before the capacity), ``max_record`` (the
drive's READ BLOCK LIMITS maximum), ``write_protected`` and ``barcode``, ``rate`` and
``buffer`` (the drive's native transfer rate in bytes/s, 0 or absent = unlimited, and its
buffer in bytes: :mod:`tapesim.transport`; written only when a rate is set) (:class:`TapeSettings`),
and the injected ``faults`` (see :mod:`tapesim.faults`). Unknown keys are kept on every write.
:func:`read_sidecar` and :func:`write_sidecar` are the only readers and writers of the raw
document; :mod:`tapesim.drive` and :mod:`tapesim.faults` both use them.

The one environment variable the simulator reads, ``TAPEARC_EARLY_WRITEBACK``, is parsed here
(:func:`early_writeback_enabled`): tapesim never imports tapearc, so it cannot use tapearc's
settings module.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

from .simh import MAX_RECORD_LENGTH

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_RECORD",
    "EARLY_WRITEBACK_VAR",
    "MAX_JSON_DEPTH",
    "SIDECAR_SUFFIX",
    "EnvironmentValueError",
    "SidecarError",
    "TapeSettings",
    "default_early_warning",
    "early_writeback_enabled",
    "load_json_file",
    "load_settings",
    "read_sidecar",
    "save_settings",
    "sidecar_path",
    "write_sidecar",
]

# ---------------------------------------------------------------------- environment

EARLY_WRITEBACK_VAR = "TAPEARC_EARLY_WRITEBACK"


class EnvironmentValueError(ValueError):
    """An environment variable the simulator reads holds a value that does not parse."""


def early_writeback_enabled() -> bool:
    """``TAPEARC_EARLY_WRITEBACK``: 1/yes/on/true (the default) or 0/no/off/false; anything else
    is an EnvironmentValueError naming the variable and the value (never quietly 'on')."""
    text = (os.environ.get(EARLY_WRITEBACK_VAR) or "").strip()
    if not text or text.lower() in ("1", "yes", "on", "true"):
        return True
    if text.lower() in ("0", "no", "off", "false"):
        return False
    raise EnvironmentValueError(f"{EARLY_WRITEBACK_VAR}={text!r}: not a switch (use 1 or 0)")


INDEX_MIN_VAR = "TAPESIM_INDEX_MIN"
DEFAULT_INDEX_MIN = 256 * 1024 * 1024


def index_min_bytes() -> int:
    """``TAPESIM_INDEX_MIN``: images of at least this many bytes get a saved index
    (:mod:`tapesim.index`); default 256 MiB, 0 for every image. Anything but a whole number of
    bytes is an EnvironmentValueError naming the variable and the value."""
    text = (os.environ.get(INDEX_MIN_VAR) or "").strip()
    if not text:
        return DEFAULT_INDEX_MIN
    if not text.isdigit():
        raise EnvironmentValueError(f"{INDEX_MIN_VAR}={text!r}: not a number of bytes")
    return int(text)


# ---------------------------------------------------------------------- defaults

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

DEFAULT_CAPACITY = 1 * TiB
DEFAULT_MAX_RECORD = 1 * MiB  # the stlab drive's READ BLOCK LIMITS maximum
DEFAULT_BUFFER = 1 * GiB  # an LTO-7..9 drive's data buffer (about 1 GB)
SIDECAR_SUFFIX = ".tapesim"


def default_early_warning(capacity: int) -> int:
    """Default early-warning zone: an eighth of the capacity, at most 4 GiB."""
    return min(capacity // 8, 4 * GiB)


class SidecarError(ValueError):
    """The settings sidecar of an image is unreadable or holds invalid values."""


# ---------------------------------------------------------------------- raw JSON

MAX_JSON_DEPTH = 64  # the sidecar and library.json nest three levels at most


def load_json_file(path: str) -> Any:
    """The JSON document in ``path``; one nested deeper than :data:`MAX_JSON_DEPTH` (which
    would exhaust the decoder's recursion) is a ValueError like any other malformed JSON."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        o, d = stack.pop()
        items: Any = o.values() if isinstance(o, dict) else o if isinstance(o, list) else None
        if items is None:
            continue
        deepest = max(deepest, d + 1)
        if deepest > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        stack.extend((x, d + 1) for x in items)
    return data


def sidecar_path(image: str | os.PathLike[str]) -> str:
    """The settings sidecar of ``image``: ``IMAGE + ".tapesim"``."""
    return os.fspath(image) + SIDECAR_SUFFIX


def read_sidecar(image: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar of ``image`` as a JSON object, None when there is none (:class:`SidecarError`
    when it cannot be read or is not an object)."""
    path = sidecar_path(image)
    try:
        data = load_json_file(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise SidecarError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise SidecarError(f"{path}: expected a JSON object")
    return data


def write_sidecar(image: str | os.PathLike[str], raw: dict[str, Any]) -> None:
    """Replace the sidecar of ``image`` by ``raw`` atomically (a temporary file renamed over it).

    A sidecar that is a symlink (a library drive's link, :mod:`tapesim.library`) is updated at
    its target.
    """
    path = sidecar_path(image)
    if os.path.islink(path):
        path = os.path.realpath(path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(raw, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- settings


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class TapeSettings:
    """Settings of a simulated cartridge (the sidecar's content)."""

    capacity: int = DEFAULT_CAPACITY
    early_warning: int | None = None
    max_record: int = DEFAULT_MAX_RECORD
    write_protected: bool = False
    barcode: str | None = None
    rate: int = 0  # native transfer rate, bytes/s; 0 = unlimited
    buffer: int = DEFAULT_BUFFER  # the drive's buffer, bytes (with a rate)

    def __post_init__(self) -> None:
        if _is_int(self.capacity) and self.early_warning is None:
            self.early_warning = default_early_warning(self.capacity)
        self.validate()

    @property
    def ew_start(self) -> int:
        """Image offset where the early-warning zone begins."""
        assert self.early_warning is not None
        return self.capacity - self.early_warning

    def validate(self) -> None:
        """Raise :class:`SidecarError` if a value is out of range."""
        if not _is_int(self.capacity) or self.capacity < 1:
            raise SidecarError(f"capacity must be a positive integer, not {self.capacity!r}")
        ew = self.early_warning
        if not _is_int(ew) or not 0 <= ew <= self.capacity:
            raise SidecarError(
                f"early_warning must be an integer between 0 and the capacity ({self.capacity}), not {ew!r}"
            )
        if not _is_int(self.max_record) or not 1 <= self.max_record <= MAX_RECORD_LENGTH:
            raise SidecarError(
                f"max_record must be an integer between 1 and {MAX_RECORD_LENGTH}, not {self.max_record!r}"
            )
        if not isinstance(self.write_protected, bool):
            raise SidecarError(f"write_protected must be true or false, not {self.write_protected!r}")
        if self.barcode is not None and not isinstance(self.barcode, str):
            raise SidecarError(f"barcode must be a string or null, not {self.barcode!r}")
        if not _is_int(self.rate) or self.rate < 0:
            raise SidecarError(f"rate must be a whole number of bytes per second (0 = unlimited), not {self.rate!r}")
        if not _is_int(self.buffer) or self.buffer < 1:
            raise SidecarError(f"buffer must be a positive whole number of bytes, not {self.buffer!r}")

    def to_json(self) -> dict[str, Any]:
        """The sidecar's keys; ``rate`` and ``buffer`` only for a rate-limited drive (the
        sidecars of unlimited drives stay as they were)."""
        raw = asdict(self)
        if not self.rate:
            del raw["rate"], raw["buffer"]
        return raw

    @classmethod
    def from_json(cls, data: object, *, source: str = "sidecar") -> TapeSettings:
        if not isinstance(data, dict):
            raise SidecarError(f"{source}: expected a JSON object")
        known = {"capacity", "early_warning", "max_record", "write_protected", "barcode", "rate", "buffer"}
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            return cls(**kwargs)
        except SidecarError as e:
            raise SidecarError(f"{source}: {e}") from None


def load_settings(image: str | os.PathLike[str]) -> TapeSettings:
    """The settings of ``image`` from its sidecar, or the defaults when there is none."""
    raw = read_sidecar(image)
    if raw is None:
        return TapeSettings()
    return TapeSettings.from_json(raw, source=sidecar_path(image))


def save_settings(image: str | os.PathLike[str], settings: TapeSettings) -> None:
    """Write ``settings`` to the sidecar of ``image`` (atomically), keeping unknown keys."""
    settings.validate()
    try:
        raw = read_sidecar(image) or {}
    except SidecarError:
        raw = {}
    if not settings.rate:  # unlimited: no rate keys (a rate set before is removed)
        raw.pop("rate", None)
        raw.pop("buffer", None)
    raw.update(settings.to_json())
    write_sidecar(image, raw)
