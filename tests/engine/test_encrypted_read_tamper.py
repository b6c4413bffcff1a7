"""Tampered encrypted media: each change an attacker (or damage) can make with every CRC fixed up
is found and named with its place (tape file, record, chunk, blocks), by verify with the key
and by the format-level opening a restore uses (fmt.raw_payload); nothing is passed off as good
data. SPEC 15.2/15.3: chunks cannot be changed, swapped, replayed or moved without failing their
tag, or the order (seq counting up) and index checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.crypto.keys import Key
from tapearc.engine.scan import sync_medium
from tapearc.engine.verify import FileReport, VerifyReport, run_verify
from tapearc.errors import ChunkAuthError, TapearcError
from tapearc.media import open_medium
from tests.engine.enc_media import BS, RS, EncMedium, key_material, volume_data, write_encrypted_medium
from tests.engine.test_verify import records, write_image

Files = list[list[bytes]]


def medium(tmp_path: Path) -> tuple[Key, EncMedium, Path]:
    """Generation 1 (full, 30 blocks, 7 chunks) in tape file 1, generation 2 (blocks 3 and 17
    changed, one chunk) in tape file 2; every chunk one record."""
    km = key_material(tmp_path)
    data = volume_data(30)
    changed = bytearray(data)
    changed[3 * BS] ^= 1
    changed[17 * BS + 5] ^= 1
    img = tmp_path / "t.tap"
    med = write_encrypted_medium(img, km, [(data, None), (bytes(changed), [3, 17])])
    assert all(n == 1 for g in med.gens for _, n in g.chunk_records)
    return km.key, med, img


def verify(spec: str, key: Key | None) -> VerifyReport:
    with open_medium(spec, write=False) as d, Catalog() as cat:
        try:
            sync_medium(d, cat)
        except TapearcError:
            pass
        return run_verify(d, cat, key=key)


def chunk_item(files: Files, med: EncMedium, g: int, k: int) -> tuple[fmt.ChunkHeader, bytes]:
    rec, _ = med.gens[g].chunk_records[k]
    item = files[med.gens[g].tape_file][rec]
    h, hl = fmt.decode_chunk_header(item)
    return h, item[hl:]


def put_chunk(files: Files, med: EncMedium, g: int, k: int, header: fmt.ChunkHeader, payload: bytes) -> None:
    """Chunk ``k`` of generation ``g`` replaced by ``header`` + ``payload``, its payload CRC (and
    header CRC, by the encoder) fixed up: every CRC holds."""
    header = dataclasses.replace(header, payload_crc=fmt.crc32c(payload), stored_len=len(payload))
    item = fmt.encode_chunk_header(header) + payload
    assert len(item) <= RS
    rec, _ = med.gens[g].chunk_records[k]
    files[med.gens[g].tape_file][rec] = item


Pairs = list[tuple[fmt.ChunkIndexEntry, bytes]]


def fix_trailer(files: Files, med: EncMedium, g: int, change: Callable[[Pairs], None]) -> None:
    """The trailer's (index entry, block digests) pairs changed by ``change`` (in place), the
    trailer and the end record written anew (every CRC and total fixed up)."""
    tf = med.gens[g].tape_file
    rec = med.gens[g].chunk_records[-1][0] + 1
    tr = fmt.decode_trailer(files[tf][rec])
    pairs, at = [], 0
    for e in tr.entries:
        n = 16 * sum(r.count for r in e.runs if r.kind == fmt.RunKind.DATA)
        pairs.append((e, tr.digests[at : at + n]))
        at += n
    change(pairs)
    new = fmt.Trailer.from_entries(
        run_uuid=tr.run_uuid,
        generation=tr.generation,
        volume_size=tr.volume_size,
        block_size=tr.block_size,
        entries=[e for e, _ in pairs],
        digests=b"".join(d for _, d in pairs),
        digest_alg=tr.digest_alg,
        complete=tr.complete,
    )
    tb = fmt.encode_trailer(new)
    end = fmt.trailer_end_for(tb, trailer_record=rec, record_size=RS)
    assert len(tb) <= RS
    files[tf][rec:] = [tb, fmt.encode_trailer_end(end)]


def set_entry(k: int, **changes: object) -> Callable[[Pairs], None]:
    def change(pairs: Pairs) -> None:
        pairs[k] = (dataclasses.replace(pairs[k][0], **changes), pairs[k][1])  # type: ignore[arg-type]

    return change


def entry_of(header: fmt.ChunkHeader, record: int) -> fmt.ChunkIndexEntry:
    return fmt.ChunkIndexEntry.from_chunk(header, record=record, record_count=1)


def open_all(files: Files, med: EncMedium, g: int, key: Key) -> list[bytes]:
    """What a restore does with each chunk of generation ``g``'s tape file: decode (CRCs), check
    it belongs to the generation, open (tag) and unpack it."""
    tf = med.gens[g].tape_file
    hdr = fmt.decode_generation_header(files[tf][0])
    cipher = fmt.chunk_cipher(hdr, key)
    out = []
    for seq, (rec, _) in enumerate(med.gens[g].chunk_records):
        ch, payload = fmt.decode_chunk(files[tf][rec])
        fmt.check_same_generation(hdr, ch, seq=seq)
        out.append(bytes(fmt.raw_payload(hdr, ch, payload, cipher)))
    return out


def chunk_problems(f: FileReport) -> list[tuple[str, int, int | None, list[tuple[int, int]]]]:
    return [(p.what, p.record, p.chunk, p.blocks) for p in f.problems]


# ---------------------------------------------------------------- the tamperings (every CRC fixed up)


def flip_ciphertext_bit(files: Files, med: EncMedium) -> None:
    h, payload = chunk_item(files, med, 0, 2)
    bad = bytearray(payload)
    bad[40] ^= 0x04  # inside the ciphertext (after the 12-byte nonce)
    put_chunk(files, med, 0, 2, h, bytes(bad))
    fix_trailer(files, med, 0, set_entry(2, payload_crc=fmt.crc32c(bad)))


def swap_chunks(files: Files, med: EncMedium) -> None:
    tf = med.gens[0].tape_file
    r3, r4 = med.gens[0].chunk_records[3][0], med.gens[0].chunk_records[4][0]
    files[tf][r3], files[tf][r4] = files[tf][r4], files[tf][r3]


def swap_chunks_renumbered(files: Files, med: EncMedium) -> None:
    """Swapped, each header renumbered to its new place, the trailer's index made to agree."""
    (h3, p3), (h4, p4) = chunk_item(files, med, 0, 3), chunk_item(files, med, 0, 4)
    new3, new4 = dataclasses.replace(h4, seq=3), dataclasses.replace(h3, seq=4)
    put_chunk(files, med, 0, 3, new3, p4)
    put_chunk(files, med, 0, 4, new4, p3)

    def swap_entries(pairs: Pairs) -> None:
        (e3, d3), (e4, d4) = pairs[3], pairs[4]
        pairs[3] = (entry_of(dataclasses.replace(new3, payload_crc=fmt.crc32c(p4)), e3.record), d4)
        pairs[4] = (entry_of(dataclasses.replace(new4, payload_crc=fmt.crc32c(p3)), e4.record), d3)

    fix_trailer(files, med, 0, swap_entries)


