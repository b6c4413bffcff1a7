"""The paper key: a key record (:mod:`tapearc.format.keyrecord`) as text a person can type back.

::

    TAPEARC PAPER KEY 1 FP 1a2b:3c4d:5e6f:7081:92a3:b4c5:d6e7:f809 LINES 8
    01 KRAUW ZJVG4 ... (6 groups of 5 base32 characters)  CHCK
    ...

The record's bytes in base32 (RFC 4648: ``A``-``Z``, ``2``-``7``; no padding), 30 characters a
line in groups of 5, each line numbered and ended by a 4-character check: the first 20 bits of
CRC-32C of ``"<line number>:<the line's 30 characters>"`` in base32. A mistyped, left-out,
swapped or doubled line is named on import; the record's own header CRC and the fingerprint on
the first line check the whole. On import, case, spaces and blank lines do not matter, lines
starting with ``#`` are ignored, and ``0``/``1``/``8`` are read as ``O``/``I``/``B`` (base32 has
no digits 0, 1, 8, 9).

An optional QR code (``tapearc key paper --qr``) holds ``TAPEARC KEY <the base32 characters>``
on one line: QR's alphanumeric mode (upper-case letters, digits, space) makes it about half the
size of a QR code of the paper text, and its own error correction stands in for the line checks.
``tapearc key import`` reads that line too (what a scanner gives back). It needs the ``qrcode``
package (the ``qr`` extra); tapearc works without it.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import io
from typing import Any

from tapearc import format as fmt
from tapearc.crypto.keys import fingerprint_text
from tapearc.errors import KeyFileError, TapearcError, UsageError

__all__ = ["GROUP", "GROUPS", "HEADER", "QR_PREFIX", "paper_text", "parse_paper", "qr_code", "qr_text"]

HEADER = "TAPEARC PAPER KEY 1"
QR_PREFIX = "TAPEARC KEY "
GROUP = 5
GROUPS = 6
PER_LINE = GROUP * GROUPS
_TYPO = str.maketrans({"0": "O", "1": "I", "8": "B"})
_B32 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def _check20(n: int, chars: str) -> str:
    """4 base32 characters: the top 20 bits of CRC-32C of ``"<n>:<chars>"``."""
    top = fmt.crc32c(f"{n}:{chars}".encode("ascii")) >> 12
    return "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(top >> s) & 31] for s in (15, 10, 5, 0))


def paper_text(wrapped: fmt.WrappedKey) -> str:
    """The paper key of ``wrapped``."""
    chars = base64.b32encode(fmt.encode_key_record(wrapped)).decode("ascii").rstrip("=")
    rows = [chars[i : i + PER_LINE] for i in range(0, len(chars), PER_LINE)]
    out = [f"{HEADER} FP {fingerprint_text(wrapped.key_fingerprint)} LINES {len(rows)}"]
    for n, row in enumerate(rows, start=1):
        groups = " ".join(row[i : i + GROUP] for i in range(0, len(row), GROUP))
        out.append(f"{n:02d} {groups}  {_check20(n, row)}")
    return "\n".join(out) + "\n"


def _header(line: str, where: str, text_line: int) -> tuple[str, int]:
    """The fingerprint and line count of the paper key's first line."""
    words = line.upper().split()
    ok = len(words) == 8 and " ".join(words[:4]) == HEADER and words[4] == "FP" and words[6] == "LINES"
    if not ok or not words[7].isdigit():
        raise KeyFileError(
            f"{where}: line {text_line} is not a paper key's first line ({HEADER} FP <fingerprint> LINES <n>)"
        )
    return words[5].lower(), int(words[7])


def _data_line(line: str, where: str, text_line: int, count: int) -> tuple[int, str]:
    """The key line number and the 30 (or, last, fewer) characters of one typed line."""
    words = line.upper().split()
    if len(words) < 3 or not words[0].isdigit():
        raise KeyFileError(f"{where}: line {text_line} is not a paper key line (number, groups, check)")
    n, chars, check = int(words[0]), "".join(words[1:-1]).translate(_TYPO), words[-1].translate(_TYPO)
    name = f"{where}: paper key line {n} (line {text_line} of the text)"
    if not 1 <= n <= count:
        raise KeyFileError(f"{where}: line {text_line}: key line number {n} is out of range (1..{count})")
    if bad := sorted(set(chars + check) - _B32):
        raise KeyFileError(f"{name}: {''.join(bad)!r} is not a paper key character (A-Z, 2-7): mistyped")
    if len(chars) > PER_LINE:
        raise KeyFileError(f"{name}: {len(chars)} characters, more than {PER_LINE}: mistyped")
    if check != _check20(n, chars):
        raise KeyFileError(f"{name}: its check {check} does not match its characters: a mistyped character")
    return n, chars


