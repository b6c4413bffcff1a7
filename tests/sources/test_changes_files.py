"""--changed-blocks files: thin_delta and era_invalidate XML (made by the real tools), JSON and
CSV; the run form of change maps; bad input is one ChangeSourceError line naming file and place."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tapearc.errors import ChangeSourceError
from tapearc.sources.changes import ChangedBlocks, ChangedRuns, RangeMap, runs_of
from tapearc.sources.changes_files import read_changed_blocks

DATA = Path(__file__).parent / "data" / "changes"
K64 = 64 * 1024
SIZE = 64 * K64  # a 4 MiB volume of 64 blocks of 64 KiB


def blocks_of(b: ChangedBlocks, unit: int = K64) -> list[tuple[int, int]]:
    return [(s // unit, e // unit) for s, e in b.runs.pairs()]


@pytest.mark.parametrize("name", ["thin_delta.xml", "thin_delta-verbose.xml"])
def test_thin_delta(name: str) -> None:
    b = read_changed_blocks(str(DATA / name), SIZE)
    assert (b.format, b.since, b.until) == ("thin_delta", "thin:1", "thin:2")
    # different 2, right_only 11 and 30, left_only 20; same 0-1, 3, 10 and unmapped blocks unchanged
    assert blocks_of(b) == [(2, 3), (11, 12), (20, 21), (30, 31)]


def test_era_invalidate_needs_and_takes_a_block_size() -> None:
    with pytest.raises(ChangeSourceError, match="era_invalidate XML does not say its block size") as e:
        read_changed_blocks(str(DATA / "era_invalidate.xml"), SIZE)
    assert e.value.hint and "--change-block-size" in e.value.hint
    b = read_changed_blocks(str(DATA / "era_invalidate.xml"), SIZE, K64)
    assert (b.format, b.since, b.until) == ("era_invalidate", None, None)
    assert blocks_of(b) == [(3, 7), (10, 11), (20, 21)]


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("thin_restore", "thin_delta", "era_restore", "era_invalidate")),
    reason="thin-provisioning-tools are missing",
)
def test_the_golden_files_are_what_the_tools_write(tmp_path: Path) -> None:
    """The files above are the real tools' output (README.md says how they were made)."""
    meta = tmp_path / "thin.meta"
    meta.write_bytes(bytes(8 << 20))
    subprocess.run(["thin_restore", "-i", str(DATA / "thin-metadata.xml"), "-o", str(meta)], check=True)
    for extra, name in (([], "thin_delta.xml"), (["--verbose"], "thin_delta-verbose.xml")):
        out = subprocess.run(
            ["thin_delta", *extra, "--thin1", "1", "--thin2", "2", str(meta)], check=True, capture_output=True
        )
        assert out.stdout == (DATA / name).read_bytes()
    emeta = tmp_path / "era.meta"
    emeta.write_bytes(bytes(4 << 20))
    subprocess.run(["era_restore", "-i", str(DATA / "era-metadata.xml"), "-o", str(emeta)], check=True)
    out = subprocess.run(["era_invalidate", "--written-since", "3", str(emeta)], check=True, capture_output=True)
    assert out.stdout == (DATA / "era_invalidate.xml").read_bytes()


def write(tmp_path: Path, text: str, name: str = "changes") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_json_forms(tmp_path: Path) -> None:
    b = read_changed_blocks(
        write(
            tmp_path, '{"since": "cp1", "until": "cp2", "volume_size": 4194304, "changed": [[65536, 100], [0, 512]]}'
        ),
        SIZE,
    )
    assert (b.format, b.since, b.until, b.volume_size) == ("json", "cp1", "cp2", SIZE)
    assert list(b.runs.pairs()) == [(0, 512), (65536, 65636)]
    b = read_changed_blocks(write(tmp_path, '{"unit": "sectors", "changed": [{"start": 2, "length": 2}]}'), SIZE)
    assert list(b.runs.pairs()) == [(1024, 2048)]
    b = read_changed_blocks(
        write(tmp_path, '{"unit": "blocks", "block_size": 65536, "changed": [{"offset": 3, "length": 2}]}'), SIZE
    )
    assert blocks_of(b) == [(3, 5)]


