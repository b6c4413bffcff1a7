"""An encrypted backup writes the same chunks with the parallel packers as on the plain path
(TAPEARC_PIPELINE=0): same headers (but for the run and the payload CRC) and, once opened, the
same inner payloads (zstd frames byte for byte). Only the run's key and the nonces differ."""

from __future__ import annotations

import dataclasses
import random
import uuid
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine.encryption import BackupKey, ChunkOpener, generation_header_of
from tapearc.engine.layout import read_item
from tapearc.media import open_medium
from tests.engine.test_encrypted_backup import BS, do_backup, make_key, volume

pytest.importorskip("tapesim.drive")


def _chunks(img: Path, k: BackupKey) -> list[tuple[fmt.ChunkHeader, bytes]]:
    """(header without run and CRC, inner payload) of every chunk of the only generation."""
    out = []
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        for _, set_uuid, *_ in cat.media_holding_generations():
            for g in cat.generations(set_uuid):
                for c in cat.chunks(g.id):
                    d.locate(c.logical)
                    item = read_item(d)
                    hdr, payload = fmt.decode_chunk(item.data)  # type: ignore[union-attr]
                    row = cat.generation_of_tape_file(c.medium_uuid, c.tape_file)
                    assert row is not None
                    part = cat.part_info(c.medium_uuid, c.tape_file)[0]
                    gen = generation_header_of(row, part)
                    cipher = fmt.chunk_cipher(gen, k.key)
                    inner = bytes(fmt.open_chunk_payload(gen, hdr, payload, cipher))
                    opener = ChunkOpener(k.key, cat).for_chunk(c)
                    assert opener is not None
                    assert bytes(opener(hdr, payload)) == bytes(fmt.unpack_payload(hdr, inner, opened=True))
                    out.append((dataclasses.replace(hdr, run_uuid=uuid.UUID(int=0), payload_crc=0), inner))
    return out


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_same_chunks_with_and_without_the_pipeline(
    tmp_path: Path, _private_catalog: Path, monkeypatch: pytest.MonkeyPatch, compress: str
) -> None:
    data = volume(400, seed=11) + random.Random(4).randbytes(BS // 2)
    src = tmp_path / "vol"
    src.write_bytes(data)
    k = make_key()
    chunks = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("TAPEARC_PIPELINE", flag)
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat{flag}.sqlite"))
        img = tmp_path / f"t{flag}.tap"
        do_backup(f"sim:{img}", src, k, compress=compress, chunk_size=64 * 1024)
        chunks[flag] = _chunks(img, k)
    assert len(chunks["0"]) > 5
    assert chunks["0"] == chunks["1"]
