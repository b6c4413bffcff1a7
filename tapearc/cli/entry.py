"""The ``tapearc`` command's entry point (the console script and ``python -m tapearc``).

It sets up Ctrl-C handling (tapearc.interrupts) before anything heavy is imported: importing
typer, rich and the engine takes ~100 ms, and a SIGINT then must still be one line and exit
130, never a KeyboardInterrupt traceback. Keep this module's imports to the standard library's
cheapest and tapearc.interrupts.
"""

from __future__ import annotations

import os
import signal


def _first(signum: int, frame: object) -> None:
    """Until tapearc.interrupts is imported (a millisecond): the same as its exit_now."""
    try:
        os.write(2, b"tapearc: error: interrupted\n")
    finally:
        os._exit(130)


if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # an inherited 'ignore' stays
    signal.signal(signal.SIGINT, _first)

from tapearc import interrupts  # noqa: E402  (after the handler, on purpose)

interrupts.install_startup()


def main() -> None:
    interrupts.install_startup()  # (again, for a caller that imported this module long before)
    from tapearc.cli.app import main as app_main

    app_main()


if __name__ == "__main__":
    main()
