"""tapearc's start-up: a command line gets only the command modules it runs, and behaves as with
every command (tapearc.cli.app.needed_modules, make_app).

These tests check which modules a command imports and that the outputs are the same; they time
nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tapearc.cli import app as cli_app
from tapearc.cli import common
from tapearc.cli.app import COMMAND_MODULES, full_app, make_app, needed_modules
from tapearc.cli.common import LazyConsole, err_console_class, out_console_class


@pytest.mark.parametrize(
    ("args", "modules"),
    [
        (["backup", "x", "--media", "sim:t"], ("backup_cmd",)),
        (["list", "--help"], ("list_cmd",)),
        (["compare", "a", "b"], ("copy_cmd",)),
        (["media", "list"], ("pool_cmd",)),
        (["-v", "-vv", "--debug", "--verbose", "catalog", "volumes"], ("catalog_cmd",)),
        (["--progress", "json", "scan"], ("scan_cmd",)),
        (["--progress", "list", "backup"], ("backup_cmd",)),  # "list" is --progress's value
        (["--progress=json", "run", "job.toml"], ("run_cmd",)),
        (["--version", "backup"], ("backup_cmd",)),
        (["--version"], ()),
        (["-v", "--version", "--progress", "none"], ()),
        ([], None),  # the help
        (["--help"], None),
        (["-h", "backup"], None),
        (["-vh", "backup"], None),  # -v and -h together
        (["--debug"], None),  # a missing command
        (["bakup"], None),  # an unknown command: click's message may name the others
        (["Backup"], None),
        (["vv", "backup"], None),
        (["--", "backup"], None),
        (["--nosuch", "backup"], None),
        (["--progress"], None),
        (["--install-completion"], None),
    ],
)
def test_needed_modules(args: list[str], modules: tuple[str, ...] | None) -> None:
    assert needed_modules(args) == modules


def _top_level(app: typer.Typer) -> list[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return list(group.commands)


@pytest.mark.parametrize("module", list(COMMAND_MODULES))
def test_command_modules_table(module: str) -> None:
    """The table names exactly the commands each module registers (a command added to a
    module without the table would be unknown to `tapearc CMD`, and so load every module)."""
    assert _top_level(make_app((module,))) == list(COMMAND_MODULES[module])


def test_full_app_order() -> None:
    """Every command, in the order of `tapearc --help` (typer lists commands before groups)."""
    assert _top_level(full_app()) == [
        "backup", "restore", "list", "verify", "label", "scan", "plan", "copy", "compare", "run",
        "drive", "key", "catalog", "pool", "media", "lease", "server",
    ]  # fmt: skip


def _lines(app: typer.Typer) -> list[list[str]]:
    """Command lines whose output comes from typer and click alone: each command's and
    sub-command's help, a missing argument, an unknown option."""
    lines: list[list[str]] = []
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for name, cmd in group.commands.items():
        lines += [[name, "--help"], [name], [name, "--no-such-option"], ["-v", "--progress", "json", name, "-h"]]
        if isinstance(cmd, typer.core.TyperGroup):
            lines += [[name, sub, "--help"] for sub in cmd.commands]
            lines += [[name, "no-such-command"]]
    return lines


def test_same_output_as_every_command() -> None:
    """Each command line gives the same output and exit status with only the modules it needs
    as with every command."""
    runner = CliRunner()
    whole = full_app()
    for args in _lines(whole):
        modules = needed_modules(args)
        assert modules is not None and len(modules) == 1, args
        env = {"COLUMNS": "100", "TAPEARC_CATALOG": "/nonexistent/catalog.sqlite"}
        a = runner.invoke(whole, args, prog_name="tapearc", env=env)
        b = runner.invoke(make_app(modules), args, prog_name="tapearc", env=env)
        assert (b.exit_code, b.output) == (a.exit_code, a.output), args


def _imported_by(*args: str, catalog: Path | None = None) -> set[str]:
    """The tapearc.cli modules (and rich's console) a run of tapearc with ``args`` imported."""
    code = (
        "import sys\n"
        "from tapearc.cli.app import main\n"
        f"sys.argv = ['tapearc', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('MODULES', *sorted(m for m in sys.modules if m.startswith(('tapearc.cli.', 'rich.console'))))\n"
    )
    env = {**os.environ, "TAPEARC_CATALOG": str(catalog or "/nonexistent/catalog.sqlite")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("MODULES"))
    return set(line.split()[1:])


def test_a_command_imports_only_its_module() -> None:
    mods = _imported_by("list", "--help")
    assert "tapearc.cli.list_cmd" in mods
    others = {f"tapearc.cli.{m}" for m in COMMAND_MODULES if m != "list_cmd"}
    assert not mods & others, mods & others


