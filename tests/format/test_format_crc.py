"""CRC-32C: the hot-path implementation agrees with crcmod's reference."""

from __future__ import annotations

import crcmod.predefined
from hypothesis import given
from hypothesis import strategies as st

from tapearc.format import CRC32C_CHECK, crc32c

reference = crcmod.predefined.mkCrcFun("crc-32c")


def test_check_value() -> None:
    assert crc32c(b"123456789") == CRC32C_CHECK == 0xE3069283
    assert reference(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@given(st.binary(max_size=4096))
def test_agrees_with_crcmod(data: bytes) -> None:
    assert crc32c(data) == reference(data)


@given(st.binary(max_size=2048), st.binary(max_size=2048))
def test_running_value(a: bytes, b: bytes) -> None:
    assert crc32c(b, crc32c(a)) == crc32c(a + b) == reference(b, reference(a))


@given(st.binary(min_size=1, max_size=1024), st.data())
def test_accepts_buffers(data: bytes, d: st.DataObject) -> None:
    i = d.draw(st.integers(0, len(data)))
    assert crc32c(memoryview(data)[i:]) == reference(data[i:])
    assert crc32c(bytearray(data)) == reference(data)
