"""What a verify's OK covers: never an OK that checked nothing, never an OK that passes for an
authentication it did not make; the catalog's word against the medium's."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.cli.test_cli import tapearc
from tests.cli.test_cli_encrypted_read import medium


def test_verify_of_a_medium_holding_nothing_says_so(tmp_path: Path) -> None:
    spec = f"sim:{tmp_path / 'e.tap'}"
    assert tapearc("label", "--media", spec).returncode == 0
    p = tapearc("verify", "--media", spec)
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("verify: OK") and "holds no tape file" in last, p.stdout
    j = json.loads(tapearc("verify", "--media", spec, "--json").stdout)
    assert j["tape_files_checked"] == 0


def test_verify_without_the_key_says_its_ok_is_crc_only(tmp_path: Path) -> None:
    _, med = medium(tmp_path)
    p = tapearc("verify", "--media", med.spec)
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert "CRCs only for 8 encrypted chunks: not authenticated without the key" in last, p.stdout


def test_verify_names_a_generation_the_catalog_calls_incomplete_but_the_medium_holds_whole(tmp_path: Path) -> None:
    src = tmp_path / "v.img"
    src.write_bytes(bytes(range(256)) * 64)
    spec = f"sim:{tmp_path / 't.tap'}"
    cat = tmp_path / "c.sqlite"
    assert tapearc("backup", str(src), "--media", spec, "--catalog", str(cat)).returncode == 0
    with sqlite3.connect(cat) as db:
        db.execute("UPDATE generations SET state = 'incomplete'")
    p = tapearc("verify", "--media", spec, "--catalog", str(cat))
    assert p.returncode == 20, p.stdout
    assert "catalog records generation 1 incomplete, but the medium holds it whole" in p.stdout
