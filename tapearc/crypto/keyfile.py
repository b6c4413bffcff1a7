"""Key files and passphrases, as users handle them.

A key file holds one key record (:mod:`tapearc.format.keyrecord`) armored as base64 between
``-----BEGIN TAPEARC KEY-----`` and ``-----END TAPEARC KEY-----`` lines (64 characters a line).
It is written with mode 0600 and never over an existing file (:func:`write_key_file`); a
passphrase change replaces it atomically (:func:`replace_key_file`). Reading is strict: the text
must be exactly what tapearc writes for the record it decodes to (trailing white space aside), so
a changed byte anywhere is refused, with the line it is on when that can be told.

Passphrases come from ``--passphrase-file F`` (its first line, the line end stripped; an empty
one is refused) or, with no file, from a prompt on the terminal (typed twice when creating);
with neither, a clear error. Every error is one line naming the file.

Public API used by the other commands: :func:`load_key` (``--key FILE --passphrase-file P`` ->
:class:`~tapearc.crypto.keys.Key`), :func:`read_key_file` (the record, no passphrase needed),
:func:`get_passphrase`.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path

from tapearc import format as fmt
from tapearc.crypto.keys import Key
from tapearc.crypto.wrap import unwrap_key
from tapearc.errors import KeyFileError, TapearcError, UsageError

__all__ = [
    "BEGIN",
    "END",
    "armor",
    "dearmor",
    "get_passphrase",
    "load_key",
    "load_wrapped_key",
    "read_key_file",
    "read_passphrase_file",
    "replace_key_file",
    "write_key_file",
]

BEGIN = "-----BEGIN TAPEARC KEY-----"
END = "-----END TAPEARC KEY-----"
LINE = 64
MAX_KEY_FILE = 64 * 1024  # a key file is some 300 bytes; anything much larger is not one
MAX_PASSPHRASE_FILE = 64 * 1024


def armor(record: bytes) -> str:
    """The text of a key file holding ``record``."""
    b64 = base64.b64encode(record).decode("ascii")
    return "\n".join([BEGIN, *(b64[i : i + LINE] for i in range(0, len(b64), LINE)), END]) + "\n"


def dearmor(text: str, where: str) -> fmt.WrappedKey:
    """The key record in a key file's ``text`` (KeyFileError naming ``where`` and the line)."""
    lines = text.replace("\r\n", "\n").rstrip().split("\n")
    if lines[0] != BEGIN:
        raise KeyFileError(f"{where}: line 1 is not {BEGIN!r}: not a tapearc key file")
    try:
        end = lines.index(END)
    except ValueError:
        raise KeyFileError(f"{where}: no line {END!r}: not a whole tapearc key file") from None
    if end != len(lines) - 1:
        raise KeyFileError(f"{where}: line {end + 2}: text after {END!r}")
    body = lines[1:end]
    for n, line in enumerate(body, start=2):
        try:
            base64.b64decode(line + "=" * (-len(line) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{where}: line {n} is not base64 (a changed character)") from None
    try:
        record = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{where}: the base64 text is cut or changed (lines 2-{end})") from None
    try:
        wrapped = fmt.decode_key_record(record)
    except TapearcError as e:
        raise KeyFileError(f"{where}: the key record does not decode: {e.message}") from None
    want = armor(record).rstrip().split("\n")
    for n, (got, exp) in enumerate(zip(lines, want, strict=False), start=1):
        if got != exp:
            raise KeyFileError(f"{where}: line {n} is not as tapearc wrote it (a changed character)")
    if len(lines) != len(want):
        raise KeyFileError(f"{where}: {len(lines)} lines where tapearc wrote {len(want)}")
    return wrapped


def read_key_file(path: str | os.PathLike[str]) -> fmt.WrappedKey:
    """The key record of the key file at ``path`` (no passphrase needed)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyFileError(f"key file {p}: cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_KEY_FILE:
        raise KeyFileError(f"key file {p}: larger than {MAX_KEY_FILE} bytes: not a tapearc key file")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise KeyFileError(f"key file {p}: line {line}: a byte that is not ASCII (a changed byte)") from None
    return dearmor(text, f"key file {p}")


def write_key_file(path: str | os.PathLike[str], wrapped: fmt.WrappedKey) -> None:
    """Create the key file ``path`` (mode 0600) holding ``wrapped``; an existing file (or a
    symlink, even a dangling one) is never overwritten."""
    p = Path(path)
    data = armor(fmt.encode_key_record(wrapped)).encode("ascii")
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"key file {p} exists already; tapearc never overwrites a key file",
            hint="give another file name, or move the old key file away first",
        ) from None
    except OSError as e:
        raise KeyFileError(f"key file {p}: cannot be created: {e.strerror or e}") from None
    try:
        _write_all(fd, data)
    except OSError as e:
        os.close(fd)
        p.unlink(missing_ok=True)
        raise KeyFileError(f"key file {p}: cannot be written: {e.strerror or e}") from None
    os.close(fd)
    _sync_dir(p.parent)


def replace_key_file(path: str | os.PathLike[str], wrapped: fmt.WrappedKey) -> None:
    """Replace the key file ``path`` by one holding ``wrapped``, atomically: a new file (0600) in
    the same folder, synced, renamed over the old one. A crash leaves the old or the new file.
    A symlink is followed: the file it points to is replaced, the link stays."""
    p = Path(os.path.realpath(path))
    tmp = p.with_name(f".{p.name}.tapearc-new")
    tmp.unlink(missing_ok=True)
    write_key_file(tmp, wrapped)
    try:
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise KeyFileError(f"key file {p}: cannot be replaced: {e.strerror or e}") from None
    _sync_dir(p.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_passphrase_file(path: str | os.PathLike[str], option: str = "--passphrase-file") -> str:
    """The passphrase in ``path``: its first line, without its line end. An empty one, a file
    that cannot be read or is not UTF-8 text is a UsageError naming the file."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_PASSPHRASE_FILE)
    except OSError as e:
        raise UsageError(f"{option} {p}: cannot be read: {e.strerror or e}") from None
    first = raw.split(b"\n", 1)[0].removesuffix(b"\r")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{option} {p}: its first line is not UTF-8 text") from None
    if not text:
        raise UsageError(f"{option} {p}: its first line is empty; an empty passphrase is refused")
    return text


Prompt = Callable[[str], str]


def get_passphrase(
    passphrase_file: str | os.PathLike[str] | None,
    *,
    what: str,
    confirm: bool = False,
    option: str = "--passphrase-file",
    prompt: Prompt | None = None,
) -> str:
    """The passphrase for ``what`` (e.g. ``key file k.key``): from ``passphrase_file``, else
    asked on the terminal (twice with ``confirm``); with no terminal, a UsageError saying to
    give ``option``."""
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file, option)
    if prompt is None:
        if PASSED_TERMINAL is not None and sys.stdin.isatty():
            prompt = _prompt_on(PASSED_TERMINAL)
        elif sys.stdin.isatty() and _has_tty():
            prompt = getpass.getpass
        else:
            raise UsageError(f"{what}: no {option} given and no terminal to ask for the passphrase on")
    first = prompt(f"Passphrase for {what}: ")
    if not first:
        raise UsageError(f"{what}: an empty passphrase is refused")
    if confirm and prompt(f"Passphrase for {what} again: ") != first:
        raise UsageError(f"{what}: the two passphrases typed differ; nothing was written")
    return first


#: the terminal of the ``tapearc`` command that handed this command to a command server
#: (tapearc.cli.server): a served command has no controlling terminal of its own
PASSED_TERMINAL: int | None = None


def _prompt_on(fd: int) -> Prompt:
    """A prompt on the terminal ``fd`` that does not echo what is typed (as getpass's)."""

    def ask(text: str) -> str:
        import termios

        old = termios.tcgetattr(fd)
        quiet = list(old)
        quiet[3] &= ~termios.ECHO
        line = bytearray()
        try:
            termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)  # (before the prompt: an answer to it is kept)
            os.write(fd, text.encode())
            while not line.endswith(b"\n"):
                byte = os.read(fd, 1)
                if not byte:
                    break
                line += byte
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, old)
            os.write(fd, b"\n")
        return line.decode(errors="replace").rstrip("\n")

    return ask


