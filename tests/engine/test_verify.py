"""verify finds every kind of damage, names the chunk and block ranges, and nothing on intact media."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.scan import sync_medium
from tapearc.engine.verify import run_verify
from tapearc.media import open_medium
from tapesim import simh
from tapesim.drive import SimDrive

BS = 4096
RS = 16384


def make(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """Two generations (full + incremental) on a SIMH image; 4-record chunks."""
    img = tmp_path / "t.tap"
    src = tmp_path / "v.img"
    rng = random.Random(1)
    data = bytearray(rng.randbytes(120 * BS))
    versions = []
    for g in range(2):
        if g:
            for b in (3, 4, 50, 90):
                data[b * BS] ^= 1
        src.write_bytes(bytes(data))
        with Catalog() as cat, open_medium(f"sim:{img}", write=True) as d:
            backup(str(src), d, cat, BackupOptions(block_size=BS, record_size=RS, chunk_size=64 * 1024))
        versions.append(bytes(data))
    return img, versions


def verify(img: Path):
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        try:
            sync_medium(d, cat)
        except Exception:
            pass
        return run_verify(d, cat)


def records(img: Path) -> list[list[bytes]]:
    """The image's records per tape file."""
    out: list[list[bytes]] = [[]]
    with SimDrive(str(img), readonly=True) as d:
        while True:
            try:
                r = d.read(1 << 20)
            except OSError:
                break
            if r == b"":
                if not out[-1] and len(out) > 1 and out[-2] == []:
                    break
                out.append([])
                continue
            out[-1].append(r)
    while out and out[-1] == []:
        out.pop()
    return out


def write_image(img: Path, files: list[list[bytes]]) -> None:
    img.unlink()
    with SimDrive(str(img), create=True, implicit_filemarks=False) as d:
        for f in files:
            for r in f:
                d.write(r)
            d.mtop(5, 1)  # MTWEOF


def chunk_records(files: list[list[bytes]], tf: int) -> list[int]:
    return [i for i, r in enumerate(files[tf]) if r[:8] == b"TACHUNK1"]


def problems(rep):  # type: ignore[no-untyped-def]
    return [p for m in rep.media for f in m.files for p in f.problems]


def test_intact_media_verify_ok(tmp_path: Path) -> None:
    img, _ = make(tmp_path)
    rep = verify(img)
    assert rep.ok, rep.to_json()
    assert all(f.ok and f.chunks_ok > 0 for f in rep.media[0].files)


@pytest.mark.parametrize("where", ["header", "payload"])
def test_flipped_byte(tmp_path: Path, where: str) -> None:
    img, _ = make(tmp_path)
    files = records(img)
    ci = chunk_records(files, 1)[1]  # chunk 1 of generation 1
    rec = bytearray(files[1][ci])
    rec[40 if where == "header" else 5000] ^= 0x10
    files[1][ci] = bytes(rec)
    write_image(img, files)
    rep = verify(img)
    assert not rep.ok
    ps = problems(rep)
    p = next(p for p in ps if p.record == ci)
    assert p.chunk == 1 and p.blocks, p
    assert p.what in ("crc",)
    assert rep.affected.get("v.img") == [1, 2]  # generation 2 needs blocks of that chunk too


def test_dropped_record(tmp_path: Path) -> None:
    img, _ = make(tmp_path)
    files = records(img)
    ci = chunk_records(files, 1)[2]
    del files[1][ci + 1]  # the second record of chunk 2
    write_image(img, files)
    rep = verify(img)
    ps = problems(rep)
    assert any(p.chunk == 2 and p.blocks for p in ps), [p.to_json() for p in ps]
    # the chunks after it are still read, the next one too (the damaged chunk's frame took its
    # first record: that record starts an item, so the reader reads the frame's records again)
    assert rep.media[0].files[0].chunks_ok == len(chunk_records(files, 1)) - 1
    assert rep.media[0].files[0].chunks_damaged == 1


def test_truncated_tape_file(tmp_path: Path) -> None:
    img, _ = make(tmp_path)
    raw = img.read_bytes()
    objs = simh.scan(str(img)).objects
    # cut generation 2's tape file in the middle of its second chunk record
    recs2 = [o for o in objs if o.kind == simh.ObjKind.RECORD][-3]  # inside generation 2's chunk
    with open(img, "r+b") as f:
        f.truncate(recs2.offset + 100)
    _ = raw
    rep = verify(img)
    ps = problems(rep) + rep.media[0].problems
    assert any(p.what == "truncated" for p in ps), rep.to_json()
    assert rep.media[0].files[0].ok  # generation 1 is intact
    assert not rep.ok


def test_swapped_records(tmp_path: Path) -> None:
    img, _ = make(tmp_path)
    files = records(img)
    a, b = chunk_records(files, 1)[1], chunk_records(files, 1)[3]
    files[1][a], files[1][b] = files[1][b], files[1][a]
    write_image(img, files)
    rep = verify(img)
    ps = problems(rep)
    assert {1, 3} <= {p.chunk for p in ps}, [p.to_json() for p in ps]


