"""Packing chunk payloads in worker threads: the same media bytes as the plain path (sim image,
dir medium, spanning over three small media), the seal hook re-run after a part change, bounded
memory, and a failing worker surfacing as its error with no hang."""

from __future__ import annotations

import functools
import random
import threading
import uuid
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine import backup as backup_mod
from tapearc.engine import packers
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.genwriter import GenerationWriter
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import DamagedDataError
from tapearc.media import open_medium

tapesim_library = pytest.importorskip("tapesim.library")

KiB = 1024
CLOCK = 1_700_000_000


def _volume(path: Path, size: int = 3 * 1024 * KiB + 777, seed: int = 5) -> bytes:
    """Random, zero and compressible stretches of 48 KiB (chunks of every kind)."""
    rng = random.Random(seed)
    out = bytearray()
    k = 0
    while len(out) < size:
        kind = k % 3
        if kind == 0:
            out += rng.randbytes(48 * KiB)
        elif kind == 1:
            out += bytes(48 * KiB)
        else:
            out += (b"tape archive %d " % k) * (48 * KiB // 16)
        k += 1
    data = bytes(out[:size])
    path.write_bytes(data)
    return data


def _tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.endswith("lock")
    }


def _fixed_uuids(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(42)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128), version=4))


def _writer_with(monkeypatch: pytest.MonkeyPatch, **kw: object) -> None:
    """backup() builds its GenerationWriter with these extra arguments (workers, seal)."""
    monkeypatch.setattr(backup_mod, "GenerationWriter", functools.partial(GenerationWriter, **kw))


def _backup(spec: str, src: Path, media_source: bool = False, **opts: object):
    opts = {"record_size": 64 * KiB, "chunk_size": 128 * KiB, "block_size": 16 * KiB, **opts}
    with Catalog() as cat:
        if media_source:
            with MediaSource(spec, write=True, catalog=cat) as media:
                return backup(str(src), media, cat, BackupOptions(**opts), clock=lambda: CLOCK)  # type: ignore[arg-type]
        with open_medium(spec, write=True) as drive:
            return backup(str(src), drive, cat, BackupOptions(**opts), clock=lambda: CLOCK)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sim", "dir"])
@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_parallel_packing_writes_the_same_media_as_the_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, compress: str
) -> None:
    src = tmp_path / "vol.img"
    data = _volume(src)
    media = {}
    for workers in (0, 4):
        _fixed_uuids(monkeypatch)
        _writer_with(monkeypatch, workers=workers)
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat{workers}.sqlite"))
        medium = tmp_path / f"m{workers}.{kind}"
        res = _backup(f"{kind}:{medium}", src, compress=compress)
        assert res.complete and res.chunks > 20
        media[workers] = _tree(medium)
        out = tmp_path / f"out{workers}.img"
        with Catalog() as cat, open_medium(f"{kind}:{medium}", write=False) as drive:
            restore(drive, cat, str(out), RestoreOptions())
        assert out.read_bytes() == data
    assert media[0].keys() == media[4].keys()
    for name in media[0]:
        assert media[0][name] == media[4][name], f"{kind} medium differs in {name or 'the image'}"