def _has_tty() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def load_key(
    path: str | os.PathLike[str],
    passphrase_file: str | os.PathLike[str] | None = None,
    *,
    prompt: Prompt | None = None,
) -> Key:
    """The data key in the key file ``path``, opened with the passphrase of ``passphrase_file``
    (else asked on the terminal). KeyFileError (32) for a file that is not an intact key file,
    WrongPassphraseError (31) for a passphrase that does not open it, UsageError (2) for a
    passphrase file that cannot be used or no way to ask."""
    return load_wrapped_key(path, passphrase_file, prompt=prompt)[1]


def load_wrapped_key(
    path: str | os.PathLike[str],
    passphrase_file: str | os.PathLike[str] | None = None,
    *,
    prompt: Prompt | None = None,
) -> tuple[fmt.WrappedKey, Key]:
    """The key record of the key file ``path`` and the data key it opens to (errors as
    :func:`load_key`): a backup writes the record on each new medium of an encrypted set
    (:func:`tapearc.engine.keymedia.write_key_record`) and encrypts with the key."""
    wrapped = read_key_file(path)
    what = f"key file {Path(path)}"
    passphrase = get_passphrase(passphrase_file, what=what, prompt=prompt)
    return wrapped, unwrap_key(wrapped, passphrase, where=what)
