"""Encrypted backups and their restore: the key of a backup (``backup --encrypt``), the seal
every chunk of an encrypted generation goes through, the one-key-per-media-set rule, and the
opener a restore decodes chunks with (``restore --key``). formats/SPEC.md section 15; docs/encryption.md.

A media set has one key, or none: its media all carry the set's key record (tape file 0, after
the label) and every generation in it is encrypted with that key. A backup decides, before it
writes anything, whether the medium it appends to agrees (:func:`check_media_set_key`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, ChunkRow, GenerationRow
from tapearc.crypto.aead import ChunkCipher
from tapearc.crypto.keys import Key, fingerprint_text
from tapearc.errors import KeyRequiredError, MediaSetKeyError, WrongKeyError

__all__ = [
    "BackupKey",
    "ChunkOpener",
    "ChunkSealer",
    "check_media_set_key",
    "encrypted_header",
    "need_keys",
]

Buf = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class BackupKey:
    """The key a backup encrypts with (``--encrypt FILE``): the data key and its key record, as
    read from the key file (the record is written on every medium of the set)."""

    wrapped: fmt.WrappedKey
    key: Key

    @property
    def fingerprint(self) -> bytes:
        return self.key.fingerprint

    @property
    def text(self) -> str:
        return self.key.fingerprint_text


def encrypted_header(header: fmt.GenerationHeader, key: Key | None) -> fmt.GenerationHeader:
    """``header`` of a generation encrypted with ``key`` (layout 3: cipher and fingerprint);
    unchanged for a plain one (None)."""
    if key is None:
        return header
    return replace(header, cipher=fmt.Cipher.AES_256_GCM, key_fingerprint=key.fingerprint)


class ChunkSealer:
    """The seal of an encrypted generation (the packers' seal hook: ``seal(gen, chunk, inner)
    -> (stored payload, CHUNK_FLAG_ENCRYPTED)``): ``inner`` sealed with the run's chunk key
    under the associated data of ``gen`` (the part the chunk is written into) and the chunk's
    final header. Thread-safe (one cipher per run, made once)."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self._ciphers: dict[uuid.UUID, ChunkCipher] = {}
        self._lock = threading.Lock()

    def cipher(self, run_uuid: uuid.UUID) -> ChunkCipher:
        with self._lock:
            c = self._ciphers.get(run_uuid)
            if c is None:
                c = self._ciphers[run_uuid] = ChunkCipher(self.key, run_uuid)
            return c

    def __call__(self, gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: Buf) -> tuple[Buf, int]:
        return self.with_headroom(gen, chunk, inner, 0)

    def with_headroom(
        self, gen: fmt.GenerationHeader, chunk: fmt.ChunkHeader, inner: Buf, headroom: int
    ) -> tuple[bytearray, int]:
        """The sealed payload after ``headroom`` free bytes (the packers put the chunk's header
        there: one buffer from the cipher to the medium, no copy)."""
        h = replace(chunk, flags=chunk.flags | fmt.CHUNK_FLAG_ENCRYPTED, stored_len=len(inner) + fmt.SEAL_OVERHEAD)
        sealed = fmt.seal_chunk_payload(gen, h, inner, self.cipher(gen.run_uuid), headroom=headroom)
        return sealed, fmt.CHUNK_FLAG_ENCRYPTED


def check_media_set_key(
    catalog: Catalog,
    set_uuid: uuid.UUID,
    records: list[fmt.WrappedKey],
    has_data: bool,
    key: BackupKey | None,
    medium: str,
) -> bool:
    """The one-key-per-media-set rule for a backup appending to a labeled medium of ``set_uuid``
    whose key records are ``records`` (``has_data``: the set holds generations, on this medium
    or others the catalog knows). Returns True when the key record must be written on the medium
    before the backup (an encrypted backup onto a medium with nothing after its label).

    Refused, before anything is written: an encrypted set and another key (WrongKeyError, both
    fingerprints), an encrypted set and no ``--encrypt`` (KeyRequiredError), ``--encrypt`` into
    a set that holds plain generations (MediaSetKeyError)."""
    want = records[0].key_fingerprint if records else catalog.media_set_key(set_uuid)
    if want is None and has_data:
        want = next((g.key_fingerprint for g in catalog.generations(set_uuid) if g.encrypted), None)
    if want is not None:
        if key is None:
            raise KeyRequiredError(
                f"media set {set_uuid} is encrypted with key {fingerprint_text(want)}; a backup into it must be "
                "encrypted too; nothing was written",
                hint="add --encrypt with the set's key file, or back up to a new media set (a blank medium)",
                fingerprint=fingerprint_text(want),
            ).at(medium=medium)
        if key.fingerprint != want:
            raise WrongKeyError(
                f"media set {set_uuid} is encrypted with key {fingerprint_text(want)}, not with the key given "
                f"({key.text}); a media set has one key; nothing was written",
                hint="give the set's key file to --encrypt, or start a new media set (a blank medium) for this key",
                fingerprint=fingerprint_text(want),
                given=key.text,
            ).at(medium=medium)
        return not records
    if key is not None and has_data:
        raise MediaSetKeyError(
            f"media set {set_uuid} holds plain (unencrypted) generations; --encrypt does not mix encrypted ones "
            "into it; nothing was written",
            hint="encrypted backups start a new media set: use a blank medium (or tapearc label a new one)",
        ).at(medium=medium)
    return key is not None