def test_record_from_another_medium(tmp_path: Path) -> None:
    img, _ = make(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    img2, _ = make(other)
    files = records(img)
    files2 = records(img2)
    ci = chunk_records(files, 1)[1]
    cj = chunk_records(files2, 1)[1]
    files[1][ci] = files2[1][cj]  # a first record of another medium's chunk 1
    write_image(img, files)
    rep = verify(img)
    ps = problems(rep)
    assert any(p.what == "foreign" for p in ps), [p.to_json() for p in ps]
    assert any(p.chunk == 1 and p.blocks for p in ps)


def test_against_source(tmp_path: Path) -> None:
    img, versions = make(tmp_path)
    src = tmp_path / "v.img"
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        sync_medium(d, cat)
        rep = run_verify(d, cat, against=str(src))
    assert rep.ok and rep.against and rep.against["equal"]
    changed = bytearray(versions[-1])
    changed[7 * BS + 1] ^= 1
    changed[8 * BS + 1] ^= 1
    src.write_bytes(bytes(changed))
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        rep = run_verify(d, cat, against=str(src))
    assert not rep.ok and rep.against["differing_ranges"] == [[7, 8]]


def test_backup_verify_reads_back(tmp_path: Path) -> None:
    src = tmp_path / "v.img"
    src.write_bytes(random.Random(3).randbytes(40 * BS))
    with Catalog() as cat, open_medium(f"sim:{tmp_path / 't.tap'}", write=True) as d:
        res = backup(str(src), d, cat, BackupOptions(block_size=BS, record_size=RS, verify=True))
    assert res.verified == [{"sequence": 1, "tape_file": 1, "ok": True, "chunks": res.chunks}]


def test_backup_verify_catches_a_bad_drive(tmp_path: Path) -> None:
    """A drive that silently corrupts what it writes: --verify notices before the backup says OK."""
    from tapearc.errors import DamagedDataError

    src = tmp_path / "v.img"
    src.write_bytes(random.Random(4).randbytes(40 * BS))

    class Corrupting:
        def __init__(self, d):  # type: ignore[no-untyped-def]
            self._d = d

        def __getattr__(self, n):  # type: ignore[no-untyped-def]
            return getattr(self._d, n)

        def write_record(self, data):  # type: ignore[no-untyped-def]
            b = bytearray(data)
            if len(b) > 9000 and b[:8] == b"TACHUNK1":
                b[9000] ^= 1
            return self._d.write_record(bytes(b))

    with Catalog() as cat, open_medium(f"sim:{tmp_path / 't.tap'}", write=True) as d:
        with pytest.raises(DamagedDataError, match="reading back tape file 1"):
            backup(str(src), Corrupting(d), cat, BackupOptions(block_size=BS, record_size=RS, verify=True))  # type: ignore[arg-type]


class _Recorder:
    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.done = 0

    def start(self, description: str, total: int | None) -> None:
        self.totals.append(total)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["sim", "dir"])
def test_verify_progress_has_a_total(tmp_path: Path, kind: str) -> None:
    """verify's progress gets a total when the medium says how much it holds (sim:, dir:): the
    bytes read stay within it and come close to it (the label and framing are the rest)."""
    src = tmp_path / "v.img"
    src.write_bytes(random.Random(2).randbytes(120 * BS))
    spec = f"sim:{tmp_path / 't.tap'}" if kind == "sim" else f"dir:{tmp_path / 'm'}"
    with Catalog() as cat, open_medium(spec, write=True) as d:
        backup(str(src), d, cat, BackupOptions(block_size=BS, record_size=RS, chunk_size=64 * 1024))
    rec = _Recorder()
    with open_medium(spec, write=False) as d:
        rep = run_verify(d, None, progress=rec)
    assert rep.ok
    [total] = rec.totals
    assert total is not None
    assert 0 < rec.done <= total
    assert rec.done >= 0.9 * total


def test_verify_progress_without_a_size_has_no_total(tmp_path: Path) -> None:
    """A medium that does not say how much it holds (the stream ``-``) gives the progress no total."""
    import io

    from tapearc.media.stream import StreamDrive

    img, _ = make(tmp_path)
    rec = _Recorder()
    with StreamDrive(io.BytesIO(img.read_bytes() + b"\xff\xff\xff\xff"), write=False) as d:
        rep = run_verify(d, None, progress=rec)
    assert rep.ok
    assert rec.totals == [None]
    assert rec.done > 0