def test_vmware_disk_change_info(tmp_path: Path) -> None:
    """VMware's QueryChangedDiskAreas result (DiskChangeInfo): bytes; changeId is the checkpoint
    it starts at; outside [startOffset, startOffset + length) nothing is known: changed."""
    doc = (
        '{"changeId": "52 de 7a 3b/12", "startOffset": 0, "length": 2097152,'
        ' "changedArea": [{"start": 65536, "length": 131072}]}'
    )
    b = read_changed_blocks(write(tmp_path, doc), SIZE)
    assert (b.since, b.covered) == ("52 de 7a 3b/12", (0, 2 * 1024 * 1024))
    m = RangeMap(b, SIZE)
    assert list(m.changed(0, SIZE)) == [
        (0, K64, False),
        (K64, 2 * K64, True),
        (3 * K64, 2 * 1024 * 1024 - 3 * K64, False),
        (2 * 1024 * 1024, SIZE - 2 * 1024 * 1024, True),  # not covered by the file
    ]


def test_csv_units(tmp_path: Path) -> None:
    b = read_changed_blocks(write(tmp_path, "# from a script\noffset,length\n0,4096\n65536,65536\n"), SIZE)
    assert (b.format, list(b.runs.pairs())) == ("csv", [(0, 4096), (K64, 2 * K64)])
    b = read_changed_blocks(write(tmp_path, "sector,sectors\n8,8\n"), SIZE)
    assert list(b.runs.pairs()) == [(4096, 8192)]
    b = read_changed_blocks(write(tmp_path, "block,blocks\n1,1\n2,3\n"), SIZE, K64)
    assert blocks_of(b) == [(1, 5)]  # adjacent ranges merge into one run


def test_bytes_past_the_volume_count_as_changed(tmp_path: Path) -> None:
    b = read_changed_blocks(write(tmp_path, "offset,length\n"), SIZE)
    assert list(RangeMap(b, SIZE).changed(SIZE - 10, 20)) == [(SIZE - 10, 10, False), (SIZE, 10, True)]


def test_a_range_in_the_last_partial_block_is_clipped(tmp_path: Path) -> None:
    """A volume that is not a whole number of tracker blocks: the last block's range ends past
    the volume's end and is clipped; one starting past it is an error."""
    size = SIZE - 1000
    b = read_changed_blocks(write(tmp_path, "block,blocks\n63,1\n"), size, K64)
    assert list(b.runs.pairs()) == [(63 * K64, size)]


