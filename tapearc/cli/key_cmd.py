"""``tapearc key``: data keys as users handle them (docs/encryption.md).

``create`` a key file, ``show`` it, change its passphrase (``passwd``), print it as a
``paper`` key, type a paper key back in (``import``), and ``recover`` a key file from the key
record on any medium of an encrypted media set (no catalog, no key file needed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tapearc.cli.common import JsonOpt, ReadMediaOpt, emit_json, open_media, run, say
from tapearc.errors import KeyFileError, UsageError, WrongPassphraseError

if TYPE_CHECKING:
    from tapearc import format as fmt

key_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Data keys of encrypted media sets: create, show, change the passphrase, paper copy, recover.",
)

FileArg = Annotated[Path, typer.Argument(help="Key file.", metavar="FILE", show_default=False)]
PassOpt = Annotated[
    str | None,
    typer.Option(
        "--passphrase-file",
        help="Read the passphrase from the first line of this file (else it is asked for on the terminal).",
        metavar="FILE",
    ),
]
ToOpt = Annotated[
    Path, typer.Option("--to", help="Key file to write (never overwritten).", metavar="FILE", show_default=False)
]


@key_app.callback()
def _key_group() -> None:
    """Data keys of encrypted media sets: create, show, change the passphrase, paper copy, recover."""


def _describe(path: Path | None, w: fmt.WrappedKey) -> dict[str, Any]:
    from tapearc.crypto.keys import fingerprint_text

    return {
        "file": None if path is None else str(path),
        "fingerprint": fingerprint_text(w.key_fingerprint),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(w.created)),
        "comment": w.comment,
        "kdf": {"name": "scrypt", "log2_n": w.kdf_log2_n, "r": w.kdf_r, "p": w.kdf_p},
    }


def _refuse_existing(path: Path) -> None:
    """Refuse before asking anything when the key file to write exists already."""
    if path.exists() or path.is_symlink():
        raise KeyFileError(
            f"key file {path} exists already; tapearc never overwrites a key file",
            hint="give another file name, or move the old key file away first",
        )


def _written(path: Path, w: fmt.WrappedKey, json_out: bool, what: str) -> None:
    info = _describe(path, w)
    if json_out:
        emit_json(info)
        return
    say(info["fingerprint"])
    say(f"tapearc: {what} {path} (key {info['fingerprint']})", stderr=True)


# ---------------------------------------------------------------- create, show, passwd


@key_app.command("create")
def create(
    file: FileArg,
    passphrase_file: PassOpt = None,
    comment: Annotated[
        str, typer.Option("--comment", help="Free text kept in the key (at most 64 bytes).", metavar="TEXT")
    ] = "",
    json_out: JsonOpt = False,
) -> None:
    """Create a new random 256-bit data key in FILE (mode 0600), wrapped by a passphrase; print
    its fingerprint. An existing FILE is never overwritten."""
    run(json_out, lambda: _create(file, passphrase_file, comment, json_out))


def _create(file: Path, passphrase_file: str | None, comment: str, json_out: bool) -> None:
    from tapearc.crypto.keyfile import get_passphrase, write_key_file
    from tapearc.crypto.keys import Key
    from tapearc.crypto.wrap import wrap_key
    from tapearc.format import MAX_KEY_COMMENT

    if len(comment.encode("utf-8", "surrogateescape")) > MAX_KEY_COMMENT:
        raise UsageError(f"--comment: more than {MAX_KEY_COMMENT} bytes")
    _refuse_existing(file)
    passphrase = get_passphrase(passphrase_file, what=f"new key file {file}", confirm=True)
    wrapped = wrap_key(Key.generate(), passphrase, comment=comment)
    write_key_file(file, wrapped)
    _written(file, wrapped, json_out, "created key file")


@key_app.command("show")
def show(file: FileArg, json_out: JsonOpt = False) -> None:
    """Show FILE's fingerprint, creation time, comment and passphrase-hashing parameters (no
    passphrase needed)."""
    run(json_out, lambda: _show(file, json_out))


def _show(file: Path, json_out: bool) -> None:
    from tapearc.crypto.keyfile import read_key_file

    info = _describe(file, read_key_file(file))
    if json_out:
        emit_json(info)
        return
    kdf = info["kdf"]
    say(f"key file:    {file}")
    say(f"fingerprint: {info['fingerprint']}")
    say(f"created:     {info['created']}")
    say(f"comment:     {info['comment']}")
    say(f"passphrase:  scrypt N=2^{kdf['log2_n']} r={kdf['r']} p={kdf['p']}")


@key_app.command("passwd")
def passwd(
    file: FileArg,
    passphrase_file: Annotated[
        str | None,
        typer.Option("--passphrase-file", help="The current passphrase, from this file's first line.", metavar="OLD"),
    ] = None,
    new_passphrase_file: Annotated[
        str | None,
        typer.Option("--new-passphrase-file", help="The new passphrase, from this file's first line.", metavar="NEW"),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change the passphrase of FILE: the file is replaced atomically, the key and its fingerprint
    stay (media written with it need nothing). Other copies keep the old passphrase."""
    run(json_out, lambda: _passwd(file, passphrase_file, new_passphrase_file, json_out))


