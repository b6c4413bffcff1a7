"""Readers of encrypted media (SPEC section 15.6): verify without a key checks every CRC and says
how many tags it could not check (naming the key); with the key it opens every chunk (tags and
keyed digests); a wrong key is refused before anything is read; --against needs the key. The
media are written by hand through the format API (tests/engine/enc_media.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.crypto.keys import Key
from tapearc.engine.keymedia import read_key_records
from tapearc.engine.scan import sync_medium
from tapearc.engine.verify import VerifyReport, run_verify, verify_medium
from tapearc.errors import KeyRequiredError, WrongKeyError
from tapearc.media import open_medium
from tests.engine.enc_media import BS, key_material, volume_data, write_encrypted_medium, write_spanning
from tests.engine.test_verify import records, write_image


def two_generations(tmp_path: Path):
    km = key_material(tmp_path)
    data = volume_data(30)
    changed = bytearray(data)
    changed[3 * BS] ^= 1
    changed[17 * BS + 5] ^= 1
    med = write_encrypted_medium(tmp_path / "t.tap", km, [(data, None), (bytes(changed), [3, 17])])
    return km, med


def verify(spec: str, key: Key | None = None, against: str | None = None, cat: Catalog | None = None) -> VerifyReport:
    with open_medium(spec, write=False) as d:
        if cat is None:
            with Catalog() as c:
                sync_medium(d, c)
                return run_verify(d, c, key=key, against=against)
        sync_medium(d, cat)
        return run_verify(d, cat, key=key, against=against)


def test_without_a_key_every_crc_is_checked_and_the_tags_are_counted(tmp_path: Path) -> None:
    km, med = two_generations(tmp_path)
    rep = verify(med.spec)
    assert rep.ok, rep.to_json()
    nchunks = sum(len(g.chunks) for g in med.gens)
    j = rep.to_json()
    assert j["tags_unchecked"] == nchunks and j["tags_checked"] == 0
    assert j["keys_not_given"] == [km.key.fingerprint_text]
    files = j["media"][0]["tape_files"]
    assert [f["key_fingerprint"] for f in files] == [km.key.fingerprint_text] * 2
    assert all(f["encrypted"] for f in files)
    assert j["media"][0]["key_fingerprint"] == km.key.fingerprint_text


def test_with_the_key_every_tag_and_keyed_digest_is_checked(tmp_path: Path) -> None:
    km, med = two_generations(tmp_path)
    rep = verify(med.spec, km.key)
    j = rep.to_json()
    assert rep.ok, j
    assert j["tags_checked"] == sum(len(g.chunks) for g in med.gens) and j["tags_unchecked"] == 0
    assert j["keys_not_given"] == []


def test_a_wrong_keyed_digest_is_found_with_the_key_only(tmp_path: Path) -> None:
    """The trailer's digest of one block changed (trailer CRCs recomputed): the tag of every
    chunk holds, the keyed digest of the opened block does not."""
    km, med = two_generations(tmp_path)
    img = tmp_path / "t.tap"
    files = records(img)
    g = med.gens[0]
    titem_at = g.chunk_records[-1][0] + g.chunk_records[-1][1]
    tr = fmt.decode_trailer(files[1][titem_at])
    digests = bytearray(tr.digests)
    digests[16 * 5] ^= 1  # the digest of the 6th data block: block 6 (block 4 is zero)
    import dataclasses

    tb = fmt.encode_trailer(dataclasses.replace(tr, digests=bytes(digests)))
    assert len(tb) == len(files[1][titem_at])
    files[1][titem_at] = tb
    write_image(img, files)
    assert verify(med.spec).ok  # without the key: CRCs only
    rep = verify(med.spec, km.key)
    probs = rep.media[0].files[0].problems
    assert [(p.what, p.chunk, p.blocks) for p in probs] == [("digest", 1, [(6, 6)])], rep.to_json()


def test_a_wrong_key_is_refused_before_reading(tmp_path: Path) -> None:
    km, med = two_generations(tmp_path)
    other = Key.generate()
    with pytest.raises(WrongKeyError) as e:
        verify(med.spec, other)
    assert km.key.fingerprint_text in str(e.value) and other.fingerprint_text in str(e.value)
    assert e.value.exit_code == 30


def test_a_wrong_key_without_a_key_record_is_refused_at_the_generation_header(tmp_path: Path) -> None:
    km, med = two_generations(tmp_path)
    img = tmp_path / "t.tap"
    files = records(img)
    files[0] = files[0][:1]  # the key record gone: the generation header still names the key
    write_image(img, files)
    other = Key.generate()
    with pytest.raises(WrongKeyError, match=km.key.fingerprint_text):
        verify(med.spec, other)
    assert verify(med.spec, km.key).ok


def test_against_needs_the_key_and_compares_keyed_digests(tmp_path: Path) -> None:
    km, med = two_generations(tmp_path)
    src = tmp_path / "v.img"
    src.write_bytes(med.versions[1])
    with Catalog() as cat:
        with pytest.raises(KeyRequiredError, match=km.key.fingerprint_text) as e:
            verify(med.spec, None, str(src), cat)
        assert e.value.exit_code == 29
        with pytest.raises(WrongKeyError):
            verify(med.spec, Key.generate(), str(src), cat)
        rep = verify(med.spec, km.key, str(src), cat)
        assert rep.ok and rep.against is not None and rep.against["equal"]
        changed = bytearray(med.versions[1])
        changed[9 * BS] ^= 0x80
        src.write_bytes(bytes(changed))
        rep = verify(med.spec, km.key, str(src), cat)
        assert rep.source_differs and rep.against is not None
        assert rep.against["differing_ranges"] == [[9, 9]]


def test_a_damaged_key_record_is_reported(tmp_path: Path) -> None:
    _km, med = two_generations(tmp_path)
    img = tmp_path / "t.tap"
    files = records(img)
    kr = bytearray(files[0][1])
    kr[40] ^= 1  # the salt: the record's CRC fails
    files[0][1] = bytes(kr)
    write_image(img, files)
    rep = verify(med.spec)
    m = rep.media[0]
    assert not rep.ok
    assert [(p.what, p.record) for p in m.problems] == [("key-record", 1)], rep.to_json()
    assert "tape file 0, record 1" in m.problems[0].message
    assert all(f.ok for f in m.files)  # the generations themselves are intact
    with open_medium(med.spec, write=False) as d, pytest.raises(Exception, match="key record"):
        read_key_records(d)


def test_a_generation_spanning_two_media(tmp_path: Path) -> None:
    km = key_material(tmp_path)
    data = volume_data(30, seed=7)
    media = write_spanning(tmp_path / "a.tap", tmp_path / "b.tap", km, data)
    with Catalog() as cat:
        for k, m in enumerate(media):
            with open_medium(m.spec, write=False) as d:
                sync_medium(d, cat)
                rep = verify_medium(d, cat, key=km.key)
                assert rep.ok, rep
                assert rep.files[0].part == k and rep.files[0].tags_checked == len(m.gens[0].chunks)
            with open_medium(m.spec, write=False) as d:
                rep = verify_medium(d, cat)
                assert rep.ok and rep.files[0].tags_unchecked == len(m.gens[0].chunks)


def test_a_part_moved_to_the_other_medium_fails_its_tags(tmp_path: Path) -> None:
    """The second medium's chunks, re-labelled as part 0 (header and CRC fixed up), do not
    open: the part is bound."""
    import dataclasses

    km = key_material(tmp_path)
    media = write_spanning(tmp_path / "a.tap", tmp_path / "b.tap", km, volume_data(30, seed=7))
    img = tmp_path / "b.tap"
    files = records(img)
    hdr = fmt.decode_generation_header(files[1][0])
    files[1][0] = fmt.encode_generation_header(dataclasses.replace(hdr, part=0))
    write_image(img, files)
    with open_medium(media[1].spec, write=False) as d:
        rep = verify_medium(d, None, key=km.key)
    probs = rep.files[0].problems
    auth = sorted(p.chunk for p in probs if p.what == "auth" and p.chunk is not None)
    assert auth == [h.seq for h in media[1].gens[0].chunks], probs


def test_a_plain_medium_verifies_as_before_with_or_without_a_key(tmp_path: Path) -> None:
    km = key_material(tmp_path)
    med = write_encrypted_medium(tmp_path / "p.tap", km, [(volume_data(12), None)], encrypted=False)
    for key in (None, km.key):
        rep = verify(med.spec, key)
        j = rep.to_json()
        assert rep.ok and j["tags_checked"] == j["tags_unchecked"] == 0
        assert j["media"][0]["key_fingerprint"] is None


def test_list_shows_encryption_and_the_key_without_a_key(tmp_path: Path) -> None:
    from tapearc.engine.listing import list_medium

    km, med = two_generations(tmp_path)
    with open_medium(med.spec, write=False) as d:
        listing = list_medium(d)
    j = listing.to_json()
    fp = km.key.fingerprint_text
    assert j["encrypted"] is True and j["key_fingerprint"] == fp and j["key_record_problem"] is None
    assert [(g["generation"], g["encrypted"], g["key_fingerprint"]) for g in j["generations"]] == [
        (1, True, fp),
        (2, True, fp),
    ]
    assert all(c["encrypted"] for f in j["tape_files"] for c in f.get("chunks", []))
    assert j["tape_files"][0]["records"] == 2  # the label and the key record
    assert all(g["key_fingerprint"] == fp for g in j["volumes"]["vol.img"])
    assert all(f["problem"] is None for f in j["tape_files"])


def test_list_of_a_plain_medium_says_nothing_of_keys(tmp_path: Path) -> None:
    from tapearc.engine.listing import list_medium

    med = write_encrypted_medium(tmp_path / "p.tap", None, [(volume_data(12), None)], encrypted=False)
    with open_medium(med.spec, write=False) as d:
        j = list_medium(d).to_json()
    assert j["encrypted"] is False and j["key_fingerprint"] is None
    assert j["generations"][0]["encrypted"] is False and j["tape_files"][0]["records"] == 1


@pytest.mark.parametrize("deep", [False, True])
def test_scan_without_a_key_rebuilds_the_catalog_with_the_keyed_digests(tmp_path: Path, deep: bool) -> None:
    """A deep scan cannot compute keyed digests without the key: it takes them from the
    trailer (the chunks' CRCs checked), so the catalog is the same as from the trailers."""
    from tapearc.engine.scan import scan_medium

    km, med = two_generations(tmp_path)
    fp = km.key.fingerprint_text
    tr = fmt.decode_trailer(records(tmp_path / "t.tap")[1][med.gens[0].chunk_records[-1][0] + 1])
    assert tr.digest_alg == fmt.DIGEST_BLAKE3_128_KEYED
    with Catalog() as cat, open_medium(med.spec, write=False) as d:
        res = scan_medium(d, cat, deep=deep)
        j = res.to_json()
        assert j["key_fingerprint"] == fp and j["encrypted"] is True and j["warnings"] == []
        gens = j["generations"]
        assert [(g["state"], g["method"], g["key_fingerprint"]) for g in gens] == [
            ("complete", "deep" if deep else "trailer", fp)
        ] * 2
        g1 = cat.generation_by_run(med.gens[0].header.run_uuid)
        assert g1 is not None
        rows = cat.chunks(g1.id)
        assert len(rows) == len(med.gens[0].chunks)
        # the catalog's digests are the trailer's keyed ones: verify --against works after either scan
        src = tmp_path / "v.img"
        src.write_bytes(med.versions[1])
        rep = run_verify(d, cat, key=km.key, against=str(src))
        assert rep.ok and rep.against is not None and rep.against["equal"], rep.against


def test_scan_names_a_damaged_key_record(tmp_path: Path) -> None:
    from tapearc.engine.scan import scan_medium

    _, med = two_generations(tmp_path)
    img = tmp_path / "t.tap"
    files = records(img)
    files[0][1] = files[0][1][:-1] + bytes([files[0][1][-1] ^ 1])
    write_image(img, files)
    with Catalog() as cat, open_medium(med.spec, write=False) as d:
        res = scan_medium(d, cat)
    assert res.key_fingerprint is None
    assert any("key record is damaged" in w for w in res.warnings), res.warnings


def test_plan_says_encrypted_and_names_the_key(tmp_path: Path) -> None:
    from tapearc.engine.restore import RestoreOptions, prepare_plan

    km, med = two_generations(tmp_path)
    with Catalog() as cat, open_medium(med.spec, write=False) as d:
        _, chain, p = prepare_plan(d, cat, RestoreOptions())
        j = p.to_json(with_chunks=True)
        schema4 = hasattr(cat, "media_set_key")
    assert [g.number for g in chain] == [1, 2]
    assert j["encrypted"] is True
    assert all(c["encrypted"] for c in j["chunks"])  # type: ignore[union-attr]
    # the fingerprint comes from the catalog when it records one (else the CLI reads the key record)
    assert j["key_fingerprint"] == (km.key.fingerprint_text if schema4 else None)


def test_scan_records_the_set_key_when_the_catalog_keeps_one(tmp_path: Path) -> None:
    """A medium of an encrypted set with no generation yet: its key record names the set's key."""
    from tapearc.engine.scan import scan_medium

    km = key_material(tmp_path)
    med = write_encrypted_medium(tmp_path / "t.tap", km, [])
    with Catalog() as cat, open_medium(med.spec, write=False) as d:
        res = scan_medium(d, cat)
        assert res.key_fingerprint == km.key.fingerprint_text and res.files == []
        if hasattr(cat, "media_set_key"):  # catalog schema 4
            assert cat.media_set_key(med.label.media_set_uuid) == km.key.fingerprint


def test_a_plain_generation_or_another_key_on_an_encrypted_set_is_named(tmp_path: Path) -> None:
    """SPEC 15.2: a plain generation on a medium of an encrypted set is not authenticated; a
    generation under another key than the set's key record breaks the one-key rule."""
    import uuid

    from tests.engine.enc_media import generation_header, plan_chunks, write_part

    km, med = two_generations(tmp_path)
    other = Key.generate()
    data = volume_data(8, seed=9)
    with open_medium(med.spec, write=True) as d:
        for g, key in ((3, None), (4, other)):
            hdr = generation_header(med.label, key, generation=1, volume_size=len(data), volume_uuid=uuid.uuid4())
            hdr = dataclasses.replace(hdr, volume_name=f"other{g}.img")
            write_part(d, hdr, plan_chunks(data), key)
    rep = verify(med.spec)
    f3, f4 = rep.media[0].files[2], rep.media[0].files[3]
    assert [p.what for p in f3.problems] == [
        "malformed"
    ] and "not encrypted on a medium of an encrypted media set" in f3.problems[0].message
    assert [p.what for p in f4.problems] == ["malformed"] and other.fingerprint_text in f4.problems[0].message
    rep = verify(med.spec, km.key)  # the set's key: tape file 4 is reported, its CRCs checked
    files = rep.media[0].files
    assert [f.ok for f in files] == [True, True, False, False]
    assert (files[3].tags_checked, files[3].tags_unchecked) == (0, len(plan_chunks(data)))


def test_list_names_a_damaged_key_record(tmp_path: Path) -> None:
    from tapearc.engine.listing import list_medium

    _, med = two_generations(tmp_path)
    img = tmp_path / "t.tap"
    files = records(img)
    files[0][1] = files[0][1][:50] + bytes([files[0][1][50] ^ 1]) + files[0][1][51:]
    write_image(img, files)
    with open_medium(med.spec, write=False) as d:
        j = list_medium(d).to_json()
    assert j["key_fingerprint"] is None and j["encrypted"] is True
    assert "tape file 0, record 1: the key record is damaged" in str(j["key_record_problem"])
    assert all(g["encrypted"] for g in j["generations"])  # the generations still say so