def test_spanning_over_three_media_same_bytes_and_sealed_for_the_part_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup over three small media of a library: the same tapes with and without workers,
    and every chunk was (re)sealed for the part it was written into."""
    src = tmp_path / "vol.img"
    data = _volume(src, size=2 * 1024 * KiB + 333, seed=9)
    tapes = {}
    for workers in (0, 4):
        calls: list[tuple[int, int]] = []
        lock = threading.Lock()

        def seal(
            gen: fmt.GenerationHeader,
            chunk: fmt.ChunkHeader,
            inner: packers.Buf,
            calls: list[tuple[int, int]] = calls,
            lock: threading.Lock = lock,
        ) -> tuple[packers.Buf, int]:
            with lock:
                calls.append((chunk.seq, gen.part))
            return inner, 0

        written: list[tuple[int, int, int]] = []
        orig = GenerationWriter._write_chunk

        def write_chunk(
            self: GenerationWriter,
            job: packers.ChunkJob,
            written: list[tuple[int, int, int]] = written,
            orig=orig,
        ) -> bool:
            assert self.part is not None and job.gen is not None
            written.append((job.seq, job.gen.part, self.part.number))
            return orig(self, job)

        monkeypatch.setattr(GenerationWriter, "_write_chunk", write_chunk)
        _fixed_uuids(monkeypatch)
        _writer_with(monkeypatch, workers=workers, seal=seal)
        monkeypatch.setenv("TAPEARC_CATALOG", str(tmp_path / f"cat{workers}.sqlite"))
        lib = tmp_path / f"lib{workers}"
        tapesim_library.create_library(str(lib), 5, 640 * KiB, early_warning=128 * KiB, max_record=1024 * KiB)
        res = _backup(f"sim:{lib}", src, media_source=True, compress="none", chunk_size=256 * KiB)
        assert res.complete and len(res.parts) == 3, res.parts
        assert all(sealed_for == part for _, sealed_for, part in written)
        # chunks packed for one part and written into the next were sealed again
        resealed = {seq for seq, part in calls if (seq, part - 1) in calls}
        assert resealed, calls
        tapes[workers] = _tree(lib)
        out = tmp_path / f"out{workers}.img"
        with Catalog() as cat, MediaSource(f"sim:{lib}", write=False, catalog=cat) as media:
            restore(media, cat, str(out), RestoreOptions())
        assert out.read_bytes() == data
        monkeypatch.setattr(GenerationWriter, "_write_chunk", orig)
    assert tapes[0].keys() == tapes[4].keys()
    for name in tapes[0]:
        assert tapes[0][name] == tapes[4][name], f"library differs in {name}"


@pytest.mark.parametrize("error", [DamagedDataError, RuntimeError])
def test_failing_worker_surfaces_as_its_error_without_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    src = tmp_path / "vol.img"
    _volume(src)

    def seal(gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: packers.Buf) -> tuple[packers.Buf, int]:
        if chunk.seq == 7:
            raise error("the seal failed on chunk 7")
        return inner, 0

    _writer_with(monkeypatch, workers=4, seal=seal)
    with pytest.raises(error, match="chunk 7"):
        _backup(f"sim:{tmp_path / 'm.sim'}", src, compress="zstd")
    with Catalog() as cat:
        states = [g.state for g in cat.generations_from_source(str(src))]
    assert states and "auto" not in states, states
    for t in threading.enumerate():  # the workers stop (a bounded wait, not a timing)
        if t.name.startswith("tapearc-pack"):
            t.join(10)
            assert not t.is_alive()


def test_chunks_in_flight_and_buffers_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is fixed: depth + 1 chunk buffers whatever the volume's size."""
    src = tmp_path / "vol.img"
    _volume(src, size=4 * 1024 * KiB)
    made: list[int] = []
    orig = GenerationWriter.close_part

    def close_part(self: GenerationWriter, **kw: bool) -> None:
        made.append(self.packers.made)
        orig(self, **kw)

    monkeypatch.setattr(GenerationWriter, "close_part", close_part)
    _writer_with(monkeypatch, workers=2)
    res = _backup(f"sim:{tmp_path / 'm.sim'}", src, compress="zstd")
    assert res.chunks > 20
    assert made and max(made) <= 2 * 2 + 1