def need_keys(gens: list[GenerationRow], key: Key | None, what: str = "") -> None:
    """Before anything is written: every encrypted generation of ``gens`` can be opened with
    ``key`` (KeyRequiredError naming the fingerprint wanted, WrongKeyError naming both)."""
    for g in gens:
        if g.key_fingerprint is None:
            continue
        name = what or f"generation {g.number} of volume {g.volume!r}"
        want = fingerprint_text(g.key_fingerprint)
        if key is None:
            raise KeyRequiredError(
                f"{name} is encrypted with key {want}; no key was given; nothing was written",
                hint="give the key file with --key FILE (tapearc key recover gets it back from a medium of the set)",
                fingerprint=want,
            )
        if key.fingerprint != g.key_fingerprint:
            raise WrongKeyError(
                f"{name} is encrypted with key {want}, not with the key given ({key.fingerprint_text}); "
                "nothing was written",
                hint=f"give the key whose fingerprint is {want}",
                fingerprint=want,
                given=key.fingerprint_text,
            )


class ChunkOpener:
    """Opens the chunks a restore reads: the raw payload of a chunk (``fmt.raw_payload``: opened
    with its run's cipher when encrypted, decompressed when compressed). The associated data
    binds the chunk's generation and part: both come from the catalog row of the tape file the
    chunk is in (looked up once per tape file, in the reading thread: :meth:`for_chunk`); the
    function it returns may run in any thread."""

    def __init__(self, key: Key | None, catalog: Catalog) -> None:
        self.key = key
        self.catalog = catalog
        self._files: dict[tuple[uuid.UUID, int], tuple[fmt.GenerationHeader | None, ChunkCipher | None]] = {}
        self._ciphers: dict[uuid.UUID, ChunkCipher] = {}

    def _file(self, medium_uuid: uuid.UUID, tape_file: int) -> tuple[fmt.GenerationHeader | None, ChunkCipher | None]:
        got = self._files.get((medium_uuid, tape_file))
        if got is None:
            row = self.catalog.generation_of_tape_file(medium_uuid, tape_file)
            if row is None or row.key_fingerprint is None:
                got = (None, None)
            else:
                gen = generation_header_of(row, self.catalog.part_info(medium_uuid, tape_file)[0])
                cipher = self._ciphers.get(gen.run_uuid)
                if cipher is None:
                    cipher = self._ciphers[gen.run_uuid] = fmt.chunk_cipher(gen, self.key)
                got = (gen, cipher)
            self._files[(medium_uuid, tape_file)] = got
        return got

    def for_chunk(self, chunk: ChunkRow) -> Callable[[fmt.ChunkHeader, Buf], Buf] | None:
        """The function that gives the raw payload of ``chunk`` (of an encrypted generation) from
        its header and stored payload (CRC checked): ChunkAuthError when its tag does not match
        (or the chunk is not encrypted); KeyRequiredError / WrongKeyError (here, before anything
        is read) when the key cannot open it. None for a chunk of a plain generation: its payload
        is unpacked as it is (``fmt.unpack_payload``; an encrypted chunk there is refused)."""
        gen, cipher = self._file(chunk.medium_uuid, chunk.tape_file)
        if gen is None:
            return None
        return partial(fmt.raw_payload, gen, cipher=cipher)


def generation_header_of(row: GenerationRow, part: int) -> fmt.GenerationHeader:
    """The generation header of ``row``'s part ``part`` as far as a chunk's associated data
    needs it (media set, volume, run, generation, part, key fingerprint), from the catalog."""
    fp = row.key_fingerprint
    return fmt.GenerationHeader(
        run_uuid=row.run_uuid,
        media_set_uuid=row.set_uuid,
        medium_uuid=uuid.UUID(int=0),
        volume_uuid=row.volume_uuid,
        volume_name=row.volume,
        generation=row.number,
        base_generation=row.base,
        kind=fmt.GenerationKind.FULL if row.kind == "full" else fmt.GenerationKind.INCREMENTAL,
        compression=fmt.Compression.ZSTD if row.compression == "zstd" else fmt.Compression.NONE,
        block_size=row.block_size,
        record_size=row.record_size,
        chunk_blocks=row.chunk_blocks,
        volume_size=row.volume_size,
        created=row.created,
        part=part,
        cipher=fmt.Cipher.AES_256_GCM if fp is not None else fmt.Cipher.NONE,
        key_fingerprint=fp,
    )
