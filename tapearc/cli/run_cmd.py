"""``tapearc run JOBFILE``: back up every volume of a job file, one after the other, in one run.

The job file (TOML, docs/operations.md "Jobs") is read and checked whole before anything is
opened (tapearc.engine.jobfile); the run is tapearc.engine.jobs.run_job. The summary is a text
table (or one JSON document with --json); the job's ``summary_log`` gets one JSON line per run.
Exit 0 when every volume was backed up, 35 (job-partial) when not, 130 after Ctrl-C.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tapearc.cli.common import (
    JsonOpt,
    emit_json,
    fail,
    internal_error,
    open_catalog,
    open_free_drive,
    open_media,
    out_console,
    run,
    say,
    start_encrypt_arg,
    warn,
    whole,
)
from tapearc.cli.progress import make_drives_progress, make_progress
from tapearc.cli.timeparse import time_parser
from tapearc.engine.progress import NoProgress
from tapearc.errors import UsageError
from tapearc.units import format_size

if TYPE_CHECKING:
    from tapearc.cli.progress import DrivesProgress
    from tapearc.engine.jobfile import JobSpec
    from tapearc.engine.jobs import JobRun, VolumeRun
    from tapearc.engine.progress import Progress

JobFileArg = Annotated[str, typer.Argument(help="The job file (TOML): docs/operations.md, 'Jobs'.", metavar="JOBFILE")]
RunCatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="Catalog database (default: the job file's catalog, else $TAPEARC_CATALOG, else "
        "~/.local/share/tapearc/catalog.sqlite).",
        metavar="PATH",
    ),
]
NowOpt = Annotated[
    int | None,
    typer.Option(
        "--now",
        help="Run as if at TIME (ISO 8601, local unless zoned): full_every's days are counted to it and the "
        "generations are dated with it. For tests and trials.",
        metavar="TIME",
        parser=time_parser("--now"),
    ),
]


DrivesOpt = Annotated[
    int | None,
    typer.Option(
        "--drives",
        help="Spread the volumes over N drives of the job's library at once, each drive writing its own media "
        "set (default: the job file's drives, else 1).",
        metavar="N",
        parser=whole("--drives"),
    ),
]


def run_command(
    jobfile: JobFileArg,
    full: Annotated[bool, typer.Option("--full", help="Write a full generation of every volume.")] = False,
    now: NowOpt = None,
    catalog: RunCatalogOpt = None,
    drives: DrivesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Back up every volume of JOBFILE in order onto the job's media: one volume's failure does not
    stop the others; a failure of the medium does (the rest are not run). With several drives
    (--drives N, or drives = N) the volumes are spread over them, largest first. Exit 0 when every
    volume was backed up, 35 when not."""
    result = run(json_out, lambda: _run(jobfile, full, now, catalog, json_out, drives))
    err = result.error()
    if err is not None:  # the summary is out: the exit's one line, and no second JSON document
        raise fail(err, json_out=False)


def _run(jobfile: str, full: bool, now: int | None, catalog: str | None, json_out: bool, drives: int | None) -> JobRun:
    from tapearc.engine.jobfile import read_job
    from tapearc.engine.jobs import append_summary

    job = read_job(jobfile)
    if drives is not None and drives > 1 and job.media_set is not None:
        raise UsageError(f"--drives {drives}: the job file names one media_set, and each drive writes its own")
    n = drives if drives is not None else job.drives
    clock = (lambda: float(now)) if now is not None else None
    # the job's key, opened once before any medium is touched (31/32/2 stop the run there)
    key = start_encrypt_arg(Path(job.encrypt) if job.encrypt else None, job.passphrase_file)()

    def progress(_volume: str) -> Progress:  # several drives at once: a bar per drive (bars), or nothing
        return (make_progress(json_out) if n == 1 else None) or NoProgress()

    kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
    with _bars(json_out, n) as bars:
        result = _run_on(job, n, catalog, bars, full=full, now=now, progress=progress, encrypt=key, **kw)
    if result.internal is not None:  # a bug stopped the run: keep its traceback, say where
        bad = next(v for v in result.volumes if v.error is not None and v.error.kind == "internal")
        bad.error = internal_error(result.internal)
    for v in result.volumes:
        warn([f"volume {v.name}: {w}" for w in v.warnings])
    if job.summary_log is not None:
        try:
            append_summary(job.summary_log, result)
        except OSError as e:
            warn([f"summary_log {job.summary_log}: cannot append the summary line: {e.strerror or e}"])
    if json_out:
        emit_json(result.to_json())
    else:
        render_run(result)
    return result


