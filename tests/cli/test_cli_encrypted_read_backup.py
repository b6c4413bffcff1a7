"""The readers on a medium written by ``backup --encrypt``: verify with and without the key (and
--against), list, scan --deep, plan, copy (the copy restores with the key). Skipped until backup
takes --encrypt."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.cli.test_cli import tapearc
from tests.engine.enc_media import key_material


def _backup_encrypts() -> bool:
    return "--encrypt" in tapearc("backup", "--help").stdout


pytestmark = pytest.mark.skipif(not _backup_encrypts(), reason="backup --encrypt is not built yet")
BS = 4096


def test_readers_on_an_encrypted_backup(tmp_path: Path) -> None:
    km = key_material(tmp_path)
    fp = km.key.fingerprint_text
    rng = random.Random(3)
    vol = tmp_path / "vol.img"
    vol.write_bytes(b"".join(rng.randbytes(BS) if i % 3 else bytes(BS) for i in range(200)))
    med = f"sim:{tmp_path / 't.tap'}"
    key = ["--passphrase-file", str(km.passphrase_file)]
    p = tapearc("backup", str(vol), "--media", med, "--block-size", "4K", "--encrypt", str(km.key_file), *key)
    assert p.returncode == 0, p.stderr
    p = tapearc("verify", "--media", med, "--json")
    j = json.loads(p.stdout)
    assert p.returncode == 0 and j["tags_unchecked"] > 0 and j["keys_not_given"] == [fp], p.stdout
    p = tapearc("verify", "--media", med, "--key", str(km.key_file), *key, "--against", str(vol), "--json")
    j = json.loads(p.stdout)
    assert p.returncode == 0 and j["tags_unchecked"] == 0 and j["tags_checked"] > 0 and j["against"]["equal"], p.stdout
    p = tapearc("list", "--media", med, "--json")
    j = json.loads(p.stdout)
    assert j["key_fingerprint"] == fp and j["generations"][0]["key_fingerprint"] == fp
    p = tapearc("scan", "--media", med, "--deep", "--json")
    assert p.returncode == 0, p.stderr
    p = tapearc("plan", "--media", med, "--json")
    assert json.loads(p.stdout)["key_fingerprint"] == fp
    copy = f"sim:{tmp_path / 'c.tap'}"
    p = tapearc("copy", "--from", med, "--to", copy)
    assert p.returncode == 0 and fp in p.stdout, p.stdout
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", copy, "--to", str(out), "--key", str(km.key_file), *key)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == vol.read_bytes()
