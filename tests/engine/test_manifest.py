"""The run-based manifests (engine/manifest.py) against the per-block reference (plan.manifest_at)
on random chains: same digests for every window, same all-zero answers, in memory or spilled to a
temporary file; and memory that follows the runs, not a volume size a header claims."""

from __future__ import annotations

import random
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import ChunkRow
from tapearc.engine import manifest as manifest_mod
from tapearc.engine.classify import ArrayManifest
from tapearc.engine.manifest import MappedDigests, RunManifest, build_manifest
from tapearc.engine.plan import chain_map, manifest_at

DL = fmt.DIGEST_LEN
RUN = fmt.Run
ZERO_KIND = fmt.RunKind.ZERO


@dataclass
class FakeGen:
    id: int
    number: int
    nblocks: int
    volume: str = "vol"
    volume_size: int = 0
    block_size: int = 1


@dataclass
class FakeCatalog:
    """The catalog's chunk read paths over chunks kept in lists (gen id -> [(chunk id, runs, digests)])."""

    chunks_of: dict[int, list[tuple[int, tuple[fmt.Run, ...], bytes]]] = field(default_factory=dict)

    def chunk_runs(self, gen_id: int) -> Any:
        return ((cid, runs) for cid, runs, _ in self.chunks_of[gen_id])

    def chunk_digests(self, gen_id: int) -> Any:
        return ((runs, d) for _, runs, d in self.chunks_of[gen_id])

    def chunk_digest_table(self, chunk_id: int) -> bytes:
        for rows in self.chunks_of.values():
            for cid, _, d in rows:
                if cid == chunk_id:
                    return d
        return b""

    def chunks(self, gen_id: int) -> list[ChunkRow]:
        return [
            ChunkRow(cid, gen_id, uuid.UUID(int=0), 1, 1, k, 0, 0, 1, 0, 0, 0, 0, runs)
            for k, (cid, runs, _) in enumerate(self.chunks_of[gen_id])
        ]


def _runs_over(rng: random.Random, lo: int, hi: int, p_skip: float) -> list[fmt.Run]:
    """Random runs over [lo, hi): data or zero, some stretches left out (p_skip)."""
    out = []
    b = lo
    while b < hi:
        n = min(hi - b, rng.choice([1, 1, 2, 3, 5, 8, 13, 40]))
        if rng.random() >= p_skip:
            out.append(RUN(b, n, ZERO_KIND if rng.random() < 0.35 else fmt.RunKind.DATA))
        b += n
    return out


def random_chain(rng: random.Random, gens: int = 4) -> tuple[FakeCatalog, list[FakeGen]]:
    cat = FakeCatalog()
    chain: list[FakeGen] = []
    cid = 100
    prev = 0
    for k in range(gens):
        n = rng.randint(0, 300) if k == 0 else max(0, prev + rng.randint(-40, 60))
        # a full generation maps every block; an incremental some of its base's and all past its end
        runs = (
            _runs_over(rng, 0, n, 0.0)
            if k == 0
            else _runs_over(rng, 0, min(prev, n), 0.6) + _runs_over(rng, min(prev, n), n, 0.0)
        )
        rng.shuffle(runs)  # chunks in any order of blocks
        rows = []
        while runs:
            take = runs[:1] + runs[1 : rng.randint(1, 4)]
            runs = runs[len(take) :]
            take.sort(key=lambda r: r.first)
            data = sum(r.count for r in take if not r.is_zero)
            digests = b"".join(
                bytes(DL) if rng.random() < 0.05 else rng.randbytes(DL) for _ in range(data)
            )  # now and then a data block whose digest is the zero digest
            rows.append((cid, tuple(take), digests))
            cid += 1
        cat.chunks_of[k + 1] = rows
        chain.append(FakeGen(k + 1, k + 1, n))
        prev = n
    return cat, chain


