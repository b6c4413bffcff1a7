"""Trusting change trackers, adversarially (issue 14): a tracker is trusted only for the volume
and the base generation it was started at, and a wrong or missing tracker never yields a wrong
restore; bad tracker input is one ChangeSourceError, never a traceback, a hang or a silent
"nothing changed"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.jobfile import read_job
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import ChangeSourceError, JobFileError
from tapearc.media import open_medium
from tapearc.sources.changes_files import read_changed_blocks
from tapearc.sources.changes_trust import ChangeOptions
from tests.nbdsupport import needs_qemu_nbd, qemu_img, qemu_io, qemu_nbd

K64 = 64 * 1024
NBLOCKS = 16
SIZE = NBLOCKS * K64


def run(spec: str, src: str, volume: str | None = None, **changes: Any) -> Any:
    opts = BackupOptions(block_size=K64, volume_name=volume, changes=ChangeOptions(**changes))
    with Catalog() as cat, open_medium(spec, write=True) as d:
        return backup(src, d, cat, opts)


def restored(spec: str, tmp: Path, volume: str, generation: int | None = None) -> bytes:
    out = tmp / f"out-{volume.replace('/', '_')}"
    out.unlink(missing_ok=True)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        restore(d, cat, str(out), RestoreOptions(volume=volume, generation=generation))
    return out.read_bytes()


def blocks(*values: int) -> bytes:
    return b"".join(bytes([v]) * K64 for v in values)


# ------------------------------------------------------------------ the wrong base


@needs_qemu_nbd
def test_a_bitmap_of_another_export_is_not_trusted(tmp_path: Path) -> None:
    """Volume 'vm' backed up from disk A with bitmap b0, then --volume vm from disk B (another
    image, its own bitmap b0): B's bitmap says nothing of A's base; trusting it took A's blocks
    for B's clean ones (a wrong restore)."""
    spec = f"sim:{tmp_path / 't.tap'}"
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    for img, pattern in ((a, "0x11"), (b, "0x22")):
        qemu_img("create", "-q", "-f", "qcow2", str(img), "1M")
        qemu_io(img, "qcow2", f"write -P {pattern} 0 1M")
        qemu_img("bitmap", "--add", str(img), "b0")
    with qemu_nbd(a, "qcow2", bitmap="b0", shared=1) as uri:
        assert run(spec, uri, "vm", dirty_bitmap="b0").kind == "full"
    qemu_io(b, "qcow2", "write -P 0x33 0 64k")  # B's bitmap: one dirty granule
    with qemu_nbd(b, "qcow2", bitmap="b0", shared=1) as uri:
        r = run(spec, uri, "vm", dirty_bitmap="b0")
    assert r.kind == "incremental" and r.change["trusted"] is False
    assert any("is not trusted" in w and "another source" in w for w in r.warnings), r.warnings
    raw = tmp_path / "b.raw"
    qemu_img("convert", "-O", "raw", str(b), str(raw))
    assert restored(spec, tmp_path, "vm", 2) == raw.read_bytes()


def test_a_job_may_not_give_one_changed_blocks_file_to_several_volumes(tmp_path: Path) -> None:
    """[defaults] changed_blocks gives every volume the same file: each volume recorded the
    file's 'until' as its checkpoint, so the next file (one volume's changes) was trusted for
    the other volume too, whose own changes it does not list."""
    (tmp_path / "c.json").write_text(json.dumps({"since": "cp0", "until": "cp1", "changed": []}))
    lines = [
        "[job]",
        'name = "j"',
        f'media = "sim:{tmp_path / "t.tap"}"',
        "[defaults]",
        'changed_blocks = "c.json"',
        "[[volume]]",
        'name = "a"',
        'source = "a.img"',
        "[[volume]]",
        'name = "b"',
        'source = "b.img"',
    ]
    path = tmp_path / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JobFileError, match="changed_blocks") as e:
        read_job(str(path))
    assert "one volume" in str(e.value)
    lines[3:5] = []  # each volume names the same file itself
    lines.insert(6, 'changed_blocks = "c.json"')
    lines.append('changed_blocks = "./c.json"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JobFileError, match="changed_blocks"):
        read_job(str(path))


@pytest.mark.parametrize(
    "doc",
    [
        # VMware's area keys without changedArea: the area was ignored, so everything outside it
        # counted as unchanged
        {"since": "cp1", "changed": [], "startOffset": 0, "length": K64},
        # both lists: "changed" was ignored
        {"since": "cp1", "changed": [[0, K64]], "changedArea": []},
        # two different starts: "changeId" was ignored
        {"since": "cp1", "changeId": "cp0", "changed": []},
        # a negative area length
        {"changeId": "cp1", "startOffset": 2 * K64, "length": -K64, "changedArea": []},
    ],
)
def test_json_keys_that_contradict_each_other_are_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ChangeSourceError, match=r"c\.json"):
        read_changed_blocks(str(f), SIZE)


