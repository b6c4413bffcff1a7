"""``--changer-drive N`` and ``restore --media A --media B`` on a changer that is not a
simulated library: the serial autoloader simulator over TCP (hw-sim/tapesim/autoloader.py)
serving a simulated library with 2 drives, the drives' media being the library's
``drive-N.tap`` images (as /dev/nst0 and /dev/nst1 would be for an mtx changer). The changer
cannot tell which of its drives ``--media`` is: ``--changer-drive`` says it; a drive it does
not have is one line naming the changer and its drives (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.cli.test_cli_run import tapearc, write

lib_mod = pytest.importorskip("tapesim.library")
autoloader = pytest.importorskip("tapesim.autoloader")

KIB = 1024


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    lib = tmp_path / "lib"
    lib_mod.create_library(str(lib), 4, 64 << 20, drives=2)
    port, stop = autoloader.serve_tcp(str(lib), "127.0.0.1", 0)
    try:
        yield {
            "lib": lib,
            "changer": f"serial:socket://127.0.0.1:{port}",
            "drives": [f"sim:{lib}/drive-0.tap", f"sim:{lib}/drive-1.tap"],
            "a": write(tmp_path / "a.img", 1, 600 * KIB),
            "b": write(tmp_path / "b.img", 2, 300 * KIB),
            "tmp": tmp_path,
        }
    finally:
        stop()


def full_drives(lib: Path) -> list[int]:
    from tapearc.media.changers import open_changer

    ch = open_changer(f"sim:{lib}")
    try:
        return [d.number for d in ch.status().drives if d.full]
    finally:
        ch.close()


def backup(site: dict[str, Any], name: str, drive: int, *more: str) -> dict[str, Any]:
    p = tapearc(
        "backup", str(site["tmp"] / name), "--media", site["drives"][drive], "--changer", site["changer"],
        "--changer-drive", str(drive), "--block-size", "16K", "--chunk-size", "64K", "--json", *more,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout))


def test_each_backup_loads_the_drive_it_names(site: dict[str, Any]) -> None:
    assert backup(site, "a.img", 1)["complete"]
    assert full_drives(site["lib"]) == [1]  # not drive 0, which a changer other than sim: meant before
    assert backup(site, "b.img", 0)["complete"]
    assert full_drives(site["lib"]) == [0, 1]
    out = site["tmp"] / "a.out"
    p = tapearc(
        "restore", "--media", site["drives"][1], "--changer", site["changer"], "--changer-drive", "1",
        "--volume", "a.img", "--to", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == site["a"]


def test_several_volumes_on_the_drives_listed_in_changer_order(site: dict[str, Any]) -> None:
    backup(site, "a.img", 1)
    backup(site, "b.img", 0)
    folder = site["tmp"] / "out"
    folder.mkdir()
    d0, d1 = site["drives"]
    p = tapearc(
        "restore", "--media", d0, "--media", d1, "--changer", site["changer"], "--volume", "a.img",
        "--volume", "b.img", "--to", str(folder), "--drives", "2", "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert {v["volume"]: v["drive"] for v in doc["volumes"]} == {"a.img": d1, "b.img": d0}  # no tape moved
    assert (folder / "a.img.img").read_bytes() == site["a"]
    assert (folder / "b.img.img").read_bytes() == site["b"]
    # one drive of the two (the first free one), the volumes one after the other
    for f in folder.iterdir():
        f.unlink()
    p = tapearc(
        "restore", "--media", d0, "--media", d1, "--changer", site["changer"], "--volume", "a.img",
        "--volume", "b.img", "--to", str(folder),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert (folder / "a.img.img").read_bytes() == site["a"]
    assert (folder / "b.img.img").read_bytes() == site["b"]


def test_a_drive_the_changer_does_not_have_is_one_line(site: dict[str, Any]) -> None:
    p = tapearc("list", "--media", site["drives"][0], "--changer", site["changer"], "--changer-drive", "2")
    assert_one_line_error(p, 2, f"changer {site['changer']} has no drive 2 (its drives: 0, 1)")
    p = tapearc(
        "backup", str(site["tmp"] / "a.img"), "--media", site["drives"][0], "--changer", site["changer"],
        "--changer-drive", "9",
    )  # fmt: skip
    assert_one_line_error(p, 2, "has no drive 9 (its drives: 0, 1)")
    assert full_drives(site["lib"]) == []  # nothing was loaded
    d0, d1 = site["drives"]
    three = [a for d in (d0, d1, str(site["tmp"] / "x.tap")) for a in ("--media", d)]
    p = tapearc("restore", *three, "--changer", site["changer"], "--volume", "a.img", "--to", str(site["tmp"] / "o"))
    assert_one_line_error(p, 2, "has no drive 2 (its drives: 0, 1)")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["list", "--media", "sim:x.tap", "--changer-drive", "1"], ["--changer-drive 1: goes with --changer"]),
        (["list", "--media", "sim:x.tap", "--changer", "operator", "--changer-drive", "0"], ["operator"]),
        (["list", "--media", "sim:x.tap", "--changer-drive", "-1"], ["--changer-drive -1"]),
        (["restore", "--media", "sim:x.tap", "--media", "sim:y.tap", "--to", "o"], ["--media given 2 times"]),
        (
            ["restore", "--media", "sim:x.tap", "--media", "sim:x.tap", "--changer", "sim:lib", "--to", "o"],
            ["give each drive once"],
        ),
    ],
)
def test_changer_drive_usage(tmp_path: Path, args: list[str], words: list[str]) -> None:
    assert_one_line_error(tapearc(*args, cwd=tmp_path), 2, *words)


def test_a_library_folder_and_a_drive_number(tmp_path: Path) -> None:
    lib_mod.create_library(str(tmp_path / "lib"), 3, 64 << 20, drives=2)
    write(tmp_path / "a.img", 1, 200 * KIB)
    p = tapearc("backup", "a.img", "--media", "sim:lib", "--changer-drive", "1", "--block-size", "16K", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert full_drives(tmp_path / "lib") == [1]
    p = tapearc("list", "--media", "sim:lib/drive-1.tap", "--changer", "sim:lib", "--changer-drive", "0", cwd=tmp_path)
    assert_one_line_error(p, 2, "drive-1.tap is drive 1 of library")


def test_a_job_names_its_drive_of_the_changer(site: dict[str, Any]) -> None:
    tmp = site["tmp"]
    job = tmp / "job.toml"
    head = f'[job]\nname = "n"\nchanger = "{site["changer"]}"\nrecord_size = "64K"\n'
    vol = '[defaults]\nblock_size = "16K"\n[[volume]]\nname = "a"\nsource = "a.img"\n'
    job.write_text(head + f'media = "{site["drives"][1]}"\nchanger_drive = 1\n' + vol)
    p = tapearc("run", str(job), "--json")
    assert p.returncode == 0, p.stderr
    assert full_drives(site["lib"]) == [1]
    job.write_text(head + f'media = ["{site["drives"][0]}", "{site["drives"][1]}"]\nchanger_drive = 1\n' + vol)
    assert_one_line_error(tapearc("run", str(job)), 34, "changer_drive", "each drive's index is its number")
    job.write_text('[job]\nname = "n"\nmedia = "/dev/nst1"\nchanger_drive = 1\n' + vol)
    assert_one_line_error(tapearc("run", str(job)), 34, "changer_drive", "goes with changer")
    job.write_text(head + f'media = "{site["drives"][0]}"\nchanger_drive = -1\n' + vol)
    assert_one_line_error(tapearc("run", str(job)), 34, "changer_drive", "drive number")


def test_a_list_of_drives_takes_a_free_one(site: dict[str, Any], _private_catalog: Path) -> None:
    """A job's ``media`` list with ``drives = 1``, and restore's several ``--media``: the first
    drive whose lease is free (drive 0 is held here by another holder), as sim:DIR does."""
    from tapearc.catalog.db import Catalog
    from tapearc.catalog.leases import Leases

    Catalog(str(_private_catalog)).close()
    tmp = site["tmp"]
    job = tmp / "job.toml"
    d0, d1 = site["drives"]
    job.write_text(
        f'[job]\nname = "n"\nchanger = "{site["changer"]}"\nrecord_size = "64K"\nmedia = ["{d0}", "{d1}"]\n'
        '[defaults]\nblock_size = "16K"\n[[volume]]\nname = "a"\nsource = "a.img"\n'
    )
    with Leases(str(_private_catalog)) as other:
        with other.acquire(f"drive:{site['changer']}:0", purpose="another job"):
            p = tapearc("run", str(job), "--json")
            assert p.returncode == 0, p.stderr
            assert full_drives(site["lib"]) == [1]
            out = tmp / "a.out"
            p = tapearc("restore", "--media", d0, "--media", d1, "--changer", site["changer"], "--to", str(out))
            assert p.returncode == 0, p.stderr
            assert out.read_bytes() == site["a"]
            p = tapearc(
                "restore", "--media", d0, "--media", d1, "--changer", site["changer"], "--to", str(out), "--wait", "0",
                "--changer-drive", "0",
            )  # fmt: skip
            assert_one_line_error(p, 2, "--changer-drive 0: with several --media")
        assert other.rows() == []
