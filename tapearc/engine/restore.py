"""Restore a generation of a volume: plan with the catalog, read each medium once, forward.

The planner (:mod:`tapearc.engine.plan`) says which chunks hold the newest version of each
block; this module positions the medium to each of them in turn (LOCATE past what is not
needed), checks every chunk (header CRC, payload CRC, that it is the chunk the catalog
expects) and writes the needed blocks to a *sink*:

- a new file: written sparse under a temporary name, renamed into place when complete;
- a block device: zero blocks are written as zeros;
- a target that already holds generation K (checked against K's digest manifest, or asserted
  with ``assume_generation``): rolled forward in place, writing only the blocks that differ;
- a stream (``-``): the image in block order, with bounded memory (blocks that arrive before
  their turn wait in a sparse temporary spool file).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, GenerationRow
from tapearc.engine.layout import MAGIC_CHUNK, read_item
from tapearc.engine.plan import DIGEST_LEN, Plan, PlannedRead, fallback_reads, load_chain, make_plan, manifest_at
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.scan import follow_set, sync_medium
from tapearc.engine.pipeline import Worker
from tapearc.engine.volume import RestoreTarget, _blockdev_size, pwrite_all, zero_fill
from tapearc.errors import (
    BadMagicError,
    MalformedError,
    MediumError,
    NoSuchGenerationError,
    TapearcError,
    TargetError,
    TargetTooSmallError,
    TruncatedError,
    UsageError,
)
from tapearc.media.base import Mark, TapeDrive


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    generation: int | None = None  # None: the latest complete one
    volume: str | None = None  # None: the only volume of the media set
    force: bool = False
    assume_generation: int | None = None  # the target holds this generation already
    fallback_older: bool = False  # use older versions of blocks whose chunk is damaged


@dataclass(slots=True)
class RestoreResult:
    medium: str
    volume: str
    generation: int
    target: str
    volume_size: int
    block_size: int
    mode: str = "new"  # new | device | roll-forward | stream
    media_used: list[str] = field(default_factory=list)
    lost: list[dict[str, object]] = field(default_factory=list)  # block ranges that could not be restored
    fallback: list[dict[str, object]] = field(default_factory=list)  # blocks restored from older versions
    damaged_chunks: list[dict[str, object]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # damaged or rebuilt generations met on the media
    from_generation: int | None = None
    chunks_read: int = 0
    blocks_written: int = 0
    blocks_zeroed: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        d = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        d["mb_per_s"] = round(self.volume_size / self.seconds / 1e6, 2) if self.seconds > 0 else None
        return d


def choose_volume(catalog: Catalog, label: fmt.Label, volume: str | None, medium: str) -> str:
    names = catalog.volumes(label.media_set_uuid)
    if volume is not None:
        if volume not in names:
            raise NoSuchGenerationError(
                f"media set holds no volume named {volume!r}" + (f" (it holds: {', '.join(names)})" if names else "")
            ).at(medium=medium)
        return volume
    if not names:
        raise NoSuchGenerationError("medium holds no backup generation").at(medium=medium)
    if len(names) > 1:
        raise UsageError(f"medium holds several volumes ({', '.join(names)}); choose one with --volume").at(medium=medium)
    return names[0]


def prepare_plan(
    media: MediaSource | TapeDrive,
    catalog: Catalog,
    options: RestoreOptions,
    *,
    have: int | None = None,
    zero_target: bool = True,
) -> tuple[fmt.Label, list[GenerationRow], Plan]:
    """Bring the catalog up to date with the medium in the drive (and, with a changer, with the
    other media of its set that spanning generations need) and plan the restore."""
    if not isinstance(media, MediaSource):
        media = MediaSource.fixed(media, catalog)
    drive = media.current()
    notes: list[str] = []
    label = sync_medium(drive, catalog, notes)
    if media.can_change:
        follow_set(media, catalog, label)
    volume = choose_volume(catalog, label, options.volume, drive.name)
    try:
        chain = load_chain(catalog, label.media_set_uuid, volume, options.generation)
    except TapearcError as e:
        raise e.at(medium=drive.name)
    plan = make_plan(catalog, chain, have=have, zero_target=zero_target)
    plan.warnings.extend(notes)
    return label, chain, plan


class Sink(Protocol):
    def write(self, offset: int, data: memoryview) -> None: ...
    def zero(self, offset: int, length: int) -> None: ...
    def lost(self, offset: int, length: int) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class _TargetSink:
    """New file or block device (through RestoreTarget)."""

    def __init__(self, target: RestoreTarget) -> None:
        self.t = target

    def lost(self, offset: int, length: int) -> None:
        self.t.zero_range(offset, length)  # a lost range reads as zeros, never as stale data

    def write(self, offset: int, data: memoryview) -> None:
        self.t.write_at(data, offset)

    def zero(self, offset: int, length: int) -> None:
        self.t.zero_range(offset, length)

    def commit(self) -> None:
        self.t.commit()

    def abort(self) -> None:
        self.t.abort()


class _ThreadedSink:
    """Runs another sink's writes in a writer thread (pipeline.Worker), in the order given, so
    the next chunk is read and checked while this one is written. Errors (a full target) come
    back at the next call or at commit."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.w = Worker()

    def write(self, offset: int, data: memoryview) -> None:
        self.w.submit(self.inner.write, offset, data, nbytes=len(data))

    def zero(self, offset: int, length: int) -> None:
        self.w.submit(self.inner.zero, offset, length)

    def lost(self, offset: int, length: int) -> None:
        self.w.submit(self.inner.lost, offset, length)

    def commit(self) -> None:
        self.w.drain()
        self.w.close()
        self.inner.commit()

    def abort(self) -> None:
        self.w.close()
        self.inner.abort()