def _windows(rng: random.Random, n: int, in_order: bool) -> list[tuple[int, int]]:
    if n == 0:
        return []
    if in_order:
        out, b = [], 0
        while b < n:
            c = min(n - b, rng.randint(1, 50))
            out.append((b, c))
            b += c
        return out
    return [(a, rng.randint(1, n - a)) for a in (rng.randrange(n) for _ in range(60))]


@pytest.mark.parametrize("limit", [manifest_mod.MANIFEST_MEMORY, 0])
@pytest.mark.parametrize("seed", range(40))
def test_run_manifest_equals_the_per_block_manifest(seed: int, limit: int) -> None:
    rng = random.Random(seed)
    cat, chain = random_chain(rng, rng.randint(1, 5))
    ref = ArrayManifest(manifest_at(cat, chain), chain[-1].nblocks)  # type: ignore[arg-type]
    got = build_manifest(cat, chain, limit=limit)  # type: ignore[arg-type]
    assert (got.store.file is not None) == (limit == 0 and got.store.size > 0)
    assert got.nblocks == ref.nblocks
    for in_order in (True, False):
        for a, c in _windows(rng, ref.nblocks, in_order):
            assert bytes(got.digests(a, c)) == bytes(ref.digests(a, c)), (a, c)
            assert got.all_zero(a, c) == ref.all_zero(a, c), (a, c)
    got.close()


@pytest.mark.parametrize("seed", range(20))
def test_mapped_digests_equal_the_per_block_manifest(seed: int) -> None:
    rng = random.Random(1000 + seed)
    cat, chain = random_chain(rng, rng.randint(1, 4))
    ref = ArrayManifest(manifest_at(cat, chain), chain[-1].nblocks)  # type: ignore[arg-type]
    cm = chain_map(cat, chain, set())  # type: ignore[arg-type]
    got = MappedDigests(cat, cm.map, (c.id for c in cm.chunks))  # type: ignore[arg-type]
    for in_order in (True, False):
        for a, c in _windows(rng, ref.nblocks, in_order):
            assert bytes(got.digests(a, c) or b"") == bytes(ref.digests(a, c)), (a, c)
            assert got.all_zero(a, c) == ref.all_zero(a, c), (a, c)


def test_run_manifest_intervals_follow_the_extents() -> None:
    """Zero runs and data runs alternate: one interval each, whatever chunks they came from."""
    cat = FakeCatalog()
    d = bytes(range(16)) * 30
    cat.chunks_of[1] = [
        (1, (RUN(0, 10), RUN(10, 20, ZERO_KIND)), d[: 10 * DL]),
        (2, (RUN(30, 20),), d[: 20 * DL]),
        (3, (RUN(50, 50, ZERO_KIND),), b""),
    ]
    m = build_manifest(cat, [FakeGen(1, 1, 100)])  # type: ignore[arg-type]
    assert list(zip(m.starts, m.ends, m.offs, strict=True)) == [
        (0, 10, 0),
        (10, 30, -1),
        (30, 50, 10 * DL),
        (50, 100, -1),
    ]


def test_a_claimed_huge_volume_costs_its_runs_not_its_size() -> None:
    """A generation claiming 2**40 blocks held in a few runs: a few intervals, a few digests."""
    n = 1 << 40
    cat = FakeCatalog()
    cat.chunks_of[1] = [(1, (RUN(0, 4), RUN(4, n - 8, ZERO_KIND), RUN(n - 4, 4)), bytes(range(16)) * 8)]
    tracemalloc.start()
    m = build_manifest(cat, [FakeGen(1, 1, n)])  # type: ignore[arg-type]
    md = MappedDigests.of_chain(cat, [FakeGen(1, 1, n)])  # type: ignore[arg-type]
    assert m.all_zero(4, n - 8) and md.all_zero(4, n - 8)
    assert bytes(m.digests(n - 4, 4)) == bytes(range(16)) * 4 == bytes(md.digests(n - 4, 4) or b"")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(m) == 3 and m.store.size == 8 * DL
    assert peak < 1 << 20


