"""The key record item (``TAKEYWR1``): a data key wrapped by a passphrase (SPEC section 16).

The same bytes are the record after the volume label on every medium of an encrypted media set,
the content of a key file (armored by :mod:`tapearc.crypto.keyfile`) and of a paper key
(:mod:`tapearc.crypto.paper`). This module knows the layout only: the scrypt parameters and the
AES-256-GCM wrapping are :mod:`tapearc.crypto.wrap`'s. Decoding checks, in order: prefix (magic,
lengths), buffer length, header CRC, format_version, fields, field validation (the errors of
:mod:`tapearc.format.codec`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from construct import (
    Bytes,
    Checksum,
    Const,
    ConstructError,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    PascalString,
    RawCopy,
    Rebuild,
    Struct,
    this,
)

from tapearc.errors import MalformedError, TruncatedError, UnsupportedVersionError

from .codec import crc_error
from .constants import FORMAT_VERSION, HEADER_CRC_LEN, KEY_RECORD_FIXED_LEN, KEY_RECORD_MAGIC, MAX_KEY_COMMENT
from .crc import crc32c
from .framing import read_prefix
from .structs import HeaderStartStruct

__all__ = [
    "KDF_SCRYPT",
    "KEY_RECORD_FLAGS_KNOWN",
    "KEY_RECORD_MAGIC",
    "WRAPPED_KEY_AT",
    "WRAPPED_KEY_LEN",
    "KeyRecordStruct",
    "WrappedKey",
    "decode_key_record",
    "encode_key_record",
    "key_record_aad",
]

#: kdf values: 1 = scrypt (the only one).
KDF_SCRYPT = 1
#: Key record flags: none defined in version 1 (all must be 0).
KEY_RECORD_FLAGS_KNOWN = 0x0000
#: Bytes of the wrapped key: AES-256-GCM of the 32-byte key (32) and its tag (16).
WRAPPED_KEY_LEN = 48
#: The scrypt parameters a reader accepts (a record asking for more is refused, not derived).
KDF_LOG2_N_RANGE = (10, 22)
KDF_R_RANGE = (1, 32)
KDF_P_RANGE = (1, 16)
KDF_MAX_MEMORY = 1 << 30  # 128 * r * N bytes

_NAME = "key record"


@dataclass(frozen=True, slots=True, kw_only=True)
class WrappedKey:
    """A data key wrapped by a passphrase (the fields of the key record; see SPEC)."""

    key_fingerprint: bytes  #: 16 bytes: the fingerprint of the wrapped key
    kdf_log2_n: int  #: scrypt N = 2**kdf_log2_n
    kdf_r: int
    kdf_p: int
    salt: bytes  #: 16 random bytes
    created: int  #: unix seconds, UTC
    wrap_nonce: bytes  #: 12 random bytes
    wrapped_key: bytes  #: 48 bytes: AES-256-GCM ciphertext and tag of the 32-byte key
    comment: str = ""  #: at most 64 bytes of UTF-8
    kdf: int = KDF_SCRYPT
    flags: int = 0

    def to_json(self) -> dict[str, Any]:
        """The fields, bytes as lower-case hex."""
        return {
            "key_fingerprint": self.key_fingerprint.hex(),
            "kdf": self.kdf,
            "kdf_log2_n": self.kdf_log2_n,
            "kdf_r": self.kdf_r,
            "kdf_p": self.kdf_p,
            "salt": self.salt.hex(),
            "created": self.created,
            "wrap_nonce": self.wrap_nonce.hex(),
            "wrapped_key": self.wrapped_key.hex(),
            "comment": self.comment,
            "flags": self.flags,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WrappedKey:
        """The inverse of :meth:`to_json`."""
        hexes = ("key_fingerprint", "salt", "wrap_nonce", "wrapped_key")
        fields: dict[str, Any] = {k: bytes.fromhex(v) if k in hexes else v for k, v in d.items()}
        return cls(**fields)


def _header_len(this_: Any) -> int:
    return KEY_RECORD_FIXED_LEN + 1 + len(this_.comment.encode("utf-8")) + HEADER_CRC_LEN


_KEY_FIELDS = Struct(
    "magic" / Const(KEY_RECORD_MAGIC),
    "header_len" / Rebuild(Int32ul, _header_len),
    "body_len" / Const(0, Int32ul),
    "format_version" / Const(FORMAT_VERSION, Int16ul),
    "flags" / Int16ul,
    "key_fingerprint" / Bytes(16),
    "kdf" / Int8ul,
    "kdf_log2_n" / Int8ul,
    "kdf_r" / Int32ul,
    "kdf_p" / Int32ul,
    "salt" / Bytes(16),
    "created" / Int64ul,
    "wrap_nonce" / Bytes(12),
    "wrapped_key" / Bytes(WRAPPED_KEY_LEN),
    "comment" / PascalString(Int8ul, "utf8"),
)

#: The whole key record: its fields, then the CRC-32C of their bytes.
KeyRecordStruct = Struct(
    "fields" / RawCopy(_KEY_FIELDS),
    "header_crc" / Checksum(Int32ul, lambda data: crc32c(data), this.fields.data),
)

#: Offset of ``wrapped_key``: the bytes before it are the wrapping's associated data.
WRAPPED_KEY_AT = KEY_RECORD_FIXED_LEN - WRAPPED_KEY_LEN

_FIELD_NAMES = tuple(sc.name for sc in _KEY_FIELDS.subcons[4:])
_HEADER_START_C = HeaderStartStruct.compile()


def _malformed(msg: str) -> MalformedError:
    return MalformedError(f"{_NAME}: {msg}")


def _check_range(field: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise _malformed(f"{field} {value} is out of range ({lo}..{hi})")


def _validate(w: WrappedKey) -> None:
    """The rules every key record obeys (the same when encoding and decoding)."""
    if w.flags & ~KEY_RECORD_FLAGS_KNOWN:
        raise _malformed(f"unknown flags 0x{w.flags:04x}")
    if w.kdf != KDF_SCRYPT:
        raise _malformed(f"unknown kdf {w.kdf} (1 = scrypt)")
    _check_range("kdf_log2_n", w.kdf_log2_n, *KDF_LOG2_N_RANGE)
    _check_range("kdf_r", w.kdf_r, *KDF_R_RANGE)
    _check_range("kdf_p", w.kdf_p, *KDF_P_RANGE)
    memory = 128 * w.kdf_r * (1 << w.kdf_log2_n)
    if memory > KDF_MAX_MEMORY:
        raise _malformed(f"scrypt parameters need {memory >> 20} MiB, more than {KDF_MAX_MEMORY >> 20}")
    _check_range("created", w.created, 0, 2**64 - 1)
    for field, n in (("key_fingerprint", 16), ("salt", 16), ("wrap_nonce", 12), ("wrapped_key", WRAPPED_KEY_LEN)):
        value = getattr(w, field)
        if not isinstance(value, bytes) or len(value) != n:
            raise _malformed(f"{field} must be {n} bytes")
    try:
        size = len(w.comment.encode("utf-8"))
    except (UnicodeError, AttributeError) as e:
        raise _malformed(f"comment is not valid text: {e}") from e
    if size > MAX_KEY_COMMENT:
        raise _malformed(f"comment is {size} bytes of UTF-8, more than {MAX_KEY_COMMENT}")


def encode_key_record(w: WrappedKey) -> bytes:
    """The key record item (one record)."""
    _validate(w)
    try:
        built: bytes = KeyRecordStruct.build({"fields": {"value": {f: getattr(w, f) for f in _FIELD_NAMES}}})
    except (ConstructError, UnicodeError, ValueError) as e:
        raise _malformed(f"cannot encode: {e}") from e
    return built


def key_record_aad(w: WrappedKey) -> bytes:
    """The associated data of the key wrapping: the record's bytes before ``wrapped_key``
    (prefix, format_version, flags, fingerprint, kdf parameters, salt, created, wrap_nonce)."""
    return encode_key_record(w)[:WRAPPED_KEY_AT]


def decode_key_record(buf: bytes | bytearray | memoryview) -> WrappedKey:
    """Decode a whole key record (raises the format's errors: BadMagicError,
    UnsupportedVersionError, TruncatedError, CRCError, MalformedError)."""
    mv = memoryview(buf).cast("B")
    prefix = read_prefix(mv, (KEY_RECORD_MAGIC,))
    need = prefix.total_len
    if len(mv) < need:
        raise TruncatedError(f"{_NAME} of {len(mv)} bytes is shorter than its declared length of {need} bytes")
    if len(mv) > need:
        raise _malformed(f"{len(mv) - need} bytes after the end of the item ({need} bytes)")
    hl = prefix.header_len
    expected = int.from_bytes(mv[hl - HEADER_CRC_LEN : hl], "little")
    found = crc32c(mv[: hl - HEADER_CRC_LEN])
    if expected != found:
        raise crc_error(f"{_NAME} header", expected, found)
    version = _HEADER_START_C.parse(bytes(mv[:18])).format_version
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"{_NAME} of format version {version}; this tapearc reads version {FORMAT_VERSION}",
            hint="use a newer tapearc" if version > FORMAT_VERSION else None,
        )
    try:
        f = KeyRecordStruct.parse(bytes(mv)).fields.value
    except (ConstructError, UnicodeError, ValueError, struct.error) as e:
        raise _malformed(" ".join(str(e).split())) from e
    if _header_len(f) != hl:
        raise _malformed(f"header_len {hl} != {_header_len(f)} bytes of fields, comment and CRC")
    w = WrappedKey(**{name: f[name] for name in _FIELD_NAMES})
    _validate(w)
    return w
