"""Building a trailer chunk by chunk, as a backup writes a generation (formats/SPEC.md, 10).

:class:`TrailerBuilder` keeps only the encoded chunk index and the digest table, in two stores
(:class:`TrailerStore`: :class:`MemoryStore` by default; the backup spools them to a temporary
file so its memory does not grow with the volume). Its result is the same bytes as
:func:`tapearc.format.codec.encode_trailer` of the same entries; the checks are the codec's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol
from uuid import UUID

from tapearc.errors import MalformedError

from .codec import (
    check_digest_table,
    check_index_entry,
    check_trailer_len,
    encode_index_entries,
    encode_trailer_header,
)
from .constants import DIGEST_ALGS, DIGEST_BLAKE3_128, TRAILER_FLAG_COMPLETE, TRAILER_FLAG_CONTINUES
from .crc import crc32c
from .model import ChunkIndexEntry
from .structs import TRAILER_HEADER_LEN

__all__ = ["MemoryStore", "TrailerBuilder", "TrailerStore"]

Buf = bytes | bytearray | memoryview


class TrailerStore(Protocol):
    """Where a TrailerBuilder keeps bytes: appended to, measured, read back in pieces, closed."""

    def append(self, data: Buf) -> None:
        """Add ``data`` at the end."""

    def __len__(self) -> int:
        """Bytes appended so far."""
        ...

    def pieces(self) -> Iterator[Buf]:
        """The bytes appended so far, in order, in pieces (may be called more than once)."""
        ...

    def close(self) -> None:
        """Release what the store holds (a temporary file); it is not used afterwards."""


class MemoryStore:
    """The default :class:`TrailerStore`: a bytearray."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def append(self, data: Buf) -> None:
        self.buf += data

    def __len__(self) -> int:
        return len(self.buf)

    def pieces(self) -> Iterator[Buf]:
        """The bytes appended so far, in order, in pieces."""
        if self.buf:
            yield memoryview(self.buf)

    def close(self) -> None:
        """Nothing to release: the bytes go with the store."""


class TrailerBuilder:
    """Builds a trailer item chunk by chunk, keeping only the encoded index (about 40 bytes +
    13 per run for each chunk) and the digest table (16 bytes per data block) instead of model
    objects, in two stores (``store()``: in memory by default; the backup spools them to a
    temporary file, so its memory does not grow with the volume). ``finish`` gives the same
    bytes as :func:`encode_trailer`; ``finish_pieces`` gives them as a header and a stream of
    pieces, never all in memory at once; ``close`` releases the stores."""

    def __init__(
        self,
        *,
        run_uuid: UUID,
        generation: int,
        volume_size: int,
        block_size: int,
        digest_alg: int = DIGEST_BLAKE3_128,
        store: Callable[[], TrailerStore] = MemoryStore,
    ) -> None:
        if digest_alg not in DIGEST_ALGS:
            raise MalformedError(f"trailer: unknown digest_alg {digest_alg}")
        self.run_uuid = run_uuid
        self.generation = generation
        self.volume_size = volume_size
        self.block_size = block_size
        self.digest_alg = digest_alg
        self._body = store()  # the encoded chunk index entries
        self._digests = store()  # the digest table, appended after the entries at finish
        self._first_seq: int | None = None  # seq of the first entry (0 unless a later part)
        self._next_record = 1
        self.chunk_count = 0
        self.data_blocks = self.zero_blocks = self.raw_bytes = self.stored_bytes = 0

    @property
    def body_len(self) -> int:
        """Bytes of the trailer body so far (index entries and digest table)."""
        return len(self._body) + len(self._digests)

    def add(self, e: ChunkIndexEntry, digests: Buf) -> None:
        """Append one chunk's index entry and the digests of its data blocks (in run order,
        ``data blocks * 16`` bytes; empty when ``digest_alg`` is 0), checked with the same
        rules as a whole trailer. Raises MalformedError, leaving the builder unchanged, when
        the entry is invalid or the trailer would grow past 2**32 - 1 bytes."""
        seq = e.seq if self._first_seq is None else self._first_seq + self.chunk_count
        d, z = check_index_entry(
            self.chunk_count,
            e,
            seq=seq,
            next_record=self._next_record,
            block_size=self.block_size,
            volume_size=self.volume_size,
        )
        ndig = len(memoryview(digests))
        check_digest_table(f"trailer entry {self.chunk_count}", self.digest_alg, ndig, d)
        encoded = encode_index_entries((e,))
        check_trailer_len(
            TRAILER_HEADER_LEN + self.body_len + len(encoded) + ndig, self.chunk_count + 1, self.data_blocks + d
        )
        self._body.append(encoded)
        if ndig:
            self._digests.append(digests)
        self._next_record = e.record + e.record_count
        if self._first_seq is None:
            self._first_seq = e.seq
        self.chunk_count += 1
        self.data_blocks += d
        self.zero_blocks += z
        self.raw_bytes += e.raw_len
        self.stored_bytes += e.stored_len

    def finish(self, *, complete: bool = True, continues: bool = False) -> bytes:
        """The trailer item (header + body: the index entries, then the digest table)."""
        header, _, pieces = self.finish_pieces(complete=complete, continues=continues)
        return b"".join((header, *pieces))

    def finish_pieces(self, *, complete: bool = True, continues: bool = False) -> tuple[bytes, int, Iterator[Buf]]:
        """The trailer item as ``(header, total length, the body's pieces)``: the header holds
        the body's CRC, computed here by one pass over the stores; the pieces are read from
        them again as they are consumed."""
        if complete and continues:
            raise MalformedError("a trailer cannot be both complete and continued on the next medium")
        crc = 0
        for piece in self._pieces():
            crc = crc32c(piece, crc)
        body_len = self.body_len
        header = encode_trailer_header(
            flags=(TRAILER_FLAG_COMPLETE if complete else 0) | (TRAILER_FLAG_CONTINUES if continues else 0),
            run_uuid=self.run_uuid,
            generation=self.generation,
            volume_size=self.volume_size,
            block_size=self.block_size,
            chunk_count=self.chunk_count,
            data_blocks=self.data_blocks,
            zero_blocks=self.zero_blocks,
            raw_bytes=self.raw_bytes,
            stored_bytes=self.stored_bytes,
            body_len=body_len,
            body_crc=crc,
            digest_alg=self.digest_alg,
        )
        return header, len(header) + body_len, self._pieces()

    def _pieces(self) -> Iterator[Buf]:
        yield from self._body.pieces()
        yield from self._digests.pieces()

    def close(self) -> None:
        """Release the stores (a spooled store's temporary file); call once the trailer is
        written."""
        self._body.close()
        self._digests.close()
