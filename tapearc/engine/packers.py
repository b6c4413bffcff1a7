"""Packing chunk payloads in worker threads (backup side) and decoding them in worker threads
(restore side), with the same bytes as the plain path.

Backup: the generation writer hands each full chunk (its raw payload in a buffer of its own, after
``HEADER_RESERVE`` free bytes) to :class:`Packers`. A worker applies the compression rule
(``fmt.pack_payload``: a zstd frame kept only if strictly smaller) and then the **seal hook**
(:data:`SealFn`), builds the chunk header (flags, ``stored_len``, ``payload_crc``) and the item
(header + stored payload). The writer takes the packed chunks back strictly in ``seq`` order and
writes them; it re-runs the hook (:func:`seal_chunk`) when the chunk goes into another part than
the one it was sealed for (spanning: the associated data binds the part), so a job keeps its inner
payload until it is written.

Memory is fixed: ``depth`` chunks in flight (``2 * workers``) plus the one being filled, each
buffer reused from chunk to chunk; never anything per volume. The expensive steps (zstd, CRC-32C,
AES-GCM) release the GIL, so the workers run beside the reader and the writer.

Errors: an exception in a worker (in the hook, say) is raised in the writer's thread when it
takes that chunk; :meth:`Packers.close` cancels the chunks not started (a worker finishes the one
it is in: milliseconds) and never waits for a hang.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import zstandard

from tapearc import format as fmt
from tapearc.buffers import POOL
from tapearc.engine.genplan import HEADER_RESERVE

Buf = bytes | bytearray | memoryview

#: The seal hook: ``seal(gen, chunk, inner) -> (stored payload, extra flag bits)``.
#:
#: ``gen`` is the generation header of the part (tape file) the chunk is written into (its
#: ``part`` and ``medium_uuid`` are that part's); ``chunk`` is the chunk's header as it stands for
#: the inner payload: ``flags`` holds the compression bit, ``seq``, ``runs``, ``raw_len`` are final,
#: ``stored_len = len(inner)`` and ``payload_crc = 0``; ``inner`` is the inner payload (the zstd
#: frame if ``chunk.flags & CHUNK_FLAG_ZSTD``, else the raw payload; read-only, valid during the
#: call). The caller then sets ``flags |= extra``, ``stored_len = len(stored)`` and
#: ``payload_crc = crc32c(stored)``. Encryption fills it with: ``h = replace(chunk, flags=chunk.flags
#: | CHUNK_FLAG_ENCRYPTED, stored_len=len(inner) + OVERHEAD)``, ``stored = cipher.seal(inner,
#: fmt.chunk_aad(gen, h))``, returning ``(stored, CHUNK_FLAG_ENCRYPTED)``. It runs in worker
#: threads (it must be thread-safe) and again in the writer's thread after a part change.
SealFn = Callable[[fmt.GenerationHeader, fmt.ChunkHeader, Buf], tuple[Buf, int]]


@runtime_checkable
class HeadroomSeal(Protocol):
    """A seal hook that can also leave ``headroom`` free bytes before the stored payload it
    returns (``with_headroom(gen, chunk, inner, headroom) -> (buffer, extra flag bits)``): the
    chunk's header is written there and the buffer goes to the medium as the item, uncopied."""

    def __call__(self, gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: Buf) -> tuple[Buf, int]: ...

    def with_headroom(
        self, gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: Buf, headroom: int
    ) -> tuple[bytearray, int]: ...


MAX_WORKERS = 4


def identity_seal(gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: Buf) -> tuple[Buf, int]:
    """The seal of plain generations: the stored payload is the inner payload."""
    return inner, 0


def worker_count() -> int:
    """Packing workers: one per CPU, at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


@dataclass(slots=True, eq=False)
class ChunkJob:
    """One chunk on its way from the writer's buffer to the medium."""

    buf: bytearray  # HEADER_RESERVE free bytes, then the raw payload
    plen: int  # raw payload bytes
    runs: tuple[fmt.Run, ...]
    digests: bytes
    seq: int
    first_block: int
    flags: int = 0  # the compression flag of the inner payload
    inner: Buf | None = None  # the inner payload, kept until the chunk is written
    gen: fmt.GenerationHeader | None = None  # the part header it was sealed for
    header: fmt.ChunkHeader | None = None
    item: Buf = b""  # encoded header + stored payload: what goes to the medium

    def raw(self) -> memoryview:
        return memoryview(self.buf)[HEADER_RESERVE : HEADER_RESERVE + self.plen]


def pack_chunk(job: ChunkJob, gen: fmt.GenerationHeader, compress: bool, seal: SealFn) -> ChunkJob:
    """Compress (the compression rule) and seal ``job`` for the part of ``gen``."""
    raw = job.raw()
    job.flags, job.inner = fmt.pack_payload(raw, compress=compress, level=fmt.ZSTD_LEVEL)
    seal_chunk(job, gen, seal)
    return job