def test_a_file_that_lies_about_its_area_gives_no_wrong_restore(tmp_path: Path) -> None:
    """End to end, the first case above: never a generation missing block 9's change."""
    spec = f"sim:{tmp_path / 't.tap'}"
    vol = tmp_path / "vol"
    vol.write_bytes(blocks(*range(1, NBLOCKS + 1)))
    run(spec, str(vol), checkpoint="cp1")
    vol.write_bytes(blocks(*range(1, 10), 0x99, *range(11, NBLOCKS + 1)))
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"since": "cp1", "changed": [], "startOffset": 0, "length": K64}))
    with pytest.raises(ChangeSourceError):
        run(spec, str(vol), changed_blocks=str(f))
    assert restored(spec, tmp_path, "vol") == blocks(*range(1, NBLOCKS + 1))  # generation 1, nothing after


# ------------------------------------------------------------------ malformed input


def test_deeply_nested_json_is_one_error(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text('{"changed": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(ChangeSourceError, match=r"deep\.json"):
        read_changed_blocks(str(f), SIZE)


@pytest.mark.parametrize("text", ["1_0", "\uff11", "\u0661", "+1", "0x10"])
def test_only_ascii_digits_are_numbers(tmp_path: Path, text: str) -> None:
    """Python's int() takes '1_0', full-width and Arabic-Indic digits, '+1': no tracker writes
    them, so they are not numbers here (CSV and XML)."""
    csv = tmp_path / "c.csv"
    csv.write_text(f"offset,length\n{text}0,65536\n", encoding="utf-8")
    with pytest.raises(ChangeSourceError, match=r"c\.csv:2: .*not two whole numbers"):
        read_changed_blocks(str(csv), SIZE)
    xml = tmp_path / "c.xml"
    xml.write_text(
        f'<superblock data_block_size="128"><diff left="1" right="2"><different begin="{text}" length="1"/></diff>'
        "</superblock>",
        encoding="utf-8",
    )
    with pytest.raises(ChangeSourceError, match=r"c\.xml:1: .*not a whole number"):
        read_changed_blocks(str(xml), SIZE)


def test_xml_bombs_and_external_entities_are_refused_unexpanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("<different begin='0' length='1'/>")
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    docs = {
        "bomb": f'<!DOCTYPE superblock [<!ENTITY l0 "lol">{lol}]><superblock data_block_size="128">&l9;</superblock>',
        "external": f'<!DOCTYPE superblock [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<superblock data_block_size="128"><diff left="1" right="2">&x;</diff></superblock>',
        "parameter": f'<!DOCTYPE superblock [<!ENTITY % p SYSTEM "file://{secret}"> %p;]><superblock/>',
        "undeclared": '<superblock data_block_size="128"><diff left="1" right="2">&x;</diff></superblock>',
    }
    for name, text in docs.items():
        f = tmp_path / f"{name}.xml"
        f.write_text(text)
        with pytest.raises(ChangeSourceError, match=rf"{name}\.xml:1: ") as e:
            read_changed_blocks(str(f), SIZE)
        assert "DTDs and entities are not accepted" in str(e.value) or "undefined entity" in str(e.value), name


def test_the_same_disk_read_elsewhere_by_another_path_is_seen(tmp_path: Path) -> None:
    """The base read through a symlink, the same disk backed up to another media set by its
    real path afterwards (a bitmap may have been cleared after that): not trusted."""
    vol = tmp_path / "vol"
    vol.write_bytes(blocks(*range(1, NBLOCKS + 1)))
    link = tmp_path / "link"
    link.symlink_to(vol)
    spec, other = f"sim:{tmp_path / 't.tap'}", f"sim:{tmp_path / 'other.tap'}"
    run(spec, str(link), checkpoint="cp1")
    run(other, str(vol), checkpoint="cp1")
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"since": "cp1", "changed": []}))
    r = run(spec, str(link), changed_blocks=str(f))
    assert r.base_generation == 1 and r.change["trusted"] is False
    assert any("was read again after base generation 1" in w for w in r.warnings), r.warnings


