"""bench/issue17.py finds bench/catalog_overhead.py whatever the current directory: loaded by a
relative path (as ``python bench/issue17.py`` gives it on some Pythons, or a runner that loads it
so) and then run from another folder, it said "bench/catalog_overhead.py not present". The
benchmark itself is not run (the PostgreSQL comparison is stubbed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os, runpy, sys
sys.path.insert(0, os.path.abspath("bench"))
import catalog_overhead  # bench/catalog_overhead.py, its compare stubbed: no benchmark is run
catalog_overhead.compare = lambda work, pg: {"sqlite": None, "postgresql": None, "why": "stubbed"}
g = runpy.run_path("bench/issue17.py", run_name="issue17_probe")  # __file__ relative: bench/issue17.py
os.chdir(sys.argv[1])  # the work folder, as a benchmark run is elsewhere
print("\\n".join(g["catalog_lines"](g["catalog_overhead"](sys.argv[1]))))
print("\\n".join(g["catalog_lines"](None)))
"""


def test_catalog_overhead_found_from_another_folder(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:2] == ["  catalog sqlite: not measured (stubbed)", "  catalog postgresql: not measured (stubbed)"]
    assert "not present" not in p.stdout
    assert lines[2].endswith("skipped (--no-catalog)")