def seal_chunk(job: ChunkJob, gen: fmt.GenerationHeader, seal: SealFn) -> None:
    """Run the seal hook on the inner payload for the part of ``gen``; set header and item. An
    unsealed, uncompressed payload goes to the medium from its buffer (the header is written in
    the free bytes before it), not copied."""
    inner = job.inner
    assert inner is not None
    base = fmt.ChunkHeader(
        flags=job.flags,
        run_uuid=gen.run_uuid,
        generation=gen.generation,
        seq=job.seq,
        block_size=gen.block_size,
        volume_size=gen.volume_size,
        raw_len=job.plen,
        stored_len=len(inner),
        payload_crc=0,
        runs=job.runs,
    )
    if isinstance(seal, HeadroomSeal):  # sealed after room for the header: no copy of the payload
        hlen = fmt.chunk_header_len(len(job.runs))
        out, extra = seal.with_headroom(gen, base, inner, hlen)
        sealed = memoryview(out)[hlen:]
        header = replace(base, flags=base.flags | extra, stored_len=len(sealed), payload_crc=fmt.crc32c(sealed))
        out[:hlen] = fmt.encode_chunk_header(header)
        job.item, job.header, job.gen = out, header, gen
        return
    stored, extra = seal(gen, base, inner)
    header = replace(base, flags=base.flags | extra, stored_len=len(stored), payload_crc=fmt.crc32c(stored))
    hb = fmt.encode_chunk_header(header)
    if stored is inner and job.flags == 0 and len(hb) <= HEADER_RESERVE:
        job.buf[HEADER_RESERVE - len(hb) : HEADER_RESERVE] = hb
        job.item = memoryview(job.buf)[HEADER_RESERVE - len(hb) : HEADER_RESERVE + job.plen]
    else:
        job.item = hb + stored  # one copy (bytes + any buffer: no bytes() of the payload first)
    job.header = header
    job.gen = gen


class Packers:
    """``workers`` threads packing chunks; at most ``depth`` in flight, handed back in order.

    ``workers=0``: no threads, each chunk is packed when submitted (the plain path)."""

    def __init__(self, *, compress: bool, seal: SealFn, buffer_size: int, workers: int, depth: int = 0) -> None:
        self.compress = compress
        self.seal = seal
        self.buffer_size = buffer_size
        self.workers = workers
        self.depth = max(1, depth or 2 * workers) if workers else 0
        self._pool: ThreadPoolExecutor | None = None
        self._queue: collections.deque[tuple[ChunkJob, Future[ChunkJob] | None]] = collections.deque()
        self._free: list[bytearray] = []
        self.made = 0  # buffers made (at most depth + 1)

    def buffer(self) -> bytearray:
        """A buffer to fill with the next chunk: a free one, or a new one while fewer than
        ``depth + 1`` exist (call only when :meth:`full` is False)."""
        if self._free:
            return self._free.pop()
        self.made += 1
        return POOL.take(self.buffer_size)

    def release(self, job: ChunkJob) -> None:
        """The chunk is written (or dropped): its buffer is free again."""
        job.inner = None
        job.item = b""
        self._free.append(job.buf)

    def full(self) -> bool:
        """No chunk can be submitted before the oldest is taken back."""
        return len(self._queue) >= max(1, self.depth)

    def submit(self, job: ChunkJob, gen: fmt.GenerationHeader) -> None:
        if not self.workers:
            self._queue.append((pack_chunk(job, gen, self.compress, self.seal), None))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tapearc-pack")
        self._queue.append((job, self._pool.submit(pack_chunk, job, gen, self.compress, self.seal)))

    def ready(self) -> bool:
        """The oldest chunk in flight is packed (or failed)."""
        if not self._queue:
            return False
        fut = self._queue[0][1]
        return fut is None or fut.done()

    def pending(self) -> int:
        return len(self._queue)

    def take(self) -> ChunkJob:
        """The oldest chunk, packed (waits for it); raises the error of its worker."""
        job, fut = self._queue.popleft()
        if fut is not None:
            try:
                fut.result()
            except BaseException:
                # its worker failed: the buffer is free; else the wait was cut short (Ctrl-C)
                # and the worker may still be inside it: not reused
                if fut.done():
                    self._free.append(job.buf)
                raise
        return job

    def close(self) -> None:
        """Drop the chunks in flight and stop the workers (those inside a chunk finish it in the
        background; nothing waits for them)."""
        while self._queue:
            job, fut = self._queue.popleft()
            if fut is None or fut.cancel() or fut.done():  # else a worker is inside it: not reused
                self._free.append(job.buf)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for buf in self._free:  # written or never started: the next generation's buffers
            POOL.give(buf)
        self._free = []


