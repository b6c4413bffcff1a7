"""Data keys and the keys derived from them (formats/SPEC.md, "Encryption").

A data key is 32 random bytes. Nothing encrypts with it directly: every use gets a key of its
own through BLAKE3's key-derivation mode (``derive_key_context``, a fixed context string per
purpose, the data key and, for chunk keys, the run's UUID as key material):

* the **fingerprint** (16 bytes) names the key on media, in the catalog and in messages; it
  reveals nothing about the key (a one-way function of it) and is the same for every copy of it;
* a **chunk key** per backup run (``run_uuid``) seals that run's chunk payloads (AES-256-GCM);
* the **digest key** keys the BLAKE3 block digests of encrypted generations, so equal blocks do
  not show as equal digests on the tape, while two generations under the same key still compare.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import blake3

KEY_LEN = 32
FINGERPRINT_LEN = 16

# The context strings are part of the format: changing one changes every derived key.
CTX_FINGERPRINT = "tapearc 2026-12 key fingerprint v1"
CTX_CHUNK_KEY = "tapearc 2026-12 chunk key v1"
CTX_DIGEST_KEY = "tapearc 2026-12 block digest key v1"


def _derive(context: str, material: bytes, length: int = KEY_LEN) -> bytes:
    return blake3.blake3(material, derive_key_context=context).digest(length)


def fingerprint_text(fp: bytes) -> str:
    """``1a2b:3c4d:...``: the 16-byte fingerprint as 8 colon-separated groups of 4 hex digits."""
    h = fp.hex()
    return ":".join(h[i : i + 4] for i in range(0, len(h), 4))


def parse_fingerprint(text: str) -> bytes:
    """The inverse of :func:`fingerprint_text` (colons optional); ValueError if not 16 bytes."""
    raw = bytes.fromhex(text.replace(":", "").strip())
    if len(raw) != FINGERPRINT_LEN:
        raise ValueError(f"a key fingerprint is {FINGERPRINT_LEN} bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True, repr=False)
class Key:
    """A 256-bit data key. ``repr`` shows the fingerprint only, never the secret."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_LEN:
            raise ValueError(f"a data key is {KEY_LEN} bytes, not {len(self.secret)}")

    @classmethod
    def generate(cls) -> Key:
        import secrets  # (with hmac: key create's, not imported by every command)

        return cls(secrets.token_bytes(KEY_LEN))

    @property
    def fingerprint(self) -> bytes:
        return _derive(CTX_FINGERPRINT, self.secret, FINGERPRINT_LEN)

    @property
    def fingerprint_text(self) -> str:
        return fingerprint_text(self.fingerprint)

    def chunk_key(self, run_uuid: uuid.UUID) -> bytes:
        """The AES-256 key of one backup run's chunks: unique per (data key, run)."""
        return _derive(CTX_CHUNK_KEY, self.secret + run_uuid.bytes)

    def digest_key(self) -> bytes:
        """The BLAKE3 key of block digests in generations encrypted under this key."""
        return _derive(CTX_DIGEST_KEY, self.secret)

    def __repr__(self) -> str:
        return f"Key({self.fingerprint_text})"


def random_nonce(length: int = 12) -> bytes:
    return os.urandom(length)