# ---------------------------------------------------------------- restore side


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_parallel_decoding_restores_and_reports_damage_like_the_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: str
) -> None:
    """Chunks damaged in their payload (CRC) and in their header, between good ones: the same
    restored image, the same damage report (chunks, order, messages) with and without workers."""
    from tapearc.engine import restore as restore_mod
    from tapearc.engine.tapefiles import Item

    src = tmp_path / "vol.img"
    data = _volume(src)
    spec = f"sim:{tmp_path / 'm.sim'}"
    res = _backup(spec, src, compress=compress)
    assert res.chunks > 20
    orig_read_item = restore_mod.read_item
    hits = {3: "payload", 4: "payload", 9: "header", 17: "payload"}  # the n-th chunk item read

    def read_item(drive: object) -> object:
        item = orig_read_item(drive)  # type: ignore[arg-type]
        read_item.n += 1  # type: ignore[attr-defined]
        how = hits.get(read_item.n)  # type: ignore[attr-defined]
        if how is None or not isinstance(item, Item):
            return item
        buf = bytearray(item.data)
        buf[len(buf) - 5 if how == "payload" else 40] ^= 0x5A
        return Item(item.magic, bytes(buf), item.tape_file, item.record, item.logical, item.record_sizes)

    monkeypatch.setattr(restore_mod, "read_item", read_item)
    reports = {}
    for workers in (0, 4):
        read_item.n = 0  # type: ignore[attr-defined]
        monkeypatch.setattr(restore_mod, "worker_count", lambda w=workers: max(w, 1))
        monkeypatch.setenv("TAPEARC_PIPELINE", "1" if workers else "0")
        out = tmp_path / f"out{workers}.img"
        with Catalog() as cat, open_medium(spec, write=False) as drive:
            r = restore(drive, cat, str(out), RestoreOptions())
        rep = r.to_json()
        rep.pop("seconds", None)
        rep.pop("mb_per_s", None)
        rep.pop("target", None)
        reports[workers] = (rep, out.read_bytes())
        assert len(r.damaged_chunks) == 4 and r.lost
    assert reports[0] == reports[4]
    lost = {b for x in reports[0][0]["lost"] for b in range(x["blocks"][0], x["blocks"][1] + 1)}  # type: ignore[index]
    bs = 16 * KiB
    got = reports[0][1]
    for b in range(len(data) // bs):
        if b not in lost:
            assert got[b * bs : (b + 1) * bs] == data[b * bs : (b + 1) * bs], b


def _chunk(data: bytes, compress: bool = True) -> tuple[fmt.ChunkHeader, bytes]:
    h, _, stored = fmt.build_chunk(
        run_uuid=uuid.UUID(int=1),
        generation=1,
        seq=3,
        block_size=len(data),
        volume_size=len(data),
        runs=[fmt.Run(0, 1, fmt.RunKind.DATA)],
        raw_payload=data,
        compress=compress,
    )
    return h, bytes(stored)


def test_unpack_into_reused_buffer_same_result_and_errors_as_unpack_payload() -> None:
    data = (b"tape archive words " * 40000)[: 512 * KiB]
    h, stored = _chunk(data)
    assert h.compressed
    out = bytearray(len(data) + 7)
    got = packers.unpack_into(h, stored, out)
    assert isinstance(got, memoryview) and got.obj is out and bytes(got) == data
    raw_h, raw = _chunk(data, compress=False)
    assert bytes(packers.unpack_into(raw_h, raw, out)) == data  # stored raw: not copied into out
    bad = {
        "trailing byte": stored + b"\0",
        "truncated": stored[:-3],
        "corrupted": stored[:12] + bytes(len(stored) - 12),
        "another frame": _chunk(data[:-1])[1],
    }
    for what, payload in bad.items():
        with pytest.raises(Exception) as plain:
            fmt.unpack_payload(h, payload)
        with pytest.raises(Exception) as reused:
            packers.unpack_into(h, payload, out)
        assert (type(reused.value), str(reused.value)) == (type(plain.value), str(plain.value)), what


def test_out_buffers_reused_only_once_nothing_refers_to_them() -> None:
    o = packers.OutBuffers()
    a = o.get(10)
    b = o.get(10)
    assert a is not b
    view = memoryview(a)[2:5]
    del a
    c = o.get(10)
    assert c is not b and len(o.buffers) == 3  # b is held by its name, a by the view
    del b
    assert o.get(10) is o.buffers[1]
    del view
    assert o.get(10) is o.buffers[0]
    assert len(o.get(20)) == 20 and len(o.buffers) == 1  # a larger chunk: the small ones go