def replay_chunk_renumbered(files: Files, med: EncMedium) -> None:
    h, payload = chunk_item(files, med, 0, 1)
    put_chunk(files, med, 0, 2, dataclasses.replace(h, seq=2), payload)  # chunk 1 again, as chunk 2


def replay_chunk(files: Files, med: EncMedium) -> None:
    tf = med.gens[0].tape_file
    files[tf][med.gens[0].chunk_records[2][0]] = files[tf][med.gens[0].chunk_records[1][0]]


def move_chunk_to_generation_2(files: Files, med: EncMedium) -> None:
    """Chunk 0 of generation 1, its header made generation 2's (run, generation), in place of
    generation 2's chunk 0; its index entry and digests copied from generation 1's trailer."""
    h1, payload = chunk_item(files, med, 0, 0)
    h2, _ = chunk_item(files, med, 1, 0)
    moved = dataclasses.replace(h1, run_uuid=h2.run_uuid, generation=h2.generation)
    put_chunk(files, med, 1, 0, moved, payload)
    digests1 = fmt.decode_trailer(files[1][med.gens[0].chunk_records[-1][0] + 1]).digests[: 16 * 4]

    def move_entry(pairs: Pairs) -> None:
        entry = entry_of(dataclasses.replace(moved, payload_crc=fmt.crc32c(payload)), pairs[0][0].record)
        pairs[0] = (entry, digests1)

    fix_trailer(files, med, 1, move_entry)


