"""Key record, passphrase wrapping, key files and paper keys (tapearc.format.keyrecord,
tapearc.crypto.wrap / keyfile / paper)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.crypto.keyfile import (
    armor,
    get_passphrase,
    load_key,
    load_wrapped_key,
    read_key_file,
    read_passphrase_file,
    replace_key_file,
    write_key_file,
)
from tapearc.crypto.keys import Key
from tapearc.crypto.paper import paper_text, parse_paper
from tapearc.crypto.wrap import rewrap_key, unwrap_key, wrap_key
from tapearc.errors import (
    CRCError,
    FormatError,
    KeyFileError,
    MalformedError,
    UsageError,
    WrongPassphraseError,
)

VECTORS = Path(__file__).resolve().parents[2] / "formats" / "vectors"
FAST = 10  # scrypt N = 2**10 in tests (the record states its parameters)


@pytest.fixture(scope="module")
def key() -> Key:
    return Key(bytes(range(100, 132)))


@pytest.fixture(scope="module")
def wrapped(key: Key) -> fmt.WrappedKey:
    return wrap_key(key, "pass word", comment="tests", created=1_700_000_000, log2_n=FAST)


def test_wrap_unwrap_round_trip(key: Key, wrapped: fmt.WrappedKey) -> None:
    assert wrapped.key_fingerprint == key.fingerprint
    assert unwrap_key(wrapped, "pass word") == key
    assert fmt.decode_key_record(fmt.encode_key_record(wrapped)) == wrapped
    again = wrap_key(key, "pass word", log2_n=FAST)
    assert again.salt != wrapped.salt and again.wrap_nonce != wrapped.wrap_nonce  # fresh each time


def test_passphrase_is_nfc_normalised(key: Key) -> None:
    w = wrap_key(key, "caf\u00e9", log2_n=FAST)  # precomposed
    assert unwrap_key(w, "cafe\u0301") == key  # decomposed: the same text


def test_wrong_passphrase(wrapped: fmt.WrappedKey) -> None:
    with pytest.raises(WrongPassphraseError) as info:
        unwrap_key(wrapped, "pass words", where="key file k")
    assert info.value.exit_code == 31
    assert "key file k" in str(info.value) and fmt.WrappedKey.__name__ not in str(info.value)


def test_associated_data_binds_the_fields(key: Key, wrapped: fmt.WrappedKey) -> None:
    """A record changed with its CRC recomputed does not open (the GCM tag covers the fields)."""
    import dataclasses

    for change in ({"created": wrapped.created + 1}, {"kdf_r": 4}, {"salt": bytes(16)}):
        with pytest.raises(WrongPassphraseError):
            unwrap_key(dataclasses.replace(wrapped, **change), "pass word")


def test_every_changed_byte_of_the_record_is_refused(wrapped: fmt.WrappedKey) -> None:
    rec = fmt.encode_key_record(wrapped)
    for i in range(len(rec)):
        bad = bytearray(rec)
        bad[i] ^= 0x10
        with pytest.raises(FormatError):
            fmt.decode_key_record(bytes(bad))
    with pytest.raises(CRCError, match="key record header CRC mismatch"):
        fmt.decode_key_record(rec[:100] + bytes([rec[100] ^ 1]) + rec[101:])


def test_record_limits(wrapped: fmt.WrappedKey) -> None:
    import dataclasses

    with pytest.raises(MalformedError, match="comment"):
        fmt.encode_key_record(dataclasses.replace(wrapped, comment="x" * 65))
    with pytest.raises(MalformedError, match="MiB"):
        fmt.encode_key_record(dataclasses.replace(wrapped, kdf_log2_n=22, kdf_r=8))
    with pytest.raises(MalformedError, match="kdf_log2_n"):
        fmt.encode_key_record(dataclasses.replace(wrapped, kdf_log2_n=40))


def test_golden_vector_opens_with_its_passphrase() -> None:
    desc = json.loads((VECTORS / "key-record.json").read_text())
    w = fmt.decode_key_record((VECTORS / "key-record.bin").read_bytes())
    assert w == fmt.WrappedKey.from_json(desc["fields"]) and w.to_json() == desc["fields"]
    key = unwrap_key(w, desc["passphrase"])
    assert key.secret.hex() == desc["key"] and key.fingerprint_text == desc["key_fingerprint_text"]
    assert fmt.encode_key_record(w) == (VECTORS / "key-record.bin").read_bytes()


# ---------------------------------------------------------------- key files


def test_key_file_round_trip_mode_and_no_overwrite(tmp_path: Path, key: Key, wrapped: fmt.WrappedKey) -> None:
    f = tmp_path / "k.key"
    write_key_file(f, wrapped)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert read_key_file(f) == wrapped
    pf = tmp_path / "pass"
    pf.write_text("pass word\nsecond line ignored\n")
    assert load_key(f, pf) == key
    assert load_wrapped_key(f, pf) == (wrapped, key)
    before = f.read_bytes()
    with pytest.raises(KeyFileError, match="exists already"):
        write_key_file(f, wrapped)
    assert f.read_bytes() == before
    link = tmp_path / "dangling.key"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(KeyFileError, match="exists already"):
        write_key_file(link, wrapped)
    assert not (tmp_path / "nowhere").exists()


def test_every_changed_byte_of_the_key_file_is_refused(tmp_path: Path, wrapped: fmt.WrappedKey) -> None:
    text = armor(fmt.encode_key_record(wrapped))
    f = tmp_path / "k.key"
    for i, ch in enumerate(text):
        for rep in ("A", "/", "\n"):
            if rep == ch:
                continue
            f.write_text(text[:i] + rep + text[i + 1 :])
            if text[:i] + rep + text[i + 1 :] == text[:i] + text[i + 1 :] + rep:
                continue  # a trailing newline stays a trailing newline
            with pytest.raises(KeyFileError) as info:
                read_key_file(f)
            assert str(f) in str(info.value) and "\n" not in str(info.value), (i, rep)


def test_key_file_error_names_the_line(tmp_path: Path, wrapped: fmt.WrappedKey) -> None:
    lines = armor(fmt.encode_key_record(wrapped)).split("\n")
    lines[2] = "!" + lines[2][1:]
    f = tmp_path / "k.key"
    f.write_text("\n".join(lines))
    with pytest.raises(KeyFileError, match=f"key file {f}: line 3 "):
        read_key_file(f)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(KeyFileError, match="line 1"):
        read_key_file(f)
    with pytest.raises(KeyFileError, match="cannot be read"):
        read_key_file(tmp_path / "missing.key")


def test_replace_key_file_keeps_fingerprint(tmp_path: Path, key: Key, wrapped: fmt.WrappedKey) -> None:
    f = tmp_path / "k.key"
    write_key_file(f, wrapped)
    new = rewrap_key(wrapped, "pass word", "new words", log2_n=FAST)
    replace_key_file(f, new)
    got = read_key_file(f)
    assert got.key_fingerprint == key.fingerprint and got.created == wrapped.created and got.comment == "tests"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and os.listdir(tmp_path) == ["k.key"]
    link = tmp_path / "link.key"
    link.symlink_to(f)
    replace_key_file(link, wrapped)  # through a symlink: the target is replaced, the link stays
    assert link.is_symlink() and read_key_file(f) == wrapped
    replace_key_file(f, got)
    assert unwrap_key(got, "new words") == key
    with pytest.raises(WrongPassphraseError):
        unwrap_key(got, "pass word")


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "p"
    p.write_bytes(b"  spaces kept \r\n")
    assert read_passphrase_file(p) == "  spaces kept "
    p.write_bytes(b"\nsecond")
    with pytest.raises(UsageError, match=f"--passphrase-file {p}: its first line is empty"):
        read_passphrase_file(p)
    with pytest.raises(UsageError, match="cannot be read"):
        read_passphrase_file(tmp_path / "none")
    answers = iter(["one", "two"])
    with pytest.raises(UsageError, match="differ"):
        get_passphrase(None, what="new key file k", confirm=True, prompt=lambda _: next(answers))
    assert get_passphrase(None, what="k", confirm=True, prompt=lambda _: "same") == "same"
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match="no --passphrase-file given and no terminal"):
        get_passphrase(None, what="key file k")


# ---------------------------------------------------------------- paper keys


def test_paper_round_trip_and_typing_slack(wrapped: fmt.WrappedKey) -> None:
    text = paper_text(wrapped)
    assert text.startswith("TAPEARC PAPER KEY 1 FP " + fmt_fp(wrapped))
    assert parse_paper(text) == wrapped
    head, *rows = text.split("\n")
    typed = ["  ".join(r.lower().replace("o", "0").replace("i", "1").split()) for r in rows]
    assert parse_paper("\n".join(["# typed back in", "", head.lower(), *typed])) == wrapped


def fmt_fp(w: fmt.WrappedKey) -> str:
    from tapearc.crypto.keys import fingerprint_text

    return fingerprint_text(w.key_fingerprint)


def test_paper_mistyped_character_names_the_line(wrapped: fmt.WrappedKey) -> None:
    lines = paper_text(wrapped).split("\n")
    row = lines[3]  # key line 03
    i = 7
    lines[3] = row[:i] + ("B" if row[i] != "B" else "C") + row[i + 1 :]
    with pytest.raises(KeyFileError, match=r"paper key line 3 \(line 4 of the text\): its check .* mistyped"):
        parse_paper("\n".join(lines), "paper key p.txt")


def test_paper_every_changed_letter_is_refused(wrapped: fmt.WrappedKey) -> None:
    text = paper_text(wrapped)
    for i, ch in enumerate(text):
        if not ch.isalnum():
            continue
        rep = "Q" if ch != "Q" else "R"
        if ch.isdigit():
            rep = str((int(ch) + 3) % 10)
        with pytest.raises(KeyFileError):
            parse_paper(text[:i] + rep + text[i + 1 :])


def test_paper_missing_swapped_doubled_lines(wrapped: fmt.WrappedKey) -> None:
    lines = paper_text(wrapped).rstrip("\n").split("\n")
    with pytest.raises(KeyFileError, match="paper key line 5 of 8 is missing"):
        parse_paper("\n".join(lines[:5] + lines[6:]))
    with pytest.raises(KeyFileError, match="appears twice"):
        parse_paper("\n".join([*lines, lines[2]]))
    swapped = lines[:]
    swapped[2] = swapped[2][:2].replace("02", "03") + swapped[2][2:]  # line 02's text under number 03
    with pytest.raises(KeyFileError, match="line 3"):
        parse_paper("\n".join(swapped))
    with pytest.raises(KeyFileError, match="not a paper key's first line"):
        parse_paper("\n".join(lines[1:]))
    with pytest.raises(KeyFileError, match="empty"):
        parse_paper("\n\n")


def test_one_line_form_of_the_qr_code(wrapped: fmt.WrappedKey) -> None:
    from tapearc.crypto.paper import qr_text

    line = qr_text(wrapped)
    assert line.startswith("TAPEARC KEY ") and set(line) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567 ")
    assert parse_paper(line + "\n") == wrapped and parse_paper(line.lower()) == wrapped
    for i in range(len("TAPEARC KEY "), len(line)):
        with pytest.raises(KeyFileError, match="line 1"):
            parse_paper(line[:i] + ("A" if line[i] != "A" else "B") + line[i + 1 :])
    with pytest.raises(KeyFileError, match="line 2: text after"):
        parse_paper(line + "\nmore")


def test_qr_code_optional(wrapped: fmt.WrappedKey) -> None:
    from tapearc.crypto.paper import qr_code

    try:
        import qrcode  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="qrcode"):
            qr_code(wrapped)
        return
    code = qr_code(wrapped)
    assert len(code.splitlines()) > 10