@contextmanager
def _bars(json_out: bool, n: int) -> Iterator[DrivesProgress | None]:
    """One bar per drive for a run on several drives (on a terminal; None: no bars)."""
    bars = make_drives_progress(json_out) if n > 1 else None
    try:
        yield bars
    finally:
        if bars is not None:
            bars.close()


def _run_on(job: JobSpec, n: int, catalog: str | None, bars: DrivesProgress | None, **kw: Any) -> JobRun:
    """The job on its one drive, or on ``n`` drives of its library (``bars``: their progress)."""
    from tapearc.engine.jobs import run_job

    with open_catalog(catalog or job.catalog) as cat:
        if n == 1 and job.drive_media and job.changer not in (None, "operator"):
            # a list of the library's drives: the first free one, as media = "sim:DIR" takes
            with open_free_drive(job.drive_media, str(job.changer), write=True, catalog=cat, timeout=job.wait) as media:
                return run_job(job, media, cat, **kw)
        if n == 1:
            with open_media(
                job.media, job.changer, write=True, catalog=cat, timeout=job.wait, changer_drive=job.changer_drive
            ) as media:
                return run_job(job, media, cat, **kw)
        from tapearc.catalog.db import Catalog
        from tapearc.engine.drives import library_of, open_drives
        from tapearc.engine.jobdrives import run_job_on_drives

        notes: list[str] = []
        library = library_of(job.drive_media or job.media, job.changer)
        spec = catalog or job.catalog  # as given (a PostgreSQL URL with its password): each drive's connection

        with open_drives(library, n, write=True, catalog=cat, notes=notes, timeout=job.wait) as drives:
            more: dict[str, Any] = {"drive_progress": bars.row} if bars is not None else {}
            result = run_job_on_drives(job, list(drives), cat, open_catalog=lambda: Catalog(spec), **kw, **more)
        result.notes[:0] = notes
        return result


def render_run(result: JobRun) -> None:
    """The summary table, then each failed volume's error and why the run stopped."""
    from rich.table import Table

    t = Table(show_edge=False)
    cols = ("volume", "outcome", "kind", "gen", "read", "written", "media", "seconds")
    for col in (*cols, "drive") if result.drives else cols:
        t.add_column(col, justify="right" if col in ("gen", "read", "written", "seconds") else "left")
    for v in result.volumes:
        ran = v.result is not None
        t.add_row(
            *_row(v, ran),
            *([_drive_name(v.drive)] if result.drives else []),
        )
    n_ok = sum(v.outcome == "ok" for v in result.volumes)
    say(
        f"job {result.job} ({result.file}): {n_ok} of {len(result.volumes)} volumes backed up in {result.seconds:.1f} s"
        + (f" on {len(result.drives)} drives" if result.drives else "")
    )
    out_console.print(t)
    for d in result.drives:
        rate = f", fed at {d['mb_per_s']} MB/s" if d.get("mb_per_s") is not None else ""
        say(f"  drive {_drive_name(str(d['drive']))}: {format_size(int(str(d['bytes'])))} written{rate}")
    _render_notes(result)


def _drive_name(spec: str | None) -> str:
    """A drive as the summary shows it (a simulated library's: drive-1.tap)."""
    return "" if spec is None else os.path.basename(spec) if spec.startswith("sim:") else spec


def _row(v: VolumeRun, ran: bool) -> tuple[str, ...]:
    return (
        v.name,
        str(v.outcome),
        v.kind or "",
        str(v.generation) if v.generation is not None else "",
        format_size(v.bytes_read) if ran else "",
        format_size(v.bytes_written) if ran else "",
        ", ".join(v.media),
        f"{v.seconds:.1f}" if v.outcome != "not-run" else "",
    )


def _render_notes(result: JobRun) -> None:
    for note in result.notes:
        say(f"  note: {note}")
    for v in result.volumes:
        if v.full_reason:
            say(f"  {v.name}: full ({v.full_reason})")
        if v.error is not None:
            say(f"  {v.name}: {v.outcome}: exit {v.error.exit_code} {v.error.kind}: {v.error}")
            if v.error.hint:
                say(f"  {v.name}: hint: {v.error.hint}")
    if result.stopped:
        after = (
            "the volumes not taken by a drive were not run" if result.drives else "the volumes after it were not run"
        )
        say(f"  {result.stopped}; {after}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
