"""The key's scrypt in a child process (tapearc.crypto.wrap.kek_in_child / start_unwrap) and the
head start the entry point gives it (tapearc.crypto.prefetch): the same key as unwrap_key, the
same errors, a fallback when the child cannot run, and a head start used only for exactly the
key record and passphrase the command read itself."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from tapearc.crypto import prefetch
from tapearc.crypto.keyfile import read_key_file, write_key_file
from tapearc.crypto.keys import Key
from tapearc.crypto.wrap import kek_in_child, start_unwrap, unwrap_key, wrap_key
from tapearc.errors import WrongPassphraseError

FAST = 10  # scrypt N = 2**10 (the record states its parameters)
SECRET = bytes(range(32))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    key, pw = tmp_path / "k.key", tmp_path / "pw"
    write_key_file(key, wrap_key(Key(SECRET), "correct horse", log2_n=FAST))
    pw.write_text("correct horse\n")
    return key, pw


@pytest.fixture(autouse=True)
def _nothing_left() -> object:
    prefetch._started.clear()
    yield
    prefetch._started.clear()


def test_child_derivation_opens_the_same_key(files: tuple[Path, Path]) -> None:
    w = read_key_file(files[0])
    assert start_unwrap(w, "correct horse")().secret == SECRET == unwrap_key(w, "correct horse").secret
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        start_unwrap(w, "battery staple")()


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/false"])
def test_a_child_that_cannot_run_falls_back_to_deriving_here(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    w = read_key_file(files[0])
    monkeypatch.setattr(sys, "executable", executable)
    assert start_unwrap(w, "correct horse")().secret == SECRET
    with pytest.raises(WrongPassphraseError):
        start_unwrap(w, "battery staple")()


def test_a_head_start_for_these_files_is_taken_once(files: tuple[Path, Path]) -> None:
    key, pw = files
    prefetch.start(["backup", "vol", "--media", "sim:t", "--encrypt", str(key), "--passphrase-file", str(pw)])
    w = read_key_file(key)
    early = prefetch.take(key, pw, w, "correct horse")
    assert early is not None
    assert start_unwrap(w, "correct horse", kek=early)().secret == SECRET
    assert prefetch.take(key, pw, w, "correct horse") is None  # taken once


def test_a_head_start_is_not_used_for_another_passphrase_or_record(files: tuple[Path, Path], tmp_path: Path) -> None:
    key, pw = files
    args = ["restore", "sim:t", "--to", "x", f"--key={key}", f"--passphrase-file={pw}"]
    prefetch.start(args)
    w = read_key_file(key)
    assert prefetch.take(key, pw, w, "another passphrase") is None  # the file changed since
    prefetch.start(args)
    other = wrap_key(Key(SECRET), "correct horse", log2_n=FAST)  # same key, another salt
    assert prefetch.take(key, pw, other, "correct horse") is None


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["list", "--key", "K", "--passphrase-file", "P"],  # a command that opens no key
        ["backup", "vol", "--encrypt", "K"],  # no passphrase file: asked on the terminal later
        ["verify", "m", "--key", "K", "--key", "K2", "--passphrase-file", "P"],  # twice: typer decides
        ["backup", "vol", "--passphrase-file", "P", "--", "--encrypt", "K"],  # after --: not an option
    ],
)
def test_nothing_is_started_for_arguments_it_does_not_understand(args: list[str], files: tuple[Path, Path]) -> None:
    key, pw = files
    args = [{"K": str(key), "P": str(pw)}.get(a, a) for a in args]
    prefetch.start(args)
    assert prefetch._started == {}


def test_bad_files_are_left_to_the_command(tmp_path: Path, files: tuple[Path, Path]) -> None:
    key, pw = files
    junk = tmp_path / "junk.key"
    junk.write_text("not a key file\n")
    for k, p in ((junk, pw), (key, tmp_path / "missing"), (tmp_path / "missing.key", pw)):
        prefetch.start(["backup", "vol", "--encrypt", str(k), "--passphrase-file", str(p)])  # never raises
    assert prefetch._started == {}


def test_a_passphrase_pipe_is_not_read_by_the_head_start(tmp_path: Path, files: tuple[Path, Path]) -> None:
    key, _ = files
    fifo = tmp_path / "pw.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    prefetch.start(["backup", "vol", "--encrypt", str(key), "--passphrase-file", str(fifo)])  # must not open it
    assert prefetch._started == {}
    reader.start()
    with open(fifo, "wb") as f:  # the command's own read still gets the whole passphrase
        f.write(b"correct horse\n")
    reader.join(10)
    assert got == [b"correct horse\n"]


def test_child_gets_the_passphrase_through_a_pipe_not_its_arguments(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    seen: list[list[str]] = []
    real = subprocess.Popen

    def spy(args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        seen.append(list(args))
        return real(args, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "Popen", spy)
    w = read_key_file(files[0])
    assert kek_in_child("correct horse", w)() is not None
    assert seen and not any("correct horse" in a for a in seen[0])
    assert "-P" in seen[0]  # not the current folder on the child's sys.path
