"""Reading a trailer item back without holding it whole (formats/SPEC.md, 10; issue 14).

A trailer holds 16 bytes of digest per data block of its generation (and ~1 more of chunk
index): :func:`tapearc.format.codec.decode_trailer` of a whole item needs the item and its
decoded copy in memory, ~32 bytes per data block. :class:`TrailerFile` reads the same item from
a seekable binary file (a temporary file the reader spooled it to, or a ``BytesIO``) and makes
every check ``decode_trailer`` makes -- the prefix and the item's length, the header CRC, the
version and header fields, the body CRC (computed over the stream, a piece at a time), each
chunk index entry (read one at a time), the totals summed over them, the length of the digest
table and the trailer's -- keeping only the index entries (a few dozen bytes per chunk) and
their digest offsets. The digest table stays in the file: :meth:`TrailerFile.digests` reads one
entry's digests when asked. The format is the same bytes; only the reading differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from tapearc.errors import MalformedError

from .codec import (
    check_digest_table,
    check_index_entry,
    check_trailer_len,
    check_trailer_totals,
    crc_error,
    decode_trailer_head,
    parse_index_entry,
)
from .constants import DIGEST_LEN, INDEX_ENTRY_FIXED_LEN, MAX_RUNS, RUN_LEN, TRAILER_HEADER_LEN
from .crc import crc32c
from .model import ChunkIndexEntry, Trailer, TrailerSummary

__all__ = ["PIECE", "TrailerFile"]

#: Bytes read at a time when computing the body CRC.
PIECE = 1 << 20


class TrailerFile:
    """A trailer item of ``length`` bytes at offset ``start`` of the seekable file ``f``,
    checked as :func:`decode_trailer` checks it (raises its errors) on construction.

    ``summary`` is its header (totals and flags), ``entries`` its chunk index, ``digest_alg``
    its digest algorithm; :meth:`digests` reads the digest table of one entry. The file must
    stay open and unchanged while the digests are read; the reader closes it."""

    def __init__(self, f: BinaryIO, length: int, *, start: int = 0) -> None:
        self.f, self.length, self.start = f, length, start
        self.summary, self.digest_alg, body_crc = decode_trailer_head(self._read(0, TRAILER_HEADER_LEN), length)
        self.body_len = length - TRAILER_HEADER_LEN
        self._check_crc(body_crc)
        n = self.summary.chunk_count
        if n * INDEX_ENTRY_FIXED_LEN > self.body_len:
            raise MalformedError(f"trailer: {n} chunks do not fit a body of {self.body_len} bytes")
        self.entries: tuple[ChunkIndexEntry, ...] = ()
        self._offsets: list[int] = []  # digest table offset of each entry, and the table's end
        self.index_len = self._read_index(n)

    # -- reading

    def _read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of the item (fewer at its end)."""
        self.f.seek(self.start + offset)
        return self.f.read(max(0, min(size, self.length - offset)))

    def _check_crc(self, expected: int) -> None:
        found = 0
        self.f.seek(self.start + TRAILER_HEADER_LEN)
        left = self.body_len
        while left > 0:
            piece = self.f.read(min(PIECE, left))
            if not piece:
                raise MalformedError(f"trailer: its file ends {left} bytes before the end of the item")
            found = crc32c(piece, found)
            left -= len(piece)
        if found != expected:
            raise crc_error("trailer body", expected, found)

    def _body(self, pos: int, size: int) -> bytes:
        """``size`` bytes of the body's index at ``pos`` (MalformedError past the body's end)."""
        if pos + size > self.body_len:
            raise MalformedError(
                f"trailer body: the chunk index needs {pos + size} bytes, the body holds {self.body_len}"
            )
        got = self.f.read(size)
        if len(got) != size:
            raise MalformedError(f"trailer: its file ends inside the chunk index (at body byte {pos + len(got)})")
        return got

    def _read_index(self, n: int) -> int:
        """Read and check the chunk index entry by entry, then the totals and the digest
        table's length; returns the index's length in bytes."""
        s = self.summary
        self.f.seek(self.start + TRAILER_HEADER_LEN)
        pos = next_record = 0
        totals = {"data_blocks": 0, "zero_blocks": 0, "raw_bytes": 0, "stored_bytes": 0}
        entries: list[ChunkIndexEntry] = []
        offsets = [0]
        per_block = DIGEST_LEN if self.digest_alg else 0
        for i in range(n):
            fixed = self._body(pos, INDEX_ENTRY_FIXED_LEN)
            run_count = int.from_bytes(fixed[-4:], "little")
            if run_count > MAX_RUNS:
                raise MalformedError(f"trailer body: entry {i} declares {run_count} runs, more than {MAX_RUNS}")
            runs = self._body(pos + INDEX_ENTRY_FIXED_LEN, RUN_LEN * run_count)
            pos += INDEX_ENTRY_FIXED_LEN + len(runs)
            e = parse_index_entry(fixed + runs)
            first_seq = entries[0].seq if entries else e.seq
            d, z = check_index_entry(
                i, e, seq=first_seq + i, next_record=next_record, block_size=s.block_size, volume_size=s.volume_size
            )
            next_record = e.record + e.record_count
            totals["data_blocks"] += d
            totals["zero_blocks"] += z
            totals["raw_bytes"] += e.raw_len
            totals["stored_bytes"] += e.stored_len
            entries.append(e)
            offsets.append(offsets[-1] + d * per_block)
        check_trailer_totals(s, totals)
        check_digest_table("trailer", self.digest_alg, self.body_len - pos, totals["data_blocks"])
        check_trailer_len(self.length, n, totals["data_blocks"])
        self.entries, self._offsets = tuple(entries), offsets
        return pos

    # -- the decoded trailer

    @property
    def complete(self) -> bool:
        return self.summary.complete

    @property
    def continues(self) -> bool:
        return self.summary.continues

    @property
    def chunk_count(self) -> int:
        return len(self.entries)

    def digests(self, index: int) -> bytes:
        """The digest table's part for entry number ``index`` (b"" without digests)."""
        a, b = self._offsets[index], self._offsets[index + 1]
        if a == b:
            return b""
        self.f.seek(self.start + TRAILER_HEADER_LEN + self.index_len + a)
        got = self.f.read(b - a)
        if len(got) != b - a:
            raise MalformedError("trailer: its file ends inside the digest table")
        return got

    def with_digests(self) -> Iterator[tuple[ChunkIndexEntry, bytes]]:
        """Each index entry with its part of the digest table, in index order."""
        for i, e in enumerate(self.entries):
            yield e, self.digests(i)

    def to_trailer(self) -> Trailer:
        """The whole trailer (its digest table in memory): what :func:`decode_trailer` returns."""
        s: TrailerSummary = self.summary
        return Trailer(
            run_uuid=s.run_uuid,
            generation=s.generation,
            volume_size=s.volume_size,
            block_size=s.block_size,
            entries=self.entries,
            data_blocks=s.data_blocks,
            zero_blocks=s.zero_blocks,
            raw_bytes=s.raw_bytes,
            stored_bytes=s.stored_bytes,
            flags=s.flags,
            digest_alg=self.digest_alg,
            digests=b"".join(self.digests(i) for i in range(len(self.entries))),
        )
