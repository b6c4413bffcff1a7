"""Temporary files in $TMPDIR that fail underneath tapearc (an I/O error reading one back, a file
cut short by something else): a large trailer read back by verify, list and scan, verify's chunk
digests, an incremental's base digests. Each is one line naming what and the folder, exit 28
(TempFileError), through the command line; and a backup closes its base's temporary file."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tapearc.engine import manifest as manifest_mod
from tapearc.errors import TempFileError
from tests.cli.test_cli import assert_one_line_error, tapearc
from tests.conftest import MiB

# Run the command with every spill limit at its smallest (so the temporary files exist with a
# small volume) and the temporary files whose name starts with $FAIL_PREFIX failing as $FAIL_HOW
# says: "eio" (every read raises EIO) or "cut" (the file is truncated to nothing before a read).
RUNNER = r"""
import errno, os, sys, tempfile
from tapearc.engine import manifest, tapefiles, verify
tapefiles.SPOOL_ITEM_OVER = 0
verify.SPOOL_DIGESTS_OVER = 1  # SpooledTemporaryFile: 0 would mean never
manifest.build_manifest.__defaults__ = (0,)
PREFIX, HOW = os.environ["FAIL_PREFIX"], os.environ["FAIL_HOW"]
failing = set()
real_tf, real_pread = tempfile.TemporaryFile, os.pread

def hurt(fd):
    if HOW == "eio":
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    os.ftruncate(fd, 0)

class Failing:
    def __init__(self, f):
        self._f = f
    def __getattr__(self, name):
        return getattr(self._f, name)
    def read(self, *a):
        hurt(self._f.fileno())
        return self._f.read(*a)
    def __iter__(self):
        return iter(self._f)

def tf(*a, **kw):
    f = real_tf(*a, **kw)
    if kw.get("prefix", "").startswith(PREFIX):
        failing.add(f.fileno())
        return Failing(f)
    return f

def pread(fd, n, off):
    if fd in failing:
        hurt(fd)
    return real_pread(fd, n, off)

tempfile.TemporaryFile, os.pread = tf, pread
sys.argv = ["tapearc", *sys.argv[1:]]
from tapearc.cli.entry import main
main()
"""


def failing_tapearc(tmpdir: Path, prefix: str, how: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmpdir), "FAIL_PREFIX": prefix, "FAIL_HOW": how}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.fixture
def medium(tmp_path: Path) -> tuple[str, Path]:
    """A medium holding a full and an incremental generation of a 2 MiB volume."""
    src = tmp_path / "vol.img"
    data = bytearray(os.urandom(2 * MiB))
    src.write_bytes(data)
    spec = f"sim:{tmp_path / 't.tap'}"
    assert tapearc("backup", str(src), "--media", spec, "--block-size", "4K").returncode == 0
    data[:4] = b"XXXX"
    src.write_bytes(data)
    return spec, src


@pytest.fixture
def tmpdir(tmp_path: Path) -> Path:
    d = tmp_path / "our-tmp"
    d.mkdir()
    return d


@pytest.mark.parametrize("how", ["eio", "cut"])
def test_verify_with_its_trailer_spool_failing(medium: tuple[str, Path], tmpdir: Path, how: str) -> None:
    p = failing_tapearc(tmpdir, "tapearc-trailer-", how, "verify", "--media", medium[0])
    assert_one_line_error(p, TempFileError.exit_code, "cannot read back the trailer read back", str(tmpdir))


@pytest.mark.parametrize("how", ["eio", "cut"])
def test_verify_with_its_digest_spool_failing(medium: tuple[str, Path], tmpdir: Path, how: str) -> None:
    p = failing_tapearc(tmpdir, "tapearc-verify-", how, "verify", "--media", medium[0])
    assert_one_line_error(p, TempFileError.exit_code, "the digests of the chunks read", str(tmpdir))


@pytest.mark.parametrize("command", ["list", "scan"])
def test_list_and_scan_with_the_trailer_spool_failing(
    medium: tuple[str, Path], tmpdir: Path, tmp_path: Path, command: str
) -> None:
    """A fresh catalog: list and scan read the trailer from the medium."""
    os.environ["TAPEARC_CATALOG"] = str(tmp_path / "fresh.sqlite")  # restored by the autouse fixture
    args = [command, "--media", medium[0]] + (["--deep"] if command == "scan" else [])
    p = failing_tapearc(tmpdir, "tapearc-trailer-", "eio", *args)
    assert_one_line_error(p, TempFileError.exit_code, "cannot read back the trailer read back", str(tmpdir))


@pytest.mark.parametrize("how", ["eio", "cut"])
def test_incremental_with_its_spilled_base_failing(medium: tuple[str, Path], tmpdir: Path, how: str) -> None:
    spec, src = medium
    p = failing_tapearc(tmpdir, "tapearc-manifest-", how, "backup", str(src), "--media", spec)
    words = ("cannot read back the base generation's block digests", str(tmpdir))
    assert_one_line_error(p, TempFileError.exit_code, *words)
    ok = failing_tapearc(tmpdir, "nothing-fails-", how, "backup", str(src), "--media", spec)
    assert ok.returncode == 0, ok.stderr  # the same backup with the file intact


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled up but for 8 KiB (tempfile takes a folder where it cannot create a
    file for another; the trailer of the medium fixture is larger). Needs root; unmounted after."""
    d = tmp_path / "full-tmp"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 64 KiB tmpfs to fill $TMPDIR (needs root): {r.stderr.strip()}")
    try:
        with contextlib.suppress(OSError), open(d / "filler", "wb") as f:
            while True:
                f.write(bytes(4096))
                f.flush()
        filler = d / "filler"
        os.truncate(filler, max(0, filler.stat().st_size - 8192))
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True, check=False)


def test_full_tmpdir_is_a_temp_file_error(medium: tuple[str, Path], full_tmpfs: Path) -> None:
    p = failing_tapearc(full_tmpfs, "nothing-fails-", "eio", "verify", "--media", medium[0])
    assert_one_line_error(p, TempFileError.exit_code, "cannot keep the trailer read back", str(full_tmpfs))


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_backup_closes_its_spilled_base_manifest(monkeypatch: pytest.MonkeyPatch, medium: tuple[str, Path]) -> None:
    """An incremental whose base's digests spill to a temporary file: once backup() returns,
    the file is closed (no descriptor more than before), not left to garbage collection."""
    from tests.engine.test_incremental import do_backup

    spec, src = medium
    built: list[tuple[manifest_mod.RunManifest, bool]] = []
    real = manifest_mod.build_manifest

    def build(*a: Any, **kw: Any) -> manifest_mod.RunManifest:
        m = real(*a, **kw, limit=0)
        built.append((m, m.store.file is not None))
        return m

    monkeypatch.setattr("tapearc.engine.genplan.build_manifest", build)
    before = _fds()
    res = do_backup(spec, src, block_size=4096, record_size=None)
    assert res.kind == "incremental" and built == [(built[0][0], True)]  # the base did spill to a file
    assert built[0][0].store.file is None  # closed by backup()
    assert _fds() == before