def test_a_base_that_spans_media_is_trusted_and_restores(tmp_path: Path) -> None:
    """A full generation spanning two tapes of a library records its checkpoint like any other;
    the trusted incremental on it restores byte-identical, so does a trusted one that spans."""
    lib_mod = pytest.importorskip("tapesim.library")
    from tapearc.engine.mediasource import MediaSource

    lib_mod.create_library(str(tmp_path / "lib"), 6, 1536 * 1024, early_warning=256 * 1024, max_record=1024 * 1024)
    spec = f"sim:{tmp_path / 'lib'}"
    vol = tmp_path / "vol"
    data = bytearray(random_bytes(2 * 1024 * 1024))
    vol.write_bytes(data)

    def back(**changes: Any) -> Any:
        opts = BackupOptions(block_size=K64, record_size=K64, chunk_size=256 * 1024, changes=ChangeOptions(**changes))
        with Catalog() as cat, MediaSource(spec, write=True, catalog=cat) as media:
            return backup(str(vol), media, cat, opts)

    r1 = back(checkpoint="cp1")
    assert len(r1.parts) == 2, r1.parts  # it spans
    data[5 * K64 : 6 * K64] = b"\xaa" * K64
    vol.write_bytes(data)
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"since": "cp1", "until": "cp2", "changed": [[5 * K64, K64]]}))
    r2 = back(changed_blocks=str(f))
    assert r2.kind == "incremental" and r2.change["trusted"] is True and r2.source_bytes_read == K64
    data[0 : 24 * K64] = random_bytes(24 * K64)  # enough to span the rest of the tape
    vol.write_bytes(data)
    f.write_text(json.dumps({"since": "cp2", "until": "cp3", "changed": [[0, 24 * K64]]}))
    r3 = back(changed_blocks=str(f))
    assert r3.change["trusted"] is True
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        for g, want in ((3, bytes(data)),):
            out = tmp_path / f"out{g}"
            restore(media, cat, str(out), RestoreOptions(volume="vol", generation=g))
            assert out.read_bytes() == want


def random_bytes(n: int) -> bytes:
    import random

    return random.Random(n).randbytes(n)


def test_a_file_with_a_problem_gives_no_checkpoint_of_its_own(tmp_path: Path) -> None:
    """A file not trusted for what it says of itself (here: another volume's size) does not
    say where this generation was read either: its 'until' is not recorded as the generation's
    checkpoint, or the next file of that other volume would be trusted for this one. An
    explicit --checkpoint still is."""
    spec = f"sim:{tmp_path / 't.tap'}"
    vol = tmp_path / "vol"
    vol.write_bytes(blocks(*range(1, NBLOCKS + 1)))
    run(spec, str(vol), checkpoint="cp1")
    f = tmp_path / "other.json"
    f.write_text(json.dumps({"since": "cp1", "until": "other-cp2", "volume_size": 2 * SIZE, "changed": []}))
    r = run(spec, str(vol), changed_blocks=str(f))
    assert r.change == {"source": "changed-blocks:json", "trusted": False, "since": "cp1", "checkpoint": None}
    vol.write_bytes(blocks(*range(2, NBLOCKS + 2)))  # every block changed; the other volume's file says none
    f.write_text(json.dumps({"since": "other-cp2", "until": "other-cp3", "changed": []}))
    r = run(spec, str(vol), changed_blocks=str(f))
    assert r.change["trusted"] is False
    assert restored(spec, tmp_path, "vol") == vol.read_bytes()
    f.write_text(json.dumps({"since": "cp1", "changed": [], "volume_size": 2 * SIZE}))
    r = run(spec, str(vol), changed_blocks=str(f), checkpoint="cp9")
    assert r.change["checkpoint"] == "cp9"