def test_digests_of_windows_in_order_need_no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup asks for one window after the other: the interval is found from the last one."""
    rng = random.Random(7)
    cat, chain = random_chain(rng, 1)
    m = build_manifest(cat, chain)  # type: ignore[arg-type]
    calls = 0
    real = manifest_mod.bisect.bisect_right

    def counting(*a: Any) -> int:
        nonlocal calls
        calls += 1
        return real(*a)

    monkeypatch.setattr(manifest_mod.bisect, "bisect_right", counting)
    for b in range(m.nblocks):
        m.digests(b, 1)
    assert calls == 0


def _chain_of_backups(tmp_path: Path, seed: int) -> list[tuple[int, int, int, bytes]]:
    """A random chain of real backups: (data blocks, zero blocks, unchanged blocks, restored bytes) each."""
    from tests.engine.test_incremental import do_backup, do_restore, mutate

    rng = random.Random(seed)
    spec = f"dir:{tmp_path / 'm'}"
    src = tmp_path / "vol.img"
    data = bytearray(rng.randbytes(40 * 4096) + bytes(30 * 4096) + rng.randbytes(1000))
    out = []
    for g in range(6):
        if g:
            data = mutate(rng, data)
        src.write_bytes(bytes(data))
        res = do_backup(spec, src)
        do_restore(spec, str(tmp_path / f"r{g}"), generation=g + 1)
        out.append((res.data_blocks, res.zero_blocks, res.unchanged_blocks, (tmp_path / f"r{g}").read_bytes()))
        assert out[-1][3] == bytes(data)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_incrementals_are_the_same_with_the_base_spilled_to_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """With the base's digests in a temporary file, each incremental stores exactly what it
    stores with them in memory."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / "a" / "cat.sqlite"))
    in_memory = _chain_of_backups(tmp_path / "a", seed)
    monkeypatch.setattr(manifest_mod, "MANIFEST_MEMORY", 0)
    spilled: list[tuple[RunManifest, bool]] = []
    real = manifest_mod.build_manifest

    def build(*a: Any, **kw: Any) -> RunManifest:
        m = real(*a, **kw, limit=0)
        spilled.append((m, m.store.file is not None))
        return m

    monkeypatch.setattr("tapearc.engine.genplan.build_manifest", build)
    monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / "b" / "cat.sqlite"))
    assert _chain_of_backups(tmp_path / "b", seed) == in_memory
    assert len(spilled) == 5 and any(in_file for _, in_file in spilled)
    assert all(m.store.file is None for m, _ in spilled)  # each backup closed its base's temporary file


def _write_sparse(path: Path, data: bytes, bs: int) -> None:
    """``data`` as a sparse file: zero blocks are holes."""
    with open(path, "wb") as f:
        f.truncate(len(data))
        for o in range(0, len(data), bs):
            blk = data[o : o + bs]
            if blk.count(0) != len(blk):
                f.seek(o)
                f.write(blk)


