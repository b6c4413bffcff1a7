"""Many writers at once into one catalog, on both backends: 4 processes, started together on a
new empty catalog (so they also create its schema at once), each records 13 generations (52 in
all) of its own volume on its own medium of one shared media set, as a backup does (begin,
add_chunks in two calls, finish). Afterwards every row is there exactly once: one media set, 4
media, 4 volumes, 52 generations (each complete, with its run UUID), 52 tape files, 52 x 6
chunks, and no duplicate in any unique key."""

from __future__ import annotations

import multiprocessing
import random
import uuid
from multiprocessing.synchronize import Barrier

from tapearc.catalog.db import Catalog
from tests.catalog.fakes import entries, header, label

SET = uuid.UUID("22222222-3333-4444-5555-666666666666")
PROCESSES = 4
GENERATIONS = 13
CHUNKS = 6


def _writer(spec: str, index: int, barrier: Barrier, out: multiprocessing.Queue[tuple[int, list[str] | str]]) -> None:
    try:
        out.put((index, _write(spec, index, barrier)))
    except BaseException as e:  # the test says what went wrong in which writer
        out.put((index, f"{type(e).__name__}: {e}"))


def _write(spec: str, index: int, barrier: Barrier) -> list[str]:
    rng = random.Random(index)
    barrier.wait()
    runs = []
    with Catalog(spec) as cat:
        lab = label(SET, index + 1, f"W{index}")
        cat.record_medium(lab)
        for n in range(1, GENERATIONS + 1):
            h = header(lab, f"vol-{index}", n, base=n - 1)
            gid = cat.begin_generation(h, medium_uuid=lab.medium_uuid, tape_file=n, logical=n * 100)
            chunks = entries(CHUNKS, rng=rng)
            cat.add_chunks(gid, lab.medium_uuid, n, n * 100, chunks[:3])
            cat.add_chunks(gid, lab.medium_uuid, n, n * 100, chunks[3:])
            cat.finish_generation(
                gid, state="auto", medium_uuid=lab.medium_uuid, tape_file=n, closed=True, has_trailer=True, final=True
            )
            runs.append(str(h.run_uuid))
    return runs


def _count(cat: Catalog, sql: str) -> int:
    return int(cat.db.execute(sql).fetchone()[0])


def test_many_writers_lose_and_duplicate_nothing(catalog_spec: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    out: multiprocessing.Queue[tuple[int, list[str] | str]] = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(catalog_spec, i, barrier, out)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    failed = {i: r for i, r in got.items() if isinstance(r, str)}
    assert not failed
    results = {i: r for i, r in got.items() if not isinstance(r, str)}
    written = {r for runs in results.values() for r in runs}
    assert len(written) == PROCESSES * GENERATIONS >= 50

    with Catalog(catalog_spec) as cat:
        assert _count(cat, "SELECT COUNT(*) FROM media_sets") == 1
        assert _count(cat, "SELECT COUNT(*) FROM media") == PROCESSES
        assert _count(cat, "SELECT COUNT(*) FROM volumes") == PROCESSES
        assert _count(cat, "SELECT COUNT(*) FROM generations") == PROCESSES * GENERATIONS
        assert _count(cat, "SELECT COUNT(*) FROM tape_files") == PROCESSES * GENERATIONS
        assert _count(cat, "SELECT COUNT(*) FROM chunks") == PROCESSES * GENERATIONS * CHUNKS
        assert _count(cat, "SELECT COUNT(*) FROM meta") == 1
        for table, key in (
            ("generations", "run_uuid"),
            ("generations", "volume_id, number"),
            ("chunks", "generation_id, seq"),
            ("tape_files", "medium_id, file_number"),
            ("media", "uuid"),
        ):
            dup = f"SELECT COUNT(*) FROM (SELECT {key} FROM {table} GROUP BY {key} HAVING COUNT(*) > 1) d"
            assert _count(cat, dup) == 0, (table, key)
        gens = cat.generations(SET)
        assert {str(g.run_uuid) for g in gens} == written
        assert all(g.state == "complete" and g.chunk_count == CHUNKS for g in gens)
        for i in range(PROCESSES):
            mine = [g for g in gens if g.volume == f"vol-{i}"]
            assert [g.number for g in mine] == list(range(1, GENERATIONS + 1))
            assert {str(g.run_uuid) for g in mine} == set(results[i])
