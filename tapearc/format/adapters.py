"""construct adapters that build tapearc's model objects, so that a field declared once in
:mod:`tapearc.format.structs` gives parsing, building and the model.

:class:`FieldMap` maps a model dataclass to and from the named fields of a construct Struct by
name (a model field whose Struct field has another name is given as an alias); the two
directions are generated once, as plain functions, so they cost what hand-written code costs.
:class:`ModelAdapter` is a construct ``Adapter`` over a Struct that parses into the model and
builds from it, also inside compiled parsers (it emits code instead of falling back to the
interpreted Struct). :class:`EnumAdapter` and :class:`PathAdapter` turn single fields into
enums and OS paths.

Adapters never validate: a value an enum does not know stays a plain int, for the codec to
reject with a message naming the item and field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from typing import Any

from construct import Adapter, Construct

__all__ = ["EnumAdapter", "FieldMap", "ModelAdapter", "PathAdapter", "ValueAdapter", "struct_names"]


def struct_names(struct: Construct) -> tuple[str, ...]:
    """The names of a Struct's named fields, in order."""
    return tuple(sc.name for sc in struct.subcons if sc.name)


class FieldMap:
    """A model dataclass <-> a mapping of field values, by field name.

    ``names`` are the fields the mapping has; every field of ``model`` whose name (or
    ``aliases[name]``) is among them is mapped, the other model fields keep their defaults.
    ``to_model(mapping)`` builds the model; ``from_model(obj)`` gives a dict keyed by the
    mapping's names.
    """

    def __init__(self, model: type, names: Iterable[str], aliases: Mapping[str, str] | None = None) -> None:
        aliases = aliases or {}
        have = set(names)
        fields = [f.name for f in dataclasses.fields(model)]
        unknown = set(aliases) - set(fields)
        if unknown:
            raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
        self.model = model
        self.pairs = tuple((f, aliases.get(f, f)) for f in fields if aliases.get(f, f) in have)
        args = ", ".join(f"{f}=o[{k!r}]" for f, k in self.pairs)
        items = ", ".join(f"{k!r}: m.{f}" for f, k in self.pairs)
        scope: dict[str, Any] = {"Model": model}
        exec(f"def to_model(o):\n    return Model({args})\n", scope)
        exec(f"def from_model(m):\n    return {{{items}}}\n", scope)
        self.to_model: Callable[[Mapping[str, Any]], Any] = scope["to_model"]
        self.from_model: Callable[[Any], dict[str, Any]] = scope["from_model"]


class ValueAdapter(Adapter):  # type: ignore[misc]  # construct has no type hints
    """An Adapter whose two directions are plain functions of the value (no context): parsing
    gives ``to_value(raw)``, building writes ``to_raw(value)`` (``None``: the value as it is).
    A compiled parser calls them around the compiled subcon instead of interpreting it."""

    def __init__(self, subcon: Construct, to_value: Callable[[Any], Any], to_raw: Callable[[Any], Any] | None) -> None:
        super().__init__(subcon)
        self.to_value = to_value
        self.to_raw = to_raw

    def _decode(self, obj: Any, context: Any, path: Any) -> Any:
        return self.to_value(obj)

    def _encode(self, obj: Any, context: Any, path: Any) -> Any:
        return obj if self.to_raw is None else self.to_raw(obj)

    def _emitparse(self, code: Any) -> str:
        code.linkedparsers[id(self)] = self.to_value
        return f"linkedparsers[{id(self)}]({self.subcon._compileparse(code)})"

    def _emitbuild(self, code: Any) -> str:
        build: str = self.subcon._compilebuild(code)
        if self.to_raw is None:
            return build
        code.linkedbuilders[id(self)] = self.to_raw
        return _emit_function(code, f"linkedbuilders[{id(self)}](obj)", build)


def _emit_function(code: Any, convert: str, build: str) -> str:
    """Emit a compiled build function that converts ``obj`` (code ``convert``), then builds it
    (code ``build``); return the call. One call instead of construct's ``reuse`` and a lambda."""
    fname = f"build_adapted_{code.allocateId()}"
    code.append(f"""
        def {fname}(obj, io, this):
            obj = {convert}
            return {build}
    """)
    return f"{fname}(obj, io, this)"


class ModelAdapter(ValueAdapter):
    """``struct`` parsed into a ``model`` dataclass and built from one, field by field by name
    (see :class:`FieldMap`; the Struct's other fields must build without a value: ``Rebuild``,
    ``Const``, ``Default``)."""

    def __init__(self, struct: Construct, model: type, aliases: Mapping[str, str] | None = None) -> None:
        self.fieldmap = FieldMap(model, struct_names(struct), aliases)
        super().__init__(struct, self.fieldmap.to_model, self.fieldmap.from_model)

    def _emitbuild(self, code: Any) -> str:
        items = ", ".join(f"{k!r}: obj.{f}" for f, k in self.fieldmap.pairs)  # from_model, inline
        return _emit_function(code, f"{{{items}}}", self.subcon._compilebuild(code))


def _path_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _path_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class _Lenient(dict[int, Any]):
    """A dict that gives a key it does not hold back unchanged."""

    def __missing__(self, key: int) -> int:
        return key


class EnumAdapter(ValueAdapter):
    """An integer field as a member of ``enum``; a value it does not know stays an int. A
    member is built as the int it is."""

    def __init__(self, subcon: Construct, enum: type[IntEnum]) -> None:
        members = _Lenient({int(m): m for m in enum})
        super().__init__(subcon, members.__getitem__, None)


class PathAdapter(ValueAdapter):
    """Bytes of an OS path <-> str (UTF-8 with ``surrogateescape``: any bytes round-trip)."""

    def __init__(self, subcon: Construct) -> None:
        super().__init__(subcon, _path_text, _path_bytes)
