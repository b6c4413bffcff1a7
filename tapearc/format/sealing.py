"""Encrypted chunks: the associated data that binds a chunk to its place, sealing and opening
its payload (formats/SPEC.md, section 15).

An encrypted chunk's stored payload is ``nonce (12) || AES-256-GCM ciphertext || tag (16)`` of
its *inner* payload (the zstd frame when flag bit 0 is set, else the raw payload). The
associated data (:func:`chunk_aad`) is authenticated, not stored: it holds the generation's
media set, volume, run, generation number, part and key fingerprint, and the chunk's header
bytes (its mapping), so a chunk that was changed, swapped, replayed or moved fails its tag.

The cipher is a :class:`tapearc.crypto.aead.ChunkCipher` of the generation's run
(:func:`chunk_cipher` makes one and checks the key). Errors: KeyRequiredError (no key; names
the fingerprint the generation wants), WrongKeyError (names both fingerprints),
ChunkAuthError (the tag does not match: damage, reported like a CRC failure; the caller adds
the location with ``.at()``).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from typing import Final

from construct import ConstructError

from tapearc.crypto.aead import AuthenticationFailed, ChunkCipher
from tapearc.crypto.keys import Key, fingerprint_text
from tapearc.errors import ChunkAuthError, KeyRequiredError, MalformedError, WrongKeyError

from .codec import encode_chunk_header, pack_payload, unpack_payload
from .constants import CHUNK_FLAG_ENCRYPTED, SEAL_OVERHEAD, ZSTD_LEVEL
from .crc import crc32c
from .model import ChunkHeader, GenerationHeader, Run
from .structs import ChunkFieldsCompiled

__all__ = [
    "AAD_TAG",
    "build_sealed_chunk",
    "check_key",
    "chunk_aad",
    "chunk_cipher",
    "open_chunk_payload",
    "raw_payload",
    "reseal_chunk",
    "seal_chunk",
    "seal_chunk_payload",
]

Buf = bytes | bytearray | memoryview

#: First 8 bytes of every chunk's associated data: names the construction and its version.
AAD_TAG: Final = b"TAAAD001"
_AAD_GEN = struct.Struct("<8s16s16s16sII16s")  # tag, media set, volume, run, generation, part, fingerprint


def _fingerprint(gen: GenerationHeader, what: str) -> bytes:
    fp = gen.key_fingerprint
    if fp is None:
        raise MalformedError(f"{what} is encrypted, but generation {gen.generation} is not (no key fingerprint)")
    return fp


def chunk_aad(gen: GenerationHeader, chunk: ChunkHeader) -> bytes:
    """The associated data of ``chunk`` in the tape file whose generation header is ``gen``
    (SPEC 15.3): ``"TAAAD001"``, the generation's media_set_uuid, volume_uuid, run_uuid,
    generation (u32), part (u32) and key_fingerprint, then the chunk's header bytes
    ``[0, header_len - 4)`` with ``payload_crc`` 0, encoded from ``chunk`` (so a writer computes
    it before the payload's CRC is known)."""
    fp = _fingerprint(gen, f"chunk {chunk.seq}")
    head = _AAD_GEN.pack(
        AAD_TAG,
        gen.media_set_uuid.bytes,
        gen.volume_uuid.bytes,
        gen.run_uuid.bytes,
        gen.generation,
        gen.part,
        fp,
    )
    try:
        fields: bytes = ChunkFieldsCompiled.build(dataclasses.replace(chunk, payload_crc=0))
    except (ConstructError, ValueError, TypeError, AttributeError, OverflowError, struct.error) as e:
        raise MalformedError(f"chunk {chunk.seq}: cannot encode its header for the associated data: {e}") from e
    return head + fields


def check_key(gen: GenerationHeader, fingerprint: bytes | None, *, what: str = "") -> None:
    """Check that a key of ``fingerprint`` (None: no key given) opens ``gen``'s chunks:
    KeyRequiredError naming the fingerprint the generation wants, or WrongKeyError naming
    both. Nothing to check for a plain generation."""
    want = gen.key_fingerprint
    if want is None:
        return
    what = what or f"generation {gen.generation}"
    if fingerprint is None:
        raise KeyRequiredError(
            f"{what} is encrypted with key {fingerprint_text(want)}; no key was given",
            hint="give the key file with --key FILE",
            fingerprint=fingerprint_text(want),
        )
    if fingerprint != want:
        raise WrongKeyError(
            f"{what} is encrypted with key {fingerprint_text(want)}, not with the key given "
            f"({fingerprint_text(fingerprint)})",
            hint=f"give the key whose fingerprint is {fingerprint_text(want)}",
            fingerprint=fingerprint_text(want),
            given=fingerprint_text(fingerprint),
        )


def chunk_cipher(gen: GenerationHeader, key: Key | None) -> ChunkCipher:
    """The cipher of ``gen``'s chunks (its run's chunk key); KeyRequiredError / WrongKeyError
    when ``key`` is missing or not the generation's. MalformedError for a plain generation."""
    _fingerprint(gen, f"generation {gen.generation}")
    check_key(gen, None if key is None else key.fingerprint)
    assert key is not None
    return ChunkCipher(key, gen.run_uuid)


def open_chunk_payload(gen: GenerationHeader, header: ChunkHeader, payload: Buf, cipher: ChunkCipher | None) -> Buf:
    """The inner payload of a chunk whose stored payload (``payload``, CRC checked) was read
    from the tape file of ``gen``: the payload itself for an unencrypted chunk, else the
    payload opened with ``cipher`` (nonce and tag removed; ``header.stored_len - 28`` bytes).

    KeyRequiredError (no cipher), WrongKeyError (the cipher's key is not the generation's),
    ChunkAuthError (the tag does not match: the payload, its header or its place changed)."""
    name = f"chunk {header.seq}"
    if not header.encrypted:
        if gen.encrypted:  # an unauthenticated chunk where only sealed ones belong
            raise ChunkAuthError(f"{name} is not encrypted, but its generation is: not authenticated", seq=header.seq)
        return payload
    _fingerprint(gen, name)
    check_key(gen, None if cipher is None else cipher.fingerprint, what=f"{name} of generation {gen.generation}")
    assert cipher is not None
    try:
        return cipher.open(payload, chunk_aad(gen, header))
    except AuthenticationFailed:
        raise ChunkAuthError(
            f"{name} payload authentication failed: its AES-256-GCM tag does not match "
            "(the chunk was changed, or moved from another place)",
            seq=header.seq,
        ) from None


def raw_payload(gen: GenerationHeader, header: ChunkHeader, payload: Buf, cipher: ChunkCipher | None = None) -> Buf:
    """The raw payload (``header.raw_len`` bytes) of any chunk of ``gen``: opened if encrypted
    (:func:`open_chunk_payload`), then decompressed if compressed (:func:`unpack_payload`)."""
    inner = open_chunk_payload(gen, header, payload, cipher)
    return unpack_payload(header, inner, opened=True)


def seal_chunk_payload(
    gen: GenerationHeader,
    header: ChunkHeader,
    inner: Buf,
    cipher: ChunkCipher,
    *,
    nonce: bytes | None = None,
    headroom: int = 0,
) -> bytearray:
    """The stored payload of an encrypted chunk (after ``headroom`` free bytes, for its header): ``inner`` sealed with ``cipher`` under the
    chunk's associated data. ``header`` is the chunk's final header (flag bit 1 set,
    ``stored_len = len(inner) + 28``); its ``payload_crc`` is not used (it is 0 in the
    associated data). ``nonce``: fixed, for golden vectors and tests only."""
    name = f"chunk {header.seq}"
    if not header.encrypted or header.stored_len != len(inner) + SEAL_OVERHEAD:
        raise MalformedError(
            f"{name}: sealing {len(inner)} bytes needs an encrypted header with stored_len "
            f"{len(inner) + SEAL_OVERHEAD} (flags 0x{header.flags:04x}, stored_len {header.stored_len})"
        )
    _fingerprint(gen, name)
    check_key(gen, cipher.fingerprint, what=f"generation {gen.generation}")
    return cipher.seal(inner, chunk_aad(gen, header), nonce=nonce, headroom=headroom)


def seal_chunk(
    gen: GenerationHeader, header: ChunkHeader, inner: Buf, cipher: ChunkCipher, *, nonce: bytes | None = None
) -> tuple[ChunkHeader, bytes, bytearray]:
    """Encrypt a chunk made for the plain path: ``header`` describes ``inner`` as stored
    unencrypted (flags bit 1 clear, ``stored_len = len(inner)``, as :func:`build_chunk` gives
    it). Returns ``(sealed header, encoded header, stored payload)`` for the tape file of
    ``gen``; at a part change, call it again with the new part's header (the chunk is sealed
    for the part it is written into)."""
    flags = header.flags & ~CHUNK_FLAG_ENCRYPTED | CHUNK_FLAG_ENCRYPTED
    sealed_header = dataclasses.replace(header, flags=flags, stored_len=len(inner) + SEAL_OVERHEAD, payload_crc=0)
    stored = seal_chunk_payload(gen, sealed_header, inner, cipher, nonce=nonce)
    sealed_header = dataclasses.replace(sealed_header, payload_crc=crc32c(stored))
    return sealed_header, encode_chunk_header(sealed_header), stored


def build_sealed_chunk(
    gen: GenerationHeader,
    *,
    seq: int,
    runs: Sequence[Run],
    raw_payload: Buf,
    cipher: ChunkCipher,
    compress: bool = True,
    level: int = ZSTD_LEVEL,
    nonce: bytes | None = None,
) -> tuple[ChunkHeader, bytes, bytearray]:
    """:func:`build_chunk` for an encrypted generation: compress (kept only if strictly
    smaller), then seal. Returns ``(header, encoded header, stored payload)``."""
    flags, inner = pack_payload(raw_payload, compress=compress, level=level)
    plain = ChunkHeader(
        flags=flags,
        run_uuid=gen.run_uuid,
        generation=gen.generation,
        seq=seq,
        block_size=gen.block_size,
        volume_size=gen.volume_size,
        runs=tuple(runs),
        raw_len=len(raw_payload),
        stored_len=len(inner),
        payload_crc=0,
    )
    return seal_chunk(gen, plain, inner, cipher, nonce=nonce)


def reseal_chunk(
    old: GenerationHeader, new: GenerationHeader, header: ChunkHeader, stored: Buf, cipher: ChunkCipher
) -> tuple[ChunkHeader, bytes, bytearray]:
    """A chunk sealed for the tape file of ``old`` sealed again for the tape file of ``new``
    (the next part of the same run, after a medium change): opened, then sealed with a fresh
    nonce under the new associated data. Returns ``(header, encoded header, stored payload)``."""
    inner = open_chunk_payload(old, header, stored, cipher)
    plain = dataclasses.replace(
        header, flags=header.flags & ~CHUNK_FLAG_ENCRYPTED, stored_len=len(inner), payload_crc=0
    )
    return seal_chunk(new, plain, inner, cipher)
