"""Opening a passphrase-protected key before the command line is parsed.

A command given a key file and a passphrase file (``backup --encrypt K --passphrase-file P``,
``restore|verify --key K --passphrase-file P``) needs the key's scrypt derivation: a third of a
second of CPU by design. The console entry point (tapearc.cli.entry) calls :func:`start` with the
arguments before typer, rich and the engine are imported (about 0.15-0.2 s), so the derivation
runs in a child process on another CPU meanwhile (crypto.wrap.kek_in_child).

This is only ever a head start: the command parses its options as usual and asks :func:`take`
for the derivation of exactly the key record and passphrase it read itself; anything else
(another file, a changed file, a prompt instead of a file, an argument list this simple scan
does not understand) finds nothing and derives the key the normal way. Errors here are ignored:
the command reports them with its own message when it reads the files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tapearc import format as fmt

__all__ = ["KEY_OPTION", "start", "take"]

#: The commands that open a key, and the option naming the key file.
KEY_OPTION = {"backup": "--encrypt", "restore": "--key", "verify": "--key"}
PASSPHRASE_OPTION = "--passphrase-file"

_started: dict[tuple[str, str], tuple[fmt.WrappedKey, str, Callable[[], AESGCM]]] = {}


def _value(args: list[str], option: str) -> str | None:
    """The value of ``option`` (``--opt V`` or ``--opt=V``) when given exactly once, else None."""
    found: list[str] = []
    for i, a in enumerate(args):
        if a == "--":
            break
        if a == option and i + 1 < len(args):
            found.append(args[i + 1])
        elif a.startswith(option + "="):
            found.append(a[len(option) + 1 :])
    return found[0] if len(found) == 1 else None


def start(args: list[str]) -> None:
    """Start deriving the key-encryption key of the key file and passphrase file ``args`` (the
    command line after the program name) name, if they name both; never raises."""
    option = KEY_OPTION.get(args[0]) if args else None
    key_file = _value(args, option) if option else None
    passphrase_file = _value(args, PASSPHRASE_OPTION) if key_file else None
    if key_file is None or passphrase_file is None or passphrase_file == "-":
        return
    try:
        if not all(stat.S_ISREG(os.stat(f).st_mode) for f in (key_file, passphrase_file)):
            return  # a pipe or a terminal is read once, by the command itself
        from tapearc.crypto.keyfile import read_key_file, read_passphrase_file
        from tapearc.crypto.wrap import kek_in_child

        wrapped = read_key_file(key_file)
        passphrase = read_passphrase_file(passphrase_file)
        _started[_name(key_file, passphrase_file)] = (wrapped, passphrase, kek_in_child(passphrase, wrapped))
    except Exception:  # a head start only: the command says what is wrong itself
        return


def take(
    key_file: str | os.PathLike[str], passphrase_file: str | os.PathLike[str], wrapped: fmt.WrappedKey, passphrase: str
) -> Callable[[], AESGCM] | None:
    """The derivation :func:`start` began for these files if it was for this very key record and
    passphrase (as the command read them), else None. Each is taken once."""
    got = _started.pop(_name(key_file, passphrase_file), None)
    if got is None or got[0] != wrapped or got[1] != passphrase:
        return None
    return got[2]


def _name(key_file: str | os.PathLike[str], passphrase_file: str | os.PathLike[str]) -> tuple[str, str]:
    return os.path.realpath(key_file), os.path.realpath(passphrase_file)