class _InPlaceSink:
    """A target that holds an earlier generation: rolled forward in place."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR)
        except OSError as e:
            raise TargetError(f"cannot open target {path}: {e.strerror}") from None
        st = os.fstat(self.fd)
        self.is_device = stat.S_ISBLK(st.st_mode)
        if self.is_device:
            have = _blockdev_size(self.fd)
            if have < size:
                os.close(self.fd)
                raise TargetTooSmallError(f"target device {path} holds {have} bytes, the volume needs {size}")
        else:
            try:
                os.ftruncate(self.fd, size)
            except OSError as e:
                os.close(self.fd)
                raise TargetError(f"cannot resize target {path} to {size} bytes: {e.strerror}") from None

    def write(self, offset: int, data: memoryview) -> None:
        pwrite_all(self.fd, self.path, data, offset)

    def lost(self, offset: int, length: int) -> None:
        self.zero(offset, length)

    def zero(self, offset: int, length: int) -> None:
        zero_fill(self.fd, self.path, offset, length, device=self.is_device)

    def commit(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)

    def abort(self) -> None:
        os.close(self.fd)


class _StreamSink:
    """The image in block order on a stream, whatever order the blocks arrive in.

    Blocks that arrive before their turn go to a sparse temporary spool file; memory holds only
    two bytes per block (needed / arrived) and one chunk.
    """

    def __init__(self, out: BinaryIO, plan: Plan) -> None:
        self.out = out
        self.bs = plan.block_size
        self.size = plan.volume_size
        self.n = plan.nblocks
        self.need = bytearray(self.n)
        for r in plan.reads:
            for a, c in r.runs:
                self.need[a : a + c] = b"\x01" * c
        self.got = bytearray(self.n)
        self.cursor = 0  # next block to emit
        self.spool: BinaryIO | None = None
        self.spooled = 0
        self._zeros = bytes(min(1 << 20, max(self.bs, 1 << 16)))

    def _emit(self, data: bytes | memoryview) -> None:
        try:
            self.out.write(data)
        except BrokenPipeError:
            raise TargetError("the output stream was closed before the restore finished") from None
        except OSError as e:
            raise TargetError(f"writing the output stream failed: {e.strerror}") from None

    def _emit_zeros(self, length: int) -> None:
        while length > 0:
            k = min(length, len(self._zeros))
            self._emit(memoryview(self._zeros)[:k])
            length -= k

    def _len(self, b0: int, b1: int) -> int:
        return min(b1 * self.bs, self.size) - b0 * self.bs

    def write(self, offset: int, data: memoryview) -> None:
        b0 = offset // self.bs
        b1 = b0 + -(-len(data) // self.bs)
        if b0 == self.cursor:
            self._emit(data)
            self.cursor = b1
        else:
            if self.spool is None:
                self.spool = tempfile.TemporaryFile(prefix="tapearc-spool-")
            self.spool.seek(offset)
            self.spool.write(data)
            self.spooled += len(data)
        self.got[b0:b1] = b"\x01" * (b1 - b0)
        self._advance()

    def _advance(self) -> None:
        while self.cursor < self.n:
            c = self.cursor
            if not self.need[c]:
                j = self.need.find(1, c)
                j = self.n if j < 0 else j
                self._emit_zeros(self._len(c, j))
                self.cursor = j
            elif self.got[c]:
                j = self.got.find(0, c)
                j = self.n if j < 0 else j
                k = self.need.find(0, c, j)
                j = j if k < 0 else k
                assert self.spool is not None
                off = c * self.bs
                end = off + self._len(c, j)
                self.spool.seek(off)
                while off < end:
                    buf = self.spool.read(min(1 << 20, end - off))
                    if not buf:
                        raise TargetError("restore spool file ended early")
                    self._emit(buf)
                    off += len(buf)
                self.cursor = j
            else:
                return

    def zero(self, offset: int, length: int) -> None:
        pass  # blocks not needed are emitted as zeros in order

    def lost(self, offset: int, length: int) -> None:
        b0 = offset // self.bs
        b1 = b0 + -(-length // self.bs)
        self.need[b0:b1] = bytes(b1 - b0)  # emitted as zeros
        self._advance()

    def commit(self) -> None:
        self._advance()
        if self.cursor < self.n:
            raise TruncatedError(f"block {self.cursor} never arrived")
        try:
            self.out.flush()
        except BrokenPipeError:
            raise TargetError("the output stream was closed before the restore finished") from None
        if self.spool is not None:
            self.spool.close()

    def abort(self) -> None:
        if self.spool is not None:
            self.spool.close()


def _target_digests(path: str, block_size: int, size: int) -> bytearray:
    """BLAKE3-128 per block of an existing target's first ``size`` bytes (zero blocks: zeros)."""
    out = bytearray()
    zd = bytes(DIGEST_LEN)
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(block_size * 64)
        view = memoryview(buf)
        done = 0
        while done < size:
            want = min(len(buf), size - done)
            got = f.readinto(view[:want]) or 0
            if got < want:
                raise TargetError(f"target {path} is shorter than expected")
            for o in range(0, got, block_size):
                blk = view[o : min(o + block_size, got)]
                out += zd if fmt.is_zero(buf, o, len(blk)) else fmt.block_digest(blk)
            done += got
    return out


