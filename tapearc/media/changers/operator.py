"""An operator at a terminal as the changer (``operator``): tapearc asks, a person swaps media.

The operator changer has one drive and no slots: :meth:`OperatorChanger.load` and
:meth:`~OperatorChanger.unload` refuse. The engine calls :meth:`OperatorChanger.wait_for_medium`
instead, with a ``check`` that looks at the medium in the drive.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from enum import Enum

from ..changer import AttendedChanger, ChangerError, ChangerStatus, DriveBayStatus, MediumCheck

Check = MediumCheck


class _Default(Enum):
    TIMEOUT = "the changer's timeout"


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class OperatorChanger(AttendedChanger):
    """A person who puts the wanted medium into the drive when asked.

    ``prompt_fn(text)`` shows a message to the operator (default: a line on stderr);
    ``poll``: seconds between two looks at the drive; ``timeout``: default for
    :meth:`wait_for_medium` (None: wait as long as it takes). ``clock`` and ``sleep`` are
    for tests.
    """

    name = "operator"

    def __init__(
        self,
        prompt_fn: Callable[[str], None] | None = None,
        *,
        poll: float = 2.0,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.prompt_fn = prompt_fn or _to_stderr
        self.poll = poll
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return "OperatorChanger()"

    def status(self) -> ChangerStatus:
        """One drive (what it holds is unknown here: ``full`` is False) and no slots."""
        return ChangerStatus(
            slots=(), drives=(DriveBayStatus(0, False),), details={"operator": True, "drive_contents": "unknown"}
        )

    def load(self, slot: int, drive: int = 0) -> None:
        raise ChangerError(
            "an operator changer has no slots", hint="the operator is asked for media by name (wait_for_medium)"
        )

    def unload(self, drive: int = 0, slot: int | None = None) -> None:
        raise ChangerError(
            "an operator changer has no slots", hint="the operator is asked for media by name (wait_for_medium)"
        )

    def close(self) -> None:
        pass

    def wait_for_medium(
        self, describe: str, check: Check, *, timeout: float | _Default | None = _Default.TIMEOUT
    ) -> None:
        """Ask the operator for the medium ``describe`` and wait until ``check()`` accepts it.

        ``check()`` looks at the drive: True = the wanted medium is there (return);
        a string = the drive holds another medium, the string says why it is not the one
        wanted (shown to the operator each time it changes); False/None = no medium yet.
        If ``check()`` accepts at once, nothing is shown. Polls every ``poll`` seconds.
        ``timeout`` (default: the changer's): ChangerError "timed out after N s waiting for
        <describe>". Ctrl-C (KeyboardInterrupt) and errors raised by ``check`` propagate.
        """
        if isinstance(timeout, _Default):
            timeout = self.timeout
        start = self._clock()
        result = check()
        if result is True:
            return
        limit = f" (waiting up to {timeout:g} s)" if timeout is not None else ""
        self.prompt_fn(f"Please put {describe} into the drive{limit}; press Ctrl-C to give up.")
        last: object = None
        while True:
            if isinstance(result, str) and result != last:
                self.prompt_fn(result)
            last = result if isinstance(result, str) else None
            if timeout is not None and self._clock() - start >= timeout:
                raise ChangerError(
                    f"timed out after {timeout:g} s waiting for {describe}", hint="run again when the medium is at hand"
                )
            wait = self.poll
            if timeout is not None:
                wait = max(0.0, min(wait, start + timeout - self._clock()))
            self._sleep(wait)
            result = check()
            if result is True:
                return
