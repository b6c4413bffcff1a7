"""The command line with a PostgreSQL catalog (``--catalog postgresql://...``, and
``TAPEARC_CATALOG``): a full and an incremental backup onto a simulated tape, the catalog
browsed, a restore; the catalog lost (a new empty database) and rebuilt by ``scan`` from the
medium alone, and the same restore from it. Errors: one line naming the catalog, its exit code.
And 4 backup processes at once into one catalog, on both backends."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pgsupport import PgServer


def tapearc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )


def test_backup_incremental_restore_scan(tmp_path: Path, pg_url: str, pg_server: PgServer) -> None:
    rng = random.Random(17)
    spec = f"sim:{tmp_path / 't.tap'}"
    src = tmp_path / "disk.img"
    bs = 4096
    data = bytearray(rng.randbytes(300 * bs))
    src.write_bytes(bytes(data))
    p = tapearc("backup", str(src), "--media", spec, "--block-size", "4K", "--catalog", pg_url, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["kind"] == "full"
    first = bytes(data)
    data[7 * bs : 9 * bs] = rng.randbytes(2 * bs)
    src.write_bytes(bytes(data))
    # the catalog from the environment this time
    p = tapearc("backup", str(src), "--media", spec, "--json", env={"TAPEARC_CATALOG": pg_url})
    assert p.returncode == 0, p.stderr
    g2 = json.loads(p.stdout)
    assert g2["kind"] == "incremental" and g2["base_generation"] == 1 and g2["data_blocks"] == 2

    p = tapearc("catalog", "generations", "--catalog", pg_url, "--json")
    assert p.returncode == 0, p.stderr
    gens = json.loads(p.stdout)["generations"]
    assert [(g["generation"], g["state"], g["restore"]["chain"]) for g in gens] == [
        (1, "complete", [1]),
        (2, "complete", [1, 2]),
    ]
    p = tapearc("catalog", "volumes", "--catalog", pg_url)
    assert p.returncode == 0 and "disk.img" in p.stdout, p.stderr

    out = tmp_path / "g1.img"
    p = tapearc("restore", "--media", spec, "--generation", "1", "--to", str(out), "--catalog", pg_url)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == first

    # the catalog is lost: a new empty database, rebuilt from the medium alone
    _, fresh = pg_server.new_database("scan")
    p = tapearc("scan", "--media", spec, "--catalog", fresh, "--json")
    assert p.returncode == 0, p.stderr
    assert [g["state"] for g in json.loads(p.stdout)["generations"]] == ["complete", "complete"]
    p = tapearc("catalog", "generations", "--catalog", fresh, "--json")
    assert [(g["generation"], g["restore"]["chain"]) for g in json.loads(p.stdout)["generations"]] == [
        (1, [1]),
        (2, [1, 2]),
    ]
    out2 = tmp_path / "g2.img"
    p = tapearc("restore", "--media", spec, "--to", str(out2), "--catalog", fresh)
    assert p.returncode == 0, p.stderr
    assert out2.read_bytes() == bytes(data)


def test_cli_errors_name_the_catalog(tmp_path: Path, pg_server: PgServer) -> None:
    src = tmp_path / "disk.img"
    src.write_bytes(b"x" * 8192)
    spec = f"sim:{tmp_path / 't.tap'}"
    p = tapearc("backup", str(src), "--media", spec, "--catalog", "mysql://u:pw@h/db")
    assert p.returncode == 39 and "mysql://" in p.stderr and "pw" not in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) <= 2
    if pg_server.password_url is not None:
        wrong = pg_server.password_url.replace("right-password", "not-the-password")
        p = tapearc("catalog", "volumes", "--catalog", wrong)
        assert p.returncode == 38, p.stderr
        assert "password authentication failed" in p.stderr and "not-the-password" not in p.stderr
        assert "Traceback" not in p.stderr


def test_concurrent_cli_backups(tmp_path: Path, catalog_spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """4 tapearc processes at once, each backing up its own volume onto its own simulated tape
    (full, then 2 incrementals), into one catalog (both backends): every generation is there
    once, complete, and its chain restores."""
    import threading

    def worker(i: int, errors: list[str]) -> None:
        rng = random.Random(i)
        src = tmp_path / f"vol{i}.img"
        data = bytearray(rng.randbytes(64 * 4096))
        for n in range(3):
            data[n * 4096 : (n + 1) * 4096] = rng.randbytes(4096)
            src.write_bytes(bytes(data))
            p = tapearc("backup", str(src), "--media", f"sim:{tmp_path / f't{i}.tap'}", "--block-size", "4K")
            if p.returncode != 0:
                errors.append(f"worker {i} backup {n + 1}: {p.stderr}")
                return

    errors: list[str] = []
    monkeypatch.setenv("TAPEARC_CATALOG", catalog_spec)  # the commands inherit it
    threads = [threading.Thread(target=worker, args=(i, errors)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    p = tapearc("catalog", "generations", "--catalog", catalog_spec, "--json")
    assert p.returncode == 0, p.stderr
    gens = json.loads(p.stdout)["generations"]
    got = sorted((g["volume"], g["generation"], g["state"], tuple(g["restore"]["chain"])) for g in gens)
    assert got == sorted((f"vol{i}.img", n, "complete", tuple(range(1, n + 1))) for i in range(4) for n in (1, 2, 3))
    out = tmp_path / "back.img"
    p = tapearc("restore", "--media", f"sim:{tmp_path / 't2.tap'}", "--to", str(out), "--catalog", catalog_spec)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == (tmp_path / "vol2.img").read_bytes()


def _tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_browsing_an_empty_database_writes_nothing(pg_server: PgServer) -> None:
    """``tapearc catalog ...`` on an empty PostgreSQL database shows an empty catalog and makes
    no table (as browsing never creates an SQLite file); a database holding another program's
    table is refused untouched; one whose schema another tapearc is making (no schema version
    yet) is shown empty."""
    _, url = pg_server.new_database("browse")
    for what in ("volumes", "generations", "media"):
        p = tapearc("catalog", what, "--catalog", url)
        assert p.returncode == 0 and p.stdout.strip() == f"no {what}", p.stderr
        p = tapearc("catalog", what, "--json", env={"TAPEARC_CATALOG": url})
        assert p.returncode == 0 and json.loads(p.stdout) == {what: []}, p.stderr
    p = tapearc("catalog", "media", "--medium", "TAP001", "--catalog", url)
    assert p.returncode == 2 and "is an empty database" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = tapearc("lease", "list", "--catalog", url)
    assert p.returncode == 0 and p.stdout.strip() == "no leases", p.stderr
    p = tapearc("lease", "break", "drive:/lib:0", "--catalog", url)
    assert p.returncode == 0 and p.stdout.strip() == "no lease on drive:/lib:0", p.stderr
    assert _tables(url) == []
    # another tapearc making the schema this moment: a table of ours, no schema version yet
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE leases (resource TEXT PRIMARY KEY)")
    p = tapearc("catalog", "volumes", "--catalog", url)
    assert p.returncode == 0 and p.stdout.strip() == "no volumes", p.stderr
    assert _tables(url) == ["leases"]
    # another program's database: refused (exit 16), left as it was
    _, other = pg_server.new_database("foreign")
    with psycopg.connect(other, autocommit=True) as c:
        c.execute("CREATE TABLE invoices (id INTEGER)")
    p = tapearc("catalog", "volumes", "--catalog", other)
    assert p.returncode == 16 and "not a tapearc catalog" in p.stderr, p.stderr
    assert _tables(other) == ["invoices"]