BAD = [
    ("", "empty"),
    ("<superblock data_block_size='128'><diff left='1' right='2'><same begin='0' length='1'/>", ":1: malformed XML"),
    (
        "<superblock data_block_size='128'>\n<diff left='1' right='2'>\n<different begin='2' length='x'/></diff></superblock>",
        ":3: <different length='x'>: not a whole number",
    ),
    (
        "<superblock data_block_size='128'>\n<diff left='1' right='2'>\n<different begin='2' length='4'/>\n<same begin='3' length='1'/></diff></superblock>",
        ":4: range at byte 196608 overlaps",
    ),
    (
        "<superblock data_block_size='128'>\n<diff left='1' right='2'>\n<right_only begin='64' length='1'/></diff></superblock>",
        ":3: range bytes 4194304-4259839 lies outside the volume",
    ),
    ("<superblock data_block_size='128'>\n</superblock>", "without a <diff>"),
    ("<superblock>\n</superblock>", ":1: <superblock> has no data_block_size= attribute"),
    ("<superblock data_block_size='128'>\n<diff left='1'>\n</diff></superblock>", ":2: <diff> has no right= attribute"),
    (
        "<superblock data_block_size='128'>\n<diff left='1' right='2'>\n<bogus/></diff></superblock>",
        ":3: unexpected element <bogus>",
    ),
    ("<metadata/>", ":1: unknown XML document <metadata>"),
    ("<!DOCTYPE x [<!ENTITY a 'b'>]><blocks/>", "DTDs and entities are not accepted"),
    ("<blocks>\n<range begin='5' end='3'/></blocks>", ":2: <range begin=5 end=3>: end before begin"),
    ('{"changed": [[0, 10], [5, 10]]}', ":changed[1]: range at byte 5 overlaps"),
    ('{"changed": [[-1, 10]]}', ":changed[0]: negative range"),
    ('{"changed": [[0, 10.5]]}', ":changed[0]: 10.5 is not a whole number"),
    ('{"changed": [{"begin": 0}]}', ":changed[0]: a range is [start, length]"),
    ('{"unit": "furlongs", "changed": []}', ":unit: unknown unit 'furlongs'"),
    ('{"unit": "blocks", "changed": []}', ":unit: ranges in blocks need a block size"),
    ('{"changed": [], "typo": 1}', "unknown JSON key 'typo'"),
    ('{"chnaged": []}', "unknown JSON key 'chnaged'"),
    ('{"changed": [[0, 1]],\n"since": 1.5}', ":since: 1.5 is not a checkpoint name"),
    ('{"changed": [[0, 1]\n', ":2: malformed JSON"),
    ("[[0, 1]]", "JSON must be an object"),
    ("0,4096\n", ":1: unknown CSV header '0,4096'"),
    ("offset,length\n0,4096\n8192\n", ":3: expected 2 fields"),
    ("offset,length\n0,4096\n8192,abc\n", ":3: '8192,abc' is not two whole numbers"),
    ("offset,length\n8192,4096\n0,4096\n", ":3: range at byte 0 overlaps or comes before"),
    ("offset,length\n0,4194305\n", ":2: range bytes 0-4194304 lies outside the volume"),
    ("offset,length\n-4096,4096\n", ":2: negative range"),
    ("# only a comment\n", "no CSV header row"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_input_is_one_line_naming_file_and_place(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ChangeSourceError) as e:
        read_changed_blocks(path, SIZE, K64 if text.startswith("<blocks") else None)
    line = str(e.value)
    assert line.startswith(path) and "\n" not in line
    assert message in line
    assert e.value.exit_code == 26


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ChangeSourceError, match=r"cannot read --changed-blocks file .*nope"):
        read_changed_blocks(str(tmp_path / "nope"), SIZE)
    p = tmp_path / "bin"
    p.write_bytes(b"offset,length\n\xff\xfe\n")
    with pytest.raises(ChangeSourceError, match=r"bin:2: not UTF-8 text"):
        read_changed_blocks(str(p), SIZE)


def test_runs_answer_exactly_what_a_per_byte_model_says() -> None:
    rng = random.Random(7)
    for _ in range(200):
        size = rng.randint(1, 300)
        flags = [rng.random() < 0.3 for _ in range(size)]
        runs = ChangedRuns()
        i = 0
        while i < size:
            if flags[i]:
                j = i
                while j < size and flags[j]:
                    j += 1
                runs.add(i, j)
                i = j
            else:
                i += 1
        off = rng.randrange(size)
        n = rng.randint(1, size - off)
        got = list(runs.changed(off, n))
        assert sum(g[1] for g in got) == n and all(g[1] > 0 for g in got)
        pos = off
        for s, length, changed in got:
            assert s == pos and all(flags[k] == changed for k in range(s, s + length))
            pos += length
        for (_, _, a), (_, _, b) in itertools.pairwise(got):
            assert a != b  # neighbours differ: runs are merged


def test_runs_are_compact() -> None:
    """One run of 16 bytes per changed range, whatever the volume's size (1 TiB here)."""
    runs = runs_of((i << 30, (i << 30) + 4096) for i in range(1024))
    assert runs.count == 1024 and runs.runs.itemsize * len(runs.runs) == 16 * 1024
    assert list(runs.changed(5 << 30, 1 << 30)) == [(5 << 30, 4096, True), ((5 << 30) + 4096, (1 << 30) - 4096, False)]
