"""``tapearc run JOBFILE``: the command around engine.jobs. The summary as a text table and as one
JSON document, the summary_log line, exit 0 / 35 (job-partial) / 34 (job-file) / 2 (bad --now),
--full and --now, and every volume of the job restored with ``tapearc restore`` byte for byte."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import assert_one_line_error

BS = 16 * 1024


def tapearc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapearc", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "TZ": "UTC"},
    )


def write(path: Path, seed: int, size: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Any]:
    """A job of three files (b not a whole number of blocks) onto one simulated tape, with a
    summary log; its file is in a folder of its own, the volumes named relative to it."""
    d = tmp_path / "etc"
    d.mkdir()
    datas = {"a": write(d / "a.img", 1, 30 * BS), "b": write(d / "b.img", 2, 9 * BS + 77)}
    datas["c"] = write(d / "c.img", 3, 12 * BS)
    spec = f"sim:{tmp_path / 't.tap'}"
    text = (
        f'[job]\nname = "nightly"\nmedia = "{spec}"\nsummary_log = "summary.jsonl"\n'
        '[defaults]\nblock_size = "16K"\ncompress = "zstd"\n'
        + "".join(f'[[volume]]\nname = "{n}"\nsource = "{n}.img"\n' for n in datas)
    )
    (d / "nightly.toml").write_text(text)
    return {"file": str(d / "nightly.toml"), "spec": spec, "datas": datas, "dir": d, "tmp": tmp_path}


def restore_cli(job: dict[str, Any], volume: str) -> bytes:
    out = job["tmp"] / f"r-{volume}.img"
    out.unlink(missing_ok=True)
    p = tapearc("restore", "--media", job["spec"], "--volume", volume, "--to", str(out))
    assert p.returncode == 0, p.stderr
    return out.read_bytes()


def test_run_text_summary_and_restore_each_volume(job: dict[str, Any]) -> None:
    p = tapearc("run", job["file"], cwd=job["tmp"])  # paths in the file are relative to it, not to cwd
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"job nightly ({job['file']}): 3 of 3 volumes backed up in ")
    assert "volume" in lines[1] and "outcome" in lines[1] and "media" in lines[1] and "seconds" in lines[1]
    rows = [ln.split("│") for ln in lines[3:6]]
    assert [(r[0].strip(), r[1].strip(), r[2].strip(), r[3].strip()) for r in rows] == [
        ("a", "ok", "full", "1"),
        ("b", "ok", "full", "1"),
        ("c", "ok", "full", "1"),
    ]
    assert all(job["spec"] in r[6] for r in rows)
    for name, data in job["datas"].items():
        assert restore_cli(job, name) == data
    log = (job["dir"] / "summary.jsonl").read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])["ok"] is True


def test_run_json_is_one_document(job: dict[str, Any]) -> None:
    p = tapearc("run", job["file"], "--json", "--now", "2026-12-04 02:00")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["job"], doc["ok"], doc["exit_code"], doc["stopped"]) == ("nightly", True, 0, None)
    assert doc["now"] == "2026-12-04T02:00:00+00:00"
    v = doc["volumes"][1]
    assert (v["volume"], v["outcome"], v["kind"], v["generation"]) == ("b", "ok", "full", 1)
    assert v["bytes_read"] == 9 * BS + 77 and v["bytes_written"] > 0 and v["media"] == [job["spec"]]
    assert v["error"] is None and v["source"] == str(job["dir"] / "b.img")
    p = tapearc("run", job["file"], "--json", "--now", "2026-12-05 02:00")
    assert [v["kind"] for v in json.loads(p.stdout)["volumes"]] == ["incremental"] * 3
    p = tapearc("run", job["file"], "--json", "--full")
    vols = json.loads(p.stdout)["volumes"]
    assert [(v["kind"], v["full_reason"], v["generation"]) for v in vols] == [("full", "--full", 3)] * 3
    p = tapearc("catalog", "generations", "--volume", "a", "--json")
    created = {g["generation"]: g["created"] for g in json.loads(p.stdout)["generations"]}
    assert (created[1], created[2]) == ("2026-12-04T02:00:00+00:00", "2026-12-05T02:00:00+00:00")  # by --now


def test_failing_volume_exit_35_the_others_backed_up(job: dict[str, Any]) -> None:
    (job["dir"] / "b.img").unlink()
    p = tapearc("run", job["file"])
    assert_one_line_error(p, 35, "job 'nightly': 1 of 3 volumes not backed up: b (failed: exit 3 source)")
    assert "b.img does not exist" in p.stdout  # the summary names its error
    row_b = next(ln for ln in p.stdout.splitlines() if ln.startswith(" b "))
    assert "failed" in row_b
    p = tapearc("run", job["file"], "--json")
    assert p.returncode == 35
    doc = json.loads(p.stdout)  # one JSON document: the summary, no second error object
    assert [v["outcome"] for v in doc["volumes"]] == ["ok", "failed", "ok"]
    assert doc["volumes"][1]["error"]["error"] == "source" and doc["exit_code"] == 35
    assert restore_cli(job, "c") == job["datas"]["c"]
    log = [json.loads(ln) for ln in (job["dir"] / "summary.jsonl").read_text().splitlines()]
    assert [d["exit_code"] for d in log] == [35, 35]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda t: t.replace('name = "c"', 'name = "a"'),
            ("[[volume]] #3 'a': key 'name': volume #1 has the same name",),
        ),
        (lambda t: t.replace("[defaults]\n", '[defaults]\nverify = "yes"\n'), ("[defaults]: key 'verify'",)),
        (lambda t: t.replace("[job]\n", "[job]\npools = 'daily'\n"), ("[job]: key 'pools': unknown key",)),
        (lambda t: t.replace("[job]\n", "[job]\nfull_every = '1w'\n"), ("[job]: key 'full_every': '1w'",)),
        (lambda t: t.replace("[job]\n", "[job]\ndrives = 99\n"), ("[job]: key 'drives': 99: at most 64",)),
    ],
)
def test_job_file_error_exit_34(job: dict[str, Any], edit: Any, words: tuple[str, ...]) -> None:
    path = Path(job["file"])
    path.write_text(edit(path.read_text()))
    p = tapearc("run", job["file"])
    assert_one_line_error(p, 34, job["file"], *words)
    assert not Path(job["spec"][4:]).exists()  # nothing was opened
    p = tapearc("run", job["file"], "--json")
    assert p.returncode == 34 and json.loads(p.stdout)["error"] == "job-file"


def test_missing_job_file_and_bad_now(tmp_path: Path) -> None:
    p = tapearc("run", str(tmp_path / "none.toml"))
    assert_one_line_error(p, 34, "none.toml: cannot read the job file")
    p = tapearc("run", str(tmp_path / "none.toml"), "--now", "yesterday")
    assert_one_line_error(p, 2, "--now 'yesterday': not an ISO 8601 date")


def test_ctrl_c_stops_the_run_cleanly(tmp_path: Path) -> None:
    """SIGINT while the second volume is being read: the first is backed up, the second's
    generation closed as incomplete, the third not run; the summary is printed, exit 130."""
    from tests.cli.test_cli_faults import Hooked

    write(tmp_path / "a.img", 1, 100 * 1024)  # one read
    write(tmp_path / "b.img", 2, 3 * 1024 * 1024)  # reads of 15 blocks
    write(tmp_path / "c.img", 3, 100 * 1024)
    spec = f"sim:{tmp_path / 't.tap'}"
    (tmp_path / "j.toml").write_text(
        f'[job]\nname = "j"\nmedia = "{spec}"\nrecord_size = "64K"\n[defaults]\nblock_size = "16K"\n'
        'chunk_size = "256K"\n' + "".join(f'[[volume]]\nname = "{n}"\nsource = "{n}.img"\n' for n in "abc")
    )
    h = Hooked(tmp_path, "run", str(tmp_path / "j.toml"), "--json", points="read")
    assert h.run_to("read", 3) == str(2 * 15 * 16384)  # the second read of b.img (15 blocks a chunk)
    h.interrupt()
    h.go()
    p = h.finish()
    assert p.returncode == 130, (p.stdout, p.stderr)
    doc = json.loads(p.stdout)  # the summary, then the one error line
    assert [(v["volume"], v["outcome"]) for v in doc["volumes"]] == [
        ("a", "ok"),
        ("b", "interrupted"),
        ("c", "not-run"),
    ]
    assert doc["volumes"][1]["error"]["error"] == "interrupted" and doc["stopped"].startswith("interrupted")
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("tapearc: error: interrupted") and "job 'j' stopped during volume 'b'" in lines[-1], (
        p.stderr
    )
    q = tapearc("catalog", "generations", "--json")
    states = [(g["volume"], g["generation"], g["state"]) for g in json.loads(q.stdout)["generations"]]
    assert states == [("a", 1, "complete"), ("b", 1, "incomplete")]


def test_summary_log_that_cannot_be_written_is_a_warning(job: dict[str, Any]) -> None:
    path = Path(job["file"])
    path.write_text(path.read_text().replace('"summary.jsonl"', '"no-such-folder/summary.jsonl"'))
    p = tapearc("run", job["file"])
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith(f"tapearc: warning: summary_log {job['dir'] / 'no-such-folder' / 'summary.jsonl'}: ")
    assert "No such file or directory" in p.stderr and p.stderr.count("\n") == 1


def test_an_encrypted_job_opens_its_key_once_and_every_volume_is_encrypted(job: dict[str, Any]) -> None:
    """encrypt / passphrase_file in [job]: every volume encrypted with the key (a media set has
    one), restored with it byte for byte; without it the restore asks for the key (29); a
    passphrase_file without encrypt, or a wrong passphrase, stops before any medium is touched."""
    d = job["dir"]
    (d / "pass").write_text("job passphrase\n")
    p = tapearc("key", "create", str(d / "job.key"), "--passphrase-file", str(d / "pass"))
    assert p.returncode == 0, p.stderr
    text = (
        Path(job["file"]).read_text().replace("[defaults]", 'encrypt = "job.key"\npassphrase_file = "pass"\n[defaults]')
    )
    Path(job["file"]).write_text(text)
    p = tapearc("run", job["file"], "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [v["outcome"] for v in doc["volumes"]] == ["ok", "ok", "ok"]
    fp = json.loads(tapearc("key", "show", str(d / "job.key"), "--json").stdout)["fingerprint"]
    for name, data in job["datas"].items():
        out = job["tmp"] / f"r-{name}.img"
        p = tapearc("restore", "--media", job["spec"], "--volume", name, "--to", str(out))
        assert p.returncode == 29 and fp in p.stderr and not out.exists(), p.stderr
        key = ["--key", str(d / "job.key"), "--passphrase-file", str(d / "pass")]
        p = tapearc("restore", "--media", job["spec"], "--volume", name, "--to", str(out), *key)
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == data
    image = Path(job["spec"].removeprefix("sim:"))
    before = image.read_bytes()
    (d / "pass").write_text("not the passphrase\n")
    p = tapearc("run", job["file"])
    assert p.returncode == 31, p.stderr
    assert image.read_bytes() == before
    Path(job["file"]).write_text(text.replace('encrypt = "job.key"\n', ""))
    p = tapearc("run", job["file"])
    assert p.returncode == 34 and "passphrase_file" in p.stderr and "encrypt" in p.stderr, p.stderr
