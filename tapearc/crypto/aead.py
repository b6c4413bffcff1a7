"""AES-256-GCM of chunk payloads (formats/SPEC.md, "Encryption").

An encrypted chunk's stored payload is ``nonce (12) || ciphertext || tag (16)``: the nonce is
random (96 bits from the OS) under a key used by one backup run only (:meth:`Key.chunk_key`), so
a nonce repeats under one key only if two random draws of one run collide (about 2^-96 per pair
of chunks). The associated data (built by the format layer from the chunk's header and its
generation) is authenticated, not stored: a chunk moved to another place, generation, volume or
media set, or a header whose mapping was changed, fails its tag.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .keys import Key, random_nonce

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_LEN = 12
TAG_LEN = 16
#: Bytes an encrypted payload has beyond its plaintext.
OVERHEAD = NONCE_LEN + TAG_LEN


class AuthenticationFailed(Exception):
    """A sealed payload did not open: wrong key, or payload / header / place changed."""


class ChunkCipher:
    """Seals and opens the chunk payloads of one backup run (thread-safe: AESGCM is)."""

    def __init__(self, key: Key, run_uuid: uuid.UUID) -> None:
        # cryptography is imported by the first cipher made, not with this module: ~6 ms of
        # start-up that a command on unencrypted media does not need
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.fingerprint = key.fingerprint
        self._aead: AESGCM = AESGCM(key.chunk_key(run_uuid))
        self._invalid_tag = InvalidTag

    def seal(
        self, plaintext: bytes | bytearray | memoryview, aad: bytes, *, nonce: bytes | None = None, headroom: int = 0
    ) -> bytearray:
        """``nonce || ciphertext || tag``, built in place (``encrypt_into``: one buffer, no
        copy; 11 GB/s for 4 MiB here against 4 GB/s for ``nonce + encrypt(...)``). ``nonce``: a
        fixed nonce, for golden vectors and tests only (a writer never passes one: a nonce must
        not repeat under one key). ``headroom``: that many free bytes before the nonce (a chunk's
        header goes there, so the item is written to the medium without another copy)."""
        if nonce is None:
            nonce = random_nonce(NONCE_LEN)
        elif len(nonce) != NONCE_LEN:
            raise ValueError(f"a nonce is {NONCE_LEN} bytes, not {len(nonce)}")
        out = bytearray(headroom + NONCE_LEN + len(plaintext) + TAG_LEN)
        out[headroom : headroom + NONCE_LEN] = nonce
        self._aead.encrypt_into(nonce, plaintext, aad, memoryview(out)[headroom + NONCE_LEN :])
        return out

    def open(self, stored: bytes | bytearray | memoryview, aad: bytes) -> bytearray:
        """The plaintext of a sealed payload (``decrypt_into`` a buffer of its own); raises
        :class:`AuthenticationFailed` when the tag does not match."""
        if len(stored) < OVERHEAD:
            raise AuthenticationFailed(f"sealed payload of {len(stored)} bytes is shorter than {OVERHEAD}")
        mv = memoryview(stored)
        out = bytearray(len(mv) - OVERHEAD)
        try:
            self._aead.decrypt_into(bytes(mv[:NONCE_LEN]), mv[NONCE_LEN:], aad, out)
        except self._invalid_tag:
            raise AuthenticationFailed("authentication tag does not match") from None
        return out
