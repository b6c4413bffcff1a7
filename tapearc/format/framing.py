"""Framing of items into tape records.

Every item (label, generation header, chunk, trailer, generation end record) starts with the 16-byte prefix
``magic, header_len, body_len`` and is written as ``ceil(total_len / record_size)`` records,
all exactly ``record_size`` bytes except the last one. Every item starts on a record boundary.

A reader reads one record, calls :func:`peek_item` on it to learn the item's total length, and
reads further records until it has ``total_len`` bytes.
"""

from __future__ import annotations

from tapearc.errors import BadMagicError, MalformedError, TruncatedError, UnsupportedVersionError

from .constants import (
    CHUNK_MAGIC,
    GENERATION_MAGIC,
    KEY_RECORD_MAGIC,
    LABEL_MAGIC,
    MAGICS,
    MAX_CHUNK_BODY_LEN,
    MAX_HEADER_LEN,
    MAX_TRAILER_LEN,
    PREFIX_LEN,
    TRAILER_END_MAGIC,
    TRAILER_MAGIC,
)
from .model import ItemPrefix
from .structs import MIN_HEADER_LEN, ItemPrefixStruct

__all__ = ["ITEM_NAMES", "check_magic", "peek_item", "record_count", "split_records"]

#: Human names of the items, by magic.
ITEM_NAMES: dict[bytes, str] = {
    LABEL_MAGIC: "volume label",
    GENERATION_MAGIC: "generation header",
    CHUNK_MAGIC: "chunk",
    TRAILER_MAGIC: "trailer",
    TRAILER_END_MAGIC: "generation end record",
    KEY_RECORD_MAGIC: "key record",
}

#: Items without a body (body_len must be 0).
_NO_BODY = frozenset((LABEL_MAGIC, GENERATION_MAGIC, TRAILER_END_MAGIC, KEY_RECORD_MAGIC))

_PREFIX_C = ItemPrefixStruct.compile()


def check_magic(magic: bytes, expected: tuple[bytes, ...] = MAGICS) -> bytes:
    """Return ``magic`` if it is one of ``expected``.

    Raises UnsupportedVersionError for a known item name with another version digit (e.g.
    ``TACHUNK2``), BadMagicError for anything else.
    """
    if magic in expected:
        return magic
    for m in expected:
        if magic[:7] == m[:7] and magic[7:8].isdigit():
            raise UnsupportedVersionError(
                f"{ITEM_NAMES[m]} of format version {magic[7:8].decode()} "
                f"(magic {magic!r}); this tapearc reads version {m[7:8].decode()}",
                hint="use a newer tapearc",
            )
    want = " or ".join(repr(m) for m in expected)
    raise BadMagicError(f"bad magic {bytes(magic)!r}, expected {want}")


def read_prefix(buf: memoryview, expected: tuple[bytes, ...] = MAGICS) -> ItemPrefix:
    """Parse and check the prefix at the start of ``buf`` (see :func:`peek_item`)."""
    if len(buf) < PREFIX_LEN:
        raise TruncatedError(f"item of {len(buf)} bytes is shorter than the {PREFIX_LEN}-byte item prefix")
    p = _PREFIX_C.parse(bytes(buf[:PREFIX_LEN]))
    magic = check_magic(p.magic, expected)
    name = ITEM_NAMES[magic]
    header_len: int = p.header_len
    body_len: int = p.body_len
    if not MIN_HEADER_LEN[magic] <= header_len <= MAX_HEADER_LEN:
        raise MalformedError(
            f"{name}: header_len {header_len} is out of range ({MIN_HEADER_LEN[magic]}..{MAX_HEADER_LEN})"
        )
    if magic == TRAILER_MAGIC:
        if header_len + body_len > MAX_TRAILER_LEN:
            raise MalformedError(f"{name}: total length {header_len + body_len} is larger than {MAX_TRAILER_LEN}")
    elif body_len > MAX_CHUNK_BODY_LEN:
        raise MalformedError(f"{name}: body_len {body_len} is larger than {MAX_CHUNK_BODY_LEN}")
    if body_len and magic in _NO_BODY:
        raise MalformedError(f"{name}: body_len is {body_len}, must be 0")
    return ItemPrefix(magic, header_len, body_len, header_len + body_len)


def peek_item(first_record: bytes | bytearray | memoryview) -> ItemPrefix:
    """Read the prefix of the item that starts in ``first_record``.

    Returns ``ItemPrefix(magic, header_len, body_len, total_len)``. Raises TruncatedError if
    fewer than 16 bytes are given, BadMagicError / UnsupportedVersionError for an unknown
    magic, MalformedError for absurd lengths (header_len below the item's minimum or above
    64 MiB, a chunk body above 1 GiB + 28 bytes, a trailer of more than 2**32 - 1 bytes in all, a body for
    a label, generation header or generation end record).
    """
    return read_prefix(memoryview(first_record).cast("B"))


def record_count(total_len: int, record_size: int) -> int:
    """Number of records an item of ``total_len`` bytes takes."""
    if record_size <= 0:
        raise ValueError(f"record_size must be positive, not {record_size}")
    return -(-total_len // record_size)


def split_records(item: bytes | bytearray | memoryview, record_size: int) -> list[memoryview]:
    """Cut an item into records: each ``record_size`` bytes except the last (shorter).

    The records are views into ``item`` (no copy).
    """
    if record_size <= 0:
        raise ValueError(f"record_size must be positive, not {record_size}")
    mv = memoryview(item).cast("B")
    return [mv[i : i + record_size] for i in range(0, len(mv), record_size)]