def _passwd(file: Path, old_file: str | None, new_file: str | None, json_out: bool) -> None:
    from tapearc.crypto.keyfile import get_passphrase, read_key_file, replace_key_file
    from tapearc.crypto.wrap import rewrap_key, unwrap_key

    wrapped = read_key_file(file)
    what = f"key file {file}"
    old = get_passphrase(old_file, what=what)
    unwrap_key(wrapped, old, where=what)  # a wrong one is said before the new one is asked for
    new = get_passphrase(new_file, what=f"{what} (new)", confirm=True, option="--new-passphrase-file")
    rewrapped = rewrap_key(wrapped, old, new, where=what)
    replace_key_file(file, rewrapped)
    _written(file, rewrapped, json_out, "changed the passphrase of key file")


# ---------------------------------------------------------------- paper, import, recover


@key_app.command("paper")
def paper(
    file: FileArg,
    qr: Annotated[
        bool, typer.Option("--qr", help="Also print a QR code of the text (needs the optional qrcode package).")
    ] = False,
) -> None:
    """Print FILE as a paper key: text to print or write down and type back in with "tapearc key
    import". It holds the key wrapped by its passphrase, as the file does."""
    run(False, lambda: _paper(file, qr))


def _paper(file: Path, qr: bool) -> None:
    from tapearc.crypto.keyfile import read_key_file
    from tapearc.crypto.paper import paper_text, qr_code

    wrapped = read_key_file(file)
    text = paper_text(wrapped)
    code = qr_code(wrapped) if qr else ""
    sys.stdout.write(text)
    if code:
        sys.stdout.write("\n" + code)
    sys.stdout.flush()


@key_app.command("import")
def import_(
    textfile: Annotated[str, typer.Argument(help="Paper key text, or - for standard input.", metavar="TEXTFILE")],
    to: ToOpt,
    json_out: JsonOpt = False,
) -> None:
    """Type a paper key back in: read TEXTFILE (or standard input) and write the key file --to
    FILE. A mistyped line is named; nothing is written then."""
    run(json_out, lambda: _import(textfile, to, json_out))


def _import(textfile: str, to: Path, json_out: bool) -> None:
    from tapearc.crypto.keyfile import write_key_file
    from tapearc.crypto.paper import parse_paper

    _refuse_existing(to)
    where = "paper key on standard input" if textfile == "-" else f"paper key {textfile}"
    try:
        raw = sys.stdin.buffer.read(1 << 20) if textfile == "-" else Path(textfile).read_bytes()[: 1 << 20]
    except OSError as e:
        raise KeyFileError(f"{where}: cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise KeyFileError(f"{where}: line {line} is not text (a byte that is not UTF-8)") from None
    wrapped = parse_paper(text, where)
    write_key_file(to, wrapped)
    _written(to, wrapped, json_out, "wrote key file")


@key_app.command("recover")
def recover(
    media: ReadMediaOpt,
    to: ToOpt,
    passphrase_file: PassOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Get the key of an encrypted media set back from any of its media (the key record after
    the label): the passphrase is checked, then the key file --to FILE is written. Needs no
    catalog and no key file."""
    run(json_out, lambda: _recover(media, to, passphrase_file, json_out))


def _recover(media: str, to: Path, passphrase_file: str | None, json_out: bool) -> None:
    from tapearc.crypto.keyfile import get_passphrase, write_key_file
    from tapearc.engine.keymedia import read_key_records

    _refuse_existing(to)
    with open_media(media, None, write=False) as src:
        drive = src.current()
        records = read_key_records(drive)
        name = drive.name
    if not records:
        raise KeyFileError(
            "medium holds no key record after its label: its media set is not encrypted",
            hint="a plain media set needs no key; for an encrypted one, load any medium of the set",
            medium=name,
        )
    passphrase = get_passphrase(passphrase_file, what=f"the key record of medium {name}")
    wrapped = _first_opened(records, passphrase, name)
    write_key_file(to, wrapped)
    _written(to, wrapped, json_out, "recovered the key into")


def _first_opened(records: list[fmt.WrappedKey], passphrase: str, name: str) -> fmt.WrappedKey:
    """The first key record ``passphrase`` opens (the wrong-passphrase error of the last one)."""
    from tapearc.crypto.wrap import unwrap_key

    error: WrongPassphraseError | None = None
    for i, w in enumerate(records, start=1):
        try:
            unwrap_key(w, passphrase, where=f"medium {name}, tape file 0, record {i}")
            return w
        except WrongPassphraseError as e:
            error = e
    assert error is not None
    raise error


def register(app: typer.Typer) -> None:
    app.add_typer(
        key_app, name="key", help="Data keys of encrypted media sets (create, show, passwd, paper, import, recover)."
    )
