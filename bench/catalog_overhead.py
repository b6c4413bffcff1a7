#!/usr/bin/env python3
"""The catalog's cost per generation, SQLite against PostgreSQL (issue 17).

One generation of a 2 GiB volume as a backup records it: ``begin_generation``, one
``add_chunks`` per chunk as each chunk reaches the medium (4 MiB chunks of 64 KiB blocks: 512
chunks, 16 bytes of digest per block), ``finish_generation``; and the same with the chunks in
batches of 256 as ``scan`` records them. The median of several generations, each into the same
catalog (a catalog that grows as a real one does).

SQLite: a file in ``--dir`` (WAL, synchronous=NORMAL: tapearc's settings). PostgreSQL: the URL
given, else a throw-away cluster on a unix socket started here with PostgreSQL's own durability
defaults (fsync on, synchronous_commit on; tests/pgsupport.py), stopped at the end.

    .venv/bin/python bench/catalog_overhead.py                  # both, 5 generations each
    .venv/bin/python bench/catalog_overhead.py --postgresql postgresql://tapearc@db/bench --generations 9

From another bench: ``compare(workdir, pg_url=None, generations=5)`` returns the figures as a
dict (``ratio``: PostgreSQL's time per generation over SQLite's; ``postgresql`` is None, with
``why``, when no PostgreSQL could be had).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tapearc import format as fmt
from tapearc.catalog.db import Catalog

BLOCK = 64 * 1024
CHUNK = 4 * 1024 * 1024
VOLUME = 2 * 1024**3


def _label(set_uuid: uuid.UUID) -> fmt.Label:
    return fmt.Label(
        medium_uuid=uuid.uuid4(), media_set_uuid=set_uuid, sequence=1, record_size=256 * 1024, created=int(time.time())
    )


def _header(lab: fmt.Label, number: int, volume: int) -> fmt.GenerationHeader:
    return fmt.GenerationHeader(
        run_uuid=uuid.uuid4(),
        media_set_uuid=lab.media_set_uuid,
        medium_uuid=lab.medium_uuid,
        volume_uuid=uuid.uuid5(uuid.NAMESPACE_OID, "bench"),
        volume_name="bench",
        generation=number,
        base_generation=0,
        kind=fmt.GenerationKind.FULL,
        compression=fmt.Compression.ZSTD,
        block_size=BLOCK,
        record_size=lab.record_size,
        chunk_blocks=CHUNK // BLOCK,
        volume_size=volume,
        created=int(time.time()),
    )


def _chunks(volume: int, rng: random.Random) -> list[tuple[fmt.ChunkIndexEntry, bytes]]:
    per = CHUNK // BLOCK
    out = []
    for seq in range(-(-volume // CHUNK)):
        e = fmt.ChunkIndexEntry(
            seq=seq,
            record=1 + 17 * seq,
            record_count=17,
            stored_len=CHUNK,
            raw_len=CHUNK,
            payload_crc=rng.getrandbits(32),
            runs=(fmt.Run(seq * per, per),),
        )
        out.append((e, rng.randbytes(16 * per)))
    return out


def _one(
    cat: Catalog, lab: fmt.Label, number: int, chunks: list[tuple[fmt.ChunkIndexEntry, bytes]], batch: int
) -> float:
    hdr = _header(lab, number, VOLUME)
    t0 = time.perf_counter()
    gid = cat.begin_generation(hdr, medium_uuid=lab.medium_uuid, tape_file=number, logical=number * 10_000)
    for i in range(0, len(chunks), batch):
        cat.add_chunks(gid, lab.medium_uuid, number, number * 10_000, chunks[i : i + batch])
    cat.finish_generation(
        gid, state="auto", medium_uuid=lab.medium_uuid, tape_file=number, closed=True, has_trailer=True, final=True
    )
    return time.perf_counter() - t0


def measure(spec: str, generations: int = 5, volume: int = VOLUME) -> dict[str, Any]:
    """Seconds per generation (median) recorded into the catalog ``spec``: per chunk (a backup)
    and in batches of 256 (scan)."""
    rng = random.Random(17)
    chunks = _chunks(volume, rng)
    per_chunk, batched = [], []
    with Catalog(spec) as cat:
        lab = _label(uuid.uuid4())
        cat.record_medium(lab)
        n = 0
        for _ in range(generations):
            n += 1
            per_chunk.append(_one(cat, lab, n, chunks, 1))
            n += 1
            batched.append(_one(cat, lab, n, chunks, 256))
        kind = cat.kind
    backup = statistics.median(per_chunk)
    return {
        "backend": kind,
        "generations": generations,
        "chunks_per_generation": len(chunks),
        "backup_seconds_per_generation": round(backup, 4),
        "backup_ms_per_chunk": round(1000 * backup / len(chunks), 3),
        "scan_seconds_per_generation": round(statistics.median(batched), 4),
    }


def compare(workdir: str, pg_url: str | None = None, generations: int = 5) -> dict[str, Any]:
    """SQLite (a file in ``workdir``) and PostgreSQL (``pg_url``, else a throw-away cluster),
    with the ratio of their backup times per generation."""
    out: dict[str, Any] = {"sqlite": measure(os.path.join(workdir, "bench-catalog.sqlite"), generations)}
    cluster = None
    try:
        if pg_url is None:
            from tests.pgsupport import start_server

            server, cluster = start_server(durable=True)
            _, pg_url = server.new_database("bench")
        out["postgresql"] = measure(pg_url, generations)
    except BaseException as e:  # no PostgreSQL here (pytest's skip too): the SQLite figures alone
        if isinstance(e, KeyboardInterrupt):
            raise
        out["postgresql"], out["why"] = None, f"{type(e).__name__}: {e}"
    finally:
        if cluster is not None:
            cluster.stop()
    if out["postgresql"] is not None:
        s, p = out["sqlite"], out["postgresql"]
        out["ratio"] = round(p["backup_seconds_per_generation"] / s["backup_seconds_per_generation"], 2)
        out["scan_ratio"] = round(p["scan_seconds_per_generation"] / s["scan_seconds_per_generation"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postgresql", help="a PostgreSQL catalog URL (an empty database); default: a throw-away cluster")
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--dir", help="folder of the SQLite catalog (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        print(json.dumps(compare(d, args.postgresql, args.generations), indent=2))


if __name__ == "__main__":
    main()
