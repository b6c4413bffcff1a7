"""Data keys, derived keys and chunk sealing (tapearc/crypto)."""

from __future__ import annotations

import uuid

import pytest

from tapearc.crypto.aead import OVERHEAD, AuthenticationFailed, ChunkCipher
from tapearc.crypto.keys import Key, fingerprint_text, parse_fingerprint

TEST_KEY = Key(bytes(range(32)))
RUN_A = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
RUN_B = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")


def test_derived_keys_are_pinned() -> None:
    # the context strings are part of the format: these values must never change
    assert TEST_KEY.fingerprint.hex() == "700aee8b1e8db0047c32971c4963a3f4"
    assert TEST_KEY.chunk_key(RUN_A).hex() == "f1912f9891006c722ae1647d9ab85d2bd6faf4b6a4d064dbe4d8bb9e9b50d169"
    assert TEST_KEY.digest_key().hex() == "25cc4810bc6cdedbefbda9013691e96eecd0884bc761f8154cb0a27a8fab35c0"


def test_derived_keys_differ_by_purpose_and_run() -> None:
    keys = {TEST_KEY.fingerprint, TEST_KEY.chunk_key(RUN_A), TEST_KEY.chunk_key(RUN_B), TEST_KEY.digest_key()}
    assert len(keys) == 4
    assert Key.generate().fingerprint != Key.generate().fingerprint


def test_fingerprint_text_round_trip() -> None:
    text = fingerprint_text(TEST_KEY.fingerprint)
    assert len(text.split(":")) == 8
    assert parse_fingerprint(text) == TEST_KEY.fingerprint
    assert parse_fingerprint(text.replace(":", "")) == TEST_KEY.fingerprint
    with pytest.raises(ValueError):
        parse_fingerprint("abcd")


def test_key_repr_hides_the_secret() -> None:
    assert TEST_KEY.secret.hex() not in repr(TEST_KEY)
    assert TEST_KEY.fingerprint_text in repr(TEST_KEY)
    with pytest.raises(ValueError):
        Key(b"short")


def test_seal_open_round_trip_and_overhead() -> None:
    c = ChunkCipher(TEST_KEY, RUN_A)
    data = memoryview(bytearray(b"block data " * 1000))
    sealed = c.seal(data, b"aad")
    assert len(sealed) == len(data) + OVERHEAD
    assert c.open(sealed, b"aad") == bytes(data)
    assert c.seal(data, b"aad")[:12] != sealed[:12]  # a fresh nonce each time


@pytest.mark.parametrize("what", ["aad", "nonce", "ciphertext", "tag", "key", "run", "short"])
def test_any_change_fails_authentication(what: str) -> None:
    c = ChunkCipher(TEST_KEY, RUN_A)
    sealed = bytearray(c.seal(b"x" * 100, b"aad"))
    aad = b"aad"
    opener = c
    if what == "aad":
        aad = b"aae"
    elif what == "nonce":
        sealed[0] ^= 1
    elif what == "ciphertext":
        sealed[20] ^= 1
    elif what == "tag":
        sealed[-1] ^= 1
    elif what == "key":
        opener = ChunkCipher(Key(bytes(32)), RUN_A)
    elif what == "run":
        opener = ChunkCipher(TEST_KEY, RUN_B)
    else:
        sealed = sealed[: OVERHEAD - 1]
    with pytest.raises(AuthenticationFailed):
        opener.open(sealed, aad)
