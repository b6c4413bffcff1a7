"""Progress printers: how the CLI shows the engine's :class:`tapearc.engine.progress.Progress`.

``--progress`` (an option before the command) chooses one:

- ``auto`` (the default): a progress bar on standard error when it is a terminal and the
  command prints no JSON; nothing otherwise.
- ``text``: the bar on a terminal; elsewhere (a log file) a plain line every few seconds.
- ``json``: JSON lines on standard error for unattended runs, one object per line:
  ``{"message_type": "start" | "status" | "finish", "description", "bytes_done",
  "total_bytes", "percent_done", "bytes_per_second", "seconds_elapsed", "seconds_remaining"}``
  (``total_bytes``, ``percent_done`` and ``seconds_remaining`` are null when the engine gives
  no total).
- ``none``: nothing.

Several drives at once (``run --drives N``, ``restore --volume A --volume B``) get one bar per
drive in one display (:class:`DrivesProgress`) where one drive would get a bar, and nothing
elsewhere.

Every printer shows the total and an estimate of the time left whenever the engine gives a
total to ``start``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from tapearc.cli.common import err_console, options
from tapearc.engine.progress import Progress, Rate
from tapearc.units import format_size

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

PROGRESS_MODES = ("auto", "text", "json", "none")


class RichProgressPrinter:
    """A bar on standard error with bytes, MB/s and ETA (on a terminal)."""

    def __init__(self) -> None:
        self._p: RichProgress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None) -> None:
        self._p = _rich()
        self._p.start()
        self._task = self._p.add_task(description, total=total)

    def advance(self, nbytes: int) -> None:
        if self._p is not None and self._task is not None:
            self._p.advance(self._task, nbytes)

    def finish(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


def _rich(description_width: int | None = None) -> RichProgress:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("{task.description}", style="bold", markup=False),  # (a name as it is, brackets kept)
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


class DrivesProgress:
    """Several drives at once (``run --drives N``, a restore of several volumes): one bar per
    drive in one rich display on standard error, each naming its drive and the volume it is on
    (``drive-1.tap: backup vm2``); a drive's next volume restarts its bar. The drives' threads
    call it at once (rich's Progress takes its own lock). :meth:`row` is the engine's
    ``drive_progress``; :meth:`close` ends the display (before the summary is printed)."""

    def __init__(self) -> None:
        self._p: RichProgress | None = None
        self._rows: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def row(self, drive: str, volume: str) -> Progress:
        """The progress of ``volume`` on ``drive`` (its spec)."""
        return _DriveRow(self, drive)

    def task(self, drive: str) -> tuple[RichProgress, TaskID]:
        with self._lock:
            if self._p is None:
                self._p = _rich()
                self._p.start()
            if drive not in self._rows:
                self._rows[drive] = self._p.add_task(drive_name(drive), total=None, start=False)
            return self._p, self._rows[drive]

    def close(self) -> None:
        with self._lock:
            if self._p is not None:
                self._p.stop()
                self._p = None

    def __enter__(self) -> DrivesProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DriveRow:
    """One volume's progress on one drive's bar."""

    def __init__(self, owner: DrivesProgress, drive: str) -> None:
        self._owner = owner
        self._drive = drive
        self._bar: tuple[RichProgress, TaskID] | None = None

    def start(self, description: str, total: int | None) -> None:
        p, task = self._bar = self._owner.task(self._drive)
        p.reset(task, start=True, total=total, completed=0, description=f"{drive_name(self._drive)}: {description}")

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar[0].advance(self._bar[1], nbytes)

    def finish(self) -> None:
        if self._bar is not None:
            p, task = self._bar
            p.stop_task(task)


def drive_name(spec: str) -> str:
    """A drive as the bars name it (a simulated library's: drive-1.tap)."""
    return os.path.basename(spec) if spec.startswith("sim:") else spec


class _Throttled:
    """A printer that writes a status every ``interval`` seconds at most (and at start and finish)."""

    def __init__(self, out: IO[str] | None = None, interval: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self._out = out
        self._interval = interval
        self._clock = clock
        self.rate = Rate(clock)
        self._last = 0.0

    def _write(self, line: str) -> None:
        out = self._out if self._out is not None else sys.stderr
        out.write(line + "\n")
        out.flush()

    def start(self, description: str, total: int | None) -> None:
        self.rate.start(description, total)
        self._last = self._clock()
        self._write(self.line("start"))

    def advance(self, nbytes: int) -> None:
        self.rate.advance(nbytes)
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._write(self.line("status"))

    def finish(self) -> None:
        if self.rate.started:
            self._write(self.line("finish"))
            self.rate.started = False

    def line(self, kind: str) -> str:
        raise NotImplementedError


class JsonLinesPrinter(_Throttled):
    """One JSON object per line on standard error (for unattended runs and other programs)."""

    def line(self, kind: str) -> str:
        r = self.rate
        return json.dumps(
            {
                "message_type": kind,
                "description": r.description,
                "bytes_done": r.done,
                "total_bytes": r.total,
                "percent_done": r.percent(),
                "bytes_per_second": round(r.speed(), 1),
                "seconds_elapsed": round(r.elapsed(), 3),
                "seconds_remaining": r.eta(),
            }
        )


class PlainTextPrinter(_Throttled):
    """A plain line every few seconds (standard error that is not a terminal, with --progress text)."""

    def line(self, kind: str) -> str:
        r = self.rate
        done = format_size(r.done)
        if r.total is not None:
            done += f" of {format_size(r.total)} ({r.percent():.0f}%)"
        eta = r.eta()
        tail = f", ETA {_clock_text(eta)}" if eta is not None and kind != "finish" else ""
        what = {"start": "started", "status": "", "finish": "done"}[kind]
        return f"tapearc: {r.description}: {what + ' ' if what else ''}{done}, {r.speed() / 1e6:.1f} MB/s{tail}"


def _clock_text(secs: float) -> str:
    s = round(secs)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def make_drives_progress(json_out: bool) -> DrivesProgress | None:
    """Bars for several drives at once where one drive would get a rich bar (``auto`` or
    ``text`` on a terminal, no JSON output); None elsewhere: the JSON-lines and plain-text
    printers stay for one drive (lines of several drives would mix)."""
    mode = options.progress
    if mode not in ("auto", "text") or not sys.stderr.isatty() or (json_out and mode == "auto"):
        return None
    return DrivesProgress()


def make_progress(json_out: bool, *, data_on_stdout: bool = False) -> Progress | None:
    """The progress printer the global --progress option asks for (None: show nothing).

    ``auto`` shows nothing with --json, when standard error is not a terminal, or when standard
    output carries the data (``restore --to -``)."""
    mode = options.progress
    if mode == "json":
        return JsonLinesPrinter()
    if mode == "none":
        return None
    tty = sys.stderr.isatty()
    if mode == "text":
        return RichProgressPrinter() if tty else PlainTextPrinter()
    if json_out or data_on_stdout or not tty:
        return None
    return RichProgressPrinter()
