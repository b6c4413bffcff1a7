"""``tapearc copy`` / ``tapearc compare`` and the stream medium ``-`` end to end, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_volume

pytest.importorskip("tapesim.drive")

# copy and compare run through copy_cmd's entry point: the whole tapearc command line with the
# two commands registered (whether or not app.py registers them itself)
COPY_CMD = [sys.executable, "-m", "tapearc.cli.copy_cmd"]
TAPEARC = [sys.executable, "-m", "tapearc"]
EOM = b"\xff\xff\xff\xff"


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


def tapearc(*args: str) -> subprocess.CompletedProcess[bytes]:
    return run([*TAPEARC, *args])


def copycmd(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run([*COPY_CMD, *args], **kw)


def one_line_error(p: subprocess.CompletedProcess[bytes], code: int, *words: str) -> str:
    err = p.stderr.decode()
    assert p.returncode == code, (p.returncode, p.stdout, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("tapearc: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture()
def backed_up(tmp_path: Path) -> tuple[Path, bytes, Path]:
    vol = tmp_path / "vol.img"
    data = make_volume(vol, "zero-runs")
    a = tmp_path / "a.tap"
    p = tapearc("backup", str(vol), "--media", f"sim:{a}")
    assert p.returncode == 0, p.stderr
    return vol, data, a


def test_copy_then_restore_from_the_copy(tmp_path: Path, backed_up: tuple[Path, bytes, Path]) -> None:
    _, data, a = backed_up
    b = tmp_path / "b.tap"
    p = copycmd("copy", "--from", f"sim:{a}", "--to", f"sim:{b}", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["complete"] and res["tape_files"] == 2 and res["filemarks"] == 2 and res["label"]["sequence"] == 1
    assert b.read_bytes() == a.read_bytes()
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", f"sim:{b}", "--to", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    # human output, to a dir: medium and back
    p = copycmd("copy", "--from", f"sim:{b}", "--to", f"dir:{tmp_path / 'd'}")
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert "copied" in text and "2 tape files" in text and "tapearc medium" in text
    p = copycmd("copy", "--from", f"dir:{tmp_path / 'd'}", "--to", f"sim:{tmp_path / 'c.tap'}")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "c.tap").read_bytes() == a.read_bytes()


def test_backup_through_a_real_pipe(tmp_path: Path) -> None:
    """tapearc backup vol --media - | tapearc copy --from - --to sim:X, then restore from sim:X."""
    vol = tmp_path / "vol.img"
    data = make_volume(vol, "mixed")
    x = tmp_path / "x.tap"
    writer = subprocess.Popen(
        [*TAPEARC, "backup", str(vol), "--media", "-", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader = subprocess.Popen(
        [*COPY_CMD, "copy", "--from", "-", "--to", f"sim:{x}", "--json"],
        stdin=writer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stdout is not None
    writer.stdout.close()
    r_out, r_err = reader.communicate(timeout=120)
    w_err = writer.stderr.read() if writer.stderr else b""
    assert writer.wait(timeout=120) == 0, w_err
    assert reader.returncode == 0, r_err
    # the backup's result left standard output (the stream) alone: it went to standard error
    assert b'"generation": 1' in w_err
    res = json.loads(r_out)
    assert res["label"] is not None and res["tape_files"] == 2
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", f"sim:{x}", "--to", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data


def test_copy_to_and_from_a_stream(tmp_path: Path, backed_up: tuple[Path, bytes, Path]) -> None:
    _, _, a = backed_up
    p = copycmd("copy", "--from", f"sim:{a}", "--to", "-")
    assert p.returncode == 0, p.stderr
    assert p.stdout == a.read_bytes() + EOM  # a dump: the SIMH image and the end marker
    assert b"copied" in p.stderr  # the summary does not go into the stream
    dump = tmp_path / "dump.tap"
    dump.write_bytes(p.stdout)
    with open(dump, "rb") as f:
        p = copycmd("copy", "--from", "-", "--to", f"sim:{tmp_path / 'b.tap'}", stdin=f)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "b.tap").read_bytes() == a.read_bytes()
    # a saved stream is a sim: image itself
    p = copycmd("compare", f"sim:{dump}", f"sim:{a}")
    assert p.returncode == 0, p.stderr
    assert b"identical" in p.stdout


def test_compare_command(tmp_path: Path, backed_up: tuple[Path, bytes, Path]) -> None:
    _, _, a = backed_up
    b = tmp_path / "b.tap"
    b.write_bytes(a.read_bytes())
    p = copycmd("compare", f"sim:{a}", f"sim:{b}", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["identical"] is True
    img = bytearray(b.read_bytes())
    img[len(img) // 2] ^= 0xFF  # inside the chunk's data
    b.write_bytes(bytes(img))
    p = copycmd("compare", f"sim:{a}", f"sim:{b}")
    line = one_line_error(p, 20, "differ", "tape file 1 record", "differs at byte", "1 differing record")
    assert line
    p = copycmd("compare", f"sim:{a}", f"sim:{b}", "--json")
    assert p.returncode == 20
    err = json.loads(p.stdout)
    assert err["error"] == "media-differ" and err["first_kind"] == "data" and err["first_tape_file"] == 1
    assert err["differing_records"] == 1 and isinstance(err["first_offset"], int)
    # from standard input
    with open(a, "rb") as f:
        stream = f.read() + EOM
    p = copycmd("compare", "-", f"sim:{a}", input=stream)
    assert p.returncode == 0, p.stderr
    p = copycmd("compare", f"sim:{a}", f"sim:{a}")
    one_line_error(p, 2, "same medium")


def test_refusals_leave_the_target_untouched(tmp_path: Path, backed_up: tuple[Path, bytes, Path]) -> None:
    vol, _, a = backed_up
    before = a.read_bytes()
    # self-copy, in several spellings
    for src, dst in [(f"sim:{a}", f"sim:{a}"), (f"sim:{a}", str(a))]:
        p = copycmd("copy", "--from", src, "--to", dst)
        one_line_error(p, 2, "same medium")
    assert a.read_bytes() == before
    # a non-blank target
    other = tmp_path / "other.tap"
    p = tapearc("backup", str(vol), "--media", f"sim:{other}")
    assert p.returncode == 0
    other_before = other.read_bytes()
    p = copycmd("copy", "--from", f"sim:{a}", "--to", f"sim:{other}", "--json")
    assert p.returncode == 18
    assert json.loads(p.stdout)["error"] == "medium-labeled"
    assert other.read_bytes() == other_before
    p = copycmd("copy", "--from", f"sim:{a}", "--to", f"sim:{other}")
    one_line_error(p, 18, "not blank", "nothing was written")
    assert other.read_bytes() == other_before
    # records too large for the target (the label's record size says so before anything is written)
    from tapearc.media.dirmedium import create_dir_medium

    create_dir_medium(str(tmp_path / "small"), max_record_size=64 * 1024)
    p = copycmd("copy", "--from", f"sim:{a}", "--to", f"dir:{tmp_path / 'small'}")
    one_line_error(p, 15, "record size", "nothing was written")
    assert sorted(x.name for x in (tmp_path / "small").iterdir()) == ["TAPEARC-DIR-MEDIUM"]
    # with --force the labeled target is replaced
    p = copycmd("copy", "--from", f"sim:{a}", "--to", f"sim:{other}", "--force")
    assert p.returncode == 0, p.stderr
    assert other.read_bytes() == before


def test_cut_streams(tmp_path: Path, backed_up: tuple[Path, bytes, Path]) -> None:
    _, _, a = backed_up
    img = a.read_bytes()
    # the writer failed before writing anything (missing source): the reader says so
    writer = subprocess.Popen(
        [*TAPEARC, "backup", str(tmp_path / "nope"), "--media", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader = subprocess.Popen(
        [*COPY_CMD, "copy", "--from", "-", "--to", f"sim:{tmp_path / 'x.tap'}"],
        stdin=writer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stdout is not None
    writer.stdout.close()
    _, r_err = reader.communicate(timeout=120)
    assert writer.wait(timeout=120) == 3
    p = subprocess.CompletedProcess(reader.args, reader.returncode, b"", r_err)
    one_line_error(p, 22, "input is empty")
    # cut inside a record, and cut after the last filemark (no end-of-medium word)
    for cut in (len(img) // 2, len(img)):
        p = copycmd("copy", "--from", "-", "--to", f"sim:{tmp_path / f'cut{cut}.tap'}", input=img[:cut])
        line = one_line_error(p, 22, f"ends at byte {cut}", "cut", "incomplete")
        assert ("missing" in line) == (cut == len(img))


def test_stream_medium_is_read_in_order(tmp_path: Path, backed_up: tuple[Path, bytes, Path]) -> None:
    _, _, a = backed_up
    stream = a.read_bytes() + EOM
    p = run([*TAPEARC, "list", "--media", "-"], input=stream)  # list reads in order: fine
    assert p.returncode == 0, p.stderr
    assert b"vol.img" in p.stdout
    p = run([*TAPEARC, "restore", "--media", "-", "--to", str(tmp_path / "o.img")], input=stream)
    line = one_line_error(p, 14, "can only be read or written in order", "cannot rewind")
    assert line and b"tapearc copy --from - --to sim:FILE" in p.stderr  # the hint


def _recycled(catalog: str) -> dict[str, bool]:
    """medium uuid -> whether the catalog marks it recycled (its data gone)."""
    import sqlite3

    with sqlite3.connect(catalog) as db:
        return {str(u): r is not None for u, r in db.execute("SELECT uuid, recycled FROM media")}


def _label_uuid(image: Path) -> str:
    p = tapearc("list", "--media", f"sim:{image}", "--json")
    assert p.returncode == 0, p.stderr
    return str(json.loads(p.stdout)["label"]["medium_uuid"])


def test_copy_force_over_a_medium_the_catalog_knows_forgets_its_data(
    tmp_path: Path, backed_up: tuple[Path, bytes, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy --force onto medium A, which the catalog knows to hold generation 1 of vol.img: the
    catalog marks A and its generations recycled before A is written over (it went on offering a
    restore from data that was gone); an older copy of the same medium written over is not."""
    import os

    _, _, a = backed_up
    catalog = os.environ["TAPEARC_CATALOG"]
    other = tmp_path / "other.img"
    make_volume(other, "zero-runs", seed=2)
    b = tmp_path / "b.tap"
    assert tapearc("backup", str(other), "--media", f"sim:{b}").returncode == 0
    ua, ub = _label_uuid(a), _label_uuid(b)
    b2 = tmp_path / "b2.tap"
    assert copycmd("copy", "--from", f"sim:{b}", "--to", f"sim:{b2}").returncode == 0
    p = copycmd("copy", "--from", f"sim:{b}", "--to", f"sim:{b2}", "--force")  # a copy of B over a copy of B
    assert p.returncode == 0, p.stderr
    assert _recycled(catalog) == {ua: False, ub: False}
    p = copycmd("copy", "--from", f"sim:{b}", "--to", f"sim:{a}", "--force", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["erased_label"]["medium_uuid"] == ua
    assert _recycled(catalog) == {ua: True, ub: False}
    p = tapearc("restore", "--media", f"sim:{a}", "--volume", "vol.img", "--to", str(tmp_path / "o.img"))
    assert p.returncode != 0 and not (tmp_path / "o.img").exists()


def test_copy_force_without_a_catalog_makes_none(tmp_path: Path, backed_up: tuple[Path, bytes, Path]) -> None:
    _, _, a = backed_up
    b = tmp_path / "b.tap"
    assert copycmd("copy", "--from", f"sim:{a}", "--to", f"sim:{b}").returncode == 0
    other = tmp_path / "other.img"
    make_volume(other, "zero-runs", seed=2)
    c = tmp_path / "c.tap"
    assert tapearc("backup", str(other), "--media", f"sim:{c}").returncode == 0
    none = tmp_path / "none" / "cat.sqlite"
    p = copycmd("copy", "--from", f"sim:{c}", "--to", f"sim:{b}", "--force", "--catalog", str(none))
    assert p.returncode == 0, p.stderr
    assert not none.parent.exists()


def test_an_older_copy_written_back_over_its_medium_forgets_what_is_gone(
    tmp_path: Path, backed_up: tuple[Path, bytes, Path]
) -> None:
    """A dump of medium A made after generation 1, written back over A once A holds generation 2
    (`copy --from DUMP --to A --force`): A is the same medium, not recycled, but generation 2 is
    gone from it -- the catalog forgets it, so a restore restores generation 1 (it named generation
    2 complete and read zeros for its blocks, exit 23)."""
    vol, first, a = backed_up
    dump = tmp_path / "dump.tap"
    assert copycmd("copy", "--from", f"sim:{a}", "--to", f"sim:{dump}").returncode == 0
    vol.write_bytes(first[:-1000] + bytes(range(200)) * 5)
    assert tapearc("backup", str(vol), "--media", f"sim:{a}").returncode == 0
    p = copycmd("copy", "--from", f"sim:{dump}", "--to", f"sim:{a}", "--force")
    assert p.returncode == 0, p.stderr
    out = tmp_path / "o.img"
    p = tapearc("restore", "--media", f"sim:{a}", "--to", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == first
    p = tapearc("restore", "--media", f"sim:{a}", "--generation", "2", "--to", str(tmp_path / "o2.img"))
    assert p.returncode == 6, p.stderr  # no such generation: it is on no medium now