def parse_paper(text: str, where: str = "paper key") -> fmt.WrappedKey:
    """The key record typed back from a paper key; KeyFileError naming the line that is wrong."""
    numbered = [(i, s.strip()) for i, s in enumerate(text.splitlines(), start=1)]
    lines = [(i, s) for i, s in numbered if s and not s.startswith("#")]
    if not lines:
        raise KeyFileError(f"{where}: empty: no paper key text")
    if lines[0][1].upper().startswith(QR_PREFIX):
        return _one_line(lines, where)
    fp, count = _header(lines[0][1], where, lines[0][0])
    rows: dict[int, str] = {}
    for i, s in lines[1:]:
        n, chars = _data_line(s, where, i, count)
        if n in rows:
            raise KeyFileError(f"{where}: line {i}: paper key line {n} appears twice")
        rows[n] = chars
    if missing := [n for n in range(1, count + 1) if n not in rows]:
        raise KeyFileError(f"{where}: paper key line {missing[0]} of {count} is missing")
    short = [n for n in range(1, count) if len(rows[n]) != PER_LINE]
    if short:
        raise KeyFileError(f"{where}: paper key line {short[0]} has {len(rows[short[0]])} characters, not {PER_LINE}")
    return _decode(rows, count, fp, where)


def _one_line(lines: list[tuple[int, str]], where: str) -> fmt.WrappedKey:
    """The one-line form a QR code holds (``TAPEARC KEY <base32>``)."""
    if len(lines) > 1:
        raise KeyFileError(f"{where}: line {lines[1][0]}: text after the one-line key ({QR_PREFIX.strip()} ...)")
    chars = "".join(lines[0][1][len(QR_PREFIX) :].split()).upper()
    if bad := sorted(set(chars) - _B32):
        raise KeyFileError(f"{where}: line {lines[0][0]}: {''.join(bad)!r} is not a key character (A-Z, 2-7)")
    try:
        record = base64.b32decode(chars + "=" * (-len(chars) % 8))
        wrapped = fmt.decode_key_record(record)
    except (binascii.Error, ValueError, TapearcError) as e:
        detail = e.message if isinstance(e, TapearcError) else "cut or changed"
        raise KeyFileError(f"{where}: line {lines[0][0]}: the one-line key does not decode: {detail}") from None
    if qr_text(wrapped) != QR_PREFIX + chars:
        raise KeyFileError(f"{where}: line {lines[0][0]}: the one-line key's last characters are changed")
    return wrapped


def _decode(rows: dict[int, str], count: int, fp: str, where: str) -> fmt.WrappedKey:
    chars = "".join(rows[n] for n in range(1, count + 1))
    try:
        record = base64.b32decode(chars + "=" * (-len(chars) % 8))
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{where}: paper key line {count} (the last) is cut or mistyped") from None
    try:
        wrapped = fmt.decode_key_record(record)
    except TapearcError as e:
        raise KeyFileError(f"{where}: the key record does not decode: {e.message}") from None
    if fingerprint_text(wrapped.key_fingerprint) != fp:
        raise KeyFileError(
            f"{where}: the first line's fingerprint {fp} is not the key's "
            f"({fingerprint_text(wrapped.key_fingerprint)}): the first line is mistyped"
        )
    if paper_text(wrapped).split("\n")[1:-1] != [_canonical(rows[n], n) for n in range(1, count + 1)]:
        raise KeyFileError(f"{where}: paper key line {count} (the last) is mistyped")
    return wrapped


def _canonical(chars: str, n: int) -> str:
    groups = " ".join(chars[i : i + GROUP] for i in range(0, len(chars), GROUP))
    return f"{n:02d} {groups}  {_check20(n, chars)}"


def qr_text(wrapped: fmt.WrappedKey) -> str:
    """The one line a QR code of the key holds: ``TAPEARC KEY`` and the record in base32."""
    return QR_PREFIX + base64.b32encode(fmt.encode_key_record(wrapped)).decode("ascii").rstrip("=")


def qr_code(wrapped: fmt.WrappedKey) -> str:
    """A QR code of :func:`qr_text`, drawn with text characters (for a terminal or a printout),
    through the optional ``qrcode`` package; a UsageError saying how to install it when it is not."""
    try:
        qrcode: Any = importlib.import_module("qrcode")
    except ImportError:
        raise UsageError(
            "--qr needs the Python package qrcode, which is not installed",
            hint="pip install 'tapearc[qr]' (or qrcode); the paper key text alone is enough to restore the key",
        ) from None
    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(qr_text(wrapped))
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()
