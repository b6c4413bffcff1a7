"""A data key wrapped by a passphrase: scrypt derives a key-encryption key from the passphrase,
AES-256-GCM seals the 32-byte data key under it (the key record of :mod:`tapearc.format.keyrecord`).

Parameters (measured on the 2-core reference machine, cryptography's OpenSSL scrypt, r=8, p=1):
N=2^15 0.08 s / 32 MiB, 2^16 0.16 s / 64 MiB, 2^17 0.32 s / 128 MiB, 2^18 0.78 s / 256 MiB.
New keys use N=2^17, r=8, p=1 (the top of the range Proxmox Backup uses): a third of a second
per guess and 128 MiB of memory each, while opening a key costs a user nothing noticeable. A
record states its parameters; a reader derives with them (up to the limits the format accepts).

The passphrase is text, NFC-normalised and UTF-8 encoded, so the same passphrase typed on two
systems that compose accents differently opens the key.
"""

from __future__ import annotations

import dataclasses
import os
import time
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tapearc import format as fmt
from tapearc.crypto.keys import Key, fingerprint_text
from tapearc.errors import KeyFileError, WrongPassphraseError

__all__ = [
    "DEFAULT_LOG2_N",
    "DEFAULT_P",
    "DEFAULT_R",
    "passphrase_bytes",
    "rewrap_key",
    "unwrap_key",
    "wrap_key",
]

DEFAULT_LOG2_N = 17
DEFAULT_R = 8
DEFAULT_P = 1
SALT_LEN = 16
NONCE_LEN = 12


def passphrase_bytes(passphrase: str) -> bytes:
    """The bytes scrypt derives from: the passphrase NFC-normalised, as UTF-8."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _kek(passphrase: str, w: fmt.WrappedKey) -> AESGCM:
    kdf = Scrypt(salt=w.salt, length=32, n=1 << w.kdf_log2_n, r=w.kdf_r, p=w.kdf_p)
    return AESGCM(kdf.derive(passphrase_bytes(passphrase)))


def wrap_key(
    key: Key,
    passphrase: str,
    *,
    comment: str = "",
    created: int | None = None,
    log2_n: int = DEFAULT_LOG2_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> fmt.WrappedKey:
    """``key`` wrapped by ``passphrase`` (a fresh salt and nonce unless given: the golden vector
    fixes them), as a key record's fields."""
    if not passphrase:
        raise KeyFileError("an empty passphrase is refused")
    w = fmt.WrappedKey(
        key_fingerprint=key.fingerprint,
        kdf_log2_n=log2_n,
        kdf_r=r,
        kdf_p=p,
        salt=os.urandom(SALT_LEN) if salt is None else salt,
        created=int(time.time()) if created is None else created,
        wrap_nonce=os.urandom(NONCE_LEN) if nonce is None else nonce,
        wrapped_key=bytes(fmt.WRAPPED_KEY_LEN),
        comment=comment,
    )
    aad = fmt.key_record_aad(w)  # validates the fields before scrypt is run
    sealed = _kek(passphrase, w).encrypt(w.wrap_nonce, key.secret, aad)
    return dataclasses.replace(w, wrapped_key=sealed)


def unwrap_key(w: fmt.WrappedKey, passphrase: str, *, where: str = "the key record") -> Key:
    """The data key in ``w``; WrongPassphraseError (naming ``where`` and the fingerprint) when
    ``passphrase`` does not open it."""
    fp = fingerprint_text(w.key_fingerprint)
    try:
        secret = _kek(passphrase, w).decrypt(w.wrap_nonce, w.wrapped_key, fmt.key_record_aad(w))
    except InvalidTag:
        raise WrongPassphraseError(
            f"{where}: wrong passphrase for key {fp} (or the key record was altered)",
            hint="give the passphrase the key was created or last changed with (--passphrase-file)",
        ) from None
    key = Key(secret)
    if key.fingerprint != w.key_fingerprint:  # cannot happen unless the record was forged
        raise KeyFileError(f"{where}: the key inside is not key {fp} (the key record was altered)")
    return key


def rewrap_key(
    w: fmt.WrappedKey, old: str, new: str, *, where: str = "the key record", log2_n: int = DEFAULT_LOG2_N
) -> fmt.WrappedKey:
    """``w`` opened with ``old`` and wrapped again with ``new`` (new salt and nonce, the current
    default scrypt parameters); same key, fingerprint, created time and comment."""
    key = unwrap_key(w, old, where=where)
    return wrap_key(key, new, comment=w.comment, created=w.created, log2_n=log2_n)
