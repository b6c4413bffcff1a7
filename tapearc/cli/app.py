"""The ``tapearc`` command: parse options, make one engine call, render the result.

One error boundary (:func:`_run`) turns every failure into one line on standard error (and a
JSON object on standard output with ``--json``) and the error's exit code; no traceback ever
reaches the user.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import (
    Progress as RichProgress,
)
from rich.table import Table

from tapearc.errors import InternalError, Interrupted, TapearcError, UsageError
from tapearc.units import format_size, parse_size

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Archive block volumes to tape (or a simulated tape, or a removable-disk folder) and restore them exactly.",
)

T = TypeVar("T")


class _StdoutClosed(Exception):
    """Standard output's reader went away (raised where rich would exit with status 1)."""


class _OutConsole(Console):
    def on_broken_pipe(self) -> None:
        raise _StdoutClosed


err_console = Console(stderr=True, highlight=False)
out_console = _OutConsole(highlight=False, width=None if sys.stdout.isatty() else 200)

EPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`'s yes


def _stdout_closed() -> bool:
    """Standard output is a pipe (or socket) whose reader has gone (``tapearc list | head -1``)."""
    import select

    try:
        p = select.poll()
        p.register(1, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))
    except (OSError, ValueError):
        return False


def _quiet_epipe() -> typer.Exit:
    """The reader of standard output went away: end quietly, as Unix tools do (no message; the
    exit status a shell shows for a tool ended by SIGPIPE). Standard output is pointed at
    /dev/null so nothing complains when Python flushes it at exit."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass
    return typer.Exit(EPIPE_EXIT)


def _whole(what: str, minimum: int = 1) -> Callable[[str], int]:
    """A parser for an option holding a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise UsageError(f"{what} {text!r}: not a whole number") from None
        if value < minimum:
            raise UsageError(f"{what} {text}: must be {minimum} or more")
        return value

    return parse


def _seconds(text: str) -> float:
    """The parser of --wait: a finite number of seconds, 0 or more."""
    import math

    try:
        value = float(text.strip())
    except ValueError:
        raise UsageError(f"--wait {text!r}: not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--wait {text}: seconds must be a finite number, 0 or more")
    return value


MediaOpt = Annotated[
    str,
    typer.Option(
        "--media",
        "-m",
        help="Medium: sim:IMAGE (simulated tape, made if missing), sim:LIBRARY, dir:FOLDER (removable disk), /dev/nstN, - (a record stream on stdin/stdout).",
        metavar="MEDIUM",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
ChangerOpt = Annotated[
    str | None,
    typer.Option(
        "--changer",
        help="What changes media: sim:DIR (simulated library), mtx:/dev/sgN, serial:PORT or serial:socket://HOST:PORT, operator.",
        metavar="CHANGER",
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--wait",
        help="With --changer operator: give up after this many seconds (default: wait forever).",
        metavar="SECONDS",
        parser=_seconds,
    ),
]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="Catalog database (default: $TAPEARC_CATALOG, else ~/.local/share/tapearc/catalog.sqlite).",
        metavar="PATH",
    ),
]


class RichProgressReporter:
    """Progress on standard error with bytes, MB/s and ETA; only on a terminal."""

    def __init__(self) -> None:
        self._p: RichProgress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None) -> None:
        self._p = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self._p.start()
        self._task = self._p.add_task(description, total=total)

    def advance(self, nbytes: int) -> None:
        if self._p is not None and self._task is not None:
            self._p.advance(self._task, nbytes)

    def finish(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


def _progress(json_out: bool) -> RichProgressReporter | None:
    if json_out or not sys.stderr.isatty():
        return None
    return RichProgressReporter()


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _fail(err: TapearcError, json_out: bool) -> typer.Exit:
    line = f"tapearc: error: {err}"
    err_console.print(line, markup=False, soft_wrap=True)
    if err.hint:
        err_console.print(f"tapearc: hint: {err.hint}", markup=False, soft_wrap=True)
    if json_out:
        _emit_json(err.to_json())
    return typer.Exit(err.exit_code)


def _run(json_out: bool, fn: Callable[[], T]) -> T:
    """The error boundary around one command. Ctrl-C raises KeyboardInterrupt only inside it
    (tapearc.interrupts); once it is left, the result is decided and Ctrl-C is ignored."""
    from tapearc import interrupts, settings

    interrupts.clear_notes()
    try:
        with interrupts.raising():
            settings.check_all()  # a bad TAPEARC_* value is a usage error whatever the command
            return fn()
    except TapearcError as e:
        raise _fail(e, json_out) from None
    except KeyboardInterrupt:
        raise _fail(Interrupted(interrupts.message()), json_out) from None
    except (typer.Exit, typer.Abort):
        raise
    except _StdoutClosed:
        raise _quiet_epipe() from None
    except BrokenPipeError:
        if not _stdout_closed():
            raise _fail(
                InternalError(
                    "internal error: BrokenPipeError",
                    hint="this is a bug in tapearc; please report it with the command you ran",
                ),
                json_out,
            ) from None
        raise _quiet_epipe() from None
    except Exception as e:  # a bug: still one line, never a traceback
        import logging

        logging.getLogger("tapearc").debug("internal error", exc_info=True)
        raise _fail(
            InternalError(
                f"internal error: {type(e).__name__}: {e}",
                hint="this is a bug in tapearc; please report it with the command you ran",
            ),
            json_out,
        ) from None


def _uuid(text: str | None, what: str) -> Any:
    if text is None:
        return None
    import uuid

    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError(f"{what}: not a UUID: {text!r}") from None


def _size(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        value = parse_size(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None
    if value <= 0:
        raise UsageError(f"{what} {text}: must be more than 0")
    return value


@contextmanager
def _catalog(path: str | None) -> Iterator[Any]:
    from tapearc.catalog.db import Catalog

    cat = Catalog(path)
    try:
        yield cat
    finally:
        cat.close()


@contextmanager
def _media(
    spec: str, changer: str | None, *, write: bool, catalog: Any = None, timeout: float | None = None
) -> Iterator[Any]:
    """A MediaSource: the drive named by --media and the changer named by --changer, its drive
    locked against other tapearc processes for the whole command (tapearc.locks)."""
    from tapearc.engine.mediasource import MediaSource
    from tapearc.locks import medium_lock

    with medium_lock(spec, write=write):
        ch = None
        if changer is not None:
            from tapearc.media.changers import open_changer

            ch = open_changer(changer)
        src = MediaSource(spec, write=write, changer=ch, catalog=catalog, operator_timeout=timeout)
        try:
            yield src
        finally:
            src.close()


@contextmanager
def _drive(spec: str, *, write: bool) -> Iterator[Any]:
    from tapearc.locks import medium_lock
    from tapearc.media import open_medium

    with medium_lock(spec, write=write):
        drive = open_medium(spec, write=write)
        try:
            yield drive
        finally:
            drive.close()


@app.command()
def backup(
    source: Annotated[str, typer.Argument(help="Volume to back up: a disk image file or a block device.")],
    media: MediaOpt,
    block_size: Annotated[
        str | None, typer.Option("--block-size", help="Volume block size (default 64K, or the volume's).")
    ] = None,
    record_size: Annotated[
        str | None,
        typer.Option("--record-size", help="Largest tape record written (default 1M, or the medium's)."),
    ] = None,
    compress: Annotated[str, typer.Option("--compress", help="Per-chunk compression: zstd or none.")] = "none",
    chunk_size: Annotated[
        str, typer.Option("--chunk-size", help="Target chunk size, a multiple of the record size (default 4M).")
    ] = "4M",
    volume: Annotated[
        str | None,
        typer.Option(
            "--volume",
            help="Volume name (default: the volume SOURCE was backed up as, else SOURCE's file name). "
            "An existing volume with another source is taken as that volume moved.",
        ),
    ] = None,
    new_volume: Annotated[
        bool,
        typer.Option(
            "--new-volume",
            help="Start a new volume (never continue an existing one): named --volume NAME (unused), "
            "else SOURCE's file name, else its folder/file name.",
        ),
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Write a full generation even if the volume has one.")] = False,
    verify_after: Annotated[
        bool, typer.Option("--verify", help="Read each tape file back after writing it (every CRC and digest).")
    ] = False,
    media_set: Annotated[
        str | None,
        typer.Option("--media-set", help="Refuse a medium that is not of this media set (UUID).", metavar="UUID"),
    ] = None,
    changer: ChangerOpt = None,
    wait: TimeoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Back up SOURCE to MEDIUM as a new generation: incremental (changed and added blocks only)
    when the volume already has a complete generation in the media set, else full. A blank
    medium is labeled first."""

    def go() -> None:
        from tapearc.engine.backup import DEFAULT_BLOCK_SIZE, BackupOptions
        from tapearc.engine.backup import backup as do_backup

        if compress not in ("zstd", "none"):
            raise UsageError(f"--compress {compress!r}: use zstd or none")
        bs = _size(block_size, "--block-size")
        opts = BackupOptions(
            block_size=bs if bs is not None else DEFAULT_BLOCK_SIZE,
            block_size_given=bs is not None,
            record_size=_size(record_size, "--record-size"),
            compress=compress,
            volume_name=volume,
            new_volume=new_volume,
            full=full,
            media_set=_uuid(media_set, "--media-set"),
            chunk_size=_size(chunk_size, "--chunk-size") or 0,
            verify=verify_after,
        )
        with _catalog(catalog) as cat, _media(media, changer, write=True, catalog=cat, timeout=wait) as src:
            res = do_backup(source, src, cat, opts, _progress(json_out))
        for w in res.warnings:
            err_console.print(f"tapearc: warning: {w}", markup=False, soft_wrap=True)
        if json_out:
            _emit_json(res.to_json())
            return
        speed = f", {res.volume_size / res.seconds / 1e6:.1f} MB/s" if res.seconds > 0 else ""
        out_console.print(
            f"backed up {source} ({format_size(res.volume_size)}) to {res.medium} as volume {res.volume!r} "
            f"generation {res.generation} ({res.kind}"
            + (
                f" on {res.base_generation}, {res.unchanged_blocks} blocks unchanged"
                if res.kind == "incremental"
                else ""
            )
            + f", tape file {res.tape_file}): {res.chunks} chunks, "
            f"{res.data_blocks} blocks stored, {res.zero_blocks} zero blocks, "
            f"{format_size(res.stored_bytes)} written{speed}"
            + (
                "; spans media " + ", ".join(f"{p['medium']} (sequence {p['sequence']})" for p in res.parts)
                if len(res.parts) > 1
                else ""
            ),
            markup=False,
            soft_wrap=True,
        )

    _run(json_out, go)


@app.command()
def restore(
    media: MediaOpt,
    to: Annotated[str, typer.Option("--to", help="Target: a file (made sparse) or a block device.")],
    generation: Annotated[
        int | None,
        typer.Option(
            "--generation", help="Generation to restore (default: latest).", metavar="N", parser=_whole("--generation")
        ),
    ] = None,
    volume: Annotated[
        str | None, typer.Option("--volume", help="Volume to restore, when the medium holds several.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a target that holds no generation of the volume.")
    ] = False,
    assume_generation: Annotated[
        int | None,
        typer.Option(
            "--assume-generation",
            help="TARGET holds generation K already: write only what differs.",
            metavar="K",
            parser=_whole("--assume-generation"),
        ),
    ] = None,
    fallback_older: Annotated[
        bool,
        typer.Option(
            "--fallback-older",
            help="Where a chunk is damaged, restore the newest older version of its blocks (exit 24 says which).",
        ),
    ] = False,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="If a medium never arrives, restore the rest and leave its blocks zero (exit 25); by default the restore stops.",
        ),
    ] = False,
    changer: ChangerOpt = None,
    wait: TimeoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a generation of a volume from MEDIUM, byte for byte, to a file, a block device or
    standard output (--to -). A target that already holds another generation of the volume
    (older or newer) is rolled forward or back in place: only the blocks that differ are
    written. Exit 0 only when every block is the requested generation's."""

    def go() -> None:
        from tapearc.engine.restore import RestoreOptions, check_stream_output, outcome
        from tapearc.engine.restore import restore as do_restore

        if to == "-":
            check_stream_output(sys.stdout.buffer)  # before any medium is opened
        opts = RestoreOptions(
            generation=generation,
            volume=volume,
            force=force,
            assume_generation=assume_generation,
            fallback_older=fallback_older,
            partial=partial,
        )
        with _catalog(catalog) as cat, _media(media, changer, write=False, catalog=cat, timeout=wait) as src:
            res = do_restore(src, cat, to, opts, None if to == "-" else _progress(json_out))
        for w in res.warnings:
            err_console.print(f"tapearc: warning: {w}", markup=False, soft_wrap=True)
        if json_out:
            if to == "-":
                err_console.print_json(json.dumps(res.to_json(), default=str))
            else:
                _emit_json(res.to_json())
            _restore_ranges(res)
            err = outcome(res)
            if err is not None:
                err_console.print(f"tapearc: error: {err}", markup=False, soft_wrap=True)
                raise typer.Exit(err.exit_code)
            return
        rolled = {"roll-forward": "rolled forward", "rollback": "rolled back"}.get(res.mode, "rolled forward")
        msg = (
            f"restored volume {res.volume!r}"
            + (f" (source {res.source_path})" if res.source_path else "")
            + f" generation {res.generation} ({format_size(res.volume_size)}) "
            f"from {res.medium} to {res.target}"
            + (f" ({rolled} from generation {res.from_generation})" if res.from_generation is not None else "")
            + f": {res.chunks_read} chunks read, {res.blocks_written} blocks written ({res.bytes_written} bytes), "
            f"{res.blocks_zeroed} zeroed ({res.bytes_zeroed} bytes)"
        )
        (err_console if to == "-" else out_console).print(msg, markup=False, soft_wrap=True)
        _restore_ranges(res)
        err = outcome(res)
        if err is not None:
            raise err

    _run(json_out, go)


@app.command("list")
def list_cmd(
    media: MediaOpt,
    chunks: Annotated[bool, typer.Option("--chunks", help="Also list every chunk and its block runs.")] = False,
    changer: ChangerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what MEDIUM holds, read from the medium itself: label, generations, chunks, blocks."""

    def go() -> None:
        from tapearc.engine.listing import list_medium

        with _media(media, changer, write=False) as src:
            listing = list_medium(src.current())
        if json_out:
            _emit_json(listing.to_json(with_chunks=True))
            return
        lab = listing.label
        out_console.print(
            f"medium {listing.medium}: tapearc label, set {lab.media_set_uuid} sequence {lab.sequence}, "
            f"medium {lab.medium_uuid}, record size {format_size(lab.record_size)}",
            markup=False,
            soft_wrap=True,
        )
        table = Table(show_edge=False)
        for col in (
            "file",
            "content",
            "volume",
            "gen",
            "size",
            "blocks",
            "zero",
            "stored",
            "chunks",
            "records",
            "state",
        ):
            table.add_column(col, justify="right" if col not in ("content", "volume", "state") else "left")
        for f in listing.files:
            if f.kind == "label":
                table.add_row(str(f.tape_file), "label", "", "", "", "", "", "", "", str(f.records), "ok")
                continue
            state = "complete" if f.complete else ("incomplete" if f.trailer else "no trailer")
            if f.kind != "generation":
                state = f.kind  # interrupted, damaged, foreign or empty (engine.tapefiles)
            elif not f.closed:
                state = "interrupted"
            elif f.problem:
                state = "damaged"
            table.add_row(
                str(f.tape_file),
                f"{f.generation_kind or f.kind}" + (f" {f.compression}" if f.compression == "zstd" else ""),
                f.volume or "",
                str(f.generation or ""),
                format_size(f.volume_size or 0),
                str(f.data_blocks),
                str(f.zero_blocks),
                format_size(f.stored_bytes),
                str(len(f.chunks)),
                str(f.records),
                state,
            )
        out_console.print(table)
        for vol, chain in listing.chains().items():
            parts = []
            for g in chain:
                k = "F" if g["kind"] == "full" else f"+{g['base']}"
                parts.append(
                    f"{g['generation']}({k}, {g['changed_blocks']} blocks{'' if g['complete'] else ', incomplete'})"
                )
            src = next((str(g["source_path"]) for g in reversed(chain) if g.get("source_path")), None)
            out_console.print(
                f"volume {vol}: generations " + " -> ".join(parts) + (f"; source {src}" if src else ""),
                markup=False,
                soft_wrap=True,
            )
        for f in listing.files:
            if f.problem:
                out_console.print(f"tape file {f.tape_file}: {f.problem}", markup=False, soft_wrap=True)
            if chunks and f.kind == "generation":
                for c in f.chunks:
                    runs = ", ".join(
                        (f"{a}" if n == 1 else f"{a}-{a + n - 1}") + (" zero" if k == "zero" else "")
                        for a, n, k in c.runs
                    )
                    out_console.print(
                        f"  file {f.tape_file} chunk {c.seq}: records {c.record}-{c.record + c.record_count - 1}, "
                        f"{format_size(c.stored_bytes)}{' zstd' if c.compressed else ''}: blocks {runs}",
                        markup=False,
                        soft_wrap=True,
                    )

    _run(json_out, go)


@app.command()
def verify(
    media: MediaOpt,
    generation: Annotated[
        int | None,
        typer.Option(
            "--generation", help="Verify only this generation's tape files.", metavar="N", parser=_whole("--generation")
        ),
    ] = None,
    all_media: Annotated[
        bool, typer.Option("--all", help="Verify every medium of the set (through --changer).")
    ] = False,
    volume: Annotated[str | None, typer.Option("--volume", help="Volume, when the media set holds several.")] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against", help="Also check that the generation equals this volume (block digests).", metavar="SOURCE"
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Also compare the medium record by record with this image.", metavar="MEDIUM"),
    ] = None,
    changer: ChangerOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read MEDIUM forward and check everything: every CRC, every block digest, the mapping, the
    trailer, the catalog. Lists per tape file OK or the damaged chunks with their volume block
    ranges, and the generations the damage affects. Exit code 20 on any damage."""

    def go() -> None:
        from tapearc.engine.layout import read_label
        from tapearc.engine.scan import sync_medium
        from tapearc.engine.verify import affected_generations, check_selection_found, run_verify, verify_medium

        with _catalog(catalog) as cat, _media(media, changer, write=False, catalog=cat) as src:
            drive = src.current()
            try:
                sync_medium(drive, cat)
            except TapearcError:
                pass  # a damaged medium: verify reports what it can
            rep = run_verify(
                drive, cat, generation=generation, volume=volume, against=against, progress=_progress(json_out)
            )
            if all_media and src.can_change and rep.media[0].media_set:
                lab = read_label(drive)
                for m in cat.media_of_set(lab.media_set_uuid):
                    if m.uuid == lab.medium_uuid:
                        continue
                    src.release()
                    d = src.medium(m.uuid, m.set_uuid, m.sequence, m.label or None)
                    rep.media.append(verify_medium(d, cat, generation=generation, volume=volume))
                rep.media.sort(key=lambda r: r.sequence or 0)
                rep.affected = affected_generations(cat, rep.media)
            check_selection_found(rep.media, generation, volume)
            if image is not None:
                from tapearc.engine.compare import compare_media
                from tapearc.media import open_medium

                d = src.current()
                with open_medium(image, write=False) as other:
                    rep.image = compare_media(d, other).to_json()
        if json_out:
            _emit_json(rep.to_json())
        else:
            _print_verify(rep)
        if rep.source_differs:
            # the medium is intact: the source is what differs (not damage)
            from tapearc.engine.compare import MediaDifferError

            a = rep.against
            assert a is not None
            rng = ", ".join(f"{x}-{y}" if x != y else f"{x}" for x, y in a["differing_ranges"][:20])  # type: ignore[index]
            more = " ..." if len(a["differing_ranges"]) > 20 else ""  # type: ignore[arg-type]
            sizes = f"; sizes {a['volume_size']} vs {a['source_size']}" if a["volume_size"] != a["source_size"] else ""
            err = MediaDifferError(
                f"{a['source']} differs from volume {a['volume']!r} generation {a['generation']} on the medium: "
                f"{a['differing_blocks']} blocks (blocks {rng}{more}){sizes}; the medium itself is intact",
                hint="the source changed since that backup (or is another volume); the backup on the medium is sound",
            )
            _fail(err, False)  # the report above is the JSON output
            raise typer.Exit(err.exit_code)
        if not rep.ok:
            raise typer.Exit(20)

    _run(json_out, go)


def _restore_ranges(res: Any) -> None:
    """On stderr, one line per block range of the target that is not the requested generation's
    (from an older one, lost, on a medium that never arrived), and the damage seen."""
    bs, size = res.block_size, res.volume_size

    def span(a: int, b: int) -> str:
        return f"blocks {a}-{b} (bytes {a * bs}-{min((b + 1) * bs, size) - 1})"

    for g in res.skipped_generations:
        err_console.print(
            f"tapearc: generation {g['generation']} is {g['state']}: restored generation {res.generation}, not the newest",
            markup=False,
            soft_wrap=True,
        )
    for f in res.fallback:
        a, b = f["blocks"]
        src = "zeros (their older version)" if f.get("zero") else f"generation {f['from_generation']}"
        err_console.print(
            f"tapearc: {span(a, b)}: damaged in generation {res.generation}, restored from {src}",
            markup=False,
            soft_wrap=True,
        )
    for m in res.missing_media:
        for a, b in m["blocks"]:
            err_console.print(
                f"tapearc: {span(a, b)}: medium {m['barcode'] or m['medium']} (sequence {m['sequence']}) never arrived, zeros",
                markup=False,
                soft_wrap=True,
            )
    for d in res.damaged_chunks:
        err_console.print(f"tapearc: damaged: {d['error']}", markup=False, soft_wrap=True)


def _print_verify(rep: Any) -> None:
    for m in rep.media:
        out_console.print(
            f"medium {m.medium}"
            + (f" (sequence {m.sequence} of media set {m.media_set})" if m.media_set else "")
            + (": OK" if m.ok else ": DAMAGED"),
            markup=False,
            soft_wrap=True,
        )
        for p in m.problems:
            out_console.print(f"  {p.message}", markup=False, soft_wrap=True)
        for f in m.files:
            what = (
                f"volume {f.volume!r} generation {f.generation}" + (f" part {f.part}" if f.part else "")
                if f.volume
                else (f"{f.kind} tape file" if f.kind != "generation" else "?")
            )
            if f.ok:
                out_console.print(
                    f"  tape file {f.tape_file} ({what}): OK, {f.chunks_ok} chunks, {format_size(f.bytes)}",
                    markup=False,
                )
                continue
            out_console.print(f"  tape file {f.tape_file} ({what}): DAMAGED", markup=False)
            for p in f.problems:
                blocks = ", ".join(f"{a}-{b}" if b != a else f"{a}" for a, b in p.blocks)
                out_console.print(
                    f"    record {p.record}"
                    + (f", chunk {p.chunk}" if p.chunk is not None else "")
                    + (f", blocks {blocks}" if blocks else "")
                    + f": {p.message}",
                    markup=False,
                    soft_wrap=True,
                )
    for vol, gens in rep.affected.items():
        if gens:
            out_console.print(f"damage affects volume {vol!r} generations {', '.join(map(str, gens))}", markup=False)
    if rep.against is not None:
        a = rep.against
        if a["equal"]:
            out_console.print(f"generation {a['generation']} equals {a['source']}", markup=False)
        else:
            rng = ", ".join(f"{x}-{y}" if x != y else f"{x}" for x, y in a["differing_ranges"][:20])
            out_console.print(
                f"generation {a['generation']} differs from {a['source']}: {a['differing_blocks']} blocks ({rng})"
                + (f"; sizes {a['volume_size']} vs {a['source_size']}" if a["volume_size"] != a["source_size"] else ""),
                markup=False,
                soft_wrap=True,
            )
    if rep.image is not None:
        out_console.print(f"image: {rep.image.get('summary', rep.image)}", markup=False, soft_wrap=True)
    if rep.source_differs:
        out_console.print("verify: medium OK; the source differs from the backup on it", markup=False)
    else:
        out_console.print("verify: OK" if rep.ok else "verify: DAMAGE FOUND", markup=False)


@app.command()
def label(
    media: MediaOpt,
    force: Annotated[bool, typer.Option("--force", help="Erase a medium that is not blank and label it anew.")] = False,
    text: Annotated[
        str, typer.Option("--text", help="Label text, e.g. the barcode (default: the changer's barcode).")
    ] = "",
    media_set: Annotated[
        str | None,
        typer.Option("--media-set", help="Label it as a medium of this existing set (UUID) ...", metavar="UUID"),
    ] = None,
    sequence: Annotated[
        int | None,
        typer.Option("--sequence", help="... with this sequence number.", metavar="N", parser=_whole("--sequence")),
    ] = None,
    record_size: Annotated[
        str | None, typer.Option("--record-size", help="Largest record written (default 1M).")
    ] = None,
    changer: ChangerOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a volume label on MEDIUM: a new media set (sequence 1) unless --media-set/--sequence.
    A labeled or foreign medium is refused unless --force (which erases it)."""

    def go() -> None:
        from tapearc.engine.labeling import label_medium

        with _catalog(catalog) as cat, _media(media, changer, write=True, catalog=cat) as src:
            drive = src.current()
            lab = label_medium(
                drive,
                cat,
                force=force,
                text=text or src.loaded_barcode() or "",
                media_set=_uuid(media_set, "--media-set"),
                sequence=sequence,
                record_size=_size(record_size, "--record-size"),
                barcode=src.loaded_barcode(),
                by_place=src.changer is None,
                erasing=lambda what: err_console.print(
                    f"tapearc: warning: --force: erasing {drive.name}, which holds {what}", markup=False, soft_wrap=True
                ),
            )
            name = drive.name
        out = {
            "medium": name,
            "medium_uuid": str(lab.medium_uuid),
            "media_set": str(lab.media_set_uuid),
            "sequence": lab.sequence,
            "record_size": lab.record_size,
            "text": lab.text,
        }
        if json_out:
            _emit_json(out)
            return
        out_console.print(
            f"labeled {name}: medium {lab.medium_uuid}, sequence {lab.sequence} of media set {lab.media_set_uuid}"
            + (f", text {lab.text!r}" if lab.text else ""),
            markup=False,
            soft_wrap=True,
        )

    _run(json_out, go)


@app.command()
def scan(
    media: MediaOpt,
    deep: Annotated[
        bool, typer.Option("--deep", help="Read every chunk (recovers a generation whose trailer is missing).")
    ] = False,
    changer: ChangerOpt = None,
    wait: TimeoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the catalog's knowledge of MEDIUM from the medium alone (from the trailers, or with
    --deep from every chunk)."""

    def go() -> None:
        from tapearc.engine.layout import read_label
        from tapearc.engine.scan import follow_set, scan_medium

        with _catalog(catalog) as cat, _media(media, changer, write=False, catalog=cat, timeout=wait) as src:
            results = [scan_medium(src.current(), cat, deep=deep, progress=_progress(json_out))]
            if src.can_change:  # follow generations that span media onto the set's other media
                results += follow_set(src, cat, read_label(src.current()), deep=deep, rescan=True)
        if json_out:
            _emit_json(results[0].to_json() if len(results) == 1 else {"media": [r.to_json() for r in results]})
            return
        for res in results:
            out_console.print(
                f"scanned {res.medium}: medium {res.medium_uuid}, sequence {res.sequence} of media set {res.media_set}",
                markup=False,
                soft_wrap=True,
            )
            for f in res.files:
                out_console.print(
                    f"  tape file {f.tape_file}: volume {f.volume!r} generation {f.generation}: {f.state}, "
                    f"{f.chunks} chunks (from {f.method})" + (f"; {f.problem}" if f.problem else ""),
                    markup=False,
                    soft_wrap=True,
                )
            for d in res.tape_files:
                if d["kind"] != "generation":
                    out_console.print(
                        f"  tape file {d['tape_file']}: {'interrupted' if d['interrupted'] else d['kind']}"
                        + (f"; {d['problem']}" if d["problem"] else ""),
                        markup=False,
                        soft_wrap=True,
                    )
            for w in res.warnings:
                err_console.print(f"tapearc: warning: {w}", markup=False, soft_wrap=True)

    _run(json_out, go)


@app.command()
def plan(
    media: MediaOpt,
    generation: Annotated[
        int | None,
        typer.Option(
            "--generation", help="Generation to plan (default: latest).", metavar="N", parser=_whole("--generation")
        ),
    ] = None,
    volume: Annotated[str | None, typer.Option("--volume", help="Volume, when the media set holds several.")] = None,
    assume_generation: Annotated[
        int | None,
        typer.Option(
            "--assume-generation",
            help="Plan rolling a copy of generation K forward.",
            metavar="K",
            parser=_whole("--assume-generation"),
        ),
    ] = None,
    chunks: Annotated[bool, typer.Option("--chunks", help="List every chunk to read.")] = False,
    changer: ChangerOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the restore plan before anything is read: media needed in order, tape files and
    chunks to read, bytes to read and to skip."""

    def go() -> None:
        from tapearc.engine.plan import make_plan
        from tapearc.engine.restore import RestoreOptions, prepare_plan

        with _catalog(catalog) as cat, _media(media, changer, write=False, catalog=cat) as src:
            _, chain, p = prepare_plan(src, cat, RestoreOptions(generation=generation, volume=volume))
            if assume_generation is not None:
                warnings = p.warnings
                p = make_plan(cat, chain, have=assume_generation)
                p.warnings = warnings
        for w in p.warnings:
            err_console.print(f"tapearc: warning: {w}", markup=False, soft_wrap=True)
        if json_out:
            _emit_json(p.to_json(with_chunks=True))
            return
        d = p.to_json(with_chunks=chunks)
        out_console.print(
            f"restore volume {p.volume!r}"
            + (f" (source {p.source_path})" if p.source_path else "")
            + f" generation {p.generation} ({format_size(p.volume_size)}) from chain "
            + " -> ".join(str(x) for x in p.chain)
            + (
                f", rolling generation {p.from_generation} {'back' if p.from_generation > p.generation else 'forward'}"
                if p.from_generation is not None
                else ""
            ),
            markup=False,
            soft_wrap=True,
        )
        for i, m in enumerate(p.media, 1):
            out_console.print(f"  medium {i}: {m[0]} (sequence {m[1]})", markup=False)
        for f in d["tape_files"]:  # type: ignore[union-attr]
            out_console.print(
                f"  tape file {f['tape_file']} (generation {f['generation']}): {f['chunks_to_read']} chunks, "
                f"{format_size(int(f['bytes_to_read']))}",
                markup=False,
            )
        out_console.print(
            f"  read {len(p.reads)} of {p.chunks_in_chain} chunks: {format_size(p.bytes_to_read)} to read, "
            f"{format_size(p.bytes_to_skip)} to skip; {p.blocks_to_write} blocks to write, {p.blocks_to_zero} to zero",
            markup=False,
        )
        if chunks:
            for c in d["chunks"]:  # type: ignore[union-attr]
                out_console.print(
                    f"    file {c['tape_file']} @{c['logical']}: generation {c['generation']} chunk {c['seq']}, blocks "
                    + ", ".join(f"{a}-{a + n - 1}" if n > 1 else f"{a}" for a, n in c["blocks"]),
                    markup=False,
                    soft_wrap=True,
                )

    _run(json_out, go)


def _register_subcommands() -> None:
    from tapearc.cli.drive_cmd import drive_app

    app.add_typer(drive_app, name="drive", help="Tape drive commands (status).")
    from tapearc.cli.copy_cmd import register as register_copy

    register_copy(app)


_register_subcommands()


def main() -> None:
    """Run the command line (the console script goes through tapearc.cli.entry first)."""
    import os

    def stdout_id() -> tuple[int, int] | None:
        try:
            st = os.fstat(1)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    before = stdout_id()
    try:
        app(prog_name="tapearc")
    except TapearcError as e:  # an option value our parsers refused while typer read the command line
        raise SystemExit(_fail(e, False).exit_code) from None
    except SystemExit as e:
        # outside a command (--help | head -1) typer and rich end a write to a closed standard
        # output with status 1, standard output then pointed at /dev/null: the same quiet
        # status as inside a command
        if e.code == 1 and before != stdout_id() and stdout_id() == _devnull_id():
            raise SystemExit(EPIPE_EXIT) from None
        raise


def _devnull_id() -> tuple[int, int] | None:
    import os

    try:
        st = os.stat(os.devnull)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


if __name__ == "__main__":
    main()
