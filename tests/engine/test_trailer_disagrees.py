"""A trailer that disagrees with the chunks of its tape file (every CRC valid): it lists a chunk
that is not there, leaves one out, holds other block digests than the data, its end record points
elsewhere, or a chunk of other data stands in a chunk's place. verify names each; a deep scan
never records such a generation complete; a restore never passes the data off as what was
backed up."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine.layout import new_label, write_item
from tapearc.engine.restore import RestoreOptions, RestoreResult, restore
from tapearc.engine.scan import scan_medium
from tapearc.engine.verify import run_verify
from tapearc.errors import TapearcError
from tapearc.media import open_medium

BS, RS, N = 4096, 65536, 4
BLOCKS = [random.Random(5).randbytes(BS) for _ in range(N)]


def _chunk(run: uuid.UUID, seq: int, raw: bytes) -> tuple[fmt.ChunkHeader, bytes]:
    ch, enc, stored = fmt.build_chunk(
        run_uuid=run,
        generation=1,
        seq=seq,
        block_size=BS,
        volume_size=N * BS,
        runs=[fmt.Run(2 * seq, 2)],
        raw_payload=raw,
        compress=False,
    )
    return ch, enc + bytes(stored)


def _header(label: fmt.Label, run: uuid.UUID) -> fmt.GenerationHeader:
    return fmt.GenerationHeader(
        run_uuid=run,
        media_set_uuid=label.media_set_uuid,
        medium_uuid=label.medium_uuid,
        volume_uuid=uuid.uuid4(),
        volume_name="v",
        generation=1,
        base_generation=0,
        kind=fmt.GenerationKind.FULL,
        compression=fmt.Compression.NONE,
        block_size=BS,
        record_size=RS,
        chunk_blocks=2,
        volume_size=N * BS,
        created=int(time.time()),
    )


def build(spec: str, mode: str) -> None:
    """One full generation of two chunks (blocks 0-1, 2-3), made hostile as ``mode`` says."""
    with open_medium(spec, write=True) as d:
        label = new_label(RS, int(time.time()))
        d.write_record(fmt.encode_label(label))
        d.write_filemark()
        run = uuid.uuid4()
        rec = write_item(d, fmt.encode_generation_header(_header(label, run)), RS)[1]
        entries, digs = [], []
        for seq in range(2):
            raw = BLOCKS[2 * seq] + BLOCKS[2 * seq + 1]
            ch, item = _chunk(run, seq, raw)
            if mode == "substituted" and seq == 1:  # other data, its own valid CRCs, in chunk 1's place
                item = _chunk(run, seq, bytes(len(raw)))[1]
            n = write_item(d, item, RS)[1]
            entries.append(fmt.ChunkIndexEntry.from_chunk(ch, record=rec, record_count=n))
            digs.append(fmt.payload_digests(ch.runs, raw, BS, N * BS))
            rec += n
        if mode == "omits":
            entries, digs = entries[:1], digs[:1]
        elif mode == "digests":
            digs[1] = bytes(16) + digs[1][16:]
        elif mode == "extra":
            entries.append(dataclasses.replace(entries[1], seq=2, record=rec + 5))
            digs.append(digs[1])
        tr = fmt.Trailer.from_entries(
            run_uuid=run, generation=1, volume_size=N * BS, block_size=BS, entries=entries, digests=b"".join(digs)
        )
        titem = fmt.encode_trailer(tr)
        write_item(d, titem, RS)
        end = fmt.trailer_end_for(titem, trailer_record=rec - (mode == "end-elsewhere"), record_size=RS)
        write_item(d, fmt.encode_trailer_end(end), RS)
        d.write_filemark()


def _problems(spec: str) -> list[tuple[str, str]]:
    with Catalog() as cat, open_medium(spec, write=False) as d:
        rep = run_verify(d, cat)
    assert not rep.ok
    return [(p.what, p.message) for m in rep.media for f in m.files for p in f.problems]


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        ("substituted", "index", "chunk 1 differs from the trailer's index entry: another payload CRC"),
        ("omits", "index", "chunk 1 is not in the trailer's index"),
        ("extra", "missing", "chunk 2 listed in the trailer was not found"),
        ("digests", "digest", "chunk 1: 1 block(s) do not match their digests"),
        ("end-elsewhere", "index", "end record points at record 2, the trailer is at 3"),
    ],
)
def test_verify_names_what_the_trailer_disagrees_on(tmp_path: Path, mode: str, kind: str, words: str) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    build(spec, mode)
    assert (kind, words) in [(k, m[: len(words)]) for k, m in _problems(spec)]


@pytest.mark.parametrize("mode", ["substituted", "digests"])
def test_deep_scan_never_calls_a_disagreeing_generation_complete(tmp_path: Path, mode: str) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    build(spec, mode)
    with Catalog() as cat, open_medium(spec, write=False) as d:
        res = scan_medium(d, cat, deep=True)
        assert [f.state for f in res.files] == ["damaged"]  # was: complete
        assert "chunk 1 read differs from the trailer's index" in (res.files[0].problem or "")
        with pytest.raises(TapearcError) as e:  # was: restored chunk 1's other data, reporting nothing
            restore(d, cat, str(tmp_path / "o.img"), RestoreOptions(volume="v"))
        assert e.value.exit_code == 22


def _restore_after_trailer_scan(tmp_path: Path, mode: str) -> tuple[RestoreResult, Path]:
    """The medium built as ``mode`` says, learnt by a trailer scan alone, then restored."""
    spec = f"sim:{tmp_path / 't.tap'}"
    build(spec, mode)
    out = tmp_path / "o.img"
    with Catalog() as cat, open_medium(spec, write=False) as d:
        scan_medium(d, cat)
        return restore(d, cat, str(out), RestoreOptions(volume="v")), out


def test_restore_after_a_trailer_scan_names_the_substituted_chunk(tmp_path: Path) -> None:
    res, _ = _restore_after_trailer_scan(tmp_path, "substituted")
    assert res.lost == [{"blocks": [2, 3], "offset": 2 * BS, "length": 2 * BS}]
    assert "chunk 1 here has another payload CRC than the catalog records" in str(res.damaged_chunks[0]["error"])


def test_restore_after_a_trailer_scan_checks_the_block_digests(tmp_path: Path) -> None:
    """The trailer's digests of chunk 1 disagree with its data (every CRC valid), the catalog
    learnt from the trailer alone: the restore does not write chunk 1's blocks as if they were the
    data backed up -- it names the block whose digest differs and reports them lost (before: it
    restored them silently). Chunk 0's blocks are written."""
    res, out = _restore_after_trailer_scan(tmp_path, "digests")
    assert res.lost == [{"blocks": [2, 3], "offset": 2 * BS, "length": 2 * BS}]
    err = str(res.damaged_chunks[0]["error"])
    assert "block 2 of generation 1 chunk 1 does not match its digest" in err
    assert out.read_bytes()[: 2 * BS] == BLOCKS[0] + BLOCKS[1]


def test_restore_of_blocks_matching_their_digests_is_clean(tmp_path: Path) -> None:
    """The same medium without the hostile change: every block matches, nothing lost."""
    res, out = _restore_after_trailer_scan(tmp_path, "none")
    assert res.lost == [] and res.damaged_chunks == []
    assert out.read_bytes() == b"".join(BLOCKS)