def test_version_imports_no_command() -> None:
    mods = _imported_by("--version")
    assert not mods & {f"tapearc.cli.{m}" for m in COMMAND_MODULES}


def test_help_imports_every_command() -> None:
    mods = _imported_by("--help")
    assert {f"tapearc.cli.{m}" for m in COMMAND_MODULES} <= mods


def test_main_twice_in_one_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """main() builds its app per call: a command run before does not change `tapearc --help`."""
    outs = []
    for args in (["--help"], ["list", "--help"], ["--help"]):
        with pytest.raises(SystemExit) as e:
            monkeypatch.setattr(sys, "argv", ["tapearc", *args])
            cli_app.main()
        assert e.value.code == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[2] and "backup" in outs[0] and "lease" in outs[0]


# ---------------------------------------------------------------- rich only when something is printed with it


def test_rich_console_not_imported_by_the_cli_modules() -> None:
    code = (
        "import sys\n"
        "import tapearc.cli.app, tapearc.cli.common, tapearc.cli.progress, tapearc.cli.render\n"
        "from tapearc.cli.app import COMMAND_MODULES, make_app\n"
        "make_app()\n"  # every command module
        "assert 'rich.console' not in sys.modules, 'rich.console'\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_json_backup_and_list_do_not_import_rich(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    vol.write_bytes(os.urandom(100_000))
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    assert "rich.console" not in _imported_by("backup", str(vol), "--media", spec, "--json", catalog=cat)
    assert "rich.console" not in _imported_by("list", "--media", spec, "--json", catalog=cat)
    assert "rich.console" in _imported_by("list", "--media", spec, catalog=cat)  # a table


def test_lazy_console_becomes_a_console(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    out = LazyConsole(out_console_class, highlight=False, width=200)
    assert type(out) is LazyConsole
    out.print("[b]one[/b] :smile:", markup=False, soft_wrap=True)  # type: ignore[attr-defined]
    assert isinstance(out, Console) and type(out).__name__ == "OutConsole" and out.width == 200
    err = LazyConsole(err_console_class, stderr=True, highlight=False)
    with err as same:  # type: ignore[attr-defined]
        assert same is err and isinstance(err, Console)
        err.print("two")  # type: ignore[attr-defined]
    set_first = LazyConsole(err_console_class, stderr=True)
    set_first.soft_wrap = True
    assert isinstance(set_first, Console) and set_first.soft_wrap is True
    captured = capsys.readouterr()
    assert captured.out == "[b]one[/b] 😄\n" and captured.err == "two\n"


def test_lazy_console_made_whole_when_ctrl_c_comes_while_it_is_made() -> None:
    """A Ctrl-C while the console is being made is held until it is whole, then raised: the
    object is never left half a LazyConsole, half a Console."""
    import os
    import signal

    from rich.console import Console

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def make_class() -> type[Console]:
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the console is made
        return err_console_class()

    try:
        lazy = LazyConsole(make_class, stderr=True)
        with pytest.raises(KeyboardInterrupt):
            lazy.become_console()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert isinstance(lazy, Console) and lazy.stderr is True  # made, state and class


# ---------------------------------------------------------------- what a backup does not import

#: What a backup of a file to one medium, without a changer, does not use: the read-back after
#: writing (--verify), changers and the leases of a library's drives, pools and retention
#: (labelling a used medium anew), change trackers (--changed-blocks files, dirty bitmaps), the
#: chain's reader (an incremental's base), rich (no table, no bar off a terminal), the key
#: generator's secrets, socket (a library's host name), tempfile (large items spooled).
NOT_IMPORTED_BY_A_BACKUP = frozenset(
    {
        "tapearc.engine.verify",
        "tapearc.engine.leasedchanger",
        "tapearc.media.changer",
        "tapearc.media.changers",
        "tapearc.catalog.leases",
        "tapearc.catalog.pools",
        "tapearc.engine.retention",
        "tapearc.sources.changes",
        "tapearc.sources.changes_files",
        "tapearc.sources.changes_nbd",
        "tapearc.sources.changes_xml",
        "xml.parsers.expat",
        "tapearc.engine.plan",
        "rich.console",
        "secrets",
        "socket",
        "tempfile",
    }
)


def _modules_after(*args: str, catalog: Path) -> set[str]:
    """Every module in sys.modules once ``tapearc ARGS`` (through the console entry point) is
    done; the command must succeed."""
    code = (
        "import sys\n"
        "from tapearc.cli.entry import main\n"
        f"sys.argv = ['tapearc', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    print('EXIT', e.code)\n"
        "    print('MODULES', *sorted(sys.modules))\n"
    )
    env = {**os.environ, "TAPEARC_CATALOG": str(catalog)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "EXIT 0" in p.stdout.splitlines(), (p.stdout, p.stderr)
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("MODULES"))
    return set(line.split()[1:])


def test_a_backup_imports_only_what_it_uses(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    vol.write_bytes(os.urandom(100_000))
    spec, cat = f"sim:{tmp_path / 't.tap'}", tmp_path / "cat.sqlite"
    full = _modules_after("backup", str(vol), "--media", spec, catalog=cat)
    assert {"tapearc.engine.backup", "tapearc.engine.scan"} <= full  # it ran, and synced the catalog
    assert not full & NOT_IMPORTED_BY_A_BACKUP, sorted(full & NOT_IMPORTED_BY_A_BACKUP)
    incremental = _modules_after("backup", str(vol), "--media", spec, catalog=cat)
    assert "tapearc.engine.plan" in incremental  # its base's chain
    assert not incremental & (NOT_IMPORTED_BY_A_BACKUP - {"tapearc.engine.plan"})


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("backed up /srv/vm1.img (1.0 MiB) to sim:/tmp/t.tap as volume 'vm1.img' generation 1", True),
        ("", True),
        ("tapearc: warning: source /srv/vm1.img grew during the backup", True),
        ("  spaces around  ", True),
        ("x" * 300 + "   ", True),
        ("[b]not markup[/b] é ü 漢字 🙂", True),
        ("an emoji code :smile: here", True),  # (the consoles take none: printed as it is)
        ("tapearc: error: medium sim:/a:b.tap: not a tapearc medium", True),
        ("tab\there", False),
        ("carriage\rreturn", False),
        ("two\nlines", False),
        ("bell\x07 and escape\x1b[1m", False),
        ("surrogate \udcff", False),
    ],
)
def test_a_line_says_what_rich_would_print(text: str, plain: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """say() writes a plain line itself while the console is not made (no import of rich.console):
    the same characters as rich prints, whichever way each line goes."""
    from rich.console import Console

    want = io.StringIO()
    Console(file=want, highlight=False, width=200, markup=False, emoji=False).print(text, soft_wrap=True)
    got = io.StringIO()
    lazy = LazyConsole(out_console_class, highlight=False, width=200, markup=False, emoji=False)
    monkeypatch.setattr(sys, "stdout", got)
    monkeypatch.setattr(common, "out_console", lazy)
    common.say(text)
    assert got.getvalue() == want.getvalue()
    assert LazyConsole.is_lazy(lazy) == plain  # written without rich, or printed by it


def test_a_line_the_stream_cannot_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A character the stream's encoding lacks: rich's own error, as before (nothing written)."""
    from rich.console import Console

    def error(print_line: Callable[[str], None], stream: io.TextIOWrapper) -> str:
        with pytest.raises(UnicodeEncodeError) as e:
            print_line("caf\u00e9")
        stream.flush()
        assert isinstance(stream.buffer, io.BytesIO) and stream.buffer.getvalue() == b""
        return str(e.value)

    want = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    rich_console = Console(file=want, highlight=False, width=200)
    expected = error(lambda t: rich_console.print(t, markup=False, soft_wrap=True), want)
    got = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", got)
    monkeypatch.setattr(common, "out_console", LazyConsole(out_console_class, highlight=False, width=200))
    assert error(common.say, got) == expected and "PYTHONIOENCODING" in expected


# ---------------------------------------------------------------- the end of a command


@pytest.mark.parametrize("args", [["--version"], ["list", "--media", "sim:/nonexistent/t.tap"]])
def test_objects_frozen_before_shutdown(args: list[str]) -> None:
    """entry.main ends a command (any exit status) with the objects moved out of the garbage
    collector's way (gc.freeze), so the interpreter's shutdown does not scan them all again."""
    code = (
        "import gc, sys\n"
        f"sys.argv = ['tapearc', *{args!r}]\n"
        "from tapearc.cli.entry import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    print('FROZEN', gc.get_freeze_count(), 'EXIT', e.code)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("FROZEN"))
    assert int(line.split()[1]) > 10000, line


def test_lazy_console_first_used_by_threads_at_once() -> None:
    """Threads that use a LazyConsole first at the same time get one Console, made once."""
    import threading

    from rich.console import Console

    made: list[int] = []
    start = threading.Barrier(8)

    def slow_class() -> type[Console]:
        made.append(1)
        time.sleep(0.05)  # as a first import of rich would: the other threads come in meanwhile
        return err_console_class()

    c = LazyConsole(slow_class, stderr=True, highlight=False)
    errors: list[BaseException] = []
    widths: list[int] = []

    def use() -> None:
        start.wait()
        try:
            widths.append(c.width)  # type: ignore[attr-defined]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(widths) == 8 and made == [1] and isinstance(c, Console)
