"""Volume identity (issue 12, finding 8): a volume is its source, not only its file name.

hostA/root and hostB/root were chained as one volume ``root``; now the second is refused (exit 7,
nothing written), ``--new-volume`` / ``--volume NAME`` say what it is, a moved source is accepted
with a warning under its explicit name, a symlink finds its volume, and the identity survives a
lost catalog (it is on the medium: generation header layout 2)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import SCHEMA_VERSION

KiB = 1024
DATA = Path(__file__).parent / "data" / "old-v1"


def tapearc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def volume(path: Path, size: int, seed: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = bytes((i * 7 + seed * 13 + (i >> 12) * seed) % 251 for i in range(size))
    path.write_bytes(data)
    return data


def ok(p: subprocess.CompletedProcess[str]) -> Any:
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def catalog_dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def medium_bytes(tape: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tape.parent.iterdir()) if p.name.startswith(tape.name)}


@pytest.fixture
def hosts(tmp_path: Path) -> tuple[Path, Path, str]:
    """hostA/root (96 KiB) backed up to a fresh medium as volume 'root'; hostB/root (32 KiB)."""
    a, b = tmp_path / "hostA" / "root", tmp_path / "hostB" / "root"
    volume(a, 96 * KiB, 1)
    volume(b, 32 * KiB, 2)
    spec = f"sim:{tmp_path / 't.tap'}"
    res = ok(tapearc("backup", str(a), "--media", spec, "--block-size", "4K", "--json"))
    assert (res["volume"], res["generation"], res["kind"]) == ("root", 1, "full")
    assert res["source_path"] == str(a)
    return a, b, spec


def test_other_source_under_same_name_is_refused(
    hosts: tuple[Path, Path, str], tmp_path: Path, _private_catalog: Path
) -> None:
    """The issue's reproduction: hostB/root is not an incremental of hostA/root's volume."""
    a, b, spec = hosts
    tape = tmp_path / "t.tap"
    before, cat_before = medium_bytes(tape), catalog_dump(_private_catalog)
    p = tapearc("backup", str(b), "--media", spec)
    assert p.returncode == 7, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith("tapearc: error: volume 'root' of media set ")
    assert f"was backed up from {a}, not from {b}; nothing was written" in lines[0]
    assert lines[1] == (
        f"tapearc: hint: if {b} is another volume, name it: --volume hostB/root (or --new-volume, which "
        "picks that name); if it is the same volume moved, say so with --volume root"
    )
    assert len(lines) == 2 and "Traceback" not in p.stderr
    assert medium_bytes(tape) == before  # nothing written to the medium
    assert catalog_dump(_private_catalog) == cat_before  # nor to the catalog
    p = tapearc("backup", str(b), "--media", spec, "--json")
    assert p.returncode == 7 and json.loads(p.stdout)["error"] == "volume-mismatch"
    assert medium_bytes(tape) == before
    listed = ok(tapearc("list", "--media", spec, "--json"))
    assert list(listed["volumes"]) == ["root"] and len(listed["generations"]) == 1


def test_new_volume_and_explicit_names(hosts: tuple[Path, Path, str]) -> None:
    a, b, spec = hosts
    res = ok(tapearc("backup", str(b), "--media", spec, "--new-volume", "--json"))
    assert (res["volume"], res["generation"], res["kind"]) == ("hostB/root", 1, "full")
    assert res["volume_size"] == 32 * KiB and res["warnings"] == []
    # from now on the plain command finds each source's own volume
    res = ok(tapearc("backup", str(b), "--media", spec, "--json"))
    assert (res["volume"], res["generation"], res["kind"], res["base_generation"]) == (
        "hostB/root",
        2,
        "incremental",
        1,
    )
    res = ok(tapearc("backup", str(a), "--media", spec, "--json"))
    assert (res["volume"], res["generation"], res["kind"], res["base_generation"]) == ("root", 2, "incremental", 1)
    assert res["volume_size"] == 96 * KiB
    # --new-volume never takes over a name in use
    p = tapearc("backup", str(b), "--media", spec, "--new-volume", "--volume", "root")
    assert p.returncode == 7 and "already has a volume 'root' (backed up from " + str(a) in p.stderr
    # a third source: --new-volume picks hostC/root; an explicit new name is a new volume too
    c = volume(a.parent.parent / "hostC" / "root", 16 * KiB, 3)
    assert c
    res = ok(
        tapearc("backup", str(a.parent.parent / "hostC" / "root"), "--media", spec, "--volume", "c-root", "--json")
    )
    assert (res["volume"], res["generation"], res["kind"]) == ("c-root", 1, "full")
    listed = ok(tapearc("list", "--media", spec, "--json"))
    chains = listed["volumes"]
    assert sorted(chains) == ["c-root", "hostB/root", "root"]
    assert [g["volume_size"] for g in chains["hostB/root"]] == [32 * KiB, 32 * KiB]
    assert [g["volume_size"] for g in chains["root"]] == [96 * KiB, 96 * KiB]


def test_moved_source_needs_its_name_and_is_recorded(hosts: tuple[Path, Path, str], tmp_path: Path) -> None:
    a, _, spec = hosts
    moved = tmp_path / "newdisk" / "root"
    moved.parent.mkdir()
    os.rename(a, moved)
    p = tapearc("backup", str(moved), "--media", spec)
    assert p.returncode == 7 and f"was backed up from {a}, not from {moved}" in p.stderr
    p = tapearc("backup", str(moved), "--media", spec, "--volume", "root", "--json")
    res = ok(p)
    assert (res["volume"], res["generation"], res["kind"], res["base_generation"]) == ("root", 2, "incremental", 1)
    assert res["unchanged_blocks"] == 24  # the same bytes: nothing but the header and trailer written
    warning = (
        f"tapearc: warning: volume 'root' was backed up from {a} (generation 1); --volume root takes {moved} "
        "as the same volume moved: the chain continues and the new source is recorded"
    )
    assert p.stderr.strip() == warning
    # the new source is the volume's: the plain command continues it, without a warning
    p = tapearc("backup", str(moved), "--media", spec, "--json")
    res = ok(p)
    assert (res["volume"], res["generation"], res["base_generation"]) == ("root", 3, 2) and p.stderr == ""
    # and the old path is now another volume's business
    volume(a, 8 * KiB, 5)
    assert tapearc("backup", str(a), "--media", spec).returncode == 7


def test_symlinks_rewrites_and_resizes_stay_the_same_volume(tmp_path: Path) -> None:
    """A symlink to the source finds its volume (whatever the link's name); a path whose symlink
    now resolves elsewhere (an LV after a reboot: /dev/vg0/root -> dm-3, then dm-5) is the same
    volume; so is a file rewritten (new inode) or resized."""
    spec = f"sim:{tmp_path / 't.tap'}"
    disk = tmp_path / "images" / "disk1"
    volume(disk, 64 * KiB, 1)
    lv = tmp_path / "vg0" / "root"
    lv.parent.mkdir()
    lv.symlink_to(disk)
    res = ok(tapearc("backup", str(lv), "--media", spec, "--block-size", "4K", "--json"))
    assert (res["volume"], res["source_path"], res["source_real"]) == ("root", str(lv), str(disk))
    # another link, another name: the same resolved path is the same volume
    other = tmp_path / "vmdisk"
    other.symlink_to(disk)
    p = tapearc("backup", str(other), "--media", spec, "--json")
    res = ok(p)
    assert (res["volume"], res["generation"], res["kind"]) == ("root", 2, "incremental") and p.stderr == ""
    assert res["source_path"] == str(other)  # the volume's source is now recorded as that link
    res = ok(tapearc("backup", str(lv), "--media", spec, "--json"))  # and back: same resolved path
    assert (res["volume"], res["generation"], res["source_path"]) == ("root", 3, str(lv))
    # the LV's link now resolves elsewhere: same path as given -> same volume
    disk2 = tmp_path / "images" / "disk5"
    shutil.copy(disk, disk2)
    lv.unlink()
    lv.symlink_to(disk2)
    res = ok(tapearc("backup", str(lv), "--media", spec, "--json"))
    assert (res["volume"], res["generation"], res["source_real"]) == ("root", 4, str(disk2))
    # rewritten by a tool (new inode) and grown: same volume, incremental
    ino = disk2.stat().st_ino
    tmp = disk2.with_name("disk5.new")
    tmp.write_bytes(disk2.read_bytes() + bytes(range(256)) * 64)
    os.rename(tmp, disk2)
    assert disk2.stat().st_ino != ino
    p = tapearc("backup", str(lv), "--media", spec, "--json")
    res = ok(p)
    assert (res["volume"], res["generation"], res["kind"], res["volume_size"]) == ("root", 5, "incremental", 80 * KiB)
    assert p.stderr == ""


def test_identity_survives_a_lost_catalog(
    hosts: tuple[Path, Path, str], tmp_path: Path, _private_catalog: Path
) -> None:
    a, b, spec = hosts
    ok(tapearc("backup", str(b), "--media", spec, "--new-volume", "--json"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    ok(tapearc("scan", "--media", spec, "--json"))
    # rebuilt from the generation headers: each source continues its own volume
    res = ok(tapearc("backup", str(b), "--media", spec, "--json"))
    assert (res["volume"], res["generation"], res["base_generation"]) == ("hostB/root", 2, 1)
    tape = tmp_path / "t.tap"
    before = medium_bytes(tape)
    c = tmp_path / "hostC" / "root"
    volume(c, 8 * KiB, 3)
    p = tapearc("backup", str(c), "--media", spec)
    assert p.returncode == 7 and f"was backed up from {a}, not from {c}" in p.stderr
    assert medium_bytes(tape) == before
    # the same with the catalog lost again: the refusal comes from what the medium says
    for suffix in ("", "-wal", "-shm"):
        Path(str(_private_catalog) + suffix).unlink(missing_ok=True)
    p = tapearc("backup", str(c), "--media", spec)
    assert p.returncode == 7 and f"was backed up from {a}, not from {c}" in p.stderr
    assert medium_bytes(tape) == before


def test_list_plan_restore_show_the_source(hosts: tuple[Path, Path, str], tmp_path: Path) -> None:
    a, b, spec = hosts
    ok(tapearc("backup", str(b), "--media", spec, "--new-volume", "--json"))
    p = tapearc("list", "--media", spec)
    assert p.returncode == 0, p.stderr
    assert f"volume root: generations 1(F, 24 blocks); source {a}\n" in p.stdout
    assert f"volume hostB/root: generations 1(F, 1 blocks); source {b}\n" in p.stdout
    listed = ok(tapearc("list", "--media", spec, "--json"))
    gens = {g["volume"]: g for g in listed["generations"]}
    assert gens["root"]["source_path"] == str(a) and gens["hostB/root"]["source_path"] == str(b)
    assert gens["root"]["volume_uuid"] != gens["hostB/root"]["volume_uuid"]
    assert listed["volumes"]["root"][0]["source_path"] == str(a)

    p = tapearc("plan", "--media", spec, "--volume", "hostB/root")
    assert p.returncode == 0 and p.stdout.startswith(f"restore volume 'hostB/root' (source {b}) generation 1 ")
    plan = ok(tapearc("plan", "--media", spec, "--volume", "root", "--json"))
    assert plan["source_path"] == str(a)

    out = tmp_path / "restored"
    p = tapearc("restore", "--media", spec, "--volume", "hostB/root", "--to", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"restored volume 'hostB/root' (source {b}) generation 1 ")
    assert out.read_bytes() == b.read_bytes()
    out.unlink()
    res = ok(tapearc("restore", "--media", spec, "--volume", "root", "--to", str(out), "--json"))
    assert res["source_path"] == str(a) and out.read_bytes() == a.read_bytes()


def _old_volume() -> bytes:
    """The fixture's volume (tests/cli/data/old-v1/README.md): generation 2's bytes."""
    bs = 4096
    data = bytearray(16 * bs)
    data[0:bs] = (b"old tapearc fixture, block 0. " * 200)[:bs]
    data[5 * bs : 6 * bs] = (b"old tapearc fixture, block 5. " * 200)[:bs]
    data[3 * bs : 3 * bs + 10] = b"changed!!!"
    return bytes(data)


def test_old_catalog_and_media_are_migrated(tmp_path: Path) -> None:
    """A catalog (schema 1) and a medium (generation header layout 1) made by tapearc before
    volume identity: the catalog is migrated in place and keeps its rows, both generations
    restore, and the next backup continues the chain and records its source from then on."""
    cat = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(cat)
    db.executescript((DATA / "catalog-v1.sql").read_text())
    db.close()
    old_rows = {
        t: catalog_rows(cat, t) for t in ("media_sets", "media", "volumes", "generations", "tape_files", "chunks")
    }
    assert len(old_rows["generations"]) == 2
    for name in ("tape.tap", "tape.tap.tapesim"):
        shutil.copy(DATA / name, tmp_path / name)
    spec = f"sim:{tmp_path / 'tape.tap'}"

    plan = ok(tapearc("plan", "--media", spec, "--catalog", str(cat), "--json"))
    assert (plan["volume"], plan["chain"], plan["source_path"]) == ("root", [1, 2], None)
    db = sqlite3.connect(cat)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    db.close()
    for table, rows in old_rows.items():  # every old row kept, with its old columns unchanged
        if table == "media":  # but for the hint of how the medium was last named (--media)
            rows = [{**r, "last_name": spec} for r in rows]
        assert catalog_rows(cat, table, columns_of=rows) == rows
    out = tmp_path / "g2"
    ok(tapearc("restore", "--media", spec, "--catalog", str(cat), "--to", str(out), "--json"))
    assert out.read_bytes() == _old_volume()
    listed = ok(tapearc("list", "--media", spec, "--json"))
    assert [g["source_path"] for g in listed["generations"]] == [None, None]

    src = tmp_path / "hostA" / "root"
    src.parent.mkdir()
    data = bytearray(_old_volume())
    data[9 * 4096 : 9 * 4096 + 4] = b"new!"
    src.write_bytes(bytes(data))
    p = tapearc("backup", str(src), "--media", spec, "--catalog", str(cat), "--json")
    res = ok(p)
    assert (res["volume"], res["generation"], res["kind"], res["base_generation"]) == ("root", 3, "incremental", 2)
    assert p.stderr.strip() == (
        "tapearc: warning: volume 'root' has no recorded source (its generations were written by an older "
        f"tapearc); its source is now recorded as {src}"
    )
    other = tmp_path / "hostB" / "root"
    volume(other, 8 * KiB, 2)
    p = tapearc("backup", str(other), "--media", spec, "--catalog", str(cat))
    assert p.returncode == 7 and f"was backed up from {src}, not from {other}" in p.stderr
    out.unlink()
    ok(tapearc("restore", "--media", spec, "--catalog", str(cat), "--to", str(out), "--json"))
    assert out.read_bytes() == bytes(data)


def catalog_rows(path: Path, table: str, columns_of: list[dict[str, object]] | None = None) -> list[dict[str, object]]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY id")]
    finally:
        db.close()
    if columns_of:
        keep = set(columns_of[0])
        rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
    return rows
