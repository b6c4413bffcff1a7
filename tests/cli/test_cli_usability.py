"""What users expect of a command line: --version, -h, one-line usage errors (text and JSON),
--debug and the error log, --progress json, shell completion, the man page."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tapearc.cli.progress import JsonLinesPrinter, PlainTextPrinter
from tests.conftest import make_volume


def run(*args: str, env: dict[str, str] | None = None, script: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tapearc"] if script is None else [sys.executable, "-c", script]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def error_lines(p: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if ln.strip()]


@pytest.fixture
def backed_up(tmp_path: Path) -> str:
    src = tmp_path / "vol.img"
    make_volume(src, "zero-runs")
    spec = f"sim:{tmp_path / 't.tap'}"
    p = run("backup", str(src), "--media", spec)
    assert p.returncode == 0, p.stderr
    return spec


# ---------------------------------------------------------------- --version, -h


def test_version() -> None:
    p = run("--version")
    assert p.returncode == 0 and p.stdout == f"tapearc {version('tapearc')}\n" and p.stderr == ""


@pytest.mark.parametrize("cmd", [[], ["backup"], ["drive", "status"], ["copy"]])
def test_h_is_help(cmd: list[str]) -> None:
    long, short = run(*cmd, "--help"), run(*cmd, "-h")
    assert long.returncode == short.returncode == 0
    assert short.stdout == long.stdout and "Usage:" in short.stdout


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["backup"], ["backup: ", "Missing argument", "tapearc backup -h"]),
        (["list", "--media", "x", "--bogus"], ["list: ", "No such option: --bogus"]),
        (["nonsense"], ["No such command", "'tapearc -h'"]),
        (["restore", "--media", "x"], ["restore: ", "Missing option '--to'"]),
        (["--progress", "fancy", "list", "--media", "x"], ["--progress 'fancy'", "auto, text, json, none"]),
    ],
)
def test_usage_error_is_one_line(args: list[str], words: list[str]) -> None:
    p = run(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = error_lines(p)
    assert len(lines) == 1 and lines[0].startswith("tapearc: error: "), p.stderr
    assert "Usage:" not in p.stderr and "╭" not in p.stderr and p.stdout == ""
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_usage_error_json() -> None:
    p = run("list", "--json", "--media", "x", "--bogus")
    assert p.returncode == 2
    assert error_lines(p) == ["tapearc: error: list: No such option: --bogus (see 'tapearc list -h')"]
    assert json.loads(p.stdout) == {
        "error": "usage",
        "exit_code": 2,
        "message": "list: No such option: --bogus (see 'tapearc list -h')",
    }


def test_usage_error_from_an_option_parser_json() -> None:
    p = run("restore", "--media", "x", "--to", "y", "--generation", "0", "--json")
    assert p.returncode == 2 and error_lines(p) == ["tapearc: error: --generation 0: must be 1 or more"]
    assert json.loads(p.stdout)["error"] == "usage"


# ---------------------------------------------------------------- internal errors: --debug and the log

BOOM = """
import sys
import tapearc.engine.listing as listing


def boom(drive):
    raise RuntimeError("kaboom")


listing.list_medium = boom
from tapearc.cli.app import main

