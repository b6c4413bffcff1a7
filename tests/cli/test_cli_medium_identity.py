"""Medium identity before any write (issue 12, findings 1-3 and two smaller items).

Nothing a user gives as ``--media`` that is not blank or tapearc's is ever changed: random
files, text files, a loop block device, a damaged label, a medium the catalog knows; through
backup, label (without --force), copy --to and the bare-path form. The same object is never
used both ways (restore onto the medium it reads, backup of a medium onto itself). Every test
compares the bytes before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import make_volume


def tapearc(*args: str, tool: str = "tapearc", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", tool, *args], check=False, capture_output=True, text=True, timeout=timeout
    )


def one_line(p: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("tapearc: error: "), p.stderr
    assert all(ln.startswith("tapearc: ") for ln in lines) and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def digest(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def siblings(path: Path) -> set[str]:
    return {n for n in os.listdir(path.parent) if not n.startswith("catalog.sqlite")}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src.img"
    make_volume(src, "tiny")
    return src


def foreign_content(kind: str) -> bytes:
    if kind == "random":
        return os.urandom(1 << 20)
    if kind == "text":
        return b"".join(b"line %d of a text file\n" % i for i in range(20000))
    if kind == "disk":  # an MBR disk image
        head = bytearray(os.urandom(446)) + bytes(64) + b"\x55\xaa"
        return bytes(head) + os.urandom((1 << 20) - 512)
    raise ValueError(kind)


# the write commands, with the medium given with its prefix or as a bare path
WRITERS: dict[str, Callable[[Path, str], tuple[str, ...]]] = {
    "backup": lambda src, m: ("backup", str(src), "--media", m),
    "label": lambda src, m: ("label", "--media", m),
    "copy": lambda src, m: ("copy", "--from", f"sim:{src.parent / 'good.tap'}", "--to", m),
}


@pytest.mark.parametrize("content", ["random", "text", "disk"])
@pytest.mark.parametrize("command", sorted(WRITERS))
@pytest.mark.parametrize("form", ["sim", "bare"])
def test_foreign_file_is_never_overwritten(tmp_path: Path, source: Path, content: str, command: str, form: str) -> None:
    """Finding 1: a file that is not a tape image is refused (exit 11), untouched, by every
    command that writes, with sim: and as a bare path."""
    if command == "copy":
        assert tapearc("backup", str(source), "--media", f"sim:{tmp_path / 'good.tap'}").returncode == 0
    target = tmp_path / "disk.img"
    target.write_bytes(foreign_content(content))
    before, names = digest(target), siblings(target)
    medium = f"sim:{target}" if form == "sim" else str(target)
    line = one_line(tapearc(*WRITERS[command](source, medium)), 11, "nothing was written")
    if form == "sim":
        assert {"random": "not a tape image", "text": "of text", "disk": "MBR"}[content] in line
    else:
        assert "not an existing tapearc medium" in line
        assert f"sim:{target}" in tapearc(*WRITERS[command](source, medium)).stderr  # names the prefix
    assert digest(target) == before
    assert siblings(target) == names  # no sidecar or lock file left behind either


def test_bare_path_never_creates_a_medium(tmp_path: Path, source: Path) -> None:
    """A bare path that does not exist is refused (exit 11) naming the prefixes; nothing is
    created. An existing tapearc image is still taken as a bare path."""
    new = tmp_path / "new.tap"
    for args in (("backup", str(source), "--media", str(new)), ("label", "--media", str(new))):
        one_line(tapearc(*args), 11, "not an existing tapearc medium", "does not exist")
        assert not new.exists() and not Path(str(new) + ".tapesim").exists()
    assert tapearc("backup", str(source), "--media", f"sim:{new}").returncode == 0
    p = tapearc("backup", str(source), "--media", str(new), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["generation"] == 2


def test_missing_dev_path_is_never_created(tmp_path: Path, source: Path) -> None:
    """A missing /dev/... path given as medium is never created (it became a regular file)."""
    missing = f"/dev/tapearc-test-{uuid.uuid4().hex[:12]}"
    for medium, code in ((missing, 11), (f"sim:{missing}", 10), (f"dir:{missing}", 10)):
        one_line(tapearc("backup", str(source), "--media", medium), code, "nothing was written")
        one_line(tapearc("label", "--media", medium, "--force"), code)
        assert not os.path.lexists(missing) and not os.path.lexists(missing + ".tapesim")
        assert not os.path.lexists(missing + ".tapearc-lock")


def _losetup_works() -> bool:
    return os.geteuid() == 0 and shutil.which("losetup") is not None and os.path.exists("/dev/loop-control")


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if not _losetup_works():
        pytest.skip("needs root, losetup and /dev/loop-control to make a loop block device")
    backing = tmp_path / "disk.img"
    backing.write_bytes(foreign_content("disk"))
    p = subprocess.run(["losetup", "-f", "--show", str(backing)], check=False, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"losetup failed: {p.stderr.strip()}")
    dev = p.stdout.strip()
    try:
        yield dev, backing
    finally:
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def test_block_device_is_never_written(tmp_path: Path, source: Path, loop_device: tuple[str, Path]) -> None:
    """Finding 1: an MBR disk given as --media /dev/loopN (bare, sim:, dir:) is refused by
    backup, label (even --force) and copy --to; neither the device nor /dev gains anything."""
    dev, backing = loop_device
    assert tapearc("backup", str(source), "--media", f"sim:{tmp_path / 'good.tap'}").returncode == 0
    before, dev_before = digest(backing), digest(dev)
    dev_names = set(os.listdir("/dev"))
    for medium in (dev, f"sim:{dev}", f"dir:{dev}"):
        for args in (
            ("backup", str(source), "--media", medium),
            ("label", "--media", medium),
            ("label", "--media", medium, "--force"),
            ("copy", "--from", f"sim:{tmp_path / 'good.tap'}", "--to", medium),
            ("copy", "--from", f"sim:{tmp_path / 'good.tap'}", "--to", medium, "--force"),
        ):
            line = one_line(tapearc(*args), 11)
            assert "block device" in line or "not a folder" in line, line
    assert digest(dev) == dev_before and digest(backing) == before
    assert set(os.listdir("/dev")) - dev_names == set()


def _two_generations(tmp_path: Path, source: Path) -> Path:
    img = tmp_path / "t.tap"
    assert tapearc("backup", str(source), "--media", f"sim:{img}").returncode == 0
    with open(source, "r+b") as f:
        f.write(b"changed")
    assert tapearc("backup", str(source), "--media", f"sim:{img}").returncode == 0
    return img


def test_damaged_label_is_damage_not_blank(tmp_path: Path, source: Path) -> None:
    """Finding 2: one flipped bit in the label record's trailing SIMH length word made `list`
    say blank and the next backup relabel (truncate) the tape. Now it is damage (exit 20) with
    a hint to scan, for list, backup, label and copy --to; the image is untouched."""
    img = _two_generations(tmp_path, source)
    raw = bytearray(img.read_bytes())
    length = struct.unpack_from("<I", raw, 0)[0]
    raw[4 + length + (length & 1)] ^= 0x01  # the trailing length word of record 0 (the label)
    img.write_bytes(raw)
    before = digest(img)
    for args in (
        ("list", "--media", f"sim:{img}"),
        ("backup", str(source), "--media", f"sim:{img}"),
        ("label", "--media", f"sim:{img}"),
        ("copy", "--from", f"sim:{tmp_path / 'x.tap'}", "--to", f"sim:{img}"),
    ):
        if args[0] == "copy" and not (tmp_path / "x.tap").exists():
            assert tapearc("backup", str(source), "--media", f"sim:{tmp_path / 'x.tap'}").returncode == 0
        p = tapearc(*args)
        line = one_line(p, 20, "volume label is damaged")
        assert "blank" not in line.replace("not a blank one", "")
        assert "tapearc scan --media" in p.stderr
    assert digest(img) == before


def test_damaged_label_crc_is_damage(tmp_path: Path, source: Path) -> None:
    """A label record whose payload fails its CRC (intact framing) is damage too, on sim: and
    dir:, and a backup refuses it untouched."""
    img = _two_generations(tmp_path, source)
    raw = bytearray(img.read_bytes())
    raw[4 + 20] ^= 0x40  # inside the label's fields
    img.write_bytes(raw)
    before = digest(img)
    p = tapearc("backup", str(source), "--media", f"sim:{img}")
    assert p.returncode in (20, 21), p.stderr
    assert "tapearc scan --media" in p.stderr
    one_line(tapearc("label", "--media", f"sim:{img}"), p.returncode, "volume label is damaged")
    assert digest(img) == before
    folder = tmp_path / "medium"
    assert tapearc("backup", str(source), "--media", f"dir:{folder}").returncode == 0
    rec = folder / "file-000000" / "rec-000000000"  # the dir: medium's label record
    raw = bytearray(rec.read_bytes())
    raw[20] ^= 0x40
    rec.write_bytes(raw)
    files = {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for args in (("backup", str(source), "--media", f"dir:{folder}"), ("label", "--media", f"dir:{folder}")):
        p = tapearc(*args)
        one_line(p, p.returncode, "volume label is damaged")
        assert p.returncode in (20, 21) and "tapearc scan --media" in p.stderr
    assert {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files


def test_catalog_known_medium_is_never_blank(tmp_path: Path, source: Path) -> None:
    """A medium the catalog holds generations for is never taken for blank: an image emptied
    (or a dir: medium stripped to its marker) is refused by backup and label (exit 11) naming
    the generations; `label --force` is the way to reuse it."""
    img = _two_generations(tmp_path, source)
    img.write_bytes(b"")
    folder = tmp_path / "medium"
    assert tapearc("backup", str(source), "--media", f"dir:{folder}").returncode == 0
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
    for medium in (f"sim:{img}", f"dir:{folder}"):
        snapshot = sorted(str(p) for p in folder.rglob("*")), img.read_bytes()
        one_line(tapearc("backup", str(source), "--media", medium), 11, "catalog holds", "generation")
        one_line(tapearc("label", "--media", medium), 11, "catalog holds")
        assert (sorted(str(p) for p in folder.rglob("*")), img.read_bytes()) == snapshot
    # a missing image the catalog knows is not made anew either (and no file is left behind)
    img.unlink()
    Path(str(img) + ".tapesim").unlink()
    one_line(tapearc("backup", str(source), "--media", f"sim:{img}"), 11, "catalog holds")
    assert not img.exists() and not Path(str(img) + ".tapesim").exists()
    p = tapearc("label", "--media", f"sim:{img}", "--force")
    assert p.returncode == 0 and "erasing" in p.stderr and "catalog holds" in p.stderr, p.stderr
    assert tapearc("backup", str(source), "--media", f"sim:{img}").returncode == 0


def test_label_force_names_what_it_erases(tmp_path: Path) -> None:
    """`label --force` is the one way over foreign content, and it says what it destroys."""
    target = tmp_path / "notes.txt"
    target.write_bytes(foreign_content("text"))
    p = tapearc("label", "--media", f"sim:{target}", "--force")
    assert p.returncode == 0, p.stderr
    assert "tapearc: warning: --force: erasing" in p.stderr and "of text" in p.stderr
    assert tapearc("list", "--media", f"sim:{target}").returncode == 0


def test_restore_onto_the_medium_is_refused(tmp_path: Path, source: Path) -> None:
    """Finding 3: `restore --to` the image it reads (directly, through a symlink, a hard link,
    its settings file) destroyed the tape; a file inside a dir: medium likewise. Exit 8, one
    line naming both, nothing written."""
    img = _two_generations(tmp_path, source)
    os.symlink(img, tmp_path / "link.tap")
    os.link(img, tmp_path / "hard.tap")
    before = digest(img)
    for target in (img, tmp_path / "link.tap", tmp_path / "hard.tap", Path(str(img) + ".tapesim")):
        one_line(
            tapearc("restore", "--media", f"sim:{img}", "--to", str(target), "--force"), 8, str(target), f"sim:{img}"
        )
    one_line(tapearc("restore", "--media", f"sim:{tmp_path / 'link.tap'}", "--to", str(img), "--force"), 8)
    assert digest(img) == before
    folder = tmp_path / "medium"
    assert tapearc("backup", str(source), "--media", f"dir:{folder}").returncode == 0
    files = sorted(str(p) for p in folder.rglob("*"))
    rec = folder / "file-000001" / "rec-000000000"
    rec_before = digest(rec)
    for target in (rec, folder / "file-000000" / "new.img", folder / ".." / "medium" / "x.img"):
        one_line(tapearc("restore", "--media", f"dir:{folder}", "--to", str(target), "--force"), 8, "inside")
    assert sorted(str(p) for p in folder.rglob("*")) == files and digest(rec) == rec_before


def test_backup_of_the_medium_onto_itself_is_refused(tmp_path: Path, source: Path) -> None:
    """Finding 3: a backup whose source is the medium it writes (or lies inside a dir: medium)
    was accepted with a warning; now exit 8, nothing read or written."""
    img = _two_generations(tmp_path, source)
    before = digest(img)
    one_line(tapearc("backup", str(img), "--media", f"sim:{img}"), 8, str(img), "backed up onto itself")
    os.symlink(img, tmp_path / "link.tap")
    one_line(tapearc("backup", str(tmp_path / "link.tap"), "--media", f"sim:{img}"), 8)
    assert digest(img) == before
    folder = tmp_path / "medium"
    assert tapearc("backup", str(source), "--media", f"dir:{folder}").returncode == 0
    rec = folder / "file-000001" / "rec-000000000"
    files = sorted(str(p) for p in folder.rglob("*"))
    one_line(tapearc("backup", str(rec), "--media", f"dir:{folder}"), 8, "inside")
    assert sorted(str(p) for p in folder.rglob("*")) == files


def test_list_of_a_fifo_does_not_hang(tmp_path: Path, source: Path) -> None:
    """Smaller item: `list --media sim:FIFO` hung (opening a FIFO waits for a writer)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for medium in (f"sim:{fifo}", str(fifo)):
        one_line(tapearc("list", "--media", medium, timeout=60), 11, "FIFO")
        one_line(tapearc("scan", "--media", medium, timeout=60), 11, "FIFO")
        one_line(tapearc("backup", str(source), "--media", medium, timeout=60), 11, "FIFO")


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A tape image even root cannot write: the immutable attribute (chattr +i)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    img = tmp_path / "ro.tap"
    assert tapearc("new", str(img), "--capacity", "8M", tool="tapesim").returncode == 0
    p = subprocess.run(["chattr", "+i", str(img)], check=False, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {p.stderr.strip()}")
    try:
        yield img
    finally:
        subprocess.run(["chattr", "-i", str(img)], check=False, capture_output=True)


def test_drive_status_says_an_unwritable_image_is_not_writable(immutable: Path, source: Path) -> None:
    """Smaller item: `drive status` said "writable" for an image the user cannot write (here an
    immutable file, which root cannot write either: a backup fails with exit 13)."""
    assert not os.access(immutable, os.W_OK)
    p = tapearc("drive", "status", "--media", f"sim:{immutable}", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["write_protected"] is True and "cannot write" in info["details"]["not_writable"]
    p = tapearc("drive", "status", "--media", f"sim:{immutable}")
    assert "not writable" in p.stdout and ", writable" not in p.stdout, p.stdout
    one_line(tapearc("backup", str(source), "--media", f"sim:{immutable}"), 13)
