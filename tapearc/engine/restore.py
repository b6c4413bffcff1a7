"""Restore a generation of a volume: plan with the catalog, read each medium once, forward.

The planner (:mod:`tapearc.engine.plan`) says which chunks hold the newest version of each
block; this module positions the medium to each of them in turn (LOCATE past what is not
needed), checks every chunk (header CRC, payload CRC, that it is the chunk the catalog
expects) and writes the needed blocks to a *sink*:

- a new file: written sparse under a temporary name, renamed into place when complete;
- a block device: zero blocks are written as zeros;
- a target that already holds another generation K of the volume, older or newer (checked
  against K's block digests, or asserted with ``assume_generation``): rolled forward or back in
  place, writing only the blocks that differ;
- a stream (``-``): the image in block order, with bounded memory (blocks that arrive before
  their turn wait in a sparse temporary spool file);
- an NBD export (``nbd://``, ``nbd+unix://``: tapearc.targets.nbd): like a block device; an
  export that reads as zeros everywhere gets no zero requests. Which generation an export holds
  is not detected: ``assume_generation`` rolls it in place, ``force`` writes all of it.

Honesty: the result says exactly which blocks are not the requested generation's
(:func:`outcome` turns that into the error the command exits with): blocks lost with damaged
chunks (``partial``, they read as zeros), blocks restored from an older generation
(``substituted``: ``--fallback-older``, or a newest generation that is incomplete), media that
never arrived (``media-missing``: the restore stops before writing anything it cannot finish,
and a new target file is never left behind, unless ``partial`` is asked for).
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import stat
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, Protocol, cast

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, ChunkRow, GenerationRow
from tapearc.catalog.states import GenerationState
from tapearc.catalog.views import generation_at, generation_at_any, short_uuid, zoned_time
from tapearc.crypto.keys import Key
from tapearc.engine.encryption import ChunkOpener, need_keys
from tapearc.engine.identity import refuse_same_restore_target
from tapearc.engine.layout import MAGIC_CHUNK, read_item
from tapearc.engine.manifest import MappedDigests
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.packers import Ordered, OutBuffers, unpack_into, worker_count
from tapearc.engine.pipeline import Worker, pipeline_enabled
from tapearc.engine.plan import (
    DIGEST_LEN,
    Plan,
    PlannedRead,
    fallback_reads,
    load_chain,
    make_plan,
)
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.scan import follow_set, sync_medium
from tapearc.engine.volume import RestoreTarget, blockdev_size, pwrite_all, zero_fill
from tapearc.errors import (
    BadMagicError,
    DamagedDataError,
    Interrupted,
    MalformedError,
    MediaMissingError,
    MediumError,
    MediumUnavailableError,
    NoSuchGenerationError,
    PartialRestoreError,
    SubstitutedRestoreError,
    TapearcError,
    TargetError,
    TargetTooSmallError,
    TruncatedError,
    UsageError,
)
from tapearc.media.base import Mark, TapeDrive
from tapearc.nbdclient import check_source_name, is_nbd_uri
from tapearc.targets.nbd import NbdTarget

log = logging.getLogger(__name__)
_DETECT_WINDOW = 4 * 1024 * 1024  # bytes of the target read at once when looking for the generation it holds


class RestoreMode(StrEnum):
    """How the target is written (``mode`` in the result and its JSON)."""

    NEW = "new"  # a new file, written sparse under a temporary name
    DEVICE = "device"  # a block device: zero blocks are written as zeros
    ROLL_FORWARD = "roll-forward"  # the target holds an older generation: changed blocks only
    ROLLBACK = "rollback"  # the target holds a newer generation: changed blocks only
    STREAM = "stream"  # the image in block order on a stream (``-``)
    NBD = "nbd"  # an NBD export: NBD writes; zero blocks as NBD zero requests if it held data


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    generation: int | None = None  # None: the latest complete one (or the newest at ``at``)
    at: int | None = None  # unix seconds: the newest complete generation created at or before (--at)
    volume: str | None = None  # None: the only volume of the media set
    force: bool = False
    assume_generation: int | None = None  # the target holds this generation already
    fallback_older: bool = False  # use older versions of blocks whose chunk is damaged
    partial: bool = False  # a medium that never arrives: finish anyway, its blocks read as zeros
    key: Key | None = None  # --key: the data key of encrypted generations


@dataclass(slots=True)
class RestoreResult:
    medium: str
    volume: str
    generation: int
    target: str
    volume_size: int
    block_size: int
    mode: RestoreMode = RestoreMode.NEW
    media_used: list[str] = field(default_factory=list)
    lost: list[dict[str, object]] = field(default_factory=list)  # block ranges that could not be restored
    fallback: list[dict[str, object]] = field(default_factory=list)  # blocks restored from older versions
    damaged_chunks: list[dict[str, object]] = field(default_factory=list)
    missing_media: list[dict[str, object]] = field(default_factory=list)  # media that never arrived (--partial)
    skipped_generations: list[dict[str, object]] = field(default_factory=list)  # newer, not restorable
    warnings: list[str] = field(default_factory=list)  # damaged or rebuilt generations met on the media
    from_generation: int | None = None
    chunks_read: int = 0
    blocks_written: int = 0
    blocks_zeroed: int = 0
    bytes_written: int = 0  # data written to the target
    bytes_zeroed: int = 0  # bytes made zero in the target
    bytes_read: int = 0
    seconds: float = 0.0
    source_path: str | None = None  # the volume's source as recorded for the generation (None: not recorded)

    @property
    def status(self) -> str:
        """complete, or what the exit code says: media-missing, partial, substituted."""
        err = outcome(self)
        return "complete" if err is None else err.kind

    def to_json(self) -> dict[str, object]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["mode"] = self.mode.value
        d["mb_per_s"] = round(self.volume_size / self.seconds / 1e6, 2) if self.seconds > 0 else None
        err = outcome(self)
        d["status"] = "complete" if err is None else err.kind
        d["exit_code"] = 0 if err is None else err.exit_code
        d["substituted"] = _substituted_ranges(self)
        return d


def _blocks_of(r: dict[str, object]) -> tuple[int, int]:
    blocks = r["blocks"]
    assert isinstance(blocks, (list, tuple))
    return int(blocks[0]), int(blocks[1])


def _bytes_of(r: dict[str, object], bs: int, size: int) -> tuple[int, int]:
    a, b = _blocks_of(r)
    return a * bs, min((b + 1) * bs, size) - 1


def _substituted_ranges(res: RestoreResult) -> list[dict[str, object]]:
    """Every block range of the target that is not the requested generation's, with what it
    holds instead (an older generation, or zeros that are an older generation's version)."""
    out: list[dict[str, object]] = []
    for f in res.fallback:
        first, last = _bytes_of(f, res.block_size, res.volume_size)
        out.append(
            {
                "blocks": f["blocks"],
                "offset": first,
                "length": last - first + 1,
                "from_generation": f.get("from_generation"),
                "zero": bool(f.get("zero")),
            }
        )
    return out


def _fmt_range(r: dict[str, object], bs: int, size: int) -> str:
    a, b = _blocks_of(r)
    first, last = _bytes_of(r, bs, size)
    return f"bytes {first}-{last} (blocks {a}-{b})"


def outcome(res: RestoreResult) -> TapearcError | None:
    """The error a finished restore must exit with, or None when every block of the target is
    the requested generation's. Several at once: media-missing (25) before partial (23) before
    substituted (24); the message of each lists its ranges by byte offset."""
    bs, size = res.block_size, res.volume_size
    if res.missing_media:
        names = "; ".join(
            f"{m['medium']}: " + ", ".join(_fmt_range({"blocks": x}, bs, size) for x in m["blocks"])  # type: ignore[attr-defined]
            for m in res.missing_media
        )
        return MediaMissingError(
            f"restore is partial (--partial): media never arrived and their blocks read as zeros in {res.target}: {names}",
            hint="load the media named and restore again",
            medium=res.medium,
            ranges=[dict(m) for m in res.missing_media],
        )
    if res.lost:
        ranges = ", ".join(_fmt_range(x, bs, size) for x in res.lost)
        total = sum(int(x["length"]) for x in res.lost)  # type: ignore[call-overload]
        return PartialRestoreError(
            f"restore is partial: {total} bytes could not be restored and read as zeros in {res.target}: {ranges}",
            hint="try --fallback-older, another copy of the medium, or verify the medium",
            medium=res.medium,
        )
    subs = _substituted_ranges(res)
    if subs or res.skipped_generations:
        parts = []
        if res.skipped_generations:
            parts.append(
                "the newest generation"
                + ("s " if len(res.skipped_generations) > 1 else " ")
                + ", ".join(f"{x['generation']} ({x['state']})" for x in res.skipped_generations)
                + f" cannot be restored; restored generation {res.generation} instead"
            )
        if subs:
            total = sum(int(x["length"]) for x in subs)  # type: ignore[call-overload]
            parts.append(
                f"{total} bytes are not generation {res.generation}'s but an older version: "
                + ", ".join(
                    _fmt_range(x, bs, size)
                    + (" zeros" if x["zero"] else "")
                    + f" from generation {x['from_generation']}"
                    if x["from_generation"] is not None
                    else _fmt_range(x, bs, size) + " zeros (an older version)"
                    for x in subs
                )
            )
        return SubstitutedRestoreError(
            f"restore of {res.target} is not exactly what was asked: " + "; ".join(parts),
            hint=(
                f"give --generation {res.generation} to ask for that generation"
                if res.skipped_generations and not subs
                else "the requested generation is damaged on this medium: another copy of the medium has it"
            ),
            medium=res.medium,
            ranges=subs + [dict(x) for x in res.skipped_generations],
        )
    return None


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
        raise UsageError(f"medium holds several volumes ({', '.join(names)}); choose one with --volume").at(
            medium=medium
        )
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
    if options.at is not None:  # restore --at: the newest complete generation at or before, in any set
        volume = options.volume if options.volume is not None else choose_volume(catalog, label, None, drive.name)
        try:
            found = generation_at_any(catalog, volume, options.at)
        except TapearcError as e:
            raise e.at(medium=drive.name) from None
        if found.set_uuid != label.media_set_uuid:
            drive, label = _load_set(media, catalog, found, label, notes)
    volume = choose_volume(catalog, label, options.volume, drive.name)
    try:
        number = options.generation
        if options.at is not None:
            number = generation_at(catalog, label.media_set_uuid, volume, options.at).number
        chain = load_chain(catalog, label.media_set_uuid, volume, number)
        plan = make_plan(catalog, chain, have=have, zero_target=zero_target)
    except TapearcError as e:
        e.at(medium=drive.name)
        raise
    plan.warnings.extend(notes)
    return label, chain, plan


def _load_set(
    media: MediaSource, catalog: Catalog, g: GenerationRow, label: fmt.Label, notes: list[str]
) -> tuple[TapeDrive, fmt.Label]:
    """Bring the first medium that generation ``g``'s restore reads (another media set than the
    one in the drive) into the drive: with a changer that can load media, load it; without one
    (a single drive, an operator), MediaMissingError naming the set and the media it needs."""
    in_set = catalog.media_of_set(g.set_uuid)
    needs = make_plan(catalog, load_chain(catalog, g.set_uuid, g.volume, g.number)).media
    needs = needs or [(m.uuid, m.sequence) for m in in_set[:1]]  # nothing to read (all zeros): any medium of it
    barcodes = {m.uuid: m.label for m in in_set}
    names = [barcodes.get(u) or short_uuid(u) for u, _ in needs]
    here = media.current().name
    what = f"volume {g.volume!r} generation {g.number} (made {zoned_time(g.created, ' ')}) is in media set {g.set_uuid}"
    ranges: list[dict[str, object]] = [{"medium": str(u), "sequence": q, "barcode": barcodes.get(u)} for u, q in needs]
    if not media.can_change or media.is_operator:
        raise MediaMissingError(
            f"{what}, not in the drive's ({label.media_set_uuid}): load its media {', '.join(names)}",
            hint="load the first of them and run the restore again, or give --changer",
            medium=here,
            ranges=ranges,
        )
    medium_uuid, seq = needs[0]
    try:
        drive = media.medium(medium_uuid, g.set_uuid, seq, barcodes.get(medium_uuid) or None)
    except MediumUnavailableError as e:  # not in the library (off-site): named, as without a changer
        raise MediaMissingError(
            f"{what}, whose medium {names[0]} (sequence {seq}) could not be loaded: {e.message}",
            hint="put that medium into the library and run the restore again",
            medium=here,
            ranges=ranges,
        ) from None
    new_label = sync_medium(drive, catalog, notes)
    follow_set(media, catalog, new_label)
    return media.current(), new_label


def skipped_generations(
    catalog: Catalog, chain: list[GenerationRow], options: RestoreOptions
) -> list[dict[str, object]]:
    """Without --generation, the newest generations of the volume (with --at: made at or before
    that time) passed over because they cannot be restored (incomplete: an interrupted backup, or
    a damaged trailer or end record)."""
    if options.generation is not None:
        return []
    last = chain[-1]
    return [
        {"generation": g.number, "state": g.state}
        for g in catalog.generations(last.set_uuid, last.volume)
        if g.number > last.number and (options.at is None or g.created <= options.at)
    ]


class Sink(Protocol):
    def write(self, offset: int, data: memoryview) -> None: ...
    def zero(self, offset: int, length: int) -> None: ...
    def lost(self, offset: int, length: int) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class _TargetSink:
    """New file, block device or NBD export (through RestoreTarget or NbdTarget), or an NBD
    export rolled in place (NbdTarget: zero runs are always written there)."""

    def __init__(self, target: RestoreTarget | NbdTarget) -> None:
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
            have = blockdev_size(self.fd)
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

    Blocks that arrive before their turn go to a sparse temporary spool file; memory holds the
    needed and the arrived block ranges (intervals, not a byte per block) and one chunk.
    """

    def __init__(self, out: BinaryIO, plan: Plan) -> None:
        self.out = out
        self.bs = plan.block_size
        self.size = plan.volume_size
        self.n = plan.nblocks
        runs = sorted(r for pr in plan.reads for r in pr.runs)
        self.need: list[tuple[int, int]] = []  # sorted, disjoint [start, end) of blocks to write
        for a, c in runs:
            if self.need and self.need[-1][1] >= a:
                self.need[-1] = (self.need[-1][0], max(self.need[-1][1], a + c))
            else:
                self.need.append((a, a + c))
        self.lost_runs: list[tuple[int, int]] = []  # needed blocks that will never come: zeros
        self.got: dict[int, int] = {}  # arrived ahead of the cursor: start -> end
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

    def _spool_error(self, e: OSError, reading: bool = False) -> TargetError:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # buffered writes that reach the file late
        what = "reading back out-of-order blocks from" if reading and not full else "cannot keep out-of-order blocks in"
        return TargetError(
            f"restore to standard output: {what} a temporary file in {tempfile.gettempdir()}: {e.strerror or e}",
            hint="set TMPDIR to a folder with room (up to the volume's size), or restore to a file",
        )

    def _len(self, b0: int, b1: int) -> int:
        return min(b1 * self.bs, self.size) - b0 * self.bs

    def _needed_from(self, c: int) -> tuple[int, int] | None:
        """The needed range holding block ``c``, or the next one after it (None: no more)."""
        k = bisect.bisect_right(self.need, (c, 1 << 62)) - 1
        if k >= 0 and self.need[k][1] > c:
            return self.need[k]
        return self.need[k + 1] if k + 1 < len(self.need) else None

    def _is_lost(self, c: int) -> int | None:
        """End of the lost range holding block ``c``, else None."""
        k = bisect.bisect_right(self.lost_runs, (c, 1 << 62)) - 1
        if k >= 0 and self.lost_runs[k][1] > c:
            return self.lost_runs[k][1]
        return None

    def write(self, offset: int, data: memoryview) -> None:
        b0 = offset // self.bs
        b1 = b0 + -(-len(data) // self.bs)
        if b0 == self.cursor:
            self._emit(data)
            self.cursor = b1
        else:
            try:
                if self.spool is None:
                    self.spool = tempfile.TemporaryFile(prefix="tapearc-spool-")  # noqa: SIM115 (closed in _close_spool)
                self.spool.seek(offset)
                self.spool.write(data)
            except OSError as e:
                raise self._spool_error(e) from None
            self.spooled += len(data)
            self.got[b0] = b1
        self._advance()

    def _advance(self) -> None:
        while self.cursor < self.n:
            c = self.cursor
            nr = self._needed_from(c)
            if nr is None or nr[0] > c:  # not needed: zeros up to the next needed block
                j = self.n if nr is None else nr[0]
                self._emit_zeros(self._len(c, j))
                self.cursor = j
                continue
            lost_end = self._is_lost(c)
            if lost_end is not None:
                j = min(lost_end, nr[1])
                self._emit_zeros(self._len(c, j))
                self.cursor = j
                continue
            if c in self.got:
                j = min(self.got.pop(c), nr[1])
                assert self.spool is not None
                off = c * self.bs
                end = off + self._len(c, j)
                while off < end:
                    try:
                        self.spool.seek(off)  # (a write may have moved it)
                        buf = self.spool.read(min(1 << 20, end - off))
                    except OSError as e:  # the buffered writes reach the file now: a full TMPDIR shows here
                        raise self._spool_error(e, reading=True) from None
                    if not buf:
                        raise TargetError(
                            f"restore to standard output: the temporary file in {tempfile.gettempdir()} holding "
                            f"out-of-order blocks ended at byte {off}, before block {off // self.bs} "
                            "(was it truncated by another program?)"
                        )
                    self._emit(buf)
                    off += len(buf)
                self.cursor = j
                continue
            return

    def zero(self, offset: int, length: int) -> None:
        # blocks not needed are emitted as zeros in order anyway; needed ones made zero (an
        # older version that is zero) are emitted as zeros when their turn comes
        self.lost(offset, length)

    def lost(self, offset: int, length: int) -> None:
        b0 = offset // self.bs
        b1 = b0 + -(-length // self.bs)
        bisect.insort(self.lost_runs, (b0, b1))  # emitted as zeros
        self._advance()

    def commit(self) -> None:
        self._advance()
        if self.cursor < self.n:
            raise TruncatedError(f"block {self.cursor} never arrived")
        try:
            self.out.flush()
        except BrokenPipeError:
            raise TargetError("the output stream was closed before the restore finished") from None
        self._close_spool()

    def abort(self) -> None:
        self._close_spool()

    def _close_spool(self) -> None:
        spool, self.spool = self.spool, None
        if spool is not None:
            try:
                spool.close()
            except OSError:
                pass  # an unnamed temporary file: what it still buffered is not needed


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
            return True, blockdev_size(fd), True
        finally:
            os.close(fd)
    if stat.S_ISDIR(st.st_mode):
        raise TargetError(f"target {path} is a directory", hint="name a file or a block device to restore to")
    return True, st.st_size, False


class TargetReader(Protocol):
    """What generation detection reads a target through: a file or block device
    (:class:`FileReader`) or an NBD export (tapearc.targets.nbd.NbdTarget, its own connection)."""

    def next_data(self, offset: int, length: int) -> int:
        """The first byte at or after ``offset`` that may hold data (not a hole, not known zero);
        ``offset`` where it cannot tell, ``length`` when only zeros follow."""
        ...

    def read_into(self, view: memoryview, offset: int) -> int:
        """Read ``len(view)`` bytes at ``offset`` into ``view``; the bytes read."""
        ...


class FileReader:
    """A file or block device as a TargetReader: holes by SEEK_DATA, reads by preadv."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)

    def next_data(self, offset: int, length: int) -> int:
        return _next_data(self.fd, offset, length)

    def read_into(self, view: memoryview, offset: int) -> int:
        return os.preadv(self.fd, [view], offset)

    def close(self) -> None:
        os.close(self.fd)


def _target_windows(
    reader: TargetReader, block_size: int, length: int, nblocks: int
) -> Iterator[tuple[int, int, bytearray | None]]:
    """The target's first ``nblocks`` blocks (of its first ``length`` bytes) window by window:
    ``(first block, blocks, bytes)``, or None for bytes when the window is all zero (a hole the
    file system or the NBD server reports is not read)."""
    per = max(1, _DETECT_WINDOW // block_size)
    buf = bytearray(per * block_size)
    view = memoryview(buf)
    b = 0
    data_at = 0  # the target's next byte that may be data, past holes
    while b < nblocks:
        off = b * block_size
        if off >= data_at:
            data_at = reader.next_data(off, length)
        hole = min(data_at // block_size, nblocks) - b  # whole blocks in a hole: zeros, not read
        if hole > 0:
            yield b, hole, None
            b += hole
            continue
        n = min(per, nblocks - b)
        want = min(n * block_size, length - off)
        if reader.read_into(view[:want], off) < want:
            raise TargetError(f"target {getattr(reader, 'path', '')} is shorter than expected")
        yield b, n, (None if fmt.is_zero(buf, 0, want) else buf)
        b += n


def _next_data(fd: int, off: int, length: int) -> int:
    """The offset of the first byte at or after ``off`` that may be data: ``off`` itself where
    the file system cannot tell, ``length`` when only a hole follows."""
    try:
        return min(os.lseek(fd, off, os.SEEK_DATA), length)
    except OSError as e:
        return length if e.errno == errno.ENXIO else off


def _window_digests(
    buf: bytearray, block_size: int, count: int, length: int, digest: fmt.DigestFunction = fmt.block_digest
) -> bytearray:
    """BLAKE3-128 (``digest``: keyed for encrypted generations) of each of ``count`` blocks in
    ``buf`` (``length`` bytes), zero blocks zeros."""
    out = bytearray(count * DIGEST_LEN)
    view = memoryview(buf)
    for k in range(count):
        o = k * block_size
        n = min(block_size, length - o)
        if not fmt.is_zero(buf, o, n):
            out[k * DIGEST_LEN : (k + 1) * DIGEST_LEN] = digest(view[o : o + n])
    return out


def _tail_digest(
    buf: bytearray, b: int, block_size: int, vend: int, digest: fmt.DigestFunction = fmt.block_digest
) -> bytes:
    """The digest of a volume's last, partial block (ending at byte ``vend``) in the window that
    starts at block ``b``: on a target larger than the volume the window read bytes past it."""
    o = (vend // block_size - b) * block_size
    n = vend % block_size
    return fmt.ZERO_DIGEST if fmt.is_zero(buf, o, n) else digest(memoryview(buf)[o : o + n])


def _window_matches(
    g: GenerationRow,
    m: MappedDigests,
    b: int,
    n: int,
    buf: bytearray | None,
    tdig: bytearray | None,
    digest: fmt.DigestFunction = fmt.block_digest,
) -> bool:
    """Whether the window (``n`` blocks from block ``b``) holds what generation ``g`` has there."""
    k = max(0, min(n, m.nblocks - b))  # the window's blocks inside this generation
    if not k:
        return True
    if buf is None or tdig is None:
        return m.all_zero(b, k)
    bs = g.block_size
    partial = g.volume_size % bs and g.volume_size < (b + n) * bs  # its last block ends in here
    if not partial:
        return m.digests(b, k) == tdig[: k * DIGEST_LEN]
    whole = k - 1
    tail = bytearray(_tail_digest(buf, b, bs, g.volume_size, digest))
    return m.digests(b, whole) == tdig[: whole * DIGEST_LEN] and m.digests(b + whole, 1) == tail


def _still_matching(
    reader: TargetReader,
    block_size: int,
    length: int,
    cands: list[tuple[GenerationRow, MappedDigests]],
    digest: fmt.DigestFunction = fmt.block_digest,
) -> list[GenerationRow]:
    """The candidate generations whose block digests equal the target's, block for block, read
    in one pass over the target that stops as soon as none is left."""
    have = -(-length // block_size)  # the target's blocks
    alive = [c for c in cands if c[1].nblocks <= have]
    nblocks = max((m.nblocks for _, m in alive), default=0)
    for b, n, buf in _target_windows(reader, block_size, length, nblocks):
        tdig: bytearray | None = None
        if buf is not None:
            tdig = _window_digests(buf, block_size, n, min(n * block_size, length - b * block_size), digest)
        alive = [(g, m) for g, m in alive if _window_matches(g, m, b, n, buf, tdig, digest)]
        if not alive:
            break
    return [g for g, _ in alive]


def detect_generation(
    catalog: Catalog,
    gens: list[GenerationRow],
    target: str | TargetReader,
    size: int,
    is_device: bool,
    prefer: int | None = None,
    key: Key | None = None,
) -> int | None:
    """Which complete generation of the volume the target (a path, or a TargetReader such as an
    NBD export) holds, if any: ``prefer`` (the one being restored) first, then the others newest
    first, older or newer than it. The target is read once per block size, window by window,
    against every candidate at once; memory is the candidates' chain maps (runs) and a window,
    never a digest per target block. Encrypted generations' digests are keyed: compared only
    with ``key`` (the candidates are the generations of one kind: ``key``'s, or plain)."""
    order: list[tuple[GenerationRow, MappedDigests]] = []
    if not any(g.encrypted for g in gens):
        key = None  # a plain volume: a key given changes nothing
    fp = key.fingerprint if key is not None else None
    digest = fmt.digest_function(key.digest_key() if key is not None else None)
    for g in sorted(gens, key=lambda g: (g.number != prefer, -g.number)):
        if g.state != GenerationState.COMPLETE or g.key_fingerprint != fp:
            continue
        if (not is_device and size != g.volume_size) or (is_device and size < g.volume_size):
            continue
        try:
            mapped = MappedDigests.of_chain(catalog, load_chain(catalog, g.set_uuid, g.volume, g.number))
        except TapearcError:
            continue  # a generation that cannot be restored is no reference either
        order.append((g, mapped))
    if not order:
        return None
    reader = FileReader(target) if isinstance(target, str) else target
    matched: set[int] = set()
    try:
        for bs in dict.fromkeys(g.block_size for g, _ in order):
            same = [(g, m) for g, m in order if g.block_size == bs]
            length = size if is_device else same[0][0].volume_size  # a file's size is every candidate's
            matched.update(g.number for g in _still_matching(reader, bs, length, same, digest))
    finally:
        if isinstance(reader, FileReader) and reader is not target:
            reader.close()
    return next((g.number for g, _ in order if g.number in matched), None)


def _preflight(media: MediaSource, catalog: Catalog, plan: Plan, label: fmt.Label) -> None:
    """Before writing on a target that cannot be put back as it was (a device, a file rolled in
    place, a stream), make sure every other medium the plan needs can be had at all."""
    barcodes = {m.uuid: m.label for m in catalog.media_of_set(plan.set_uuid)}
    for medium_uuid, seq in plan.media:
        if medium_uuid == label.medium_uuid:
            continue
        try:
            media.medium(medium_uuid, plan.set_uuid, seq, barcodes.get(medium_uuid) or None)
        except TapearcError as e:
            if isinstance(e, Interrupted):
                raise
            raise _missing(plan.reads, medium_uuid, seq, barcodes.get(medium_uuid), e) from None
        finally:
            media.release()


def _missing(
    reads: list[PlannedRead], medium_uuid: uuid.UUID, seq: int, barcode: str | None, e: TapearcError
) -> MediaMissingError:
    runs = _merge_runs([r for pr in reads if pr.chunk.medium_uuid == medium_uuid for r in pr.runs])
    name = f"medium {barcode + ' ' if barcode else ''}(sequence {seq}, {medium_uuid})"
    shown = ", ".join(f"{a}-{a + n - 1}" for a, n in runs[:8]) + (
        f" and {len(runs) - 8} more ranges" if len(runs) > 8 else ""
    )
    return MediaMissingError(
        f"{name} holds blocks {shown} of the restore and never arrived ({e.message})",
        hint="load that medium (or give --changer), or add --partial to restore the rest with zeros there",
        ranges=[
            {
                "medium": str(medium_uuid),
                "sequence": seq,
                "barcode": barcode,
                "blocks": [[a, a + n - 1] for a, n in runs],
            }
        ],
    )


def restore(
    media: MediaSource | TapeDrive,
    catalog: Catalog,
    target_path: str,
    options: RestoreOptions = RestoreOptions(),
    progress: Progress | None = None,
    stdout: BinaryIO | None = None,
) -> RestoreResult:
    if target_path == "-":
        check_stream_output(stdout or sys.stdout.buffer)  # before the medium is touched
    check_source_name(target_path, "restore target")  # never a file named like an NBD export
    if isinstance(media, MediaSource):
        return _restore(media, catalog, target_path, options, progress, stdout)
    given = media
    source = MediaSource.fixed(media, catalog)
    try:
        return _restore(source, catalog, target_path, options, progress, stdout)
    finally:
        if source.drive is not None and source.drive is not given:
            source.release()  # a drive reopened while looking for another medium


def _restore(
    media: MediaSource,
    catalog: Catalog,
    target_path: str,
    options: RestoreOptions,
    progress: Progress | None,
    stdout: BinaryIO | None,
) -> RestoreResult:
    """Prepare the plan, look at the target (which generation it holds), open it, read the
    chunks in tape order and write them, and report what was written."""
    progress = progress or NoProgress()
    started = time.monotonic()
    if not is_nbd_uri(target_path):  # (an NBD export is no file: never a medium)
        refuse_same_restore_target(media.spec, target_path)  # never onto the medium it reads
    label, chain, plan = prepare_plan(media, catalog, options)
    drive = media.current()
    last = chain[-1]
    try:  # before the target is looked at: no key, or the wrong one, writes nothing
        need_keys(chain, options.key)
    except TapearcError as e:
        raise e.at(medium=drive.name) from None
    target = _inspect_target(catalog, label, last, target_path, options)
    try:
        if target.have is not None or target.is_device:  # only what differs, or zeros written too
            try:
                plan = make_plan(catalog, chain, have=target.have, zero_target=not target.is_device)
            except TapearcError as e:
                e.at(medium=drive.name)
                raise
        if target.mode is not RestoreMode.NEW and not options.partial:
            _preflight(media, catalog, plan, label)
        sink = _ThreadedSink(_open_sink(target, last, plan, stdout))
    except BaseException:
        if target.nbd is not None:
            target.nbd.abort()  # the connection opened to look at the export: nothing written
        raise
    result = RestoreResult(
        medium=drive.name,
        volume=last.volume,
        generation=last.number,
        target=target_path,
        volume_size=last.volume_size,
        block_size=last.block_size,
        mode=target.mode,
        from_generation=target.have,
        source_path=last.source_path or None,
        skipped_generations=skipped_generations(catalog, chain, options),
        warnings=list(plan.warnings) + _tail_warnings(target, last.volume_size),
    )
    _write_plan(media, catalog, label, chain, plan, sink, result, progress, options)
    result.seconds = time.monotonic() - started
    return result


@dataclass(frozen=True, slots=True)
class _Target:
    """The restore target as found before anything is written."""

    path: str
    mode: RestoreMode
    have: int | None = None  # the generation it holds already (rolled forward or back)
    is_device: bool = False  # zero blocks must be written (a device; an NBD export that held data)
    nbd: NbdTarget | None = None  # an NBD export, open from the first look to the end
    size: int = 0  # a block device's size


def _tail_warnings(target: _Target, volume_size: int) -> list[str]:
    """What the restore leaves as it was past the volume's end: a larger block device's bytes
    there are not written (an NBD export says so only when they may hold data)."""
    if target.nbd is not None:
        return [target.nbd.tail_note] if target.nbd.tail_note else []
    if target.is_device and target.size > volume_size:
        return [
            f"block device {target.path} holds {target.size} bytes, the volume {volume_size}: bytes "
            f"{volume_size}-{target.size - 1} were not written (they keep what they held before)"
        ]
    return []


def _inspect_target(
    catalog: Catalog, label: fmt.Label, last: GenerationRow, target_path: str, options: RestoreOptions
) -> _Target:
    """What the target is and which generation of the volume it holds (detected from its block
    digests, or asserted with ``assume_generation``); TargetError for a target holding other
    data, unless ``force``."""
    if target_path == "-":
        return _Target(target_path, RestoreMode.STREAM)
    if is_nbd_uri(target_path):
        return _inspect_nbd_target(catalog, label, last, target_path, options)
    exists, tsize, is_device = _target_size(target_path)
    occupied = exists and (_device_has_data(target_path) if is_device else tsize > 0)
    have: int | None = None
    if occupied:
        if options.assume_generation is not None:
            have = options.assume_generation
        else:
            gens = catalog.generations(label.media_set_uuid, last.volume)
            have = detect_generation(catalog, gens, target_path, tsize, is_device, prefer=last.number, key=options.key)
            if have is None and not options.force:
                raise _not_ours(target_path, last.volume)
    if have is not None:
        mode = RestoreMode.ROLLBACK if have > last.number else RestoreMode.ROLL_FORWARD
    else:
        mode = RestoreMode.DEVICE if is_device else RestoreMode.NEW
    return _Target(target_path, mode, have, is_device, size=tsize if is_device else 0)


def _inspect_nbd_target(
    catalog: Catalog, label: fmt.Label, last: GenerationRow, uri: str, options: RestoreOptions
) -> _Target:
    """An NBD export, connected to once (the connection reads and writes): refused when too
    small or read-only. One that holds data is read, as a block device is, to find which
    generation of the volume it holds (rolled in place: only what differs is written), unless
    ``assume_generation`` says; holding something else, it is refused unless ``force`` says to
    write the whole generation over it."""
    t = NbdTarget(uri, last.volume_size, force=True)
    if t.data_at is None:  # zeros everywhere, or (no block status) in its first MiB: then zeros are written
        return _Target(uri, RestoreMode.NBD, is_device=t.zero_needs_writing, nbd=t)
    try:
        have = options.assume_generation
        if have is None:
            gens = catalog.generations(label.media_set_uuid, last.volume)
            have = detect_generation(catalog, gens, t, t.size, True, prefer=last.number, key=options.key)
            if have is None and not options.force:
                raise _not_ours(uri, last.volume)
    except BaseException:
        t.abort()
        raise
    if have is None:
        return _Target(uri, RestoreMode.NBD, is_device=True, nbd=t)
    mode = RestoreMode.ROLLBACK if have > last.number else RestoreMode.ROLL_FORWARD
    return _Target(uri, mode, have, is_device=True, nbd=t)


def _not_ours(target_path: str, volume: str) -> TargetError:
    return TargetError(
        f"target {target_path} is not empty and holds no generation of volume {volume!r}",
        hint="add --force to overwrite it, or --assume-generation K if it holds generation K",
    )


def _open_sink(target: _Target, last: GenerationRow, plan: Plan, stdout: BinaryIO | None) -> Sink:
    if target.nbd is not None:
        return _TargetSink(target.nbd)
    if target.mode is RestoreMode.STREAM:
        return _StreamSink(stdout or sys.stdout.buffer, plan)
    if target.have is not None:
        return _InPlaceSink(target.path, last.volume_size)
    return _TargetSink(RestoreTarget(target.path, last.volume_size, force=True))


def _write_plan(
    media: MediaSource,
    catalog: Catalog,
    label: fmt.Label,
    chain: list[GenerationRow],
    plan: Plan,
    sink: Sink,
    result: RestoreResult,
    progress: Progress,
    options: RestoreOptions,
) -> None:
    """Execute the plan into the sink and commit it; on any failure the sink is aborted (a new
    file is not left behind) and a missing medium says what the target now holds."""
    try:
        progress.start(
            f"restore {result.volume} gen {result.generation}", plan.blocks_to_write * plan.block_size or None
        )
        execute_plan(
            media,
            catalog,
            label,
            plan,
            sink,
            result,
            progress,
            chain=chain,
            fallback_older=options.fallback_older,
            partial=options.partial,
            opener=ChunkOpener(options.key, catalog),
        )
        sink.commit()
    except MediaMissingError as e:
        sink.abort()
        e.message += _stopped_note(result)
        raise
    except BaseException:
        sink.abort()
        raise
    finally:
        progress.finish()


def _stopped_note(result: RestoreResult) -> str:
    if result.mode is RestoreMode.NEW:
        return f"; the restore stopped and {result.target} was not created"
    if result.mode is RestoreMode.STREAM:
        return "; the restore stopped and the output stream is incomplete"
    return f"; the restore stopped after writing {result.bytes_written + result.bytes_zeroed} bytes to {result.target}"


def check_stream_output(out: BinaryIO) -> None:
    """``--to -`` writes the volume's bytes to ``out``: never onto a terminal."""
    try:
        tty = out.isatty()
    except (OSError, ValueError):
        tty = False
    if tty:
        raise UsageError(
            "--to -: standard output is a terminal; a restore writes the volume's bytes there",
            hint="redirect it to a file or a pipe (--to - > vol.img, --to - | ...), or give --to FILE",
        )


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
    partial: bool = False,
    opener: ChunkOpener | None = None,
) -> None:
    """Read the planned chunks in plan order, medium after medium, and write their needed blocks
    to the sink. A chunk that cannot be read or is damaged does not stop the restore: its blocks
    are recorded as lost (``result.lost``); with ``fallback_older`` their newest older versions
    are read in a second pass, and what is still lost stays lost (zeros in the target). A medium
    that cannot be had stops the restore (MediaMissingError) unless ``partial``: then its blocks
    are lost too and the medium is listed in ``result.missing_media``. ``opener`` opens the
    chunks (engine.encryption.ChunkOpener: the key of encrypted generations)."""
    opener = opener or ChunkOpener(None, catalog)
    damaged = _read_all(media, catalog, plan, plan.reads, sink, result, progress, partial, opener)
    _zero_runs(plan, sink, result, plan.zero_runs)
    if not damaged:
        return
    lost = _merge_runs([r for pr, _ in damaged for r in pr.runs])
    if fallback_older and chain is not None:
        lost, still = _read_older_versions(
            media, catalog, plan, chain, sink, result, progress, partial, damaged, lost, opener
        )
        damaged = damaged + still
    _report_damage(plan, sink, result, damaged, lost)


def _zero_runs(plan: Plan, sink: Sink, result: RestoreResult, runs: list[tuple[int, int]]) -> None:
    bs, size = plan.block_size, plan.volume_size
    for a, n in runs:
        start = a * bs
        sink.zero(start, min((a + n) * bs, size) - start)
        result.blocks_zeroed += n
        result.bytes_zeroed += min((a + n) * bs, size) - start


def _read_older_versions(
    media: MediaSource,
    catalog: Catalog,
    plan: Plan,
    chain: list[GenerationRow],
    sink: Sink,
    result: RestoreResult,
    progress: Progress,
    partial: bool,
    damaged: list[tuple[PlannedRead, str]],
    lost: list[tuple[int, int]],
    opener: ChunkOpener,
) -> tuple[list[tuple[int, int]], list[tuple[PlannedRead, str]]]:
    """``--fallback-older``: read the newest older versions of the ``lost`` blocks. Returns the
    blocks still lost and the reads of the second pass that failed too."""
    reads, zero, none = fallback_reads(catalog, chain, lost, {pr.chunk.id for pr, _ in damaged})
    still = _read_all(media, catalog, plan, reads, sink, result, progress, partial, opener)
    _zero_runs(plan, sink, result, zero)  # the older version of these blocks is zero
    result.fallback = [
        {"blocks": [a, a + n - 1], "from_generation": pr.chunk.generation}
        for pr in reads
        if all(pr is not d for d, _ in still)
        for a, n in pr.runs
    ] + [{"blocks": [a, a + n - 1], "from_generation": None, "zero": True} for a, n in zero]
    return _merge_runs(none + [r for pr, _ in still for r in pr.runs]), still


def _report_damage(
    plan: Plan,
    sink: Sink,
    result: RestoreResult,
    damaged: list[tuple[PlannedRead, str]],
    lost: list[tuple[int, int]],
) -> None:
    """The damaged chunks and the lost block ranges into the result; lost blocks read as zeros."""
    bs, size = plan.block_size, plan.volume_size
    gone = {str(m["medium"]) for m in result.missing_media}  # listed there, not as damage
    result.damaged_chunks = [
        {
            "medium": pr.chunk.medium_uuid.hex,
            "tape_file": pr.chunk.tape_file,
            "record": pr.chunk.record,
            "generation": pr.chunk.generation,
            "chunk": pr.chunk.seq,
            "error": msg,
        }
        for pr, msg in damaged
        if str(pr.chunk.medium_uuid) not in gone
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
    partial: bool = False,
    opener: ChunkOpener | None = None,
) -> list[tuple[PlannedRead, str]]:
    """Read ``reads`` in order; returns the ones that failed, with the reason. A medium that
    cannot be had: MediaMissingError, or with ``partial`` its reads fail too."""
    current = None
    drive: TapeDrive | None = None
    barcodes = {m.uuid: m.label for m in catalog.media_of_set(plan.set_uuid)}
    unavailable: dict[uuid.UUID, str] = {}
    feed = _ChunkFeed(plan, sink, result, progress, opener or ChunkOpener(None, catalog), catalog)
    try:
        for pr in reads:
            c = pr.chunk
            if c.medium_uuid in unavailable:
                feed.failed(pr, unavailable[c.medium_uuid])
                continue
            if c.medium_uuid != current:
                feed.drain()
                if current is not None:
                    media.release()
                try:
                    drive = media.medium(
                        c.medium_uuid, plan.set_uuid, c.medium_sequence, barcodes.get(c.medium_uuid) or None
                    )
                except (MediumError, TapearcError) as e:
                    if isinstance(e, Interrupted):
                        raise
                    missing = _missing(reads, c.medium_uuid, c.medium_sequence, barcodes.get(c.medium_uuid) or None, e)
                    if not partial:
                        raise missing from None
                    result.missing_media.extend(missing.ranges)
                    unavailable[c.medium_uuid] = f"medium sequence {c.medium_sequence} unavailable: {e}"
                    feed.failed(pr, unavailable[c.medium_uuid])
                    current = None
                    continue
                current = c.medium_uuid
                result.media_used.append(f"{drive.name} (sequence {c.medium_sequence})")
                log.info("reading %s (sequence %d of media set %s)", drive.name, c.medium_sequence, plan.set_uuid)
            assert drive is not None
            log.debug("chunk %d: tape file %d, record %d, %d blocks", c.seq, c.tape_file, c.record, pr.blocks)
            feed.read(drive, pr)
        feed.drain()
    finally:
        feed.close()
    return feed.damaged


class _ChunkFeed:
    """The chunks read, decoded in worker threads (checked, decompressed: packers.Ordered, at
    most 2N in flight; none with TAPEARC_PIPELINE=0) and written to the sink in read order; the
    damaged ones listed in that order too (``damaged``)."""

    def __init__(
        self, plan: Plan, sink: Sink, result: RestoreResult, progress: Progress, opener: ChunkOpener, catalog: Catalog
    ) -> None:
        self.plan, self.sink, self.result, self.progress = plan, sink, result, progress
        self.opener = opener  # opens encrypted chunks (engine.encryption)
        self.catalog = catalog  # the block digests of plain chunks
        self.damaged: list[tuple[PlannedRead, str]] = []
        self.pool = Ordered(workers=worker_count() if pipeline_enabled() else 0)
        self.outs = OutBuffers()  # decompressed payloads, buffers reused once written

    def read(self, drive: TapeDrive, pr: PlannedRead) -> None:
        """Read the chunk of ``pr`` (in this thread: the drive is this thread's) and hand it to
        the decoders; write the chunks decoded by now."""
        try:
            data = _read_chunk_item(drive, pr)
            opened = self.opener.for_chunk(pr.chunk)  # None: a plain generation's chunk
        except TapearcError as e:
            self.failed(pr, str(e))
            return
        c = pr.chunk
        out = self.outs.get(c.raw_len) if c.flags & fmt.CHUNK_FLAG_ZSTD and 0 < c.raw_len <= MAX_REUSED else None
        # a plain chunk's blocks are checked against their digests (an encrypted one's tag binds them)
        digests = self.catalog.chunk_digest_table(c.id) if opened is None else None
        self.pool.submit(pr, _decode_chunk, data, pr, drive.name, out, opened, digests)
        while self.pool.full() or self.pool.ready():
            self._land()

    def failed(self, pr: PlannedRead, msg: str) -> None:
        self.drain()
        self.damaged.append((pr, msg))

    def drain(self) -> None:
        while self.pool.pending():
            self._land()

    def _land(self) -> None:
        tag, fut = self.pool.take()
        pr = tag
        assert isinstance(pr, PlannedRead)
        try:
            hdr, raw = cast("tuple[fmt.ChunkHeader, memoryview]", fut.result())
        except TapearcError as e:
            self.damaged.append((pr, str(e)))
            return
        r = self.result
        _write_needed(hdr, raw, pr, self.sink, self.plan.block_size, self.plan.volume_size, r, self.progress)
        r.chunks_read += 1
        r.bytes_read += hdr.stored_len

    def close(self) -> None:
        self.pool.close()


#: Decompressed payloads up to this size go into reused buffers (chunks are a few MiB).
MAX_REUSED = 64 * 1024 * 1024


def _read_chunk_item(drive: TapeDrive, pr: PlannedRead) -> bytes | memoryview:
    """Position at a planned chunk and read its item; TapearcError when it is not there."""
    c = pr.chunk
    try:
        if drive.position().logical != c.logical:
            drive.locate(c.logical)
        item = read_item(drive)
        if isinstance(item, Mark):
            raise TruncatedError(f"expected chunk {c.seq} of generation {c.generation}, found {item.value}")
        if item.magic != MAGIC_CHUNK:
            raise BadMagicError(f"expected chunk {c.seq} of generation {c.generation}, found {item.magic!r}")
        return item.data
    except TapearcError as e:
        e.at(medium=drive.name, tape_file=c.tape_file, record=c.record, blocks=_span_of(pr))
        raise


def _span_of(pr: PlannedRead) -> tuple[int, int]:
    return (pr.runs[0][0], pr.runs[-1][0] + pr.runs[-1][1] - 1)


def _decode_chunk(
    data: bytes | memoryview,
    pr: PlannedRead,
    medium: str,
    out: bytearray | None = None,
    opened: Callable[[fmt.ChunkHeader, bytes | bytearray | memoryview], bytes | bytearray | memoryview] | None = None,
    digests: bytes | None = None,
) -> tuple[fmt.ChunkHeader, memoryview]:
    """Check and unpack a chunk read (in a decoding worker; a zstd payload into ``out`` when
    given; an encrypted one opened and unpacked by ``opened``, ChunkOpener.for_chunk);
    TapearcError when damaged (a tag that does not match: ChunkAuthError). ``digests``: the
    chunk's block digests (the catalog's, from the trailer) the blocks to write must match."""
    c = pr.chunk
    try:
        hdr, payload = fmt.decode_chunk(data)
        if hdr.generation != c.generation or hdr.seq != c.seq or hdr.payload_crc != c.payload_crc or hdr.runs != c.runs:
            raise MalformedError(
                _other_chunk(hdr, c), hint="tapearc verify names what the medium holds; tapearc scan relearns it"
            )
        if opened is not None:
            return hdr, memoryview(opened(hdr, payload))
        raw = memoryview(unpack_into(hdr, payload, out))
        if digests:  # (none recorded: a generation without digests)
            _check_digests(hdr, raw, pr, digests)
        return hdr, raw
    except TapearcError as e:
        e.at(medium=medium, tape_file=c.tape_file, record=c.record, blocks=_span_of(pr))
        raise


def _check_digests(hdr: fmt.ChunkHeader, raw: memoryview, pr: PlannedRead, digests: bytes) -> None:
    """Each block of the chunk the restore writes has the BLAKE3-128 digest the backup computed
    from the source (the trailer's, recorded in the catalog): its CRCs prove the chunk is the one
    written, the digests that what was written is what was read. DamagedDataError naming the
    first block that differs: a chunk whose data is not the data backed up though every CRC
    matches (data put together wrongly before its CRC was computed, a chunk forged with matching
    CRCs), or a trailer whose digests are wrong; verify says which."""
    bs, size = hdr.block_size, hdr.volume_size
    data = [(r.first, r.count) for r in hdr.runs if not r.is_zero]
    if len(digests) != DIGEST_LEN * sum(n for _, n in data):
        raise MalformedError(
            f"the catalog holds {len(digests) // DIGEST_LEN} block digests for the {sum(n for _, n in data)} data "
            f"blocks of generation {pr.chunk.generation} chunk {pr.chunk.seq}: the catalog does not describe this chunk",
            hint="tapearc scan relearns the medium",
        )
    starts = [a for a, _ in pr.runs]
    k = off = 0
    for first, count in data:
        for b in range(first, first + count):
            n = min(bs, size - b * bs)
            i = bisect.bisect_right(starts, b) - 1
            written = i >= 0 and b < pr.runs[i][0] + pr.runs[i][1]  # a block this restore writes
            if written and fmt.block_digest(raw[off : off + n]) != digests[k * DIGEST_LEN : (k + 1) * DIGEST_LEN]:
                raise DamagedDataError(
                    f"block {b} of generation {pr.chunk.generation} chunk {pr.chunk.seq} does not match its digest "
                    "(BLAKE3, recorded at the backup): the chunk's data is not the data backed up, though its CRCs "
                    "match, or the trailer's digests are wrong",
                    hint="tapearc verify names the chunk; --fallback-older restores the block's older version",
                )
            off += n
            k += 1


def _other_chunk(hdr: fmt.ChunkHeader, c: ChunkRow) -> str:
    """Why chunk ``hdr`` read is not the one the catalog records there (``c``)."""
    if (hdr.generation, hdr.seq) != (c.generation, c.seq):
        return (
            f"the medium holds another chunk here (generation {hdr.generation} chunk {hdr.seq}) than the catalog "
            f"records (generation {c.generation} chunk {c.seq}): a stale catalog, or a chunk in the wrong place"
        )
    what = "payload CRC" if hdr.payload_crc != c.payload_crc else "block map"
    return (
        f"generation {c.generation} chunk {c.seq} here has another {what} than the catalog records (from the "
        "trailer): its data is not the data backed up (another chunk in its place), or the catalog is stale"
    )


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
            result.bytes_written += length
            progress.advance(length)
