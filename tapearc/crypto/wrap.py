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
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable

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
    "kek_in_child",
    "passphrase_bytes",
    "rewrap_key",
    "start_unwrap",
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


#: The child that runs scrypt for :func:`start_unwrap`: parameters and salt on the first line of
#: its standard input, the passphrase's bytes after it; the 32-byte key-encryption key on its
#: standard output. The same derivation as :func:`_kek` (cryptography's Scrypt; hashlib's, the
#: same function, when cryptography cannot be imported there).
_CHILD = """
import sys
line = sys.stdin.buffer.readline().split()
n, r, p, salt = 1 << int(line[0]), int(line[1]), int(line[2]), bytes.fromhex(line[3].decode())
secret = sys.stdin.buffer.read()
try:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    kek = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret)
except ImportError:
    import hashlib
    kek = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * n, dklen=32)
sys.stdout.buffer.write(kek)
"""


def kek_in_child(passphrase: str, w: fmt.WrappedKey) -> Callable[[], AESGCM]:
    """Start scrypt in a child process (neither cryptography's nor hashlib's scrypt releases the
    GIL: in a thread it would stall the imports and the work it is meant to overlap; measured
    0.37 s for both threads against 0.30 + 0.08 s apart). Returns the function that waits for
    the key-encryption key. The passphrase goes through a pipe, never the command line or the
    environment. A child that cannot start or fails: the derivation runs here instead."""
    fmt.key_record_aad(w)  # validates the parameters before anything is started
    try:
        child = subprocess.Popen(
            [sys.executable, "-P", "-c", _CHILD],  # -P: not the current folder on sys.path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert child.stdin is not None
        child.stdin.write(
            f"{w.kdf_log2_n} {w.kdf_r} {w.kdf_p} {w.salt.hex()}\n".encode() + passphrase_bytes(passphrase)
        )
        child.stdin.close()
    except OSError:
        return lambda: _kek(passphrase, w)

    def wait() -> AESGCM:
        assert child.stdout is not None
        try:
            with child.stdout:
                out = child.stdout.read()
        except OSError:
            out = b""
        child.wait()
        if child.returncode != 0 or len(out) != 32:
            return _kek(passphrase, w)
        return AESGCM(out)

    return wait


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
    return _open_with(_kek(passphrase, w), w, where)


def start_unwrap(
    w: fmt.WrappedKey, passphrase: str, *, where: str = "the key record", kek: Callable[[], AESGCM] | None = None
) -> Callable[[], Key]:
    """:func:`unwrap_key` begun now, its scrypt in a child process on another CPU while this
    process goes on (imports, the catalog, the medium); the function returned waits for the key
    and raises what unwrap_key raises. ``kek``: a derivation already started for this record and
    passphrase (:func:`kek_in_child`, e.g. by tapearc.crypto.prefetch)."""
    waiter = kek_in_child(passphrase, w) if kek is None else kek
    opened: list[Key] = []

    def wait() -> Key:
        if not opened:
            opened.append(_open_with(waiter(), w, where))
        return opened[0]

    return wait


def _open_with(kek: AESGCM, w: fmt.WrappedKey, where: str) -> Key:
    fp = fingerprint_text(w.key_fingerprint)
    try:
        secret = kek.decrypt(w.wrap_nonce, w.wrapped_key, fmt.key_record_aad(w))
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
