"""The ``tapearc`` command's entry point (the console script and ``python -m tapearc``).

It sets up Ctrl-C handling (tapearc.interrupts) before anything heavy is imported: importing
typer, rich and the engine takes ~100 ms, and a SIGINT then must still be one line and exit
130, never a KeyboardInterrupt traceback. Keep this module's imports to the standard library's
cheapest and tapearc.interrupts.
"""

from __future__ import annotations

from tapearc import interrupts

interrupts.install_startup()  # as early as can be: at the import of the console script's module


def main() -> None:
    interrupts.install_startup()  # (again, for a caller that imported this module long before)
    from tapearc.cli.app import main as app_main

    app_main()


if __name__ == "__main__":
    main()
