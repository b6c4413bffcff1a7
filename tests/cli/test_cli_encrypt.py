"""``tapearc backup --encrypt`` and ``tapearc restore --key`` from the command line: a user's whole
round trip (key create, full, incremental, restore byte-identical), the fingerprint in the
output, and the exits 29 / 30 / 31 / 33 with nothing written to the medium or the target."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.cli.test_cli_key import tapearc

pytest.importorskip("tapesim.drive")

BS = 4096


@pytest.fixture
def setup(tmp_path: Path, _private_catalog: Path) -> dict[str, Path]:
    p = tmp_path / "pass"
    p.write_text("correct horse\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("battery staple\n")
    keys = {}
    for name in ("k", "other"):
        k = tmp_path / f"{name}.key"
        r = tapearc("key", "create", str(k), "--passphrase-file", str(p))
        assert r.returncode == 0, r.stderr
        keys[name] = k
    rng = random.Random(7)
    vol = tmp_path / "vol"
    vol.write_bytes(b"".join(rng.randbytes(BS) if i % 4 else bytes(BS) for i in range(100)))
    return {"pass": p, "wrong": wrong, "key": keys["k"], "other": keys["other"], "vol": vol, "dir": tmp_path}


def _fp(key: Path) -> str:
    r = tapearc("key", "show", str(key), "--json")
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["fingerprint"])


def test_round_trip_full_and_incremental(setup: dict[str, Path]) -> None:
    s = setup
    med = f"sim:{s['dir'] / 't.tap'}"
    enc = ["--encrypt", str(s["key"]), "--passphrase-file", str(s["pass"])]
    r = tapearc("backup", str(s["vol"]), "--media", med, "--block-size", "4K", "--compress", "zstd", *enc)
    assert r.returncode == 0, r.stderr
    assert f"encrypted (AES-256-GCM) with key {_fp(s['key'])}" in r.stdout
    data = bytearray(s["vol"].read_bytes())
    data[10 * BS : 10 * BS + 5] = b"hello"
    s["vol"].write_bytes(bytes(data))
    r = tapearc("backup", str(s["vol"]), "--media", med, "--compress", "zstd", "--json", *enc)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["kind"], out["data_blocks"], out["key_fingerprint"]) == ("incremental", 1, _fp(s["key"]))
    target = s["dir"] / "out"
    r = tapearc(
        "restore", "--media", med, "--to", str(target), "--key", str(s["key"]), "--passphrase-file", str(s["pass"])
    )
    assert r.returncode == 0, r.stderr
    assert target.read_bytes() == bytes(data)


def test_restore_exits_nothing_written(setup: dict[str, Path]) -> None:
    s = setup
    img = s["dir"] / "t.tap"
    med = f"sim:{img}"
    r = tapearc(
        "backup", str(s["vol"]), "--media", med, "--encrypt", str(s["key"]), "--passphrase-file", str(s["pass"])
    )
    assert r.returncode == 0, r.stderr
    before = img.read_bytes()
    target = s["dir"] / "out"
    fp, other = _fp(s["key"]), _fp(s["other"])
    r = tapearc("restore", "--media", med, "--to", str(target))
    assert_one_line_error(r, 29, fp)
    r = tapearc(
        "restore", "--media", med, "--to", str(target), "--key", str(s["other"]), "--passphrase-file", str(s["pass"])
    )
    assert r.returncode == 30 and fp in r.stderr and other in r.stderr
    r = tapearc(
        "restore", "--media", med, "--to", str(target), "--key", str(s["key"]), "--passphrase-file", str(s["wrong"])
    )
    assert r.returncode == 31
    assert not target.exists() and img.read_bytes() == before


def test_backup_refusals_write_nothing(setup: dict[str, Path]) -> None:
    s = setup
    img = s["dir"] / "t.tap"
    med = f"sim:{img}"
    # a wrong passphrase: refused before the medium is opened (not even created)
    r = tapearc(
        "backup", str(s["vol"]), "--media", med, "--encrypt", str(s["key"]), "--passphrase-file", str(s["wrong"])
    )
    assert r.returncode == 31 and not img.exists()
    r = tapearc("backup", str(s["vol"]), "--media", med, "--passphrase-file", str(s["pass"]))
    assert r.returncode == 2 and "--encrypt" in r.stderr and not img.exists()
    r = tapearc("backup", str(s["vol"]), "--media", med)  # a plain set
    assert r.returncode == 0, r.stderr
    before = img.read_bytes()
    r = tapearc(
        "backup", str(s["vol"]), "--media", med, "--encrypt", str(s["key"]), "--passphrase-file", str(s["pass"])
    )
    assert_one_line_error(r, 33)
    assert "new media set" in r.stderr
    assert img.read_bytes() == before
    # an encrypted set: another key (30), no --encrypt (29)
    img2 = s["dir"] / "e.tap"
    med2 = f"sim:{img2}"
    enc = ["--encrypt", str(s["key"]), "--passphrase-file", str(s["pass"])]
    assert tapearc("backup", str(s["vol"]), "--media", med2, *enc).returncode == 0
    before = img2.read_bytes()
    r = tapearc(
        "backup", str(s["vol"]), "--media", med2, "--encrypt", str(s["other"]), "--passphrase-file", str(s["pass"])
    )
    assert r.returncode == 30 and _fp(s["key"]) in r.stderr and _fp(s["other"]) in r.stderr
    r = tapearc("backup", str(s["vol"]), "--media", med2)
    assert r.returncode == 29 and _fp(s["key"]) in r.stderr
    assert img2.read_bytes() == before


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_the_tape_holds_no_plaintext_of_a_known_text(setup: dict[str, Path], compress: str) -> None:
    """A volume full of a known text, backed up encrypted: grep finds the text nowhere in the
    image; the same backup without --encrypt (and without compression) is full of it."""
    import shutil
    import subprocess

    grep = shutil.which("grep")
    assert grep, "grep is needed"
    s = setup
    line = b"tapearc known plaintext: the quick brown fox jumps over the lazy dog\n"
    vol = s["dir"] / "text.img"
    vol.write_bytes(line * (2 * 1024 * 1024 // len(line)))
    enc_img, plain_img = s["dir"] / f"enc-{compress}.tap", s["dir"] / "plain.tap"
    enc = ["--encrypt", str(s["key"]), "--passphrase-file", str(s["pass"])]
    r = tapearc("backup", str(vol), "--media", f"sim:{enc_img}", "--compress", compress, *enc)
    assert r.returncode == 0, r.stderr
    r = tapearc("backup", str(vol), "--media", f"sim:{plain_img}", "--compress", "none", "--volume", "plain")
    assert r.returncode == 0, r.stderr
    for needle in (b"quick brown fox", b"known plaintext"):
        found = subprocess.run([grep, "-c", "-a", "-F", needle.decode(), str(enc_img)], capture_output=True, text=True)
        assert found.stdout.strip() == "0" and found.returncode == 1, found
        found = subprocess.run(
            [grep, "-c", "-a", "-F", needle.decode(), str(plain_img)], capture_output=True, text=True
        )
        assert int(found.stdout) > 1000  # the check can fail: the plain tape is full of it


def test_key_recovered_from_the_medium_after_key_file_and_catalog_are_gone(
    setup: dict[str, Path], _private_catalog: Path
) -> None:
    """The key file and the catalog deleted: `key recover` gets the key back from the medium with
    the passphrase alone, and the restore with it is byte-identical."""
    s = setup
    med = f"sim:{s['dir'] / 't.tap'}"
    fp = _fp(s["key"])
    r = tapearc(
        "backup", str(s["vol"]), "--media", med, "--encrypt", str(s["key"]), "--passphrase-file", str(s["pass"])
    )
    assert r.returncode == 0, r.stderr
    s["key"].unlink()
    _private_catalog.unlink()
    back = s["dir"] / "recovered.key"
    r = tapearc("key", "recover", "--media", med, "--passphrase-file", str(s["pass"]), "--to", str(back))
    assert r.returncode == 0, r.stderr
    assert _fp(back) == fp
    target = s["dir"] / "out"
    r = tapearc("restore", "--media", med, "--to", str(target), "--key", str(back), "--passphrase-file", str(s["pass"]))
    assert r.returncode == 0, r.stderr
    assert target.read_bytes() == s["vol"].read_bytes()
