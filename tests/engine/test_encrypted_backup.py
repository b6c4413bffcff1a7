"""Encrypted backups (backup --encrypt, restore --key): round trips byte-identical to the source,
the key record on every medium of the set, keyed digests, the one-key-per-media-set rule
(refusals write nothing) and restores without the key or with another one (nothing written)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.crypto.keys import Key
from tapearc.crypto.wrap import wrap_key
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.encryption import BackupKey, ChunkOpener
from tapearc.engine.keymedia import read_key_records
from tapearc.engine.labeling import label_medium
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import ChunkAuthError, KeyRequiredError, MediaSetKeyError, WrongKeyError
from tapearc.media import open_medium

pytest.importorskip("tapesim.drive")

BS = 4096
RS = 16384


def make_key(seed: int = 1) -> BackupKey:
    key = Key(random.Random(seed).randbytes(32))
    return BackupKey(wrap_key(key, "pass phrase", log2_n=10), key)


def volume(n_blocks: int = 96, seed: int = 5) -> bytes:
    """Random blocks, text-like (compressible) blocks and zero blocks."""
    r = random.Random(seed)
    out = bytearray()
    for i in range(n_blocks):
        if i % 7 == 3:
            out += bytes(BS)
        elif i % 3 == 0:
            text = (b"line %d of a log file, some words repeat %d\n" % (i, r.randrange(9))) * BS
            out += text[:BS]
        else:
            out += r.randbytes(BS)
    return bytes(out[: n_blocks * BS])


def do_backup(spec: str, src: Path, key: BackupKey | None, **kw: object):
    kw.setdefault("block_size", BS)
    kw.setdefault("record_size", RS)
    with Catalog() as cat, open_medium(spec, write=True) as d:
        return backup(str(src), d, cat, BackupOptions(encrypt=key, **kw))  # type: ignore[arg-type]


def do_restore(spec: str, dst: Path, key: Key | None, **kw: object):
    with Catalog() as cat, open_medium(spec, write=False) as d:
        return restore(d, cat, str(dst), RestoreOptions(key=key, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_full_round_trip(tmp_path: Path, _private_catalog: Path, compress: str) -> None:
    data = volume()
    src = tmp_path / "vol"
    src.write_bytes(data)
    img = tmp_path / "t.tap"
    k = make_key()
    res = do_backup(f"sim:{img}", src, k, compress=compress)
    assert res.key_fingerprint == k.text and res.complete
    with open_medium(f"sim:{img}", write=False) as d:
        recs = read_key_records(d)
    assert [r.key_fingerprint for r in recs] == [k.fingerprint]
    with Catalog() as cat:
        (gen,) = cat.generations(cat.media_holding_generations()[0][1])
        set_key = cat.media_set_key(gen.set_uuid)
        rows = cat.chunks(gen.id)
    assert gen.key_fingerprint == k.fingerprint and set_key == k.fingerprint
    assert rows and all(r.flags & fmt.CHUNK_FLAG_ENCRYPTED for r in rows)
    out = tmp_path / "out"
    r = do_restore(f"sim:{img}", out, k.key)
    assert out.read_bytes() == data and not r.damaged_chunks


def test_media_hold_no_plaintext(tmp_path: Path, _private_catalog: Path) -> None:
    """No 64-byte window of the source's data is on the medium: the chunks are really encrypted
    (the same backup without --encrypt holds every one of them)."""
    data = volume(64)
    src = tmp_path / "vol"
    src.write_bytes(data)
    windows = [data[o : o + 64] for o in range(0, len(data), 64) if any(data[o : o + 64])]
    enc, plain = tmp_path / "enc.tap", tmp_path / "plain.tap"
    do_backup(f"sim:{enc}", src, make_key())
    do_backup(f"sim:{plain}", src, None)
    eb, pb = enc.read_bytes(), plain.read_bytes()
    assert sum(w in pb for w in windows) > 0.9 * len(windows)  # (a few straddle record framing)
    assert not [w for w in windows if w in eb]


def test_keyed_digests_differ_from_plain(tmp_path: Path, _private_catalog: Path) -> None:
    data = volume(32)
    src = tmp_path / "vol"
    src.write_bytes(data)
    k = make_key()
    do_backup(f"sim:{tmp_path / 'enc.tap'}", src, k)
    do_backup(f"sim:{tmp_path / 'plain.tap'}", src, None)
    tables = {}
    with Catalog() as cat:
        for _, set_uuid, *_ in cat.media_holding_generations():
            (g,) = cat.generations(set_uuid)
            tables[g.encrypted] = b"".join(t for _, t in cat.chunk_digests(g.id))
    first = next(i for i in range(32) if any(data[i * BS : (i + 1) * BS]))
    block = data[first * BS : (first + 1) * BS]
    assert tables[False][:16] == fmt.block_digest(block)
    assert tables[True][:16] == fmt.digest_function(k.key.digest_key())(block)
    assert len(tables[True]) == len(tables[False]) and tables[True] != tables[False]


def test_incremental_one_percent(tmp_path: Path, _private_catalog: Path) -> None:
    data = bytearray(volume(200))
    src = tmp_path / "vol"
    src.write_bytes(data)
    img = tmp_path / "t.tap"
    k = make_key()
    do_backup(f"sim:{img}", src, k, compress="zstd")
    data[50 * BS + 7 : 50 * BS + 11] = b"new!"
    data[150 * BS : 150 * BS + 3] = b"abc"
    src.write_bytes(bytes(data))
    inc = do_backup(f"sim:{img}", src, k, compress="zstd")
    assert inc.kind == "incremental" and inc.data_blocks == 2 and inc.key_fingerprint == k.text
    out = tmp_path / "out"
    do_restore(f"sim:{img}", out, k.key)
    assert out.read_bytes() == bytes(data)
    out1 = tmp_path / "out1"
    do_restore(f"sim:{img}", out1, k.key, generation=1)
    assert out1.read_bytes() == volume(200)


def test_restore_without_key_or_with_another_writes_nothing(tmp_path: Path, _private_catalog: Path) -> None:
    src = tmp_path / "vol"
    src.write_bytes(volume(16))
    img = tmp_path / "t.tap"
    k = make_key()
    do_backup(f"sim:{img}", src, k)
    before = img.read_bytes()
    out = tmp_path / "out"
    with pytest.raises(KeyRequiredError) as e1:
        do_restore(f"sim:{img}", out, None)
    assert k.text in e1.value.message and e1.value.exit_code == 29
    with pytest.raises(WrongKeyError) as e2:
        do_restore(f"sim:{img}", out, make_key(2).key)
    assert k.text in e2.value.message and make_key(2).text in e2.value.message and e2.value.exit_code == 30
    assert not out.exists() and img.read_bytes() == before
    # a target holding something is not touched either
    out.write_bytes(b"x" * 100)
    with pytest.raises(WrongKeyError):
        do_restore(f"sim:{img}", out, make_key(2).key, force=True)
    assert out.read_bytes() == b"x" * 100


def _refused(img: Path, src: Path, key: BackupKey | None, error: type[Exception]) -> Exception:
    before = img.read_bytes()
    with pytest.raises(error) as e:  # type: ignore[call-overload]
        do_backup(f"sim:{img}", src, key)
    assert img.read_bytes() == before, "a refused backup wrote to the medium"
    return e.value  # type: ignore[no-any-return]


def test_one_key_per_media_set_refusals_write_nothing(tmp_path: Path, _private_catalog: Path) -> None:
    src = tmp_path / "vol"
    src.write_bytes(volume(16))
    plain, enc = tmp_path / "plain.tap", tmp_path / "enc.tap"
    k = make_key()
    do_backup(f"sim:{plain}", src, None)
    do_backup(f"sim:{enc}", src, k)
    e = _refused(plain, src, k, MediaSetKeyError)  # --encrypt into a plain set
    assert e.exit_code == 33 and "new media set" in str(e.hint)  # type: ignore[attr-defined]
    e = _refused(enc, src, None, KeyRequiredError)  # a plain backup into an encrypted set
    assert k.text in e.message  # type: ignore[attr-defined]
    other = make_key(2)
    e = _refused(enc, src, other, WrongKeyError)  # another key
    assert k.text in e.message and other.text in e.message  # type: ignore[attr-defined]
    # the catalog lost: the medium's key record alone decides
    _private_catalog.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    _refused(enc, src, other, WrongKeyError)
    _refused(enc, src, None, KeyRequiredError)
    assert do_backup(f"sim:{enc}", src, k).kind == "incremental"


def test_labeled_empty_medium_gets_the_key_record(tmp_path: Path, _private_catalog: Path) -> None:
    src = tmp_path / "vol"
    data = volume(16)
    src.write_bytes(data)
    img = tmp_path / "t.tap"
    with Catalog() as cat, open_medium(f"sim:{img}", write=True) as d:
        label_medium(d, cat, record_size=RS)
    k = make_key()
    do_backup(f"sim:{img}", src, k)
    with open_medium(f"sim:{img}", write=False) as d:
        assert [r.key_fingerprint for r in read_key_records(d)] == [k.fingerprint]
    out = tmp_path / "out"
    do_restore(f"sim:{img}", out, k.key)
    assert out.read_bytes() == data


def test_tampered_payload_is_an_auth_failure(tmp_path: Path, _private_catalog: Path) -> None:
    """The opener a restore decodes with: a changed stored byte fails the tag (ChunkAuthError,
    damage like a CRC failure)."""
    src = tmp_path / "vol"
    src.write_bytes(volume(16))
    img = tmp_path / "t.tap"
    k = make_key()
    do_backup(f"sim:{img}", src, k, compress="zstd")
    from tapearc.engine.layout import read_item

    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        (g,) = cat.generations(cat.media_holding_generations()[0][1])
        c = cat.chunks(g.id)[0]
        d.locate(c.logical)
        item = read_item(d)
        hdr, payload = fmt.decode_chunk(item.data)  # type: ignore[union-attr]
        opener = ChunkOpener(k.key, cat).for_chunk(c)
        assert opener is not None
        assert len(opener(hdr, payload)) == hdr.raw_len
        bad = bytearray(payload)
        bad[40] ^= 1
        with pytest.raises(ChunkAuthError):
            opener(hdr, bad)
        with pytest.raises(WrongKeyError):
            ChunkOpener(make_key(2).key, cat).for_chunk(c)


def test_spanning_three_media_each_with_the_key_record(tmp_path: Path, _private_catalog: Path) -> None:
    """A generation over 3 small media: each is labeled with the key record after its label;
    chunks written after a medium change are sealed for their part; restore follows them."""
    from tapearc.engine.mediasource import MediaSource
    from tests.engine.test_spanning import make_library

    spec = make_library(tmp_path, slots=4, capacity=1024 * 1024, ew=192 * 1024)
    data = random.Random(3).randbytes(2 * 1024 * 1024 + 5000)
    src = tmp_path / "vol"
    src.write_bytes(data)
    k = make_key()
    opts = BackupOptions(encrypt=k, block_size=16384, record_size=65536, chunk_size=256 * 1024, compress="zstd")
    with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
        res = backup(str(src), media, cat, opts)
    assert res.complete and len(res.parts) == 3, res.parts
    tapes = sorted((tmp_path / "lib" / "tapes").glob("*.tap"))
    fps = []
    for t in tapes[:3]:
        with open_medium(f"sim:{t}", write=False) as d:
            fps.append([r.key_fingerprint for r in read_key_records(d)])
    assert fps == [[k.fingerprint]] * 3
    out = tmp_path / "out"
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        r = restore(media, cat, str(out), RestoreOptions(key=k.key))
    assert not r.damaged_chunks, r.damaged_chunks
    assert out.read_bytes() == data and r.chunks_read == res.chunks


def test_roll_forward_finds_the_encrypted_generation(tmp_path: Path, _private_catalog: Path) -> None:
    """A target holding generation 1 is rolled forward to generation 2 (only what differs is
    written): the target's blocks are digested with the key's digest key to find it."""
    data = bytearray(volume(64))
    src = tmp_path / "vol"
    src.write_bytes(data)
    img = tmp_path / "t.tap"
    k = make_key()
    do_backup(f"sim:{img}", src, k)
    out = tmp_path / "out"
    do_restore(f"sim:{img}", out, k.key)
    data[3 * BS : 3 * BS + 4] = b"new!"
    src.write_bytes(bytes(data))
    do_backup(f"sim:{img}", src, k)
    r = do_restore(f"sim:{img}", out, k.key)
    assert (str(r.mode), r.from_generation, r.blocks_written) == ("roll-forward", 1, 1)
    assert out.read_bytes() == bytes(data)


def test_base_with_other_digests_means_a_full_generation(tmp_path: Path, _private_catalog: Path) -> None:
    """Plain digests and keyed ones cannot be compared: planning an encrypted generation on a
    plain base (or the other way round) makes it full, with a warning saying why."""
    from tapearc.engine.genplan import PlanRequest, plan_generation
    from tapearc.engine.layout import read_label
    from tapearc.engine.volumes import source_identity

    src = tmp_path / "vol"
    src.write_bytes(volume(16))
    img = tmp_path / "t.tap"
    do_backup(f"sim:{img}", src, None)
    k = make_key()
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        label = read_label(d)
        for key, kind in ((k.key, "full"), (None, "incremental")):
            req = PlanRequest(
                source=str(src),
                ident=source_identity(str(src), None),
                size=16 * BS,
                label=label,
                now=1,
                block_size=BS,
                block_size_given=True,
                chunk_size=1 << 20,
                compress="none",
                full=False,
                volume_name=None,
                new_volume=False,
                key=key,
            )
            with plan_generation(cat, req) as plan:
                assert plan.kind == kind
                assert plan.header.encrypted == (key is not None)
                assert (plan.digest_key is not None) == (key is not None)
                if key is not None:
                    assert any("cannot be compared" in w and "written full" in w for w in plan.warnings)
                    assert plan.base_manifest is None


def test_scan_rebuilds_the_fingerprints(tmp_path: Path, _private_catalog: Path) -> None:
    """The catalog lost: scan learns each generation's key fingerprint (and so the set's) from
    the generation headers, with no key; restore --key then works from the rebuilt catalog."""
    from tapearc.engine.scan import scan_medium

    data = volume(32)
    src = tmp_path / "vol"
    src.write_bytes(data)
    img = tmp_path / "t.tap"
    k = make_key()
    do_backup(f"sim:{img}", src, k, compress="zstd")
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        scan_medium(d, cat)
        (g,) = cat.generations(cat.media_holding_generations()[0][1])
        assert g.key_fingerprint == k.fingerprint and cat.media_set_key(g.set_uuid) == k.fingerprint
    out = tmp_path / "out"
    do_restore(f"sim:{img}", out, k.key)
    assert out.read_bytes() == data


def test_label_without_its_filemark_gets_the_key_record(tmp_path: Path, _private_catalog: Path) -> None:
    """Labeling interrupted before the label's filemark: the first encrypted backup writes the
    key record and one filemark after the label (no empty tape file), then its generation."""
    from tests.engine.test_crash_states import read_files, write_files

    img = tmp_path / "t.tap"
    with Catalog() as cat, open_medium(f"sim:{img}", write=True) as d:
        label_medium(d, cat, record_size=RS)
    files, _ = read_files("sim", img)
    write_files("sim", img, files, last_closed=False)  # the label, no filemark
    src = tmp_path / "vol"
    data = volume(16)
    src.write_bytes(data)
    k = make_key()
    res = do_backup(f"sim:{img}", src, k)
    assert res.tape_file == 1
    files, closed = read_files("sim", img)
    assert closed and len(files) == 2 and len(files[0]) == 2  # label + key record; the generation
    out = tmp_path / "out"
    do_restore(f"sim:{img}", out, k.key)
    assert out.read_bytes() == data


def test_backup_verify_reads_back_encrypted_parts(tmp_path: Path, _private_catalog: Path) -> None:
    """--verify reads each part back with the key: every CRC, tag and keyed digest."""
    src = tmp_path / "vol"
    src.write_bytes(volume(32))
    res = do_backup(f"sim:{tmp_path / 't.tap'}", src, make_key(), verify=True, compress="zstd")
    assert res.verified and all(v["ok"] for v in res.verified), res.verified