def _target_size(path: str) -> tuple[bool, int, bool]:
    """(exists, size, is_device)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False, 0, False
    except OSError as e:
        raise TargetError(f"cannot use target {path}: {e.strerror}") from None
    if stat.S_ISBLK(st.st_mode):
        fd = os.open(path, os.O_RDONLY)
        try:
            return True, _blockdev_size(fd), True
        finally:
            os.close(fd)
    if stat.S_ISDIR(st.st_mode):
        raise TargetError(f"target {path} is a directory", hint="name a file or a block device to restore to")
    return True, st.st_size, False


def detect_generation(catalog: Catalog, chain_gens: list[GenerationRow], path: str, size: int, is_device: bool) -> int | None:
    """Which generation (newest first, at or before the one restored) the target holds, if any."""
    cache: dict[int, bytearray] = {}
    for g in sorted(chain_gens, key=lambda g: -g.number):
        if g.state != "complete":
            continue
        if (not is_device and size != g.volume_size) or (is_device and size < g.volume_size):
            continue
        key = g.block_size
        if key not in cache:
            cache[key] = _target_digests(path, g.block_size, g.volume_size if not is_device else size)
        tgt = cache[key]
        man = manifest_at(catalog, load_chain(catalog, g.set_uuid, g.volume, g.number))
        if tgt[: len(man)] == man:
            return g.number
    return None


def restore(
    media: MediaSource | TapeDrive,
    catalog: Catalog,
    target_path: str,
    options: RestoreOptions = RestoreOptions(),
    progress: Progress | None = None,
    stdout: BinaryIO | None = None,
) -> RestoreResult:
    progress = progress or NoProgress()
    started = time.monotonic()
    if not isinstance(media, MediaSource):
        media = MediaSource.fixed(media, catalog)
    label, chain, plan = prepare_plan(media, catalog, options)
    drive = media.current()
    last = chain[-1]
    mode = "new"
    have: int | None = None
    is_device = False
    sink: Sink
    if target_path == "-":
        mode = "stream"
    else:
        exists, tsize, is_device = _target_size(target_path)
        occupied = exists and (_device_has_data(target_path) if is_device else tsize > 0)
        if occupied:
            if options.assume_generation is not None:
                have = options.assume_generation
            else:
                gens = [g for g in catalog.generations(label.media_set_uuid, last.volume) if g.number <= last.number]
                have = detect_generation(catalog, gens, target_path, tsize, is_device)
                if have is None and not options.force:
                    raise TargetError(
                        f"target {target_path} is not empty and holds no generation of volume {last.volume!r}",
                        hint="add --force to overwrite it, or --assume-generation K if it holds generation K",
                    )
        if have is not None:
            mode = "roll-forward"
        elif is_device:
            mode = "device"
        if have is not None or is_device:
            plan = make_plan(catalog, chain, have=have, zero_target=not is_device)
    if mode == "stream":
        sink = _StreamSink(stdout or sys.stdout.buffer, plan)
    elif mode == "roll-forward":
        sink = _InPlaceSink(target_path, last.volume_size)
    else:
        sink = _TargetSink(RestoreTarget(target_path, last.volume_size, force=True))
    sink = _ThreadedSink(sink)
    result = RestoreResult(
        medium=drive.name,
        volume=last.volume,
        generation=last.number,
        target=target_path,
        volume_size=last.volume_size,
        block_size=last.block_size,
        mode=mode,
        from_generation=have,
        warnings=list(plan.warnings),
    )
    try:
        progress.start(f"restore {last.volume} gen {last.number}", plan.blocks_to_write * plan.block_size or None)
        execute_plan(media, catalog, label, plan, sink, result, progress, chain=chain, fallback_older=options.fallback_older)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    finally:
        progress.finish()
    result.seconds = time.monotonic() - started
    return result


def _device_has_data(path: str) -> bool:
    with open(path, "rb", buffering=0) as f:
        probe = f.read(1 << 20)
    return probe.count(0) != len(probe)


def execute_plan(
    media: MediaSource,
    catalog: Catalog,
    label: fmt.Label,
    plan: Plan,
    sink: Sink,
    result: RestoreResult,
    progress: Progress,
    *,
    chain: list[GenerationRow] | None = None,
    fallback_older: bool = False,
) -> None:
    """Read the planned chunks in plan order, medium after medium, and write their needed blocks
    to the sink. A chunk that cannot be read or is damaged does not stop the restore: its blocks
    are recorded as lost (``result.lost``); with ``fallback_older`` their newest older versions
    are read in a second pass, and what is still lost stays lost (zeros in the target)."""
    bs = plan.block_size
    size = plan.volume_size
    damaged = _read_all(media, catalog, plan, plan.reads, sink, result, progress)
    for a, n in plan.zero_runs:
        start = a * bs
        sink.zero(start, min((a + n) * bs, size) - start)
        result.blocks_zeroed += n
    if not damaged:
        return
    lost = _merge_runs([r for pr, _ in damaged for r in pr.runs])
    if fallback_older and chain is not None:
        reads, zero, none = fallback_reads(catalog, chain, lost, {pr.chunk.id for pr, _ in damaged})
        still = _read_all(media, catalog, plan, reads, sink, result, progress)
        for a, n in zero:  # the older version of these blocks is zero
            start = a * bs
            sink.zero(start, min((a + n) * bs, size) - start)
            result.blocks_zeroed += n
        recovered = [r for pr in reads for r in pr.runs if all(pr is not d for d, _ in still)] + zero
        result.fallback = [
            {"blocks": [a, a + n - 1], "from_generation": pr.chunk.generation}
            for pr in reads
            if all(pr is not d for d, _ in still)
            for a, n in pr.runs
        ] + [{"blocks": [a, a + n - 1], "from_generation": None, "zero": True} for a, n in zero]
        lost = _merge_runs(none + [r for pr, _ in still for r in pr.runs])
        _ = recovered
        damaged = damaged + still
    result.damaged_chunks = [
        {"medium": pr.chunk.medium_uuid.hex, "tape_file": pr.chunk.tape_file, "record": pr.chunk.record,
         "generation": pr.chunk.generation, "chunk": pr.chunk.seq, "error": msg}
        for pr, msg in damaged
    ]
    for a, n in lost:
        sink.lost(a * bs, min((a + n) * bs, size) - a * bs)
    result.lost = [
        {"blocks": [a, a + n - 1], "offset": a * bs, "length": min((a + n) * bs, size) - a * bs} for a, n in lost
    ]


def _merge_runs(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, n in sorted(runs):
        if out and out[-1][0] + out[-1][1] >= a:
            end = max(out[-1][0] + out[-1][1], a + n)
            out[-1] = (out[-1][0], end - out[-1][0])
        else:
            out.append((a, n))
    return out


def _read_all(
    media: MediaSource,
    catalog: Catalog,
    plan: Plan,
    reads: list[PlannedRead],
    sink: Sink,
    result: RestoreResult,
    progress: Progress,
) -> list[tuple[PlannedRead, str]]:
    """Read ``reads`` in order; returns the ones that failed, with the reason."""
    bs = plan.block_size
    size = plan.volume_size
    damaged: list[tuple[PlannedRead, str]] = []
    current = None
    drive: TapeDrive | None = None
    barcodes = {m.uuid: m.label for m in catalog.media_of_set(plan.set_uuid)}
    unavailable: dict[uuid.UUID, str] = {}
    for pr in reads:
        c = pr.chunk
        if c.medium_uuid in unavailable:
            damaged.append((pr, unavailable[c.medium_uuid]))
            continue
        if c.medium_uuid != current:
            if current is not None:
                media.release()
            try:
                drive = media.medium(c.medium_uuid, plan.set_uuid, c.medium_sequence, barcodes.get(c.medium_uuid) or None)
            except (MediumError, TapearcError) as e:
                if isinstance(e, TapearcError) and e.kind in ("interrupted",):
                    raise
                unavailable[c.medium_uuid] = f"medium sequence {c.medium_sequence} unavailable: {e}"
                damaged.append((pr, unavailable[c.medium_uuid]))
                current = None
                continue
            current = c.medium_uuid
            result.media_used.append(f"{drive.name} (sequence {c.medium_sequence})")
        assert drive is not None
        try:
            hdr, raw = _read_chunk(drive, pr)
        except TapearcError as e:
            damaged.append((pr, str(e)))
            continue
        _write_needed(hdr, raw, pr, sink, bs, size, result, progress)
        result.chunks_read += 1
        result.bytes_read += hdr.stored_len
    return damaged


def _read_chunk(drive: TapeDrive, pr: PlannedRead) -> tuple[fmt.ChunkHeader, memoryview]:
    """Position at a planned chunk and read, check and unpack it; TapearcError when damaged."""
    c = pr.chunk
    loc = {"medium": drive.name, "tape_file": c.tape_file, "record": c.record}
    span = (pr.runs[0][0], pr.runs[-1][0] + pr.runs[-1][1] - 1)
    try:
        if drive.position().logical != c.logical:
            drive.locate(c.logical)
        item = read_item(drive)
        if isinstance(item, Mark):
            raise TruncatedError(f"expected chunk {c.seq} of generation {c.generation}, found {item.value}")
        if item.magic != MAGIC_CHUNK:
            raise BadMagicError(f"expected chunk {c.seq} of generation {c.generation}, found {item.magic!r}")
        hdr, payload = fmt.decode_chunk(item.data)
        if hdr.generation != c.generation or hdr.seq != c.seq or hdr.payload_crc != c.payload_crc or hdr.runs != c.runs:
            raise MalformedError(
                f"the medium holds another chunk here (generation {hdr.generation} chunk {hdr.seq}) than the catalog "
                f"records (generation {c.generation} chunk {c.seq})",
                hint="the catalog is stale: run tapearc scan on this medium",
            )
        return hdr, memoryview(fmt.unpack_payload(hdr, payload))
    except TapearcError as e:
        raise e.at(**loc, blocks=span)


def _write_needed(
    hdr: fmt.ChunkHeader,
    raw: memoryview,
    pr: PlannedRead,
    sink: Sink,
    bs: int,
    size: int,
    result: RestoreResult,
    progress: Progress,
) -> None:
    off = 0
    pieces: list[tuple[int, int, int]] = []  # (first block, last block + 1, payload offset of first)
    for r in hdr.runs:
        if r.is_zero:
            continue
        pieces.append((r.first, r.first + r.count, off))
        off += min((r.first + r.count) * bs, size) - r.first * bs
    for a, n in pr.runs:
        b_end = a + n
        for first, end, poff in pieces:
            lo = max(first, a)
            hi = min(end, b_end)
            if lo >= hi:
                continue
            start = poff + (lo - first) * bs
            length = min(hi * bs, size) - lo * bs
            sink.write(lo * bs, raw[start : start + length])
            result.blocks_written += hi - lo
            progress.advance(length)
