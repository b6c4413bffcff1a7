"""Model objects <-> JSON-friendly dicts (golden vectors, ``--json`` output, debugging).

UUIDs become their canonical strings, enums their lower-case names, runs
``{"first", "count", "kind": "data"|"zero"}``, bytes (a trailer's digest table) lower-case hex,
ints stay ints.
"""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any, TypeVar
from uuid import UUID

from .model import (
    ChunkHeader,
    ChunkIndexEntry,
    Cipher,
    Compression,
    GenerationHeader,
    GenerationKind,
    Label,
    Run,
    RunKind,
    Trailer,
    TrailerEnd,
    VolumeSource,
)

__all__ = ["MAX_JSON_DEPTH", "from_jsonable", "parse_json", "to_jsonable"]

MAX_JSON_DEPTH = 64  # tapearc's own JSON files (the dir: marker) nest two levels


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for a file tapearc did not necessarily write: a document nested deeper
    than ``max_depth`` (which would exhaust the decoder's recursion, or any code walking it)
    is a ValueError like any other malformed JSON."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested more than {max_depth} levels deep") from None
    if json_depth(obj) > max_depth:
        raise ValueError(f"JSON nested more than {max_depth} levels deep")
    return obj


def json_depth(obj: Any) -> int:
    """How deeply lists and objects nest in ``obj`` (0 for a scalar); iterative, so any depth."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            items: Any = o.values()
        elif isinstance(o, list):
            items = o
        else:
            continue
        deepest = max(deepest, d + 1)
        stack.extend((x, d + 1) for x in items)
    return deepest


M = TypeVar("M")

_ENUM_FIELDS: dict[str, type[Enum]] = {
    "kind": GenerationKind,
    "compression": Compression,
    "cipher": Cipher,
}


def to_jsonable(obj: Any) -> Any:
    """A JSON-serialisable rendering of a model object (recursively)."""
    if isinstance(obj, Run):
        return {"first": obj.first, "count": obj.count, "kind": RunKind(obj.kind).name.lower()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.name.lower()
    if isinstance(obj, UUID):
        return str(obj)
    if isinstance(obj, (tuple, list)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    return obj


def _run(d: dict[str, Any]) -> Run:
    return Run(int(d["first"]), int(d["count"]), RunKind[d["kind"].upper()])


def from_jsonable(cls: type[M], d: dict[str, Any]) -> M:
    """Rebuild a model object of class ``cls`` from :func:`to_jsonable`'s output."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name.endswith("_uuid"):
            v = UUID(v)
        elif f.name == "runs":
            v = tuple(_run(r) for r in v)
        elif f.name == "digests":
            v = bytes.fromhex(v)
        elif f.name == "key_fingerprint":
            v = None if v is None else bytes.fromhex(v)
        elif f.name == "entries":
            v = tuple(from_jsonable(ChunkIndexEntry, e) for e in v)
        elif f.name == "source" and cls is GenerationHeader:
            v = None if v is None else from_jsonable(VolumeSource, v)
        elif f.name in _ENUM_FIELDS and cls is GenerationHeader:
            v = _ENUM_FIELDS[f.name][v.upper()]
        kwargs[f.name] = v
    return cls(**kwargs)


# referenced for type checkers / documentation of the supported classes
SUPPORTED = (Label, GenerationHeader, VolumeSource, ChunkHeader, ChunkIndexEntry, Trailer, TrailerEnd)
