"""A backup of a volume to a medium, as one generation tape file (or one per medium it spans).

Three parts: planning the generation (engine.genplan: volume, number, base, header, as a value),
classifying blocks (engine.classify: zero / unchanged / data, window by window) and writing them
(engine.genwriter: chunks, parts, spanning, catalog rows). This module prepares the medium and
runs the three, reading the volume in windows of one chunk's worth of blocks.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from tapearc import format as fmt
from tapearc.catalog.db import Catalog, path_text
from tapearc.engine.backup_result import BackupResult
from tapearc.engine.classify import BlockClassifier
from tapearc.engine.encryption import BackupKey, ChunkSealer, check_media_set_key
from tapearc.engine.genplan import GenerationPlan, PlanRequest, chunk_geometry, plan_generation
from tapearc.engine.genwriter import GenerationWriter
from tapearc.engine.identity import refuse_source_is_medium, refuse_unless_blank
from tapearc.engine.keymedia import read_key_records, write_key_record
from tapearc.engine.labeling import write_label
from tapearc.engine.layout import GenerationFile, new_label, scan_tape_files
from tapearc.engine.mediasource import AppendHint, MediaSource
from tapearc.engine.pipeline import ReadAhead, Span, plan_windows
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.scan import sync_catalog as _sync
from tapearc.engine.segments import Kind, Segment, segments
from tapearc.engine.tapefiles import probe_label
from tapearc.engine.volumes import source_identity
from tapearc.errors import (
    MediumFullError,
    NotTapearcMediumError,
    SourceError,
    TapearcError,
    UsageError,
    WriteProtectedError,
    WrongMediumError,
)
from tapearc.format.constants import MAX_BLOCK_SIZE
from tapearc.media.base import Position, TapeDrive
from tapearc.sources.base import ChangeMap, Source
from tapearc.sources.changes_trust import ChangeOptions, check_change_options, choose_change_map, open_tracker
from tapearc.sources.file import SourceVolume
from tapearc.sources.opener import open_source

if TYPE_CHECKING:
    from tapearc.engine.pools import PoolUse

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_RECORD_SIZE",
    "AppendPoint",
    "BackupOptions",
    "BackupResult",
    "backup",
    "chunk_geometry",
    "inspect_medium_for_append",
    "open_for_append",
    "prepare_medium_for_append",
    "sync_catalog",
]

DEFAULT_BLOCK_SIZE = 64 * 1024
DEFAULT_RECORD_SIZE = 1024 * 1024
#: An incremental whose change tracker's changed runs are shorter than this on average (scattered
#: blocks) runs without read-ahead and packing threads (see _threads_for).
SCATTERED_RUN = 1024 * 1024
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MAX_CHUNK_SIZE = 256 * 1024 * 1024
#: Smallest record size a backup writes with (the format allows fmt.MIN_RECORD_SIZE): a chunk's
#: header reserve fits in its first record.
MIN_BACKUP_RECORD_SIZE = 4096


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackupOptions:
    block_size: int = DEFAULT_BLOCK_SIZE
    record_size: int | None = None  # None: the medium's (when labeled) or the default
    compress: str = "none"  # "none" | "zstd"
    volume_name: str | None = None  # --volume NAME: that volume (moved if its source differs)
    new_volume: bool = False  # --new-volume: never continue an existing volume
    chunk_size: int = DEFAULT_CHUNK_SIZE
    label_text: str = ""
    full: bool = False  # write a full generation even when an earlier one exists
    media_set: uuid.UUID | None = None  # refuse a medium of any other set
    verify: bool = False  # read back each tape file after writing it
    block_size_given: bool = True  # False: the block size is the default and may follow the volume's
    # change tracking: --dirty-bitmap, --changed-blocks, --checkpoint, --verify-unchanged (docs/changes.md)
    changes: ChangeOptions = field(default_factory=ChangeOptions)
    encrypt: BackupKey | None = None  # --encrypt FILE: the key (loaded before the medium is touched)
    pool: str | None = None  # --pool NAME: the medium is chosen from the library for this media pool


def _check_options(options: BackupOptions) -> None:
    if options.compress not in ("none", "zstd"):
        raise UsageError(f"unknown compression {options.compress!r}; use zstd or none")
    if not 0 <= options.chunk_size <= MAX_CHUNK_SIZE:
        raise UsageError(f"chunk size {options.chunk_size} must be at most {MAX_CHUNK_SIZE} bytes")
    check_change_options(options.changes)


def _check_sizes(block_size: int, record_size: int, drive: TapeDrive) -> None:
    if block_size < 512 or block_size > MAX_BLOCK_SIZE or block_size % 512:
        raise UsageError(f"block size {block_size} must be a multiple of 512 between 512 and {MAX_BLOCK_SIZE}")
    if record_size < MIN_BACKUP_RECORD_SIZE:
        raise UsageError(f"record size {record_size} is below the minimum of {MIN_BACKUP_RECORD_SIZE} bytes")
    if record_size > drive.max_record_size:
        raise UsageError(
            f"record size {record_size} exceeds the largest record drive {drive.name} takes ({drive.max_record_size})",
            hint=f"use --record-size {drive.max_record_size} or less",
        )


@dataclass(frozen=True, slots=True)
class AppendPoint:
    """What a medium is, found without writing to it (:func:`inspect_medium_for_append`), and
    the writes :func:`open_for_append` makes to append a tape file to it."""

    label: fmt.Label  # the medium's label, or the one to write on a blank medium
    gens: list[GenerationFile]  # the generation tape files found
    new: bool  # blank: the label is written first
    close_tail: bool  # the medium ends inside a tape file (an interrupted label or backup)
    key_record: fmt.WrappedKey | None = None  # written after the label (an encrypted set's new medium)
    at_end: bool = False  # the drive is already at the end of data (where the last backup on it ended)
    last_file: int | None = None  # the medium's last tape file, when it was walked to its end


def inspect_medium_for_append(
    drive: TapeDrive,
    record_size: int | None,
    now: int,
    label_text: str = "",
    media_set: uuid.UUID | None = None,
    *,
    catalog: Catalog | None = None,
    barcode: str | None = None,
    by_place: bool = True,
) -> AppendPoint:
    """Read what the medium is and refuse one a backup may not append to; writes nothing.

    A medium is labeled only when it is provably blank (identity.refuse_unless_blank: not a
    ``sim:`` image holding other bytes or a damaged label, nor a medium the ``catalog`` holds
    generations for at that place -- unless not ``by_place``: a drive whose tapes are swapped --
    or ``barcode``); a damaged label is reported, not replaced (tapefiles.probe_label reads it).
    """
    if not drive.writable:
        raise WriteProtectedError("medium is write-protected; nothing was written").at(medium=drive.name)
    probe = probe_label(drive)
    if probe.blank:
        refuse_unless_blank(drive, catalog, barcode, by_place=by_place)
        if media_set is not None:
            raise WrongMediumError(
                f"medium is blank, not a medium of media set {media_set}; nothing was written",
                hint="leave --media-set out to start a new set on it, or label it with tapearc label --media-set",
            ).at(medium=drive.name)
        label = new_label(record_size or min(DEFAULT_RECORD_SIZE, drive.max_record_size), now, label_text)
        return AppendPoint(label, [], new=True, close_tail=False)
    if probe.label is None:  # foreign, unreadable or a damaged label: never a medium to (re)label
        raise (probe.error or NotTapearcMediumError(probe.foreign or "not a tapearc medium")).at(medium=drive.name)
    label = probe.label
    if media_set is not None and label.media_set_uuid != media_set:
        raise WrongMediumError(
            f"medium belongs to media set {label.media_set_uuid}, not {media_set}; nothing was written"
        ).at(medium=drive.name)
    if record_size is not None and record_size != label.record_size:
        raise UsageError(
            f"medium {drive.name} was labeled with record size {label.record_size}; --record-size {record_size} differs",
            hint="leave --record-size out to use the medium's",
        )
    if drive.position().file == 0:  # labeling was interrupted before the label's filemark
        return AppendPoint(label, [], new=False, close_tail=True)
    gens, open_tail, last = scan_tape_files(drive)
    return AppendPoint(label, gens, new=False, close_tail=open_tail, last_file=last)


def open_for_append(drive: TapeDrive, point: AppendPoint) -> None:
    """The writes that make the medium ready to append (the first ones a backup makes): label a
    blank medium; close a last tape file the medium ends inside (an interrupted backup, or a
    label without its filemark) with a filemark, so it stays what it is (an incomplete
    generation) and the new one starts cleanly. Leaves the drive at the end of data."""
    if point.new:
        write_label(drive, point.label, point.key_record)
        return
    if point.key_record is not None:  # a labeled medium with nothing after its label joins an encrypted set
        write_key_record(drive, point.key_record)
    if not point.at_end:
        drive.seek_end_of_data()
    if point.close_tail:
        drive.write_filemark()


def prepare_medium_for_append(
    drive: TapeDrive,
    record_size: int | None,
    now: int,
    label_text: str = "",
    media_set: uuid.UUID | None = None,
    *,
    catalog: Catalog | None = None,
    barcode: str | None = None,
    by_place: bool = True,
) -> tuple[fmt.Label, list[GenerationFile], bool]:
    """:func:`inspect_medium_for_append` then :func:`open_for_append`: make the medium ready to
    append a tape file. Returns (label, generation files found, whether the medium was new)."""
    point = inspect_medium_for_append(
        drive, record_size, now, label_text, media_set, catalog=catalog, barcode=barcode, by_place=by_place
    )
    open_for_append(drive, point)
    return point.label, point.gens, point.new


@dataclass(frozen=True, slots=True)
class _Medium:
    """The medium a backup starts on, checked; nothing is written to it before :meth:`open`."""

    drive: TapeDrive
    point: AppendPoint
    catalog: Catalog
    records: tuple[fmt.WrappedKey, ...] = ()  # the key records after the label once open() is done

    @property
    def label(self) -> fmt.Label:
        return self.point.label

    @property
    def new(self) -> bool:
        return self.point.new

    def open(self) -> None:
        """Write what the append needs (label, key record, closing filemark); a new medium joins
        the catalog (with its set's key)."""
        open_for_append(self.drive, self.point)
        if self.point.new:
            sync_catalog(self.drive, self.catalog, self.label, [])
        if self.point.key_record is not None:
            self.catalog.set_media_set_key(self.label.media_set_uuid, self.point.key_record.key_fingerprint)


def _prepare(media: MediaSource, catalog: Catalog, options: BackupOptions, now: int) -> _Medium:
    """Check the medium without writing to it: a blank one to label or the end of a labeled one;
    bring the catalog up to date with a labeled one; refuse a medium that is not the last of its
    set. Where the last backup through ``media`` ended cleanly on this drive (a job's volumes one
    after the other), it appends there (MediaSource.continued_append) without reading the medium
    from its beginning again."""
    drive = media.current()
    if options.record_size is not None:
        _check_sizes(options.block_size, options.record_size, drive)
    hint = media.continued_append(drive)
    point = _continued(hint, options)
    if point is None:
        hint = None
        barcode = media.loaded_barcode() or ""
        point = inspect_medium_for_append(
            drive,
            options.record_size,
            now,
            options.label_text or barcode,
            options.media_set,
            catalog=catalog,
            barcode=barcode or None,
            by_place=media.changer is None,
        )
    label = point.label
    _check_sizes(options.block_size, label.record_size, drive)
    if not point.new and hint is None:
        sync_catalog(drive, catalog, label, point.gens, last_file=point.last_file)
    later = [m for m in catalog.media_of_set(label.media_set_uuid) if m.sequence > label.sequence]
    if later:
        raise WrongMediumError(
            f"medium is sequence {label.sequence} of media set {label.media_set_uuid}, which continues on "
            f"sequence {later[-1].sequence}; a backup appends to the last medium of a set; nothing was written",
            hint=f"load sequence {later[-1].sequence}" + (f" ({later[-1].label})" if later[-1].label else ""),
        ).at(medium=drive.name)
    point, records = _key_policy(drive, catalog, point, options.encrypt, hint.key_records if hint else None)
    after = records + ((point.key_record,) if point.key_record is not None else ())
    return _Medium(drive, point, catalog, after)


def _continued(hint: AppendHint | None, options: BackupOptions) -> AppendPoint | None:
    """The append point where the last backup on this drive ended, if the options allow it
    there (else None: the medium is inspected as usual, which gives the same refusals)."""
    if hint is None:
        return None
    label = hint.label
    if options.media_set is not None and options.media_set != label.media_set_uuid:
        return None
    if options.record_size is not None and options.record_size != label.record_size:
        return None
    return AppendPoint(label, [], new=False, close_tail=False, at_end=True)


def _key_policy(
    drive: TapeDrive,
    catalog: Catalog,
    point: AppendPoint,
    key: BackupKey | None,
    known: tuple[fmt.WrappedKey, ...] | None = None,
) -> tuple[AppendPoint, tuple[fmt.WrappedKey, ...]]:
    """One key per media set (engine.encryption.check_media_set_key), decided before anything
    is written: the append point with the key record to write after the label, if any, and the
    key records the medium holds now (``known``: as the last backup on this drive left them,
    else read from the medium)."""
    if point.new:
        return replace(point, key_record=key.wrapped if key is not None else None), ()
    set_uuid = point.label.media_set_uuid
    # rewinds and reads tape file 0; open_for_append goes back to the end
    records = list(known) if known is not None else read_key_records(drive)
    if records:
        catalog.set_media_set_key(set_uuid, records[0].key_fingerprint)
    has_data = bool(point.gens) or bool(catalog.generations(set_uuid))
    write = check_media_set_key(catalog, set_uuid, records, has_data, key, drive.name)
    if not write or key is None:
        return point, tuple(records)
    # the key record's filemark ends tape file 0 (a label whose filemark was never written too)
    return replace(point, key_record=key.wrapped, close_tail=False, at_end=False), tuple(records)


def _new_result(medium: _Medium, plan: GenerationPlan, options: BackupOptions, tape_file: int) -> BackupResult:
    h = plan.header
    assert h.source is not None
    base = f" on generation {h.base_generation}" if plan.kind == "incremental" else ""
    log.info(
        "volume %r generation %d (%s%s, %d-byte blocks) to %s, tape file %d",
        h.volume_name,
        h.generation,
        plan.kind,
        base,
        h.block_size,
        medium.drive.name,
        tape_file,
    )
    return BackupResult(
        medium=medium.drive.name,
        volume=h.volume_name,
        generation=h.generation,
        tape_file=tape_file,
        volume_size=h.volume_size,
        block_size=h.block_size,
        record_size=h.record_size,
        compression=options.compress,
        key_fingerprint=options.encrypt.text if options.encrypt is not None else None,
        new_medium=medium.new,
        kind=plan.kind,
        base_generation=h.base_generation,
        warnings=list(plan.warnings),
        volume_uuid=str(h.volume_uuid),
        source_path=path_text(h.source.path),
        source_real=path_text(h.source.real_path),
    )


def backup(
    source: str,
    media: MediaSource | TapeDrive,
    catalog: Catalog,
    options: BackupOptions = BackupOptions(),
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> BackupResult:
    """Write a generation of ``source``: incremental when the volume already has a complete
    generation in the media set (unless ``options.full``), else full. When the medium fills up
    and the source can change media, the generation continues on the next medium of the set."""
    progress, started, vu = progress or NoProgress(), time.monotonic(), options.changes.verify_unchanged
    _check_options(options)
    if not isinstance(media, MediaSource):
        media = MediaSource.fixed(media, catalog)
    refuse_source_is_medium(source, media.spec)
    tracker = open_tracker(source, options.changes)  # before the source: qemu-nbd serves one client by default
    with open_source(source) as src:
        tracker.fit(src.size)
        now = int(clock())
        pool = None if options.pool is None else _pool_medium(source, media, catalog, options, now)
        medium = _prepare(media, catalog, options, now)
        req = PlanRequest(
            source=source,
            ident=source_identity(source, os.fstat(src.fd) if isinstance(src, SourceVolume) else None),
            size=src.size,
            label=medium.label,
            now=now,
            block_size=options.block_size,
            block_size_given=options.block_size_given,
            chunk_size=options.chunk_size,
            compress=options.compress,
            full=options.full,
            volume_name=options.volume_name,
            new_volume=options.new_volume,
            key=options.encrypt.key if options.encrypt is not None else None,
        )
        plan = plan_generation(catalog, req)  # may refuse the volume: nothing is written before
        with plan:  # closes the base manifest's temporary file, whatever happens
            change = choose_change_map(catalog, plan, tracker)
            with closing(volume_reader(src, plan, change.map, vu)) as reader:  # reads while the medium opens
                medium.open()
                _join_pool(catalog, pool, medium.label.media_set_uuid)
                pos0 = medium.drive.position()
                result = _new_result(medium, plan, options, pos0.file)
                result.warnings += (pool.warnings if pool else []) + change.warnings + _tls_warnings(source)
                writer = _writer(plan, result, catalog, media, options, clock, _threads_for(change.map, vu))
                run = _Run(src, source, plan, writer, medium, pos0, progress, reader)
                complete = run.write()
            _remember_end(media, medium, writer, complete and not options.verify)
            _join_pool(catalog, pool, medium.label.media_set_uuid, result)  # the media it spanned onto
            record = change.caught(bool(result.tracker_missed))  # a tracker caught lying: no checkpoint
            result.change = record.to_json()
            if complete and writer.gen_id:
                catalog.record_change(writer.gen_id, record)
            result.seconds, result.complete = time.monotonic() - started, complete
            result.medium = writer.part.drive.name if writer.part else medium.drive.name
            if not complete:
                raise run.not_complete()
            return result


def _remember_end(media: MediaSource, medium: _Medium, writer: GenerationWriter, clean: bool) -> None:
    """A generation that ended cleanly on the medium it started on (no spanning, no read-back
    check that moved the drive): the next backup through ``media`` may append right here."""
    part = writer.part
    if not clean or part is None or part.drive is not medium.drive or part.number != 0:
        return
    media.append_hint = AppendHint(medium.drive, medium.label, medium.drive.position(), medium.records)


def _pool_medium(source: str, media: MediaSource, catalog: Catalog, options: BackupOptions, now: int) -> PoolUse:
    from tapearc.engine.pools import load_for_pool
    from tapearc.engine.volume import default_volume_name

    assert options.pool is not None
    volume = options.volume_name or default_volume_name(source)
    return load_for_pool(media, catalog, options.pool, volume, options.full, now, options.record_size)


def _join_pool(catalog: Catalog, pool: PoolUse | None, set_uuid: uuid.UUID, result: BackupResult | None = None) -> None:
    """The set's media (a new one, those a backup spanned onto) join the backup's pool."""
    if pool is not None:
        from tapearc.catalog.pools import join_pool

        join_pool(catalog, set_uuid, pool.pool_id)
        if result is not None:
            result.warnings += pool.spanning


def _threads_for(change_map: ChangeMap | None, verify_unchanged: bool) -> bool | None:
    """False (no read-ahead or packing threads) for an incremental whose change tracker's
    changed runs are short on average (under SCATTERED_RUN bytes: scattered blocks); None
    (TAPEARC_PIPELINE decides) otherwise. A reader thread hands the classifier one window per
    run, so scattered 64 KiB blocks cost a hand-over each between threads, and the chunks a
    packer each, which costs more than the overlap gives (2 GiB disk, 64 KiB blocks dirtied at
    random, through a command server: 1% 0.19 -> 0.14 s, 3% 0.63 -> 0.49 s, 10% 1.26 -> 0.88 s;
    docs/performance.md, "Issue 14, ninth session"); an NBD source keeps its requests in flight
    at the server either way (``Source.advise``). Long runs read whole windows, as a full read
    does, where the threads overlap reading and hashing."""
    if change_map is None or verify_unchanged:
        return None
    runs = change_map.changed_runs
    return False if runs and change_map.changed_bytes < SCATTERED_RUN * runs else None


def _writer(
    plan: GenerationPlan,
    result: BackupResult,
    catalog: Catalog,
    media: MediaSource,
    options: BackupOptions,
    clock: Callable[[], float],
    threads: bool | None = None,
) -> GenerationWriter:
    """The generation writer (an encrypted generation: its seal, the key record for each next
    medium and keyed digests); ``threads`` False: it packs each chunk in the caller's thread."""
    enc = options.encrypt
    extra: dict[str, Any] = {} if threads is not False else {"workers": 0}
    if enc is not None:  # (a plain generation: the writer's own identity seal and digests)
        extra |= {
            "seal": ChunkSealer(enc.key),
            "key_record": enc.wrapped,
            "digest_alg": fmt.digest_alg_for(plan.digest_key),
        }
    return GenerationWriter(
        genhdr=plan.header, result=result, catalog=catalog, media=media, verify=options.verify, clock=clock, **extra
    )


def _read_plan(src: Source, plan: GenerationPlan, change_map: ChangeMap | None, verify: bool) -> Iterator[Span]:
    """The read plan: the volume's segments (engine.segments) as byte spans, data read."""
    h = plan.header
    bs, size = h.block_size, h.volume_size
    base = plan.base_manifest
    segs = segments(
        src.extents(0, size),
        bs,
        size,
        change_map=change_map if base is not None else None,
        base_blocks=base.nblocks if base is not None else 0,
        verify=verify,
    )
    for seg in segs:
        a = seg.first * bs
        yield a, min(size, (seg.first + seg.count) * bs) - a, seg.kind == Kind.DATA, seg


def volume_reader(src: Source, plan: GenerationPlan, change_map: ChangeMap | None, verify: bool) -> ReadAhead:
    """The volume's reader, begun: window by window along the read plan (a thread reads the
    first windows while the medium is opened and the part's header written, then the next ones
    while one is classified and written); the source is told the reads to come."""
    size = plan.header.volume_size
    step = plan.header.chunk_blocks * plan.header.block_size
    spans, ahead = itertools.tee(_read_plan(src, plan, change_map, verify))
    src.advise((o, n) for o, n, read, _ in plan_windows(ahead, step) if read)  # the source may send them early
    reader = ReadAhead(src.readinto_at, size, step, plan=spans, threaded=_threads_for(change_map, verify))
    reader.begin()
    return reader


class _Run:
    """Reading the volume, classifying its blocks and writing them: one backup's generation."""

    def __init__(
        self,
        src: Source,
        source: str,
        plan: GenerationPlan,
        writer: GenerationWriter,
        medium: _Medium,
        pos0: Position,
        progress: Progress,
        reader: ReadAhead,
    ) -> None:
        """``reader``: the volume's windows along its read plan (:func:`volume_reader`)."""
        self.src = src
        self.reader = reader
        self.source = source
        self.plan = plan
        self.writer = writer
        self.medium = medium
        self.progress = progress
        self.pos0 = pos0
        h = plan.header
        self.classifier = BlockClassifier(h.block_size, plan.base_manifest, fmt.digest_function(plan.digest_key))
        self.block_id = 0  # the next block to classify
        self.missed = _MissWatch(writer, writer.result.tracker_missed)

    def write(self) -> bool:
        """Write the generation; True when it is complete on the media."""
        writer, h, result = self.writer, self.plan.header, self.writer.result
        complete = False
        try:
            writer.start(self.medium.drive, self.medium.label)
            self.progress.start(f"backup {h.volume_name}", h.volume_size)
            self._blocks()
            if not writer.stopped:
                _check_source_size(self.src, self.source, h.volume_size, result)
            writer.flush()
            if not writer.stopped:
                writer.close_part(complete=True, continues=False)
                complete = True
        except SourceError as e:
            self._source_failed(e)
            raise
        except MediumFullError as e:
            raise self._full(e) from None
        finally:
            result.unchanged_blocks = self.classifier.unchanged
            result.source_bytes_read = self.src.bytes_read
            self.progress.finish()
            if writer.gen_id and not complete and not (writer.stopped or writer.recorded):
                writer.record_unfinished(self.medium.label, self.pos0.file)
        return complete

    def _blocks(self) -> None:
        """Classify the volume's windows (its reader's) into the writer; holes and blocks
        vouched unchanged are classified without a read."""
        writer, classifier, reader = self.writer, self.classifier, self.reader
        bs = self.plan.header.block_size
        try:
            for offset, n, tag, buf, got in reader.items():
                if writer.stopped:
                    break
                seg = cast(Segment, tag)
                sink = self.missed if seg.vouched else writer
                if buf is None:
                    if seg.kind == Kind.ZERO:
                        self.block_id = classifier.zeros(seg.first, seg.count, sink)
                    else:
                        self.block_id = classifier.unchanged_blocks(seg.first, seg.count)
                    self.progress.advance(n)
                    continue
                if got != n:
                    raise self._shrank(offset + got)
                self.block_id = classifier.classify(buf[0], buf[1], got, offset // bs, sink)
                self.progress.advance(got)
                if writer.stopped:
                    break
        finally:
            reader.close()

    def _shrank(self, at: int) -> SourceError:
        now = self.src.current_size()
        return SourceError(
            f"source {self.source} shrank during the backup: expected {self.plan.header.volume_size} bytes, the read "
            f"at byte {at} found its end" + (f" (it now holds {now} bytes)" if now is not None else ""),
            cause="changed",
        )

    def _source_failed(self, e: SourceError) -> None:
        """The source failed (shrank, EIO): close the tape file cleanly, trailer marked incomplete,
        so the medium stays readable and the catalog row says incomplete."""
        writer, h = self.writer, self.plan.header
        try:
            writer.close_incomplete()
        except TapearcError:
            pass  # the medium failed too: the caller marks the row incomplete
        if e.hint is None:
            what_next = (
                "back up a quiet (unmounted or snapshotted) volume"
                if e.details.get("cause") == "changed"
                else "the source could not be read to its end (a failing disk, or an NBD export whose server "
                "or connection went away): fix that and back up again"
            )
            e.hint = (
                f"generation {h.generation} of volume {h.volume_name} is marked incomplete (its first "
                f"{writer.result.chunks} chunks are on the medium); {what_next}"
            )

    def _full(self, e: MediumFullError) -> TapearcError:
        """The medium ended where no early warning came first: leave a filemark if it can."""
        _close_after_full(self.writer.media.drive)
        h, r = self.plan.header, self.writer.result
        return MediumFullError(
            f"medium filled up while writing generation {h.generation} of volume {h.volume_name} "
            f"(after {r.chunks} chunks, {r.raw_bytes} bytes) and tapearc could not close it cleanly "
            f"({e.message}); the medium is readable up to the last complete chunk",
            hint="use a medium with an early-warning zone, or a larger one",
        ).at(medium=self.medium.drive.name, tape_file=self.pos0.file)

    def not_complete(self) -> TapearcError:
        """The error for a generation that stopped at the end of a medium with no next one."""
        w, h = self.writer, self.plan.header
        nblocks = -(-h.volume_size // h.block_size)
        first_missing = w.dropped_from if w.dropped_from is not None else self.block_id
        return MediumFullError(
            f"medium reached its end while writing generation {h.generation} of volume {h.volume_name}, and no next "
            f"medium can be loaded: blocks {first_missing}-{nblocks - 1} are not on it; generation {h.generation} is "
            f"marked incomplete; the medium is intact and readable up to the last chunk",
            hint="give --changer (a library, mtx, serial or operator) to continue on the next medium of the set",
            blocks=(first_missing, nblocks - 1),
        ).at(medium=w.result.medium, tape_file=w.part.tape_file if w.part else self.pos0.file)


def _tls_warnings(source: str) -> list[str]:
    """An NBD source over TLS whose server is not authenticated (tapearc.nbdclient.tls_warning)."""
    from tapearc.nbdclient import tls_warning

    w = tls_warning(source)
    return [w] if w else []


def _check_source_size(src: Source, source: str, size: int, result: BackupResult) -> None:
    """After the last read: a source that grew (or shrank behind the reads) is backed up for the
    size it had at the start, with a warning (docs: tapearc.sources.file.SourceVolume)."""
    now = src.current_size()
    if now is None or now == size:
        return
    if now > size:
        result.warnings.append(
            f"source {source} grew during the backup: bytes after {size} were not backed up (it now holds {now} bytes)"
        )
    else:
        result.warnings.append(
            f"source {source} shrank to {now} bytes during the backup, after its {size} bytes were read: "
            f"the generation holds the {size} bytes read"
        )


def sync_catalog(
    drive: TapeDrive, catalog: Catalog, label: fmt.Label, gens: list[GenerationFile], last_file: int | None = None
) -> None:
    """Bring the catalog up to date with the medium (``last_file``: its last tape file, when it
    was walked to its end), then go back to end of data."""
    if _sync(drive, catalog, label, gens, last_file=last_file):
        drive.seek_end_of_data()


def _close_after_full(drive: TapeDrive | None) -> None:
    """After an unexpected physical end: try to leave a filemark so the tape file ends cleanly."""
    if drive is None:
        return
    try:
        drive.write_filemark()
    except TapearcError:
        pass


class _MissWatch:
    """A sink in front of the writer for blocks a change tracker vouched for, read to check it:
    every block that reaches the writer (it changed after all) is a block the tracker missed,
    noted as inclusive ranges ``(first, last)`` in ``missed``."""

    def __init__(self, writer: GenerationWriter, missed: list[tuple[int, int]]) -> None:
        self.writer = writer
        self.missed = missed

    @property
    def stopped(self) -> bool:
        return self.writer.stopped

    def _note(self, first: int, count: int) -> None:
        last = first + count - 1
        if self.missed and self.missed[-1][1] + 1 == first:
            self.missed[-1] = (self.missed[-1][0], last)
        else:
            self.missed.append((first, last))

    def add(self, block_id: int, data: memoryview | None, digest: bytes = b"") -> None:
        self._note(block_id, 1)
        self.writer.add(block_id, data, digest)

    def add_zero_run(self, first: int, count: int) -> None:
        if count > 0:
            self._note(first, count)
        self.writer.add_zero_run(first, count)