# ---------------------------------------------------------------- restore side


class Ordered:
    """Calls run by ``workers`` threads, their outcomes taken back in the order submitted; at
    most ``depth`` (default ``2 * workers``) in flight. ``workers=0``: each call runs when
    submitted, in the caller's thread (the plain path). The restore decodes chunks with it."""

    def __init__(self, *, workers: int, depth: int = 0) -> None:
        self.workers = workers
        self.depth = max(1, depth or 2 * workers)
        self._pool: ThreadPoolExecutor | None = None
        self._queue: collections.deque[tuple[object, Future[object]]] = collections.deque()

    def submit(self, tag: object, fn: Callable[..., object], *args: object) -> None:
        if self.workers:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tapearc-decode")
            self._queue.append((tag, self._pool.submit(fn, *args)))
            return
        fut: Future[object] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as e:  # handed back by take(), as a worker's would be
            fut.set_exception(e)
        self._queue.append((tag, fut))

    def pending(self) -> int:
        return len(self._queue)

    def full(self) -> bool:
        return len(self._queue) >= self.depth

    def ready(self) -> bool:
        return bool(self._queue) and self._queue[0][1].done()

    def take(self) -> tuple[object, Future[object]]:
        """The oldest call's tag and its (finished) future: ``.result()`` gives its value or
        raises its error."""
        tag, fut = self._queue.popleft()
        fut.exception()  # waits for it
        return tag, fut

    def close(self) -> None:
        """Drop the calls in flight (those running finish in the background, unwaited)."""
        while self._queue:
            self._queue.popleft()[1].cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class OutBuffers:
    """Reused output buffers for decompressed payloads (the restore's decoders): a buffer goes
    back to use once nothing refers to it any more (the chunk was written: the target's writer
    thread dropped its views), so memory stays at the buffers in flight and queued, without a
    fresh allocation (and its page faults, in every worker thread's arena) per chunk. Used from
    the caller's thread only; the workers get the buffer with the call."""

    #: references to a free buffer: the pool's list and getrefcount's argument
    _FREE_REFS = 2

    def __init__(self, size: int = 0) -> None:
        self.size = size
        self.buffers: list[bytearray] = []

    def get(self, size: int) -> bytearray:
        if size > self.size:  # a larger chunk size: the smaller buffers go
            self.size = size
            self.buffers = []
        for b in self.buffers:
            if sys.getrefcount(b) <= self._FREE_REFS + 1:  # + the loop variable
                return b
        b = bytearray(self.size)
        self.buffers.append(b)
        return b


_tls = threading.local()


def _dctx() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_tls, "dctx", None)
    if d is None:
        d = _tls.dctx = zstandard.ZstdDecompressor()
    return d


def unpack_into(header: fmt.ChunkHeader, payload: Buf, out: bytearray | None) -> Buf:
    """``fmt.unpack_payload``, a zstd payload decompressed into ``out`` (reused, at least
    ``raw_len`` bytes) rather than into a new buffer: the same result, and for a payload that is
    not exactly one frame of ``raw_len`` bytes the same error (fmt.unpack_payload's, which then
    runs)."""
    if not header.compressed or out is None or len(out) < header.raw_len:
        return fmt.unpack_payload(header, payload)
    mv = memoryview(out)[: header.raw_len]
    try:
        if (
            zstandard.get_frame_parameters(payload).content_size == header.raw_len
            and _frame_size(payload) == len(payload)
            and _read_frame_into(payload, mv) == header.raw_len
        ):
            return mv
    except (zstandard.ZstdError, IndexError, ValueError):
        pass
    mv.release()
    return fmt.unpack_payload(header, payload)  # the plain path says what is wrong


def _read_frame_into(payload: Buf, mv: memoryview) -> int:
    """Decompress the frame into ``mv``; the bytes it gave (-1: more than ``mv`` holds)."""
    got = 0
    with _dctx().stream_reader(payload, read_across_frames=False) as r:
        while got < len(mv):
            n = r.readinto(mv[got:])
            if not n:
                return got
            got += n
        return -1 if r.read(1) else got


def _frame_size(d: Buf) -> int:
    """The bytes of the zstd frame at the start of ``d`` (header, blocks, checksum)."""
    mv = memoryview(d)
    pos = zstandard.frame_header_size(mv)
    while True:
        b = int.from_bytes(mv[pos : pos + 3], "little")
        if pos + 3 > len(mv):
            raise ValueError("truncated frame")
        pos += 3 + (1 if (b >> 1) & 3 == 1 else b >> 3)  # an RLE block holds one byte
        if b & 1:  # the last block
            break
    return pos + (4 if mv[4] & 4 else 0)  # the content checksum