def move_chunk_as_is(files: Files, med: EncMedium) -> None:
    g1, g2 = med.gens
    files[g2.tape_file][g2.chunk_records[0][0]] = files[g1.tape_file][g1.chunk_records[0][0]]


def remap_runs(files: Files, med: EncMedium) -> None:
    """Generation 2's chunk maps blocks 3 and 17; changed to 4 and 17 (the trailer alike)."""
    h, payload = chunk_item(files, med, 1, 0)
    assert [(r.first, r.count) for r in h.runs] == [(3, 1), (17, 1)]
    runs = (dataclasses.replace(h.runs[0], first=4), h.runs[1])
    put_chunk(files, med, 1, 0, dataclasses.replace(h, runs=runs), payload)
    fix_trailer(files, med, 1, set_entry(0, runs=runs))


def plain_chunk(files: Files, med: EncMedium) -> None:
    """An unauthenticated chunk: same mapping, the attacker's bytes (zeros), the index alike."""
    h, _ = chunk_item(files, med, 0, 0)
    flags, fake = fmt.pack_payload(bytes(h.raw_len), compress=True)
    put_chunk(files, med, 0, 0, dataclasses.replace(h, flags=flags), bytes(fake))
    fix_trailer(files, med, 0, set_entry(0, flags=flags, stored_len=len(fake), payload_crc=fmt.crc32c(fake)))


def damage_key_record(files: Files, med: EncMedium) -> None:
    kr = bytearray(files[0][1])
    kr[-2] ^= 0x10  # in the header CRC
    files[0][1] = bytes(kr)


TAMPERINGS: dict[str, Callable[[Files, EncMedium], None]] = {
    f.__name__: f
    for f in (
        flip_ciphertext_bit,
        swap_chunks,
        swap_chunks_renumbered,
        replay_chunk_renumbered,
        replay_chunk,
        move_chunk_to_generation_2,
        move_chunk_as_is,
        remap_runs,
        plain_chunk,
        damage_key_record,
    )
}


def tampered(tmp_path: Path, how: Callable[[Files, EncMedium], None]) -> tuple[Key, EncMedium, Files]:
    key, med, img = medium(tmp_path)
    files = records(img)
    how(files, med)
    write_image(img, files)
    return key, med, files


# ---------------------------------------------------------------- what verify and the opening find


def test_a_flipped_ciphertext_bit_with_its_crc_fixed_fails_the_tag(tmp_path: Path) -> None:
    key, med, files = tampered(tmp_path, flip_ciphertext_bit)
    assert verify(med.spec, None).ok  # every CRC holds: only the tag can tell
    rep = verify(med.spec, key)
    f = rep.media[0].files[0]
    rec = med.gens[0].chunk_records[2][0]
    assert chunk_problems(f) == [("auth", rec, 2, [(9, 13)])], rep.to_json()
    assert "tag does not match" in f.problems[0].message
    assert rep.media[0].files[1].ok
    assert rep.affected == {"vol.img": [1, 2]}  # generation 2 needs blocks of chunk 2
    with pytest.raises(ChunkAuthError, match="chunk 2"):
        open_all(files, med, 0, key)


def test_two_swapped_chunks_are_out_of_order(tmp_path: Path) -> None:
    """Each swapped chunk keeps its own (authenticated) mapping, so no wrong byte can reach a
    block; the order check names both (and the index, which lists chunks in seq order)."""
    key, med, files = tampered(tmp_path, swap_chunks)
    r3, r4 = med.gens[0].chunk_records[3][0], med.gens[0].chunk_records[4][0]
    for key_given in (None, key):
        f = verify(med.spec, key_given).media[0].files[0]
        order = [(p.what, p.record, p.chunk) for p in f.problems if p.what == "order"]
        assert order[:2] == [("order", r3, 4), ("order", r4, 3)], f
    with pytest.raises(TapearcError, match="out of order"):
        open_all(files, med, 0, key)


def test_two_swapped_chunks_with_seq_and_index_fixed_up_fail_their_tags(tmp_path: Path) -> None:
    """In seq order, counting up, the index agreeing, every CRC right: the tags fail."""
    key, med, files = tampered(tmp_path, swap_chunks_renumbered)
    assert verify(med.spec, None).ok  # every CRC, the order and the index agree
    r3, r4 = med.gens[0].chunk_records[3][0], med.gens[0].chunk_records[4][0]
    f = verify(med.spec, key).media[0].files[0]
    assert chunk_problems(f) == [("auth", r3, 3, [(19, 23)]), ("auth", r4, 4, [(14, 18)])], f
    with pytest.raises(ChunkAuthError, match="chunk 3"):
        open_all(files, med, 0, key)