sys.argv[0] = "tapearc"
main()
"""


def test_internal_error_traceback_kept_in_log(tmp_path: Path, backed_up: str) -> None:
    state = tmp_path / "state"
    p = run("list", "--media", backed_up, script=BOOM, env={"XDG_STATE_HOME": str(state)})
    assert p.returncode == 1 and "Traceback" not in p.stderr
    log = state / "tapearc" / "errors.log"
    lines = error_lines(p)
    assert lines[0] == f"tapearc: error: internal error: RuntimeError: kaboom (traceback in {log})"
    assert all(ln.startswith("tapearc: ") for ln in lines) and "--debug" in lines[1]
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in boom\nRuntimeError: kaboom" in text
    assert f"tapearc list --media {backed_up}" in text


def test_internal_error_debug_prints_traceback(tmp_path: Path, backed_up: str) -> None:
    state = tmp_path / "state"
    p = run("--debug", "list", "--media", backed_up, "--json", script=BOOM, env={"XDG_STATE_HOME": str(state)})
    assert p.returncode == 1
    assert "Traceback (most recent call last)" in p.stderr and "RuntimeError: kaboom" in p.stderr
    assert "tapearc: error: internal error: RuntimeError: kaboom (traceback above)" in p.stderr
    assert json.loads(p.stdout)["error"] == "internal"
    assert not state.exists()  # on standard error instead of the log


# ---------------------------------------------------------------- --progress json


def _json_lines(stderr: str) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]


@pytest.mark.parametrize("cmd", ["backup", "verify", "restore"])
def test_progress_json_lines(tmp_path: Path, backed_up: str, cmd: str) -> None:
    args = {
        "backup": ["backup", str(tmp_path / "vol.img"), "--media", backed_up, "--full"],
        "verify": ["verify", "--media", backed_up],
        "restore": ["restore", "--media", backed_up, "--to", str(tmp_path / "out.img")],
    }[cmd]
    p = run("--progress", "json", *args)
    assert p.returncode == 0, p.stderr
    events = _json_lines(p.stderr)
    assert [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("{")] == []
    assert events and events[0]["message_type"] == "start" and events[-1]["message_type"] == "finish"
    assert {e["message_type"] for e in events} <= {"start", "status", "finish"}
    keys = {"description", "bytes_done", "total_bytes", "percent_done", "bytes_per_second", "seconds_remaining"}
    assert all(keys <= e.keys() for e in events)
    assert events[-1]["bytes_done"] > 0  # type: ignore[operator]  # (JSON: an int)
    if events[0]["total_bytes"] is not None:
        assert events[-1]["percent_done"] == 100.0 and events[-1]["seconds_remaining"] == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_json_printer_total_and_eta() -> None:
    clock, out = FakeClock(), io.StringIO()
    p = JsonLinesPrinter(out, interval=1.0, clock=clock)
    p.start("verify sim:t", 1000)
    clock.now += 2.0
    p.advance(250)  # 125 B/s: 750 bytes left, 6 s
    clock.now += 0.5
    p.advance(250)  # throttled: no line
    clock.now += 1.5
    p.advance(500)
    p.finish()
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert [e["message_type"] for e in lines] == ["start", "status", "status", "finish"]
    assert lines[0]["total_bytes"] == 1000 and lines[0]["bytes_done"] == 0
    assert lines[1]["bytes_done"] == 250 and lines[1]["percent_done"] == 25.0
    assert lines[1]["bytes_per_second"] == 125.0 and lines[1]["seconds_remaining"] == 6.0
    assert lines[3]["bytes_done"] == 1000 and lines[3]["percent_done"] == 100.0 and lines[3]["seconds_remaining"] == 0.0


def test_json_printer_without_total() -> None:
    clock, out = FakeClock(), io.StringIO()
    p = JsonLinesPrinter(out, interval=1.0, clock=clock)
    p.start("scan", None)
    clock.now += 1.0
    p.advance(10)
    p.finish()
    p.finish()  # a second finish writes nothing
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert len(lines) == 3 and all(e["total_bytes"] is None and e["seconds_remaining"] is None for e in lines)


def test_text_printer_total_and_eta() -> None:
    clock, out = FakeClock(), io.StringIO()
    p = PlainTextPrinter(out, interval=1.0, clock=clock)
    p.start("verify sim:t", 4 * 1024 * 1024)
    clock.now += 10.0
    p.advance(1024 * 1024)
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines[1] == "tapearc: verify sim:t: 1.0 MiB of 4.0 MiB (25%), 0.1 MB/s, ETA 0:00:30", lines
    assert lines[2].startswith("tapearc: verify sim:t: done 1.0 MiB of 4.0 MiB")


# ---------------------------------------------------------------- shell completion


def test_completion_script() -> None:
    p = run(env={"_TAPEARC_COMPLETE": "source_bash"})
    assert p.returncode == 0 and "_tapearc_completion()" in p.stdout and "complete " in p.stdout
    # --show-completion detects the shell from the processes above it (typer: shellingham), so
    # it runs from bash as a user would; a test run started from nohup or make has none above it
    cmd = f"{shlex.quote(sys.executable)} -m tapearc --show-completion; exit $?"  # (not exec: bash stays above)
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert p.returncode == 0 and "_tapearc_completion()" in p.stdout, p.stderr


def test_completion_of_commands_and_options() -> None:
    p = run(env={"_TAPEARC_COMPLETE": "complete_bash", "COMP_WORDS": "tapearc ba", "COMP_CWORD": "1"})
    assert p.stdout.split() == ["backup"]
    p = run(env={"_TAPEARC_COMPLETE": "complete_bash", "COMP_WORDS": "tapearc backup --ch", "COMP_CWORD": "2"})
    assert sorted(p.stdout.split()) == [
        "--change-block-size",
        "--changed-blocks",
        "--changed-since",
        "--changer",
        "--changer-drive",
        "--checkpoint",
        "--chunk-size",
    ]


# ---------------------------------------------------------------- the man page


def test_man_page(tmp_path: Path) -> None:
    out = tmp_path / "man" / "tapearc.1"
    p = subprocess.run(
        [sys.executable, "-m", "tapearc.cli.manpage", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SOURCE_DATE_EPOCH": "86400"},
    )
    assert p.returncode == 0, p.stderr
    page = out.read_text()
    assert page.startswith('.TH TAPEARC 1 "1970-01-02" ') and f'"tapearc {version("tapearc")}"' in page
    for cmd in ("backup", "restore", "list", "verify", "label", "scan", "plan", "copy", "compare", "drive status"):
        assert f".SS tapearc {cmd}\n" in page, cmd
    for opt in ("\\-\\-fallback\\-older", "\\-\\-assume\\-generation", "\\-\\-progress", "\\-\\-version"):
        assert opt in page, opt
    if shutil.which("groff"):
        g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(out)], capture_output=True, text=True)
        assert g.returncode == 0 and g.stderr == "", g.stderr
    if shutil.which("man"):
        m = subprocess.run(
            ["man", "-l", str(out)],
            capture_output=True,
            text=True,
            env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"},
        )
        assert m.returncode == 0 and "--fallback-older" in m.stdout.replace("‐\n", ""), m.stderr