@pytest.mark.parametrize("window", [4096, 3 * 4096, 4 << 20])
def test_detect_generation_streams_the_target_against_every_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """For targets holding each generation (sparse files), detection names the first generation
    in preference order (the one restored, then newest first) whose content the target holds,
    whatever the window it reads in."""
    from tapearc.catalog.db import Catalog
    from tapearc.engine import restore as restore_mod
    from tests.engine.test_incremental import do_backup

    monkeypatch.setattr(restore_mod, "_DETECT_WINDOW", window)
    monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / "cat.sqlite"))
    rng = random.Random(5)
    src = tmp_path / "vol.img"
    bs = 4096
    data = bytearray(rng.randbytes(20 * bs) + bytes(30 * bs) + rng.randbytes(5 * bs + 100))
    versions = []
    for g in range(5):  # same size each; each differs from the others in one block but 4 (= 2)
        if g == 1:
            data[3 * bs : 4 * bs] = rng.randbytes(bs)  # data rewritten
        elif g == 2:
            data[30 * bs : 31 * bs] = rng.randbytes(bs)  # data where a zero block was
        elif g == 3:
            data = bytearray(versions[1])  # generation 2's content again
        elif g == 4:
            data[54 * bs : 55 * bs] = bytes(bs)  # a data block zeroed
        src.write_bytes(bytes(data))
        do_backup(f"dir:{tmp_path / 'm'}", src)
        versions.append(bytes(data))
    assert len(set(versions)) == 4
    tgt = tmp_path / "target.img"
    with Catalog() as cat:
        gens = cat.generations(_set_of(cat))
        for k, held in enumerate(versions, 1):
            _write_sparse(tgt, held, 4096)
            for n in range(1, 6):
                order = [n] + [g for g in range(5, 0, -1) if g != n]
                want = next((g for g in order if versions[g - 1] == held), None)
                got = restore_mod.detect_generation(cat, gens, str(tgt), len(held), False, prefer=n)
                assert got == want, (k, n)
        _write_sparse(tgt, bytes(len(versions[-1])), 4096)  # all holes: no generation (none is all zero)
        assert restore_mod.detect_generation(cat, gens, str(tgt), len(versions[-1]), False, prefer=5) is None


def _set_of(cat: Any) -> uuid.UUID:
    return uuid.UUID(str(cat.db.execute("SELECT uuid FROM media_sets").fetchone()[0]))


@pytest.mark.parametrize("seed", range(30))
def test_runs_map_checks_as_chain_map_checks(seed: int) -> None:
    """MappedDigests.of_chain (runs alone) refuses exactly the chains chain_map refuses, and
    maps the others the same way."""
    from tapearc.engine.plan import runs_map
    from tapearc.errors import MalformedError

    rng = random.Random(3000 + seed)
    cat, chain = random_chain(rng, rng.randint(1, 4))
    g = rng.choice(chain)
    rows = cat.chunks_of[g.id]
    what = rng.random()
    if rows and what < 0.3:
        del rows[rng.randrange(len(rows))]  # blocks left unaccounted for (or nothing, in an incremental)
    elif rows and what < 0.6:
        _, runs, d = rng.choice(rows)
        rows.append((999, runs, d))  # blocks mapped twice
    elif what < 0.8:
        g.nblocks = max(0, g.nblocks - rng.randint(1, 5))  # chunks past the end it claims
    errors = []
    for build in (lambda: chain_map(cat, chain), lambda: runs_map(cat, chain, check=True)):  # type: ignore[arg-type]
        try:
            errors.append(build())
        except MalformedError as e:
            errors.append(e.message)
    if isinstance(errors[0], str) or isinstance(errors[1], str):
        assert errors[0] == errors[1]
    else:
        cm, (bmap, ids) = errors
        assert [(s, e, cm.chunk_id(v)) for s, e, v, _ in cm.map] == [
            (s, e, ids[v] if v >= 0 else v) for s, e, v, _ in bmap
        ]


@pytest.mark.parametrize("how", ["cut", "eio"])
def test_digest_store_failing_to_read_back(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The base's digests in a temporary file that is cut underneath or fails to read: one
    TempFileError (exit 28) naming what and the folder; the store closes as a context manager."""
    import errno
    import os
    import tempfile

    from tapearc.engine.manifest import DigestStore
    from tapearc.errors import TempFileError

    with DigestStore(64, limit=0) as store:
        store.write(0, bytes(range(64)))
        assert store.file is not None
        if how == "cut":
            os.ftruncate(store.file.fileno(), 16)
        else:

            def eio(*a: object) -> bytes:
                raise OSError(errno.EIO, "Input/output error")

            monkeypatch.setattr(manifest_mod.os, "pread", eio)
        with pytest.raises(TempFileError, match="cannot read back the base generation's block digests") as info:
            store.read(16, 32)
        assert tempfile.gettempdir() in str(info.value) and info.value.exit_code == 28
    assert store.file is None
