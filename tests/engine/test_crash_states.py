"""Crash states and recovery without the catalog (issue 12, findings 4, 5 and 6).

Media are written by the real ``tapearc`` command, then changed the way a killed backup, a power
cut or a flipped bit leaves them, on ``dir:`` and ``sim:``:

* finding 4: a tape file killed at birth (a 0-byte ``rec-000000000`` in a new ``file-NNNNNN/``;
  a generation header cut to 50 bytes) after two good generations: ``list``, ``scan``, restores
  of the earlier generations and the next backup all work;
* finding 5: a generation cut mid-chunk at a record boundary, then a later append: ``list``,
  ``verify`` and ``scan`` report the same tape files, with the right record counts;
* finding 6: with the catalog deleted, one flipped bit in a generation's trailer: the generation
  and the incremental on it restore (index rebuilt from the chunk headers); a truncated end record
  is reported and the generation it closes is restored, never an older one in its place;
* list, verify and scan agree on the tape files of a set of damaged media.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tapesim import simh
from tests.cli.test_cli import assert_one_line_error, tapearc

BS = 4096
OPTS = ("--block-size", "4K", "--record-size", "8K", "--chunk-size", "16K")
KINDS = ("dir", "sim")


# ----------------------------------------------------------------------------- media as records


def _spec(kind: str, path: Path) -> str:
    return f"{kind}:{path}"


def read_files(kind: str, path: Path) -> tuple[list[list[bytes]], bool]:
    """The tape files of a medium as lists of records, and whether the last one is closed."""
    files: list[list[bytes]] = []
    if kind == "dir":
        n = 0
        closed = True
        while (path / f"file-{n:06d}").is_dir():
            d = path / f"file-{n:06d}"
            recs = []
            i = 0
            while (d / f"rec-{i:09d}").exists():
                recs.append((d / f"rec-{i:09d}").read_bytes())
                i += 1
            files.append(recs)
            closed = (d / "FILEMARK").exists()
            n += 1
        return files, closed
    data = path.read_bytes()
    cur: list[bytes] = []
    for o in simh.scan(str(path)).objects:
        if o.kind is simh.ObjKind.FILEMARK:
            files.append(cur)
            cur = []
        else:
            cur.append(data[o.offset + 4 : o.offset + 4 + o.length])
    if cur:
        files.append(cur)
        return files, False
    return files, True


def write_files(kind: str, path: Path, files: list[list[bytes]], last_closed: bool = True) -> None:
    """Rewrite a medium with these tape files (each record as given)."""
    if kind == "dir":
        for d in path.glob("file-*"):
            shutil.rmtree(d)
        for n, recs in enumerate(files):
            d = path / f"file-{n:06d}"
            d.mkdir()
            for i, r in enumerate(recs):
                (d / f"rec-{i:09d}").write_bytes(r)
            if n < len(files) - 1 or last_closed:
                (d / "FILEMARK").write_bytes(b"")
        return
    out = bytearray()
    for n, recs in enumerate(files):
        for r in recs:
            w = struct.pack("<I", len(r))
            out += w + r + (b"\0" if len(r) % 2 else b"") + w
        if n < len(files) - 1 or last_closed:
            out += struct.pack("<I", 0)
    path.write_bytes(bytes(out))


def add_torn_record(kind: str, path: Path, data: bytes, declared: int) -> None:
    """Leave what a backup killed while writing the first record of a new tape file leaves: the
    record's first ``len(data)`` bytes of ``declared``."""
    if kind == "dir":
        n = len(list(path.glob("file-*")))
        d = path / f"file-{n:06d}"
        d.mkdir()
        (d / "rec-000000000").write_bytes(data)
    else:
        with open(path, "ab") as f:
            f.write(struct.pack("<I", declared) + data)


# ----------------------------------------------------------------------------- helpers


def _volume(rng: random.Random, blocks: int) -> bytearray:
    return bytearray(rng.randbytes(blocks * BS))


def _backup(kind: str, med: Path, src: Path, cat: Path, *extra: str) -> None:
    p = tapearc("backup", str(src), "--media", _spec(kind, med), "--catalog", str(cat), *OPTS, *extra)
    assert p.returncode == 0, p.stderr


