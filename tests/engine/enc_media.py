"""Encrypted tapearc media written by hand through the format API (SPEC sections 15 and 16),
independently of the backup engine: tape file 0 is the label and the set's key record, each
generation a tape file of a layout-3 generation header, chunks sealed with the run's chunk key
under their associated data (``fmt.build_sealed_chunk``), a trailer with keyed digests
(``digest_alg`` 2) and the end record. A generation can span two media (two parts).

The readers (verify, list, plan, scan, restore) are checked against these media: they follow
the SPEC, not the writer's code.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tapearc import format as fmt
from tapearc.crypto.keyfile import write_key_file
from tapearc.crypto.keys import Key
from tapearc.crypto.wrap import wrap_key
from tapearc.engine.layout import write_item
from tapearc.media import open_medium
from tapearc.media.base import TapeDrive

BS = 4096
RS = 16384
CHUNK_BLOCKS = 4
PASSPHRASE = "correct horse battery staple"


@dataclass
class KeyMaterial:
    key: Key
    wrapped: fmt.WrappedKey
    key_file: Path | None = None
    passphrase_file: Path | None = None


def key_material(tmp_path: Path | None = None, *, name: str = "set", secret: bytes | None = None) -> KeyMaterial:
    """A data key wrapped by PASSPHRASE (cheap scrypt); with ``tmp_path`` also its key file and
    a passphrase file there."""
    key = Key(secret) if secret is not None else Key.generate()
    km = KeyMaterial(key, wrap_key(key, PASSPHRASE, log2_n=10, comment=name))
    if tmp_path is not None:
        km.key_file = tmp_path / f"{name}.key"
        write_key_file(km.key_file, km.wrapped)
        km.passphrase_file = tmp_path / f"{name}.pass"
        km.passphrase_file.write_text(PASSPHRASE + "\n")
    return km


@dataclass
class WrittenGen:
    """What was written of one generation part."""

    header: fmt.GenerationHeader
    tape_file: int
    chunk_records: list[tuple[int, int]] = field(default_factory=list)  # (record, record_count) per chunk
    chunks: list[fmt.ChunkHeader] = field(default_factory=list)


def volume_data(nblocks: int, seed: int = 1, zero_every: int = 5) -> bytes:
    """``nblocks`` blocks of pseudo-random text (compressible) with an all-zero block every
    ``zero_every`` blocks."""
    import random

    rng = random.Random(seed)
    out = bytearray()
    for b in range(nblocks):
        if zero_every and b % zero_every == zero_every - 1:
            out += bytes(BS)
        else:
            words = [
                rng.choice((b"tape", b"archive", b"block", b"chunk", b"%d" % rng.randrange(999))) for _ in range(900)
            ]
            out += (b" ".join(words) + b"\n" * BS)[:BS]
    return bytes(out)


def plan_chunks(data: bytes, blocks: list[int] | None = None) -> list[tuple[list[fmt.Run], bytes]]:
    """The chunks of ``data`` (only ``blocks`` of it: an incremental) as (runs, raw payload),
    CHUNK_BLOCKS data blocks a chunk, all-zero blocks as zero runs."""
    ids = list(range(-(-len(data) // BS))) if blocks is None else sorted(blocks)
    chunks: list[tuple[list[fmt.Run], bytes]] = []
    runs: list[fmt.Run] = []
    raw = bytearray()
    ndata = 0
    for b in ids:
        blk = data[b * BS : (b + 1) * BS]
        kind = fmt.RunKind.ZERO if not any(blk) else fmt.RunKind.DATA
        if runs and runs[-1].kind == kind and runs[-1].first + runs[-1].count == b:
            runs[-1] = fmt.Run(runs[-1].first, runs[-1].count + 1, kind)
        else:
            runs.append(fmt.Run(b, 1, kind))
        if kind == fmt.RunKind.DATA:
            raw += blk
            ndata += 1
            if ndata == CHUNK_BLOCKS:
                chunks.append((runs, bytes(raw)))
                runs, raw, ndata = [], bytearray(), 0
    if runs:
        chunks.append((runs, bytes(raw)))
    return chunks


def write_tape_file0(drive: TapeDrive, label: fmt.Label, wrapped: fmt.WrappedKey | None) -> None:
    drive.rewind()
    drive.write_record(fmt.encode_label(label))
    if wrapped is not None:
        drive.write_record(fmt.encode_key_record(wrapped))
    drive.write_filemark()


def generation_header(
    label: fmt.Label, key: Key | None, *, generation: int, volume_size: int, volume_uuid: uuid.UUID, base: int = 0
) -> fmt.GenerationHeader:
    return fmt.GenerationHeader(
        run_uuid=uuid.uuid4(),
        media_set_uuid=label.media_set_uuid,
        medium_uuid=label.medium_uuid,
        volume_uuid=volume_uuid,
        volume_name="vol.img",
        generation=generation,
        base_generation=base,
        kind=fmt.GenerationKind.INCREMENTAL if base else fmt.GenerationKind.FULL,
        compression=fmt.Compression.ZSTD,
        block_size=BS,
        record_size=label.record_size,
        chunk_blocks=CHUNK_BLOCKS,
        volume_size=volume_size,
        created=int(time.time()),
        cipher=fmt.Cipher.AES_256_GCM if key is not None else fmt.Cipher.NONE,
        key_fingerprint=key.fingerprint if key is not None else None,
    )


def write_part(
    drive: TapeDrive,
    hdr: fmt.GenerationHeader,
    chunks: list[tuple[list[fmt.Run], bytes]],
    key: Key | None,
    *,
    first_seq: int = 0,
    complete: bool = True,
    continues: bool = False,
) -> WrittenGen:
    """Append one tape file (generation header, chunks, trailer, end record, filemark) of
    ``hdr`` at the end of data: sealed chunks and keyed digests when ``key`` is given."""
    drive.seek_end_of_data()
    rs = hdr.record_size
    out = WrittenGen(hdr, drive.position().file)
    _, record = write_item(drive, fmt.encode_generation_header(hdr), rs)
    cipher = fmt.chunk_cipher(hdr, key) if key is not None else None
    dkey = key.digest_key() if key is not None else None
    entries, digests = [], bytearray()
    for k, (runs, raw) in enumerate(chunks):
        if cipher is not None:
            ch, enc, stored = fmt.build_sealed_chunk(hdr, seq=first_seq + k, runs=runs, raw_payload=raw, cipher=cipher)
        else:
            ch, enc, stored = fmt.build_chunk(
                run_uuid=hdr.run_uuid,
                generation=hdr.generation,
                seq=first_seq + k,
                block_size=BS,
                volume_size=hdr.volume_size,
                runs=runs,
                raw_payload=raw,
            )
        _, n = write_item(drive, enc + bytes(stored), rs)
        entries.append(fmt.ChunkIndexEntry.from_chunk(ch, record=record, record_count=n))
        out.chunk_records.append((record, n))
        out.chunks.append(ch)
        digests += fmt.payload_digests(ch.runs, raw, BS, hdr.volume_size, digest_key=dkey)
        record += n
    trailer = fmt.Trailer.from_entries(
        run_uuid=hdr.run_uuid,
        generation=hdr.generation,
        volume_size=hdr.volume_size,
        block_size=BS,
        entries=entries,
        digests=bytes(digests),
        digest_alg=fmt.digest_alg_for(dkey),
        complete=complete,
    )
    if continues:
        trailer = dataclasses.replace(trailer, flags=trailer.flags | fmt.TRAILER_FLAG_CONTINUES)
    titem = fmt.encode_trailer(trailer)
    write_item(drive, titem, rs)
    end = fmt.trailer_end_for(titem, trailer_record=record, record_size=rs)
    write_item(drive, fmt.encode_trailer_end(end), rs)
    drive.write_filemark()
    return out


def new_label(*, sequence: int = 1, media_set: uuid.UUID | None = None) -> fmt.Label:
    return fmt.Label(
        medium_uuid=uuid.uuid4(),
        media_set_uuid=media_set or uuid.uuid4(),
        sequence=sequence,
        record_size=RS,
        created=int(time.time()),
    )


@dataclass
class EncMedium:
    spec: str
    label: fmt.Label
    gens: list[WrittenGen]
    versions: list[bytes]  # the volume as each generation holds it


def write_encrypted_medium(
    path: Path, km: KeyMaterial | None, versions: list[tuple[bytes, list[int] | None]], *, encrypted: bool = True
) -> EncMedium:
    """A medium (sim: image at ``path``) of one volume: one generation per ``versions`` entry
    (the volume's bytes, and the blocks an incremental holds, None for a full one)."""
    spec = f"sim:{path}"
    label = new_label()
    key = km.key if (km is not None and encrypted) else None
    vol = uuid.uuid4()
    med = EncMedium(spec, label, [], [])
    with open_medium(spec, write=True) as d:
        write_tape_file0(d, label, km.wrapped if key is not None and km is not None else None)
        for g, (data, blocks) in enumerate(versions, start=1):
            hdr = generation_header(
                label, key, generation=g, volume_size=len(data), volume_uuid=vol, base=g - 1 if blocks else 0
            )
            med.gens.append(write_part(d, hdr, plan_chunks(data, blocks), key))
            med.versions.append(data)
    return med


def write_spanning(path1: Path, path2: Path, km: KeyMaterial, data: bytes, split: int = 2) -> list[EncMedium]:
    """One full encrypted generation in two parts: ``split`` chunks on the first medium (its
    trailer says the generation continues), the rest on the second (sequence 2 of the set)."""
    key = km.key
    first = new_label()
    second = new_label(sequence=2, media_set=first.media_set_uuid)
    hdr = generation_header(first, key, generation=1, volume_size=len(data), volume_uuid=uuid.uuid4())
    chunks = plan_chunks(data)
    out = []
    for lab, path, part, cs, seq0 in (
        (first, path1, 0, chunks[:split], 0),
        (second, path2, 1, chunks[split:], split),
    ):
        spec = f"sim:{path}"
        with open_medium(spec, write=True) as d:
            write_tape_file0(d, lab, km.wrapped)
            h = dataclasses.replace(hdr, medium_uuid=lab.medium_uuid, part=part)
            last = part == 1
            wg = write_part(d, h, cs, key, first_seq=seq0, complete=last, continues=not last)
        out.append(EncMedium(spec, lab, [wg], [data]))
    return out
