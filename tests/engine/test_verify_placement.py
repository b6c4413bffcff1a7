"""A tape file in the wrong place (every CRC and digest valid): copied from another medium or media
set, duplicated, or under a label copied from another medium. verify names it; scan and a catalog
sync do not learn it as if the medium held it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tapearc.catalog.db import Catalog
from tapearc.engine.scan import scan_medium, sync_medium
from tapearc.media import open_medium
from tests.engine.test_verify import make, records, verify, write_image


def _media(tmp_path: Path) -> tuple[Path, list[list[bytes]], list[list[bytes]]]:
    """Medium A (tape files: label, generation 1, generation 2) and B's records (another set)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ia, _ = make(tmp_path / "a")
    ib, _ = make(tmp_path / "b")
    return ia, records(ia), records(ib)


def _spliced(tmp_path: Path, ia: Path, files: list[list[bytes]]) -> Path:
    img = tmp_path / "t.tap"
    shutil.copy(ia, img)
    write_image(img, files)
    return img


def _kinds(rep):  # type: ignore[no-untyped-def]
    return {f.tape_file: sorted({p.what for p in f.problems}) for m in rep.media for f in m.files}


def _scan(img: Path) -> tuple[dict[int, str], list[str], list[tuple[int, int]]]:
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        res = scan_medium(d, cat)
        rows = sorted((t.file_number, t.generation or 0) for t in cat.tape_files(res.medium_uuid))  # type: ignore[arg-type]
        return {f.tape_file: f.state for f in res.files}, res.warnings, rows


def test_tape_file_of_another_media_set(tmp_path: Path) -> None:
    ia, fa, fb = _media(tmp_path)
    img = _spliced(tmp_path, ia, [fa[0], fa[1], fb[2]])  # generation 2 replaced by another set's
    rep = verify(img)
    assert not rep.ok
    assert _kinds(rep) == {1: [], 2: ["foreign"]}
    p = rep.media[0].files[1].problems[0]
    assert "copied from another medium" in p.message and p.record == 0
    states, warnings, _ = _scan(img)
    assert states == {1: "complete", 2: "foreign"}
    assert any("tape file 2" in w and "another medium" in w for w in warnings)


def test_appended_tape_file_of_another_medium_is_not_learnt(tmp_path: Path) -> None:
    ia, fa, fb = _media(tmp_path)
    img = _spliced(tmp_path, ia, [*fa, fb[1]])
    rep = verify(img)
    assert not rep.ok and _kinds(rep)[3] == ["foreign"]
    with Catalog() as cat, open_medium(f"sim:{img}", write=False) as d:
        notes: list[str] = []
        label = sync_medium(d, cat, notes)
        assert [t.file_number for t in cat.tape_files(label.medium_uuid) if t.generation is not None] == [1, 2]
        assert any("tape file 3" in n for n in notes)


def test_duplicated_tape_file(tmp_path: Path) -> None:
    ia, fa, _ = _media(tmp_path)
    img = _spliced(tmp_path, ia, [*fa, fa[1]])
    rep = verify(img)
    assert _kinds(rep) == {1: [], 2: [], 3: ["duplicate"]}
    assert "second copy of tape file 1" in rep.media[0].files[2].problems[0].message
    states, _, _ = _scan(img)
    assert states == {1: "complete", 2: "complete", 3: "duplicate"}


def test_label_of_another_medium(tmp_path: Path) -> None:
    ia, fa, fb = _media(tmp_path)
    img = _spliced(tmp_path, ia, [fb[0], *fa[1:]])
    rep = verify(img)
    assert _kinds(rep) == {1: ["foreign"], 2: ["foreign"]}
    states, _, rows = _scan(img)
    assert states == {1: "foreign", 2: "foreign"}
    assert all(g == 0 for _, g in rows)  # the catalog learnt no generation there


def test_list_names_a_tape_file_in_the_wrong_place(tmp_path: Path) -> None:
    from tapearc.engine.listing import list_medium

    ia, fa, fb = _media(tmp_path)
    img = _spliced(tmp_path, ia, [*fa, fb[1], fa[2]])
    with open_medium(f"sim:{img}", write=False) as d:
        listing = list_medium(d)
    problems = {f.tape_file: (f.problem or "") for f in listing.files if f.kind == "generation"}
    assert problems[1] == problems[2] == ""
    assert problems[3].startswith("foreign tape file: its generation header is of medium")
    assert problems[4].startswith("duplicate tape file: a second copy of tape file 2")


def test_scan_command_exits_20_on_what_it_did_not_learn(tmp_path: Path) -> None:
    """The scan command learns what is sound, prints its report, then one error line and exit 20
    for a foreign and a duplicated tape file (it exited 0 with warnings only); a sound medium: 0."""
    import json
    import subprocess
    import sys

    def scan(img: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tapearc", "scan", "--media", f"sim:{img}", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    ia, fa, fb = _media(tmp_path)
    cat = str(tmp_path / "cat.sqlite")
    p = scan(ia, "--catalog", cat)
    assert p.returncode == 0 and "error" not in p.stderr, p.stderr
    img = _spliced(tmp_path, ia, [*fa, fb[1], fa[1]])  # tape file 3 foreign, 4 a copy of 1
    p = scan(img, "--catalog", str(tmp_path / "c2.sqlite"), "--json")
    assert p.returncode == 20, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("tapearc: error:")]
    assert len(errors) == 1 and "scan found 2 damaged, foreign or duplicate" in errors[0], p.stderr
    assert "tape file 3" in errors[0] and "Traceback" not in p.stderr
    out = json.loads(p.stdout)  # the report is still the JSON output
    assert [(g["tape_file"], g["state"]) for g in out["generations"]] == [
        (1, "complete"),
        (2, "complete"),
        (3, "foreign"),
        (4, "duplicate"),
    ]