def _restore(kind: str, med: Path, cat: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if out.exists():
        out.unlink()
    return tapearc("restore", "--media", _spec(kind, med), "--catalog", str(cat), "--to", str(out), *extra)


def _chain(tmp: Path, kind: str, n: int = 2, seed: int = 1) -> tuple[Path, Path, Path, list[bytes]]:
    """A medium with ``n`` generations of one volume (a full one, then incrementals)."""
    rng = random.Random(seed)
    med = tmp / ("m" if kind == "dir" else "t.tap")
    src = tmp / "vol.img"
    cat = tmp / "cat.sqlite"
    v = _volume(rng, 40)
    versions = []
    for g in range(n):
        if g:
            for b in rng.sample(range(40), 5):
                v[b * BS + 7] ^= 0x5A
        src.write_bytes(bytes(v))
        versions.append(bytes(v))
        _backup(kind, med, src, cat)
    return med, src, cat, versions


def _json(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def _tape_files(
    kind: str, med: Path, cat: Path
) -> tuple[list[tuple[int, str]], list[tuple[int, str]], list[tuple[int, str]]]:
    """(tape file, kind) of every tape file after the label, as list, verify and scan see them."""
    spec = _spec(kind, med)
    lp = tapearc("list", "--media", spec, "--json")
    assert lp.returncode == 0, lp.stderr
    vp = tapearc("verify", "--media", spec, "--catalog", str(cat), "--json")
    assert vp.returncode in (0, 20), vp.stderr
    sp = tapearc("scan", "--media", spec, "--catalog", str(cat), "--json")
    damaged = any(f["kind"] in ("damaged", "foreign") for f in _json(sp)["tape_files"])
    damaged = damaged or any(g["state"] in ("damaged", "foreign", "duplicate") for g in _json(sp)["generations"])
    assert sp.returncode == (20 if damaged else 0), sp.stderr  # found damage: exit 20, as verify
    lst = [(f["tape_file"], f["kind"]) for f in _json(lp)["tape_files"] if f["tape_file"] > 0]
    ver = [(f["tape_file"], f["kind"]) for f in _json(vp)["media"][0]["tape_files"]]
    # and the same records in each (unreadable ones counted by neither)
    lrec = [f["records"] for f in _json(lp)["tape_files"][1:]]
    vrec = [f["records"] for f in _json(vp)["media"][0]["tape_files"]]
    assert lrec == vrec, (lrec, vrec, lp.stdout, vp.stdout)
    scn = [(f["tape_file"], f["kind"]) for f in _json(sp)["tape_files"]]
    return lst, ver, scn


# ----------------------------------------------------------------------------- finding 4


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cut", ["empty", "header50"])
def test_tape_file_killed_at_birth(tmp_path: Path, kind: str, cut: str) -> None:
    med, src, cat, versions = _chain(tmp_path, kind)
    files, _ = read_files(kind, med)
    header = files[2][0]  # a real generation header
    if cut == "empty":
        add_torn_record(kind, med, b"", len(header))
    else:
        add_torn_record(kind, med, header[:50], len(header))
    out = tmp_path / "out.img"
    p = _restore(kind, med, cat, out, "--generation", "1")  # was exit 14 on dir:
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == versions[0]
    # list exits 0 and shows the interrupted tape file
    p = tapearc("list", "--media", _spec(kind, med), "--json")
    assert p.returncode == 0, p.stderr
    tf = _json(p)["tape_files"]
    assert [f["tape_file"] for f in tf] == [0, 1, 2, 3]
    assert tf[3]["kind"] == "interrupted" and tf[3]["closed"] is False
    assert [g["generation"] for g in _json(p)["generations"]] == [1, 2]
    # scan works and names it
    cat.unlink()
    p = tapearc("scan", "--media", _spec(kind, med), "--catalog", str(cat), "--json")
    assert p.returncode == 0, p.stderr
    res = _json(p)
    assert [(g["generation"], g["state"]) for g in res["generations"]] == [(1, "complete"), (2, "complete")]
    assert res["tape_files"][-1]["kind"] == "interrupted"
    assert any("tape file 3" in w and "interrupted" in w for w in res["warnings"])
    # restores of the earlier generations, with the catalog and without
    for g in (1, 2):
        p = _restore(kind, med, cat, out, "--generation", str(g))
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == versions[g - 1]
    cat.unlink()
    p = _restore(kind, med, cat, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == versions[1]
    # the next backup appends, and everything restores
    v3 = bytearray(versions[1])
    v3[3 * BS] ^= 0xFF
    src.write_bytes(bytes(v3))
    _backup(kind, med, src, cat)
    p = tapearc("list", "--media", _spec(kind, med), "--json")
    assert p.returncode == 0, p.stderr
    assert [g["generation"] for g in _json(p)["generations"]] == [1, 2, 3]
    assert all(g["complete"] for g in _json(p)["generations"])
    p = tapearc("verify", "--media", _spec(kind, med), "--catalog", str(cat), "--json")
    gens_ok = [f for f in _json(p)["media"][0]["tape_files"] if f["kind"] == "generation"]
    assert [f["status"] for f in gens_ok] == ["ok", "ok", "ok"]
    if cut == "empty":  # nothing was left of the cut tape file: the new generation took its place
        assert p.returncode == 0, p.stdout
        assert gens_ok[-1]["tape_file"] == 3
    cat.unlink()
    for g, want in ((1, versions[0]), (2, versions[1]), (3, bytes(v3))):
        p = _restore(kind, med, cat, out, "--generation", str(g))
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == want


def test_dir_torn_records_are_removed_by_the_next_write(tmp_path: Path) -> None:
    """A power cut can leave several empty or unnumbered record files in the open tape file."""
    med, src, cat, versions = _chain(tmp_path, "dir")
    d = med / "file-000003"
    d.mkdir()
    (d / "rec-000000000").write_bytes(b"")
    (d / "rec-000000002").write_bytes(b"x" * 100)  # a gap in the numbering
    p = tapearc("list", "--media", _spec("dir", med), "--json")
    assert p.returncode == 0, p.stderr
    _backup("dir", med, src, cat)
    assert sorted(x.name for x in d.iterdir()) == ["FILEMARK", "rec-000000000", "rec-000000001", "rec-000000002"]
    out = tmp_path / "o.img"
    p = _restore("dir", med, cat, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == versions[1]


# ----------------------------------------------------------------------------- finding 5


def _first_multi_record_chunk(recs: list[bytes]) -> int:
    """Index of the first record of a chunk that spans more than one record."""
    i = 1
    while i < len(recs):
        total = struct.unpack_from("<II", recs[i], 8)
        n = -(-(total[0] + total[1]) // 8192)
        if n > 1:
            return i
        i += n
    raise AssertionError("no chunk of several records")


@pytest.mark.parametrize("kind", KINDS)
def test_cut_mid_chunk_then_append_list_agrees_with_verify(tmp_path: Path, kind: str) -> None:
    med, src, cat, versions = _chain(tmp_path, kind, n=3)
    files, _ = read_files(kind, med)
    k = _first_multi_record_chunk(files[3])
    files[3] = files[3][: k + 1]  # the medium ends after the first record of a chunk
    write_files(kind, med, files, last_closed=False)
    src.write_bytes(versions[2][: 20 * BS] + bytes(20 * BS))
    _backup(kind, med, src, cat)  # closes the cut tape file with a filemark, appends tape file 4
    want, _ = read_files(kind, med)
    assert len(want) == 5 and len(want[3]) == k + 1
    p = tapearc("list", "--media", _spec(kind, med), "--json")
    assert p.returncode == 0, p.stderr
    tf = _json(p)["tape_files"]
    assert [f["tape_file"] for f in tf] == [0, 1, 2, 3, 4]
    assert [f["records"] for f in tf] == [len(x) for x in want]
    assert tf[4]["kind"] == "generation" and tf[4]["generation"] == 4 and tf[4]["complete"] is True
    p = tapearc("verify", "--media", _spec(kind, med), "--catalog", str(cat), "--json")
    vf = _json(p)["media"][0]["tape_files"]
    assert [f["tape_file"] for f in vf] == [1, 2, 3, 4]
    assert [f["records"] for f in vf] == [len(x) for x in want[1:]]
    assert [f["status"] for f in vf] == ["ok", "ok", "damaged", "ok"]
    lst, ver, scn = _tape_files(kind, med, cat)
    assert lst == ver == scn


# ----------------------------------------------------------------------------- finding 6


def _trailer_at(recs: list[bytes]) -> int:
    """Index of the trailer's first record, from the end record (the tape file's last record)."""
    return int(struct.unpack_from("<I", recs[-1], 40)[0])


def _flip(kind: str, med: Path, tape_file: int, offset_in_trailer: int) -> None:
    files, closed = read_files(kind, med)
    recs = files[tape_file]
    t = _trailer_at(recs)
    i, o = t, offset_in_trailer
    while o >= len(recs[i]):
        o -= len(recs[i])
        i += 1
    r = bytearray(recs[i])
    r[o] ^= 0x10
    recs[i] = bytes(r)
    write_files(kind, med, files, closed)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["body", "header", "length"])
def test_flipped_trailer_bit_without_catalog(tmp_path: Path, kind: str, where: str) -> None:
    """One bit in generation 1's trailer (body: its index or digests; header: its totals;
    length: its body_len, so that its framing is lost), the catalog lost: generation 1 and the
    incrementals on it restore, after a plain sync, after scan --deep and with --fallback-older;
    scan reports the rebuilt index."""
    med, _src, cat, versions = _chain(tmp_path, kind, n=3)
    _flip(kind, med, 1, {"body": 150, "header": 30, "length": 13}[where])
    out = tmp_path / "o.img"
    for extra in ((), ("--fallback-older",)):
        for g in (1, 2, 3):
            cat.unlink(missing_ok=True)
            p = _restore(kind, med, cat, out, "--generation", str(g), *extra)
            assert p.returncode == 0, p.stderr
            assert out.read_bytes() == versions[g - 1]
    cat.unlink()
    p = tapearc("scan", "--deep", "--media", _spec(kind, med), "--catalog", str(cat), "--json")
    assert p.returncode == 0, p.stderr
    res = _json(p)
    assert [(g["generation"], g["state"]) for g in res["generations"]] == [
        (1, "complete"),
        (2, "complete"),
        (3, "complete"),
    ]
    assert "damaged" in res["generations"][0]["problem"] and "rebuilt" in res["generations"][0]["problem"]
    assert any("tape file 1" in w and "rebuilt" in w for w in res["warnings"])
    p = _restore(kind, med, cat, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == versions[2]
    # a plain restore without the catalog names the damage (a warning line) and restores the latest
    cat.unlink()
    p = _restore(kind, med, cat, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == versions[2]
    assert "tapearc: warning:" in p.stderr and "tape file 1" in p.stderr and "generation 1" in p.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_flipped_trailer_bit_in_an_incremental(tmp_path: Path, kind: str) -> None:
    """A bit in the trailer body of incremental generation 2 (3 on top of it), catalog lost."""
    med, _src, cat, versions = _chain(tmp_path, kind, n=3)
    _flip(kind, med, 2, 120)
    out = tmp_path / "o.img"
    for g in (2, 3):
        cat.unlink(missing_ok=True)
        p = _restore(kind, med, cat, out, "--generation", str(g))
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == versions[g - 1]


@pytest.mark.parametrize("kind", KINDS)
def test_unrebuildable_latest_generation_is_named_not_replaced(tmp_path: Path, kind: str) -> None:
    """The latest generation, an incremental, with its trailer header damaged: whether it ended
    there cannot be shown, so a plain restore fails naming it instead of restoring generation 1."""
    med, _src, cat, versions = _chain(tmp_path, kind, n=2)
    _flip(kind, med, 2, 30)
    cat.unlink()
    out = tmp_path / "o.img"
    p = _restore(kind, med, cat, out)
    assert_one_line_error(p, 22, "generation of volume 'vol.img', 2, is damaged")
    assert not out.exists()
    p = _restore(kind, med, cat, out, "--generation", "1")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == versions[0]
    p = tapearc("scan", "--deep", "--media", _spec(kind, med), "--catalog", str(cat), "--json")
    assert p.returncode == 20, p.stderr  # it learnt generation 1 and names the damaged one
    assert "generation 2 is damaged" in p.stderr.splitlines()[0]
    assert [g["state"] for g in _json(p)["generations"]] == ["complete", "damaged"]


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_end_record_is_reported_not_replaced(tmp_path: Path, kind: str) -> None:
    """The latest generation's end record cut to 30 bytes, the catalog lost: the plain restore
    restores that generation (its trailer is intact) and says that its end record is damaged."""
    med, _src, cat, versions = _chain(tmp_path, kind, n=2)
    files, closed = read_files(kind, med)
    files[2][-1] = files[2][-1][:30]
    write_files(kind, med, files, closed)
    cat.unlink()
    out = tmp_path / "o.img"
    p = _restore(kind, med, cat, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == versions[1]
    assert "tapearc: warning:" in p.stderr and "tape file 2" in p.stderr and "end record" in p.stderr
    cat.unlink()
    p = tapearc("scan", "--media", _spec(kind, med), "--catalog", str(cat), "--json")
    assert p.returncode == 0, p.stderr
    res = _json(p)
    assert [g["state"] for g in res["generations"]] == ["complete", "complete"]
    assert "end record" in res["generations"][1]["problem"]
    p = _restore(kind, med, cat, out, "--json")
    assert p.returncode == 0, p.stderr
    assert _json(p)["generation"] == 2


def test_deep_scan_past_an_unreadable_chunk_keeps_the_trailer_index(tmp_path: Path) -> None:
    """An unreadable record in generation 1's chunks, the catalog lost: scan --deep reads on past
    it (to the intact trailer), so generation 1 stays complete, and a plain restore of the latest
    generation reports the lost blocks instead of quietly restoring something else."""
    med, _src, cat, _versions = _chain(tmp_path, "dir", n=2)
    files, closed = read_files("dir", med)
    files[1][2] = b""  # a read error
    write_files("dir", med, files, closed)
    cat.unlink()
    p = tapearc("scan", "--deep", "--media", _spec("dir", med), "--catalog", str(cat), "--json")
    assert p.returncode == 0, p.stderr
    res = _json(p)
    assert [g["state"] for g in res["generations"]] == ["complete", "complete"]
    assert "record 2" in res["generations"][0]["problem"] and "out of order" not in res["generations"][0]["problem"]
    out = tmp_path / "o.img"
    p = _restore("dir", med, cat, out, "--json")
    assert p.returncode == 23, p.stderr
    assert _json(p)["generation"] == 2 and _json(p)["lost"]


def test_image_cut_in_the_end_record_restores_that_generation_with_a_warning(tmp_path: Path) -> None:
    """A sim: image cut inside the latest generation's end record (its trailer whole), catalog
    lost: a plain restore restores that generation, with a warning naming the tape file; it
    used to restore the previous generation with exit 0."""
    med, _src, cat, versions = _chain(tmp_path, "sim", n=2)
    objs = list(simh.scan(str(med)).objects)
    last = [o for o in objs if o.kind is simh.ObjKind.RECORD][-1]  # generation 2's end record
    with open(med, "r+b") as f:
        f.truncate(last.offset + 4 + last.length // 2)
    cat.unlink()
    out = tmp_path / "o.img"
    p = _restore("sim", med, cat, out, "--json")
    assert p.returncode == 0, p.stderr
    assert _json(p)["generation"] == 2 and out.read_bytes() == versions[1]
    assert "tapearc: warning:" in p.stderr and "tape file 2" in p.stderr
    assert any("tape file 2" in w for w in _json(p)["warnings"])


# ----------------------------------------------------------------------------- agreement


def _damage(kind: str, med: Path, how: str) -> None:
    files, closed = read_files(kind, med)
    if how == "torn-empty":
        add_torn_record(kind, med, b"", 200)
        return
    if how == "torn-header":
        add_torn_record(kind, med, files[2][0][:50], len(files[2][0]))
        return
    if how == "header-crc":
        r = bytearray(files[1][0])
        r[40] ^= 1
        files[1][0] = bytes(r)
    elif how == "foreign":
        files.insert(2, [b"hello, this is not tapearc" * 3, b"x" * 300])
    elif how == "empty":
        files.insert(2, [])
    elif how == "cut-mid-chunk":
        k = _first_multi_record_chunk(files[2])
        files[2] = files[2][: k + 1]
        closed = False
    elif how == "cut-mid-chunk-closed":
        k = _first_multi_record_chunk(files[1])
        files[1] = files[1][: k + 1]
    elif how == "chunk-header-cut":  # a chunk's prefix claims more records than are left
        k = _first_multi_record_chunk(files[1])
        del files[1][k + 1 :]
        files[1].append(files[2][0][:40])
    elif how == "trailer-bit":
        r = bytearray(files[1][_trailer_at(files[1])])
        r[150] ^= 4
        files[1][_trailer_at(files[1])] = bytes(r)
    elif how == "end-cut":
        files[2][-1] = files[2][-1][:30]
    elif how == "unreadable-header":  # dir: an empty record file in a closed tape file: a read error
        files[1][0] = b""
    elif how == "unreadable-record":
        files[1][2] = b""
    write_files(kind, med, files, closed)


DAMAGES = [
    "torn-empty",
    "torn-header",
    "header-crc",
    "foreign",
    "empty",
    "cut-mid-chunk",
    "cut-mid-chunk-closed",
    "chunk-header-cut",
    "trailer-bit",
    "end-cut",
]


@pytest.mark.parametrize("kind", KINDS)
def test_list_verify_scan_report_the_same_tape_files(tmp_path: Path, kind: str) -> None:
    base = tmp_path / "base"
    base.mkdir()
    med0, _src, _cat0, versions = _chain(base, kind)
    for how in DAMAGES + (["unreadable-header", "unreadable-record"] if kind == "dir" else []):
        case = tmp_path / how
        case.mkdir()
        med = case / med0.name
        if kind == "dir":
            shutil.copytree(med0, med)
        else:
            shutil.copyfile(med0, med)
        _damage(kind, med, how)
        lst, ver, scn = _tape_files(kind, med, case / "cat.sqlite")
        assert lst == ver == scn, (how, lst, ver, scn)
        want, _ = read_files(kind, med)
        torn = how.startswith("torn") and kind == "sim"  # the image's torn tail: no record of it in `want`
        assert [t for t, _ in lst] == list(range(1, len(want) + torn)), (how, lst)
        if how.startswith("torn"):
            assert lst[-1] == (len(want) - 1 + torn, "interrupted")
        # the earlier generations stay restorable without the catalog
        if how in ("torn-empty", "torn-header", "cut-mid-chunk", "end-cut", "foreign", "empty"):
            out = case / "o.img"
            p = _restore(kind, med, case / "none.sqlite", out, "--generation", "1")
            assert p.returncode == 0, (how, p.stderr)
            assert out.read_bytes() == versions[0]


# ----------------------------------------------------------------------------- every kill state of dir:


def test_dir_killed_at_every_record(tmp_path: Path) -> None:
    """A backup killed at every record of a small chain on ``dir:``, in each state a kill or a
    power cut leaves the record being written in (not created, empty, half written), and with
    every record written but no FILEMARK: the catalog lost, ``scan --deep`` reads the medium
    (the cut generation is incomplete, or complete with a note when its whole trailer was
    written), the earlier generations restore byte-identical, and the next backup appends and
    restores."""
    from tapearc.catalog.db import Catalog
    from tapearc.engine.backup import BackupOptions, backup
    from tapearc.engine.listing import list_medium
    from tapearc.engine.restore import RestoreOptions, restore
    from tapearc.engine.scan import scan_medium
    from tapearc.engine.verify import run_verify
    from tapearc.media import open_medium

    opts = BackupOptions(
        block_size=BS, record_size=8192, chunk_size=16384, volume_name="v.img"
    )  # copies of v.img in other folders: one volume
    rng = random.Random(5)
    v1 = bytes(rng.randbytes(14 * BS) + bytes(3 * BS) + rng.randbytes(1000))
    v2 = bytearray(v1)
    for b in (1, 2, 9):
        v2[b * BS + 5] ^= 1
    versions = [v1, bytes(v2) + rng.randbytes(2 * BS)]
    v3 = bytearray(versions[1])
    v3[3 * BS] ^= 0xFF
    base = tmp_path / "base"
    base.mkdir()
    med0 = base / "m"
    for v in versions:
        (base / "v.img").write_bytes(v)
        with Catalog(base / "cat.sqlite") as c, open_medium(f"dir:{med0}", write=True) as d:
            backup(str(base / "v.img"), d, c, opts)
    files, _ = read_files("dir", med0)
    states: list[tuple[int, int, str]] = []
    for tf in (1, 2):
        for r in range(len(files[tf])):
            states += [(tf, r, "absent"), (tf, r, "empty"), (tf, r, "half")]
        states.append((tf, len(files[tf]), "no-filemark"))
    assert len(states) >= 30
    for k, (tf, r, how) in enumerate(states):
        where = f"tape file {tf} record {r} {how}"
        case = tmp_path / f"k{k}"
        case.mkdir()
        med = case / "m"
        shutil.copytree(med0, med)
        cut = files[: tf + 1]
        cut[tf] = files[tf][:r]
        write_files("dir", med, cut, last_closed=False)
        folder = med / f"file-{tf:06d}"
        if how == "empty":
            (folder / f"rec-{r:09d}").write_bytes(b"")
        elif how == "half":
            (folder / f"rec-{r:09d}").write_bytes(files[tf][r][: max(1, len(files[tf][r]) // 2)])
        cat = case / "cat.sqlite"
        with Catalog(cat) as c, open_medium(f"dir:{med}", write=False) as d:
            res = scan_medium(d, c, deep=True)
            listed = list_medium(d)
            rep = run_verify(d, None)
        got = {f.generation: f.state for f in res.files}
        if r >= len(files[tf]) - 1:  # the whole trailer is there (the end record or the filemark is not)
            assert got[tf] == "complete", (where, got)
            assert "after this tape file's trailer" in str([f.problem for f in res.files if f.generation == tf]), where
        else:
            assert got.get(tf, "incomplete") == "incomplete", (where, got)
        assert [f.tape_file for f in listed.files[1:]] == [f.tape_file for f in rep.media[0].files], where
        for g in range(1, tf):
            assert got[g] == "complete", (where, got)
            out = case / f"g{g}"
            with Catalog(cat) as c, open_medium(f"dir:{med}", write=False) as d:
                restore(d, c, str(out), RestoreOptions(generation=g, force=True))
            assert out.read_bytes() == versions[g - 1], where
        (case / "v.img").write_bytes(bytes(v3))
        with Catalog(cat) as c, open_medium(f"dir:{med}", write=True) as d:
            nxt = backup(str(case / "v.img"), d, c, opts)
        assert nxt.complete, where
        out = case / "next"
        with Catalog(cat) as c, open_medium(f"dir:{med}", write=False) as d:
            restore(d, c, str(out), RestoreOptions(force=True))
        assert out.read_bytes() == bytes(v3), where
        cat.unlink()  # and again from the medium alone
        for g in range(1, tf):
            out = case / f"again{g}"
            with Catalog(cat) as c, open_medium(f"dir:{med}", write=False) as d:
                restore(d, c, str(out), RestoreOptions(generation=g, force=True))
            assert out.read_bytes() == versions[g - 1], where
        shutil.rmtree(case)


def test_decode_trailer_header_reads_the_totals_of_a_trailer_with_a_damaged_body() -> None:
    import uuid

    from tapearc import format as fmt
    from tapearc.errors import CRCError

    run = uuid.uuid4()
    entry = fmt.ChunkIndexEntry(
        seq=0, record=1, record_count=1, flags=0, stored_len=BS, raw_len=BS, payload_crc=0, runs=(fmt.Run(0, 1),)
    )
    trailer = fmt.Trailer(
        run_uuid=run,
        generation=3,
        volume_size=2 * BS,
        block_size=BS,
        entries=(entry,),
        data_blocks=1,
        zero_blocks=0,
        raw_bytes=BS,
        stored_bytes=BS,
        digests=bytes(16),
    )
    item = bytearray(fmt.encode_trailer(trailer))
    item[110] ^= 1  # in the body
    with pytest.raises(CRCError):
        fmt.decode_trailer(bytes(item))
    s = fmt.decode_trailer_header(bytes(item))
    assert (s.run_uuid, s.generation, s.chunk_count, s.data_blocks, s.raw_bytes, s.complete, s.continues) == (
        run,
        3,
        1,
        1,
        BS,
        True,
        False,
    )
    item[30] ^= 1  # in the header
    with pytest.raises(CRCError):
        fmt.decode_trailer_header(bytes(item))


# ----------------------------------------------------------------------------- st (a fake st device)


@pytest.mark.parametrize("hide_fileno", [False, True])
@pytest.mark.parametrize("cut", ["header-only", "mid-chunk", "mid-chunk-no-filemark"])
def test_st_interrupted_tape_file(tmp_path: Path, cut: str, hide_fileno: bool) -> None:
    """On st a record is written whole or not at all, and the driver writes a filemark when a
    killed backup's device is closed (not after a power cut): a tape file of only a generation
    header, or cut in the middle of a chunk at a record boundary. list, verify and scan agree,
    the earlier generations restore from the medium alone, the next backup appends."""
    from tapearc.catalog.db import Catalog
    from tapearc.engine.backup import BackupOptions, backup
    from tapearc.engine.listing import list_medium
    from tapearc.engine.restore import RestoreOptions, restore
    from tapearc.engine.scan import scan_medium
    from tapearc.engine.verify import run_verify
    from tapearc.media.stlike import StLikeDrive
    from tests.media.fakest import FM, FakeSt, FakeTape

    med, src, _cat, versions = _chain(tmp_path, "sim", n=3)
    files, _ = read_files("sim", med)
    gen3 = files[3]
    k = _first_multi_record_chunk(gen3)
    kept = gen3[:1] if cut == "header-only" else gen3[: k + 1]
    objects: list[bytes | None] = []
    for recs in files[:3]:
        objects += [*recs, FM]
    objects += kept
    if cut != "mid-chunk-no-filemark":
        objects.append(FM)
    tape = FakeTape(objects=objects)

    def drive(write: bool) -> StLikeDrive:
        return StLikeDrive(FakeSt(tape, readonly=not write, hide_fileno=hide_fileno), name="fake:st", writable=write)

    cat = tmp_path / "st.sqlite"
    with Catalog(cat) as c:
        d = drive(False)
        listed = list_medium(d)
        rep = run_verify(d, None)
        res = scan_medium(d, c, deep=False)
        d.close()
    assert [f.tape_file for f in listed.files] == [0, 1, 2, 3]
    assert [f.tape_file for f in rep.media[0].files] == [1, 2, 3]
    assert [d_["tape_file"] for d_ in res.tape_files] == [1, 2, 3]
    assert listed.files[3].records == len(kept)
    assert {f.generation: f.state for f in res.files} == {1: "complete", 2: "complete", 3: "incomplete"}
    out = tmp_path / "o.img"
    with Catalog(cat) as c:
        d = drive(False)
        restore(d, c, str(out), RestoreOptions(force=True))
        d.close()
    assert out.read_bytes() == versions[1]  # generation 3 was interrupted: 2 is the latest complete
    src.write_bytes(versions[2])
    with Catalog(cat) as c:
        d = drive(True)
        nxt = backup(str(src), d, c, BackupOptions(block_size=BS, record_size=8192, chunk_size=16384))
        d.close()
    assert nxt.complete and nxt.tape_file == 4  # type: ignore[attr-defined]
    cat.unlink()
    with Catalog(cat) as c:
        d = drive(False)
        restore(d, c, str(out), RestoreOptions(force=True))
        d.close()
    assert out.read_bytes() == versions[2]


@pytest.mark.parametrize("kind", KINDS)
def test_backup_killed_inside_a_trailer_of_several_records_then_append_is_not_damage(tmp_path: Path, kind: str) -> None:
    """A backup killed after the first records of a trailer of several records (or by a real
    drive's filemark on close), then the next backup appends (closing the cut tape file with a
    filemark): the cut generation is what it was before the append, incomplete (an interrupted
    backup), and scan exits 0 -- never 20 calling it damaged."""
    rng = random.Random(3)
    med = tmp_path / ("m" if kind == "dir" else "t.tap")
    src, cat = tmp_path / "vol.img", tmp_path / "cat.sqlite"
    opts = ("--block-size", "4K", "--record-size", "4K", "--chunk-size", "16K")
    src.write_bytes(rng.randbytes(600 * BS))  # a trailer of 600 digests: several 4K records
    p = tapearc("backup", str(src), "--media", _spec(kind, med), "--catalog", str(cat), *opts)
    assert p.returncode == 0, p.stderr
    files, _ = read_files(kind, med)
    t = _trailer_at(files[1])
    assert len(files[1]) - t > 3, "the trailer is one record"
    files[1] = files[1][: t + 2]  # killed after the trailer's second record
    write_files(kind, med, files, last_closed=False)
    cat.unlink()  # (the catalog of the backup before its kill: learnt from the medium)
    src.write_bytes(rng.randbytes(600 * BS))
    p = tapearc("backup", str(src), "--media", _spec(kind, med), "--catalog", str(cat), *opts)
    assert p.returncode == 0, p.stderr
    for deep in ((), ("--deep",)):
        cat.unlink()
        p = tapearc("scan", "--media", _spec(kind, med), "--catalog", str(cat), "--json", *deep)
        assert p.returncode == 0, p.stderr
        assert [(g["generation"], g["state"]) for g in _json(p)["generations"]] == [(1, "incomplete"), (2, "complete")]
    out = tmp_path / "o.img"
    p = _restore(kind, med, cat, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == src.read_bytes()
