"""The readers of encrypted media through the command line: verify (with and without --key),
list, scan, plan and copy; errors are one line with their own exit code."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import assert_one_line_error, tapearc
from tests.engine.enc_media import BS, EncMedium, KeyMaterial, key_material, volume_data, write_encrypted_medium
from tests.engine.test_encrypted_read_tamper import chunk_item, put_chunk
from tests.engine.test_verify import records, write_image


def medium(tmp_path: Path) -> tuple[KeyMaterial, EncMedium]:
    km = key_material(tmp_path)
    data = volume_data(30)
    changed = bytearray(data)
    changed[3 * BS] ^= 1
    med = write_encrypted_medium(tmp_path / "t.tap", km, [(data, None), (bytes(changed), [3])])
    return km, med


def key_args(km: KeyMaterial) -> list[str]:
    return ["--key", str(km.key_file), "--passphrase-file", str(km.passphrase_file)]


def test_verify_without_and_with_the_key(tmp_path: Path) -> None:
    km, med = medium(tmp_path)
    fp = km.key.fingerprint_text
    p = tapearc("verify", "--media", med.spec)
    assert p.returncode == 0, p.stderr
    assert f"encrypted set (key {fp})" in p.stdout
    assert f"tags and block digests not checked (no key; key {fp}" in p.stdout, p.stdout
    assert "verify: OK" in p.stdout
    p = tapearc("verify", "--media", med.spec, *key_args(km), "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["ok"] and j["tags_unchecked"] == 0 and j["tags_checked"] == 8 and j["keys_not_given"] == []
    p = tapearc("verify", "--media", med.spec, *key_args(km))
    assert p.returncode == 0 and "7 tags checked" in p.stdout, p.stdout


def test_verify_with_another_key_or_passphrase(tmp_path: Path) -> None:
    km, med = medium(tmp_path)
    other = key_material(tmp_path, name="other")
    p = tapearc("verify", "--media", med.spec, *key_args(other))
    assert_one_line_error(p, 30, km.key.fingerprint_text, other.key.fingerprint_text)
    assert p.stdout == ""
    bad = tmp_path / "bad.pass"
    bad.write_text("not it\n")
    p = tapearc("verify", "--media", med.spec, "--key", str(km.key_file), "--passphrase-file", str(bad))
    assert_one_line_error(p, 31)
    p = tapearc("verify", "--media", med.spec, "--passphrase-file", str(km.passphrase_file))
    assert_one_line_error(p, 2, "--key")


def test_verify_against_needs_the_key(tmp_path: Path) -> None:
    km, med = medium(tmp_path)
    src = tmp_path / "v.img"
    src.write_bytes(med.versions[1])
    p = tapearc("verify", "--media", med.spec, "--against", str(src))
    assert_one_line_error(p, 29, km.key.fingerprint_text, "--against")
    p = tapearc("verify", "--media", med.spec, "--against", str(src), *key_args(km))
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert f"generation 2 equals {src}" in p.stdout


def test_verify_names_a_chunk_whose_tag_fails(tmp_path: Path) -> None:
    km, med = medium(tmp_path)
    img = tmp_path / "t.tap"
    files = records(img)
    h, payload = chunk_item(files, med, 0, 1)
    bad = bytearray(payload)
    bad[-20] ^= 1  # in the ciphertext, just before the tag; the payload CRC fixed up
    put_chunk(files, med, 0, 1, h, bytes(bad))
    write_image(img, files)
    p = tapearc("verify", "--media", med.spec, *key_args(km))
    assert p.returncode == 20, (p.stdout, p.stderr)
    rec = med.gens[0].chunk_records[1][0]
    assert f"record {rec}, chunk 1, blocks 4-8: chunk: chunk 1 payload authentication failed" in p.stdout, p.stdout
    assert "verify: DAMAGE FOUND" in p.stdout


def test_list_scan_and_plan_name_the_key_without_it(tmp_path: Path) -> None:
    km, med = medium(tmp_path)
    fp = km.key.fingerprint_text
    p = tapearc("list", "--media", med.spec)
    assert p.returncode == 0, p.stderr
    assert f"encrypted media set (key {fp})" in p.stdout and "full zstd encrypted" in p.stdout
    assert f"encrypted with key {fp}" in p.stdout
    p = tapearc("list", "--media", med.spec, "--json")
    j = json.loads(p.stdout)
    assert j["key_fingerprint"] == fp and all(g["encrypted"] for g in j["generations"])
    p = tapearc("scan", "--media", med.spec, "--deep", "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    results = j if isinstance(j, list) else [j]
    assert [g["key_fingerprint"] for g in results[0]["generations"]] == [fp, fp]
    p = tapearc("plan", "--media", med.spec)
    assert p.returncode == 0, p.stderr
    assert f"encrypted with key {fp}: the restore needs the key" in p.stdout, p.stdout
    p = tapearc("plan", "--media", med.spec, "--json")
    j = json.loads(p.stdout)
    assert j["encrypted"] is True and j["key_fingerprint"] == fp


def test_copy_of_an_encrypted_medium_needs_no_key_and_opens_with_it(tmp_path: Path) -> None:
    km, med = medium(tmp_path)
    copy = f"sim:{tmp_path / 'copy.tap'}"
    p = tapearc("copy", "--from", med.spec, "--to", copy)
    assert p.returncode == 0, p.stderr
    assert f"encrypted media set (key {km.key.fingerprint_text})" in p.stdout
    p = tapearc("copy", "--from", med.spec, "--to", f"sim:{tmp_path / 'copy2.tap'}", "--json")
    assert json.loads(p.stdout)["label"]["key_fingerprint"] == km.key.fingerprint_text
    p = tapearc("verify", "--media", copy, *key_args(km), "--json")
    assert p.returncode == 0, p.stdout
    assert json.loads(p.stdout)["tags_checked"] == 8
    out = tmp_path / "recovered.key"
    p = tapearc("key", "recover", "--media", copy, "--passphrase-file", str(km.passphrase_file), "--to", str(out))
    assert p.returncode == 0, p.stderr
    p = tapearc("verify", "--media", copy, "--key", str(out), "--passphrase-file", str(km.passphrase_file))
    assert p.returncode == 0, p.stdout