def test_unreadable_record_inside_a_chunk(tmp_path: Path) -> None:
    """A record that cannot be read (a dir: medium's empty record file in a closed tape file):
    verify names it, names the chunk it cuts short (with its blocks, from its header), and reads
    the next chunks; list counts the same records."""
    from tapearc.engine.listing import list_medium
    from tests.engine.test_crash_states import read_files, write_files

    src = tmp_path / "v.img"
    src.write_bytes(random.Random(5).randbytes(120 * BS))
    med = tmp_path / "m"
    with Catalog() as cat, open_medium(f"dir:{med}", write=True) as d:
        backup(str(src), d, cat, BackupOptions(block_size=BS, record_size=RS, chunk_size=64 * 1024))
    files, closed = read_files("dir", med)
    c = chunk_records(files, 1)
    files[1][c[1] + 1] = b""
    write_files("dir", med, files, closed)
    with Catalog() as cat, open_medium(f"dir:{med}", write=False) as d:
        rep = run_verify(d, cat)
        listed = list_medium(d).files[1]
    fr = rep.media[0].files[0]
    io = [p for p in fr.problems if p.what == "io"]
    assert [p.record for p in io] == [c[1], c[1] + 1], [p.to_json() for p in fr.problems]
    cut = next(p for p in io if p.record == c[1])
    assert cut.chunk == 1 and cut.blocks and f"cut short by unreadable record {c[1] + 1}" in cut.message
    assert "record unreadable" in next(p for p in io if p.record == c[1] + 1).message
    assert fr.chunks_damaged == 1 and fr.chunks_ok == len(c) - 1
    assert fr.records == listed.records == len(files[1]) - 1


@pytest.mark.parametrize("deep", [False, True])
def test_spooled_trailers_scan_and_verify_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deep: bool) -> None:
    """With every trailer spooled to a file and verify's chunk digests too (thresholds 0):
    scan records from the trailer the digests decode_trailer finds, verify finds nothing on
    the intact medium, and a digest changed in a trailer is named at its chunk and block."""
    import dataclasses

    from tapearc import format as fmt
    from tapearc.engine import tapefiles, verify
    from tapearc.engine.layout import read_label
    from tapearc.engine.scan import scan_medium

    monkeypatch.setattr(tapefiles, "SPOOL_ITEM_OVER", 0)
    monkeypatch.setattr(verify, "SPOOL_DIGESTS_OVER", 0)
    img, _ = make(tmp_path)
    files = records(img)
    ti = next(i for i, r in enumerate(files[1]) if r[:8] == fmt.TRAILER_MAGIC)
    trailer = fmt.decode_trailer(files[1][ti])
    with Catalog(tmp_path / "c.sqlite") as c, open_medium(f"sim:{img}", write=False) as d:
        res = scan_medium(d, c, deep=deep)
        assert {f.generation: f.state for f in res.files} == {1: "complete", 2: "complete"}
        gen1 = next(g for g in c.generations(read_label(d).media_set_uuid) if g.number == 1)
        assert b"".join(dg for _, dg in c.chunk_digests(gen1.id)) == trailer.digests
        assert problems(run_verify(d, None)) == []
    # one digest of the trailer's table changed (the trailer re-encoded: its CRCs are right)
    e = trailer.entries[1]
    k = sum(r.count for r in trailer.entries[0].runs if not r.is_zero)
    dig = bytearray(trailer.digests)
    dig[k * fmt.DIGEST_LEN] ^= 0xFF
    files[1][ti] = fmt.encode_trailer(dataclasses.replace(trailer, digests=bytes(dig)))
    write_image(img, files)
    with open_medium(f"sim:{img}", write=False) as d:
        found = [p for p in problems(run_verify(d, None)) if p.what == "digest"]
    first = next(r.first for r in e.runs if not r.is_zero)
    assert [(p.chunk, p.blocks) for p in found] == [(e.seq, [(first, first)])]


def test_verify_against_names_each_differing_block(tmp_path: Path) -> None:
    """verify --against (digest tables read from the catalog a window at a time): the blocks
    that differ, the blocks past the source's end, and each generation against its own data."""
    from tapearc.engine.layout import read_label
    from tapearc.engine.scan import scan_medium
    from tapearc.engine.verify import verify_against

    img, versions = make(tmp_path)
    src = tmp_path / "other.img"
    with Catalog(tmp_path / "c.sqlite") as c, open_medium(f"sim:{img}", write=False) as d:
        scan_medium(d, c)
        sid = read_label(d).media_set_uuid
        (vol,) = c.volumes(sid)
        for g, data in ((1, versions[0]), (2, versions[1]), (None, versions[1])):
            src.write_bytes(data)
            assert verify_against(c, sid, vol, g, str(src))["equal"] is True
        changed = bytearray(versions[1])
        for b in (7, 100):
            changed[b * BS + 5] ^= 1
        src.write_bytes(bytes(changed[: 117 * BS]))  # 3 blocks short
        got = verify_against(c, sid, vol, 2, str(src))
        assert got["differing_ranges"] == [[7, 7], [100, 100], [117, 119]] and got["equal"] is False
        src.write_bytes(versions[1])
        got = verify_against(c, sid, vol, 1, str(src))
        assert got["differing_ranges"] == [[3, 4], [50, 50], [90, 90]]
        src.write_bytes(versions[1] + bytes(2 * BS))  # 2 zero blocks past the volume's end
        got = verify_against(c, sid, vol, 2, str(src))
        assert got["differing_ranges"] == [[120, 121]]
