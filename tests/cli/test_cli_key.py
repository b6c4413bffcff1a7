"""``tapearc key``: create, show, passwd, paper, import, recover (no prompts: --passphrase-file)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.crypto.keyfile import read_key_file
from tests.cli.test_cli import assert_one_line_error


def tapearc(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def pw(tmp_path: Path) -> tuple[str, str]:
    a, b = tmp_path / "pass-a", tmp_path / "pass-b"
    a.write_text("first passphrase\n")
    b.write_text("second passphrase\n")
    return str(a), str(b)


@pytest.fixture
def keyfile(tmp_path: Path, pw: tuple[str, str]) -> tuple[Path, str]:
    k = tmp_path / "set.key"
    p = tapearc("key", "create", str(k), "--passphrase-file", pw[0], "--comment", "vault 3", "--json")
    assert p.returncode == 0, p.stderr
    return k, json.loads(p.stdout)["fingerprint"]


def test_create_show(tmp_path: Path, keyfile: tuple[Path, str], pw: tuple[str, str]) -> None:
    k, fp = keyfile
    assert stat.S_IMODE(k.stat().st_mode) == 0o600
    assert k.read_text().startswith("-----BEGIN TAPEARC KEY-----\n")
    p = tapearc("key", "show", str(k))
    assert p.returncode == 0, p.stderr
    assert f"fingerprint: {fp}" in p.stdout and "vault 3" in p.stdout and "N=2^17 r=8 p=1" in p.stdout
    p = tapearc("key", "show", str(k), "--json")
    info = json.loads(p.stdout)
    assert info["fingerprint"] == fp and info["kdf"] == {"name": "scrypt", "log2_n": 17, "r": 8, "p": 1}
    k2 = tmp_path / "plain.key"
    p = tapearc("key", "create", str(k2), "--passphrase-file", pw[0])
    assert p.returncode == 0 and len(p.stdout.strip()) == 39 and p.stdout.strip() != fp  # a new random key


def test_create_never_overwrites(keyfile: tuple[Path, str], pw: tuple[str, str]) -> None:
    k, _ = keyfile
    before = k.read_bytes()
    p = tapearc("key", "create", str(k), "--passphrase-file", pw[1])
    assert_one_line_error(p, 32, str(k), "exists already")
    assert k.read_bytes() == before


def test_passphrase_needed_and_refused_empty(tmp_path: Path) -> None:
    k = tmp_path / "k.key"
    p = tapearc("key", "create", str(k))  # no --passphrase-file, no terminal
    assert_one_line_error(p, 2, "no --passphrase-file given and no terminal")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    p = tapearc("key", "create", str(k), "--passphrase-file", str(empty))
    assert_one_line_error(p, 2, str(empty), "empty passphrase is refused")
    assert not k.exists()


def test_passwd_keeps_fingerprint_old_passphrase_stops(keyfile: tuple[Path, str], pw: tuple[str, str]) -> None:
    k, fp = keyfile
    p = tapearc("key", "passwd", str(k), "--passphrase-file", pw[1], "--new-passphrase-file", pw[0])
    assert_one_line_error(p, 31, str(k), "wrong passphrase", fp)
    p = tapearc("key", "passwd", str(k), "--passphrase-file", pw[0], "--new-passphrase-file", pw[1], "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["fingerprint"] == fp and read_key_file(k).comment == "vault 3"
    assert stat.S_IMODE(k.stat().st_mode) == 0o600 and sorted(os.listdir(k.parent)).count(k.name) == 1
    p = tapearc("key", "passwd", str(k), "--passphrase-file", pw[0], "--new-passphrase-file", pw[0])
    assert_one_line_error(p, 31, "wrong passphrase")
    p = tapearc("key", "passwd", str(k), "--passphrase-file", pw[1], "--new-passphrase-file", pw[0])
    assert p.returncode == 0, p.stderr


def test_changed_byte_in_key_file(keyfile: tuple[Path, str]) -> None:
    k, _ = keyfile
    lines = k.read_text().split("\n")
    lines[2] = lines[2][:10] + ("A" if lines[2][10] != "A" else "B") + lines[2][11:]
    k.write_text("\n".join(lines))
    p = tapearc("key", "show", str(k))
    assert_one_line_error(p, 32, f"key file {k}")


def test_paper_import_round_trip(tmp_path: Path, keyfile: tuple[Path, str]) -> None:
    k, fp = keyfile
    p = tapearc("key", "paper", str(k))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"TAPEARC PAPER KEY 1 FP {fp} LINES ")
    paper = tmp_path / "paper.txt"
    paper.write_text(p.stdout)
    out = tmp_path / "typed.key"
    q = tapearc("key", "import", str(paper), "--to", str(out))
    assert q.returncode == 0, q.stderr
    assert q.stdout.strip() == fp and out.read_bytes() == k.read_bytes()
    out2 = tmp_path / "stdin.key"
    q = tapearc("key", "import", "-", "--to", str(out2), stdin=p.stdout.lower())
    assert q.returncode == 0, q.stderr
    assert out2.read_bytes() == k.read_bytes()


def test_import_mistyped_line_named_nothing_written(tmp_path: Path, keyfile: tuple[Path, str]) -> None:
    k, _ = keyfile
    lines = tapearc("key", "paper", str(k)).stdout.split("\n")
    row = lines[2]
    lines[2] = row[:4] + ("Z" if row[4] != "Z" else "Y") + row[5:]
    paper = tmp_path / "paper.txt"
    paper.write_text("\n".join(lines))
    out = tmp_path / "typed.key"
    p = tapearc("key", "import", str(paper), "--to", str(out))
    assert_one_line_error(p, 32, f"paper key {paper}: paper key line 2 (line 3 of the text)", "mistyped")
    assert not out.exists()


def test_paper_qr_without_package_is_clear(keyfile: tuple[Path, str]) -> None:
    try:
        import qrcode  # noqa: F401
    except ImportError:
        p = tapearc("key", "paper", str(keyfile[0]), "--qr")
        assert_one_line_error(p, 2, "qrcode")
        return
    p = tapearc("key", "paper", str(keyfile[0]), "--qr")
    assert p.returncode == 0 and p.stdout.startswith("TAPEARC PAPER KEY 1")


# ---------------------------------------------------------------- recover


def medium_with_key(img: Path, k: Path | None) -> None:
    from tapearc.engine.keymedia import write_key_record
    from tapearc.engine.labeling import write_label
    from tapearc.media import open_medium

    label = fmt.Label(medium_uuid=uuid.uuid4(), media_set_uuid=uuid.uuid4(), sequence=1, record_size=65536, created=1)
    with open_medium(f"sim:{img}", write=True) as d:
        write_label(d, label)
        if k is not None:
            write_key_record(d, read_key_file(k))


def test_recover_from_medium_without_catalog(tmp_path: Path, keyfile: tuple[Path, str], pw: tuple[str, str]) -> None:
    k, fp = keyfile
    img = tmp_path / "m.tap"
    medium_with_key(img, k)
    k.unlink()  # the key file is lost
    env = {"TAPEARC_CATALOG": str(tmp_path / "no-such-folder" / "catalog.sqlite")}
    out = tmp_path / "recovered.key"
    p = tapearc("key", "recover", "--media", f"sim:{img}", "--passphrase-file", pw[1], "--to", str(out), env=env)
    assert_one_line_error(p, 31, f"medium sim:{img}", "wrong passphrase", fp)
    assert not out.exists()
    p = tapearc("key", "recover", "--media", f"sim:{img}", "--passphrase-file", pw[0], "--to", str(out), env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == fp and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not (tmp_path / "no-such-folder").exists()
    q = tapearc("key", "passwd", str(out), "--passphrase-file", pw[0], "--new-passphrase-file", pw[1])
    assert q.returncode == 0, q.stderr  # the recovered file opens with the set's passphrase


def test_recover_from_plain_medium(tmp_path: Path, pw: tuple[str, str]) -> None:
    img = tmp_path / "plain.tap"
    medium_with_key(img, None)
    out = tmp_path / "r.key"
    p = tapearc("key", "recover", "--media", f"sim:{img}", "--passphrase-file", pw[0], "--to", str(out))
    assert_one_line_error(p, 32, f"medium sim:{img}", "no key record", "not encrypted")
    assert not out.exists()
    p = tapearc("key", "recover", "--media", f"sim:{tmp_path / 'blank.tap'}", "--to", str(out))
    assert_one_line_error(p, 10, "no such simulated tape")
    assert not out.exists()


def test_medium_with_key_record_backs_up_lists_verifies(
    tmp_path: Path, keyfile: tuple[Path, str], pw: tuple[str, str]
) -> None:
    """The key record after the label does not disturb the readers of tape file 0. A medium
    with a key record is a medium of an encrypted set: a backup to it must be encrypted with
    that key (a plain one is refused, exit 29, nothing written)."""
    img = tmp_path / "m.tap"
    medium_with_key(img, keyfile[0])
    vol = tmp_path / "vol.img"
    vol.write_bytes(os.urandom(300_000))
    env = {"TAPEARC_CATALOG": str(tmp_path / "cat.sqlite")}
    before = img.read_bytes()
    p = tapearc("backup", str(vol), "--media", f"sim:{img}", env=env)
    assert_one_line_error(p, 29, keyfile[1])
    assert img.read_bytes() == before
    enc = ["--encrypt", str(keyfile[0]), "--passphrase-file", pw[0]]
    for args in (["backup", str(vol), *enc], ["list"], ["verify"]):  # verify: every CRC, no key needed
        p = tapearc(*args, "--media", f"sim:{img}", env=env)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    from tapearc.engine.keymedia import read_key_records
    from tapearc.media import open_medium

    with open_medium(f"sim:{img}", write=False) as d:
        assert [w.key_fingerprint for w in read_key_records(d)] == [read_key_file(keyfile[0]).key_fingerprint]