@needs_qemu_nbd
def test_an_older_generation_restored_in_between_is_backed_up_right(tmp_path: Path) -> None:
    """Generation 1 restored onto the disk after generation 2 (rolled back in place through a
    writable export, only the blocks that differ written): the enabled bitmap marks those
    writes, so the trusted incremental after it holds generation 1's bytes again."""
    spec = f"sim:{tmp_path / 't.tap'}"
    img = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(img), "2M")
    qemu_io(img, "qcow2", "write -P 0x11 0 2M")
    qemu_img("bitmap", "--add", str(img), "b0")
    raw = tmp_path / "raw"

    def state() -> bytes:
        qemu_img("convert", "-O", "raw", str(img), str(raw))
        return raw.read_bytes()

    def back() -> Any:
        with qemu_nbd(img, "qcow2", bitmap="b0", shared=1) as uri:
            return run(spec, uri, "vm", dirty_bitmap="b0")

    back()
    gen1 = state()
    qemu_io(img, "qcow2", "write -P 0x22 64k 128k", "write -z 1M 64k")
    assert back().change["trusted"] is True
    with qemu_nbd(img, "qcow2", read_only=False, shared=1) as uri, Catalog() as cat:
        with open_medium(spec, write=False) as d:
            restore(d, cat, uri, RestoreOptions(volume="vm", generation=1, assume_generation=2))
    assert state() == gen1
    r3 = back()
    assert r3.change["trusted"] is True and r3.source_bytes_read < len(gen1)
    assert restored(spec, tmp_path, "vm", 3) == gen1


def test_a_base_of_another_block_size_and_unaligned_ranges(tmp_path: Path) -> None:
    """The base was made with 16 KiB blocks, the incremental is asked for with the default: it
    follows the base's block size, and a changed range covering part of a block (a 4 KiB tracker
    granule) makes the whole block read -- never vouched for."""
    spec = f"sim:{tmp_path / 't.tap'}"
    vol = tmp_path / "vol"
    data = bytearray(blocks(*range(1, NBLOCKS + 1)))
    vol.write_bytes(data)
    k16 = 16 * 1024
    with Catalog() as cat, open_medium(spec, write=True) as d:
        opts = BackupOptions(block_size=k16, changes=ChangeOptions(checkpoint="cp1"))
        backup(str(vol), d, cat, opts)
    data[k16 + 5000 : k16 + 5100] = b"\xee" * 100  # in 16 KiB block 1, 4 KiB granule 5
    vol.write_bytes(data)
    f = tmp_path / "c.csv"
    f.write_text(f"offset,length\n{k16 + 4096},4096\n")
    with Catalog() as cat, open_medium(spec, write=True) as d:
        opts = BackupOptions(block_size_given=False, changes=ChangeOptions(changed_blocks=str(f), changed_since="cp1"))
        r = backup(str(vol), d, cat, opts)
    assert (r.block_size, r.change["trusted"], r.data_blocks, r.source_bytes_read) == (k16, True, 1, k16)
    assert restored(spec, tmp_path, "vol") == bytes(data)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.csv", "offset,length\n" + "1" * 5000 + ",1\n"),
        ("c.json", '{"changed": [[' + "1" * 5000 + ", 1]]}"),
        (
            "c.xml",
            '<superblock data_block_size="128"><diff left="1" right="2"><different begin="'
            + "1" * 5000
            + '" length="1"/></diff></superblock>',
        ),
    ],
)
def test_a_number_of_thousands_of_digits_is_one_error(tmp_path: Path, name: str, text: str) -> None:
    """Python refuses to convert more than 4300 digits (a ValueError of its own): still one
    ChangeSourceError naming the file."""
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ChangeSourceError, match=rf"{name.replace('.', '[.]')}"):
        read_changed_blocks(str(f), SIZE)