def test_a_replayed_chunk_with_its_seq_fixed_up_fails_the_tag(tmp_path: Path) -> None:
    key, med, files = tampered(tmp_path, replay_chunk_renumbered)
    rec = med.gens[0].chunk_records[2][0]
    f = verify(med.spec, key).media[0].files[0]
    assert ("auth", rec, 2) in [(p.what, p.record, p.chunk) for p in f.problems], f
    # without the key: the chunk's mapping is not the trailer's (blocks 4-8 twice)
    f = verify(med.spec, None).media[0].files[0]
    assert not f.ok and {p.what for p in f.problems} >= {"malformed"}, f
    with pytest.raises(ChunkAuthError, match="chunk 2"):
        open_all(files, med, 0, key)


def test_a_replayed_chunk_as_is_is_out_of_order_and_maps_blocks_twice(tmp_path: Path) -> None:
    key, med, _ = tampered(tmp_path, replay_chunk)
    f = verify(med.spec, key).media[0].files[0]
    kinds = {p.what for p in f.problems}
    assert {"order", "malformed"} <= kinds, f
    assert any(p.what == "missing" or p.what == "index" for p in f.problems), f


def test_a_chunk_moved_from_generation_1_to_generation_2_fails_the_tag(tmp_path: Path) -> None:
    """Made generation 2's (else it is named foreign): the run key and the associated data differ."""
    key, med, files = tampered(tmp_path, move_chunk_to_generation_2)
    rep = verify(med.spec, key)
    f = rep.media[0].files[1]
    rec = med.gens[1].chunk_records[0][0]
    assert next((p.what, p.record, p.chunk) for p in f.problems if p.chunk is not None) == ("auth", rec, 0), f
    assert rep.media[0].files[0].ok
    with pytest.raises(ChunkAuthError):
        open_all(files, med, 1, key)


def test_a_chunk_moved_as_is_is_named_foreign(tmp_path: Path) -> None:
    key, med, _ = tampered(tmp_path, move_chunk_as_is)
    f = verify(med.spec, key).media[0].files[1]
    assert "foreign" in {p.what for p in f.problems}, f


def test_a_changed_run_mapping_with_its_header_crc_fixed_fails_the_tag(tmp_path: Path) -> None:
    """A mapping as valid as the first (block 3's new data would land in block 4)."""
    key, med, files = tampered(tmp_path, remap_runs)
    assert verify(med.spec, None).ok  # CRCs, index and mapping all agree: only the tag can tell
    f = verify(med.spec, key).media[0].files[1]
    rec = med.gens[1].chunk_records[0][0]
    assert chunk_problems(f) == [("auth", rec, 0, [(4, 4), (17, 17)])], f
    with pytest.raises(ChunkAuthError):
        open_all(files, med, 1, key)


def test_a_plain_chunk_in_an_encrypted_generation_is_refused(tmp_path: Path) -> None:
    """Where only sealed chunks belong: found with or without the key."""
    key, med, files = tampered(tmp_path, plain_chunk)
    rec = med.gens[0].chunk_records[0][0]
    for key_given in (None, key):
        f = verify(med.spec, key_given).media[0].files[0]
        assert [(p.what, p.record, p.chunk) for p in f.problems] == [("malformed", rec, 0)], f
        assert "not encrypted, but the generation is" in f.problems[0].message
    with pytest.raises(TapearcError, match="not encrypted"):
        open_all(files, med, 0, key)
    # the format-level opening alone refuses it too (no check_same_generation first)
    hdr = fmt.decode_generation_header(files[1][0])
    ch, payload = fmt.decode_chunk(files[1][rec])
    with pytest.raises(ChunkAuthError, match="not authenticated"):
        fmt.raw_payload(hdr, ch, payload, fmt.chunk_cipher(hdr, key))


def test_a_damaged_key_record_is_named(tmp_path: Path) -> None:
    key, med, _ = tampered(tmp_path, damage_key_record)
    for key_given in (None, key):
        rep = verify(med.spec, key_given)
        m = rep.media[0]
        assert not rep.ok and [(p.what, p.record) for p in m.problems] == [("key-record", 1)], rep.to_json()
        assert all(f.ok for f in m.files)  # with the key, every chunk still opens
