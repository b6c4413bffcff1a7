"""The drive's native transfer rate: a tape clock behind a buffer (sidecar ``rate``, ``buffer``).

A real drive streams at most its native rate (LTO-9 400 MB/s, LTO-8 360, LTO-7 300) and holds
a buffer (about 1 GiB on current LTO drives) between the host and the tape. :class:`TapeClock`
models that with one number, ``t``: the time at which the tape will have moved past everything
the host has given it (writing) or taken from it (reading).

Writing a record of ``n`` bytes at time ``now``: if the tape had caught up (``t < now``) the
buffer was empty and the tape stood still since ``t`` (*idle*: the drive waited for data);
the record then takes ``n / rate`` of tape time after ``max(t, now)``. When the host is more
than ``buffer`` bytes ahead of the tape (``t - now > buffer / rate``) it waits (sleeps) until
it is within the buffer again, as a drive holds a WRITE until it has room. Writing ``N`` bytes
at once thus sleeps ``(N - buffer) / rate`` in the writes; :meth:`TapeClock.drain` (a filemark,
a flush, close, a move) sleeps the rest: a drive writes its buffer to tape before it reports a
filemark (not an immediate one) or a LOCATE done.

Reading: the drive reads ahead into its buffer at the native rate from the moment it is
positioned; a record is there ``n / rate`` after the one before it, or at once when the drive
had read it ahead (at most ``buffer`` bytes ahead of the host, else the tape stopped: idle).

Starved time (the tape stood still between two writes of one open) is split two ways: the part
right after a drain (``starved_at_marks_seconds``: the writer's set-up of its next tape file after
a synchronous filemark) and the part before the host first got ahead of the tape
(``starved_at_start_seconds``: until a write finds the buffer still holding data, the writer is
starting -- label, first header, first records -- and the tape has not yet been kept streaming).

Not modelled: load, locate and rewind times, back-hitches (shoe-shining) when the buffer runs
empty, speed matching, compression. ``rate`` 0 means unlimited: no clock at all.

The clock and the sleep are injectable (tests use a fake clock).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["STATS_SUFFIX", "DriveStats", "TapeClock", "add_stats", "read_stats", "stats_path"]

STATS_SUFFIX = ".tapesim-stats"


@dataclass
class DriveStats:
    """What a rate-limited drive did: bytes moved, the tape's time moving and standing still,
    and the host's time waiting for the drive. Seconds are wall seconds."""

    sessions: int = 0  # opens of the drive (SimDrive objects closed)
    open_seconds: float = 0.0  # from open to close, summed over the sessions
    bytes_written: int = 0
    bytes_read: int = 0
    moving_seconds: float = 0.0  # the tape's time writing or reading records: bytes / rate
    idle_seconds: float = 0.0  # the tape stood still waiting for the host (write buffer empty, read buffer full)
    starved_seconds: float = 0.0  # the part of idle between two writes of an open: the writer did not keep up
    starved_at_marks_seconds: float = 0.0  # the part of starved right after a drain (filemark, flush, move)
    starved_at_start_seconds: float = 0.0  # the part of starved before the host first got ahead of the tape
    throttle_seconds: float = 0.0  # the host slept in writes/reads: it was a buffer ahead (the drive was the limit)
    drain_seconds: float = 0.0  # the host slept while the buffer went to tape (filemark, flush, close, a move)

    def add(self, other: DriveStats) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


class TapeClock:
    """The tape's motion at ``rate`` bytes/s behind a ``buffer`` of bytes (module docstring)."""

    def __init__(
        self,
        rate: int,
        buffer: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        self.rate = rate
        self.buffer = buffer
        self._clock = clock
        self._sleep = sleep
        self._opened = self._t = clock()
        self._reading = False
        self._gap = 0.0  # idle since the last write, starved if another write follows
        self._after_drain = False  # the gap began at a drain (the buffer emptied at a filemark)
        self._streaming = False  # a write has found the buffer holding data: the host got ahead of the tape
        self.stats = DriveStats(sessions=1)

    def _wait(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        self._sleep(seconds)
        return seconds

    def write(self, n: int) -> None:
        """The host gives the drive a record of ``n`` bytes."""
        if self._reading:
            self.drain()
        now = self._clock()
        if self._t < now:  # the buffer ran empty at t: the tape waited for data
            self.stats.idle_seconds += now - self._t
            self._gap += now - self._t
            self._t = now
        elif self.stats.bytes_written:
            self._streaming = True
        if self.stats.bytes_written:
            self.stats.starved_seconds += self._gap
            if self._after_drain:
                self.stats.starved_at_marks_seconds += self._gap
            if not self._streaming:
                self.stats.starved_at_start_seconds += self._gap
        self._gap = 0.0
        self._after_drain = False
        self._t += n / self.rate
        self.stats.bytes_written += n
        self.stats.moving_seconds += n / self.rate
        self.stats.throttle_seconds += self._wait(self._t - self.buffer / self.rate - now)

    def read(self, n: int) -> None:
        """The host takes a record of ``n`` bytes from the drive."""
        if not self._reading:
            self.drain()
            self._reading = True
            self._gap = 0.0
        now = self._clock()
        ahead_from = now - self.buffer / self.rate  # the read-ahead is at most a buffer
        if self._t < ahead_from:  # the buffer was full: the tape stopped
            self.stats.idle_seconds += ahead_from - self._t
            self._t = ahead_from
        self._t += n / self.rate
        self.stats.bytes_read += n
        self.stats.moving_seconds += n / self.rate
        self.stats.throttle_seconds += self._wait(self._t - now)

    def drain(self) -> None:
        """The buffer goes to tape (a filemark, a flush, close) or is dropped (a move, which also
        ends the read-ahead): the host waits until the tape has caught up with it."""
        if not self._reading:
            self.stats.drain_seconds += self._wait(self._t - self._clock())
        now = self._clock()
        if self._t < now and not self._reading:
            self.stats.idle_seconds += now - self._t
            self._gap += now - self._t
        self._after_drain = self._after_drain or not self._reading
        self._t = now
        self._reading = False

    def close(self) -> DriveStats:
        """Drain and return the session's stats."""
        self.drain()
        self.stats.open_seconds = self._clock() - self._opened
        return self.stats


def stats_path(path: str) -> str:
    """Where the drive opened as ``path`` keeps its :class:`DriveStats` (``PATH.tapesim-stats``;
    for a library drive, ``DIR/drive-<i>.tap.tapesim-stats``: the drive's, whatever tape)."""
    return path + STATS_SUFFIX


def read_stats(path: str) -> DriveStats | None:
    """The stats kept for the drive opened as ``path``; None when there are none."""
    try:
        with open(stats_path(path), encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    out = DriveStats()
    if isinstance(raw, dict):
        for k, default in asdict(out).items():
            v = raw.get(k)
            if isinstance(v, type(default)) and not isinstance(v, bool):
                setattr(out, k, v)
    return out


def add_stats(path: str, session: DriveStats) -> None:
    """Add one session's stats to those kept for ``path`` (replaced atomically)."""
    total = read_stats(path) or DriveStats()
    total.add(session)
    tmp = stats_path(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(total), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, stats_path(path))
