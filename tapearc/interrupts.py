"""Ctrl-C (SIGINT) for the ``tapearc`` command: exit 130 with one line, at any moment.

The command goes through four phases, each with its own handling:

- **start-up** (imports, option parsing; :func:`install_startup`, called by the entry point
  before anything heavy is imported): nothing is open yet, so a SIGINT ends the process at once
  with ``tapearc: error: interrupted`` and exit 130 (:func:`exit_now`).
- **the command's work** (:class:`raising`, entered by the CLI's error boundary): SIGINT raises
  KeyboardInterrupt, which unwinds through the ``finally`` blocks (media closed, catalog rows
  marked incomplete) to the boundary, which prints one line and exits 130.
- **sections that must not be cut** (:class:`deferred`): a SIGINT waits until the section ends,
  then raises there. A generation's end record, its filemark and its catalog row are one such
  section, so the catalog never says "incomplete" of a generation complete on the medium.
- **after the work** (the result is decided and printed): SIGINT is ignored.

What a message about an interrupt must tell (the generation is complete on the medium) is kept
with :func:`note` and added by :func:`message`.

Only the entry point switches to these handlers; used as a library (tests, other programs), the
module changes nothing unless the process is in tapearc's start-up handling: elsewhere
:class:`raising` does nothing, and :class:`deferred` only defers when SIGINT raises
KeyboardInterrupt (Python's default).

Before the Python interpreter has set up its own signal handling (the first milliseconds after
exec) a SIGINT ends the process by the kernel's default action, as for any program; the shell
then reports status 130 too.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # (typing is not imported: this module loads before anything else)
if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Any, Self

_notes: list[str] = []


def note(text: str, *, replaces: str | None = None) -> None:
    """Something an interrupt message must say from now on (e.g. a generation is complete);
    ``replaces``: an earlier note this one corrects (it takes its place)."""
    if replaces is not None and replaces in _notes:
        if text in _notes:
            _notes.remove(replaces)
        else:
            _notes[_notes.index(replaces)] = text
    elif text not in _notes:
        _notes.append(text)


def clear_notes() -> None:
    _notes.clear()


def message() -> str:
    """``interrupted``, plus the notes."""
    return "; ".join(["interrupted", *_notes])


def exit_now(signum: int, frame: FrameType | None) -> None:
    """The start-up handler: one line on standard error, exit 130, nothing else runs."""
    try:
        os.write(2, f"tapearc: error: {message()}\n".encode())
    finally:
        os._exit(130)


def _set(handler: Any) -> bool:
    """signal.signal for SIGINT; False where it cannot be set (not the main thread)."""
    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:
        return False
    return True


def install_startup() -> None:
    """Called first by the entry point. An inherited 'ignore SIGINT' (a background job of a
    script, nohup) stays as it is."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        _set(exit_now)


class raising:
    """While the command works: SIGINT raises KeyboardInterrupt (only when the start-up handler
    was installed, i.e. under the entry point). On leaving, SIGINT is ignored: the command's
    result is decided and is being reported."""

    def __enter__(self) -> Self:
        self.active = signal.getsignal(signal.SIGINT) is exit_now and _set(signal.default_int_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            _set(signal.SIG_IGN)


class deferred:
    """A section a SIGINT must not cut: a SIGINT during it is held and raised as
    KeyboardInterrupt when the section ends. A section that ends with an error of its own (a
    drive's failed sync) still ends in KeyboardInterrupt -- the user asked the command to stop --
    with the error's text added to the notes, so the interrupt message says it. Does nothing
    outside the main thread or when SIGINT does not raise KeyboardInterrupt."""

    def __enter__(self) -> Self:
        self.pending = False
        self.prev = signal.getsignal(signal.SIGINT)
        self.active = self.prev is signal.default_int_handler and _set(self._hold)
        return self

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if not self.active:
            return
        _set(self.prev)
        if not self.pending or (et is not None and not issubclass(et, Exception)):
            return
        if ev is not None:
            note(str(getattr(ev, "message", None) or ev))
        raise KeyboardInterrupt from ev
