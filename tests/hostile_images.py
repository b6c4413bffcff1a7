"""Hand-made tapearc media whose every CRC is valid but whose claims are hostile or impossible:
a generation header claiming a huge volume, an incremental with another block size than its
base's. Written with the format codec, record by record, as a backup would."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from tapearc import format as fmt
from tapearc.engine.layout import (
    new_label,
    read_label,
    scan_generation_files,
    write_item,
)
from tapearc.errors import TapearcError
from tapearc.media import open_medium
from tapearc.media.base import TapeDrive

RECORD_SIZE = 65536


@dataclass
class Gen:
    """One generation to write: ``chunks`` is a list of (runs, raw payload of their data blocks)."""

    generation: int
    volume_size: int
    block_size: int
    chunks: list[tuple[list[fmt.Run], bytes]]
    base: int = 0
    volume_name: str = "vol.img"
    volume_uuid: uuid.UUID | None = None  # None: the volume of that name on the medium, or a new one


def write_generation(drive: TapeDrive, label: fmt.Label, g: Gen) -> None:
    """Append generation file ``g`` (header, chunks, trailer, end record, filemark) at the end of
    the medium in ``drive``."""
    drive.seek_end_of_data()
    rs = label.record_size
    run = uuid.uuid4()
    hdr = fmt.GenerationHeader(
        run_uuid=run,
        media_set_uuid=label.media_set_uuid,
        medium_uuid=label.medium_uuid,
        volume_uuid=g.volume_uuid or uuid.uuid4(),
        volume_name=g.volume_name,
        generation=g.generation,
        base_generation=g.base,
        kind=fmt.GenerationKind.INCREMENTAL if g.base else fmt.GenerationKind.FULL,
        compression=fmt.Compression.NONE,
        block_size=g.block_size,
        record_size=rs,
        chunk_blocks=max(1, min(rs // g.block_size, 16)),
        volume_size=g.volume_size,
        created=int(time.time()),
    )
    record = 0
    _, n = write_item(drive, fmt.encode_generation_header(hdr), rs)
    record += n
    entries = []
    digests = bytearray()
    for seq, (runs, raw) in enumerate(g.chunks):
        ch, enc, stored = fmt.build_chunk(
            run_uuid=run,
            generation=g.generation,
            seq=seq,
            block_size=g.block_size,
            volume_size=g.volume_size,
            runs=runs,
            raw_payload=raw,
            compress=False,
        )
        _, n = write_item(drive, enc + bytes(stored), rs)
        entries.append(fmt.ChunkIndexEntry.from_chunk(ch, record=record, record_count=n))
        digests += fmt.payload_digests(ch.runs, raw, g.block_size, g.volume_size)
        record += n
    trailer = fmt.Trailer.from_entries(
        run_uuid=run,
        generation=g.generation,
        volume_size=g.volume_size,
        block_size=g.block_size,
        entries=entries,
        digests=bytes(digests),
    )
    titem = fmt.encode_trailer(trailer)
    _, n = write_item(drive, titem, rs)
    end = fmt.trailer_end_for(titem, trailer_record=record, record_size=rs)
    write_item(drive, fmt.encode_trailer_end(end), rs)
    drive.write_filemark()


def write_medium(spec: str, gens: list[Gen]) -> None:
    """A medium holding ``gens`` (labelled first when it is blank)."""
    with open_medium(spec, write=True) as d:
        try:
            label = read_label(d)
        except TapearcError:  # blank
            label = new_label(RECORD_SIZE, int(time.time()))
            d.rewind()
            d.write_record(fmt.encode_label(label))
            d.write_filemark()
        known = {gf.header.volume_name: gf.header.volume_uuid for gf in scan_generation_files(d)}
        for g in gens:
            if g.volume_uuid is None and g.volume_name in known:
                g.volume_uuid = known[g.volume_name]
            write_generation(d, label, g)


def claiming(volume_size: int, *, block_size: int = 4096, cover: bool = False, data: bytes | None = None) -> Gen:
    """A full generation whose header claims ``volume_size`` bytes, holding one data block (block
    0). ``cover``: a zero run accounts for every other block (a possible, if huge, all-zero
    volume); else nothing does (a claim its chunks cannot hold)."""
    n = -(-volume_size // block_size)
    block = data if data is not None else bytes(range(256)) * (block_size // 256)
    runs = [fmt.Run(0, 1)]
    if cover and n > 1:
        runs.append(fmt.Run(1, n - 1, fmt.RunKind.ZERO))
    return Gen(generation=1, volume_size=volume_size, block_size=block_size, chunks=[(runs, block)])
