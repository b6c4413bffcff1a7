"""docs/faults.md names, for every row, the tests that exercise it: they must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_fault_row_names_existing_tests() -> None:
    text = (ROOT / "docs" / "faults.md").read_text()
    rows = [
        ln
        for ln in text.splitlines()
        if ln.startswith("| ") and not ln.startswith("| fault") and not ln.startswith("| input") and "---" not in ln
    ]
    assert len(rows) >= 30
    missing = []
    for row in rows:
        refs = re.findall(r"(tests/[\w/]+\.py)((?:(?:, )?::\w+)*)", row)
        assert refs, f"row names no test: {row[:80]}"
        for path, names in refs:
            p = ROOT / path
            if not p.exists():
                missing.append(path)
                continue
            src = p.read_text()
            missing += [f"{path}::{n}" for n in re.findall(r"::(\w+)", names) if f"def {n}(" not in src]
    assert not missing, missing
