"""docs/cli.md lists every command, argument and option of the command line, with the defaults
the help shows; the docs name no option that is gone; their links reach a heading."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import typer.core
import typer.main

from tapearc.cli.app import full_app
from tapearc.engine import jobfile

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = (ROOT / "docs" / "cli.md").read_text()

#: The section of docs/cli.md that documents a command, by the start of its heading (commands
#: without a heading of their own are documented in the section of their group).
SECTIONS = {
    "run": "## Jobs",
    "catalog": "## Browsing the catalog",
    "pool": "## Media pools",
    "media": "## Media pools",
    "lease": "## Leases",
    "key": "## Keys",
    "server": "## The command server",
}
#: Docs whose every --option is tapearc's (the other docs quote qemu-nbd, nbdkit, tapesim, ...).
OWN_OPTIONS_ONLY = ("cli.md", "errors.md", "leases.md", "verify.md", "copy.md", "encryption.md", "faults.md")


def _commands() -> Iterator[tuple[str, typer.core.TyperCommand, typer.Context]]:
    """(path without 'tapearc', command, its context) of every leaf command."""
    group = typer.main.get_command(full_app())
    assert isinstance(group, typer.core.TyperGroup)
    root = typer.Context(group, info_name="tapearc")

    def walk(
        g: typer.core.TyperGroup, ctx: typer.Context, path: str
    ) -> Iterator[tuple[str, typer.core.TyperCommand, typer.Context]]:
        for name in g.list_commands(ctx):
            cmd = g.get_command(ctx, name)
            assert cmd is not None
            sub = typer.Context(cmd, info_name=name, parent=ctx)
            if isinstance(cmd, typer.core.TyperGroup):
                yield from walk(cmd, sub, f"{path} {name}".strip())
            else:
                assert isinstance(cmd, typer.core.TyperCommand)
                yield f"{path} {name}".strip(), cmd, sub

    yield from walk(group, root, "")


def _section(start: str) -> str:
    """The text of the section of docs/cli.md whose heading starts with ``start``, up to the next
    heading of the same or a higher level."""
    level = start.split(" ", 1)[0]
    lines = CLI_MD.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.startswith(start)), None)
    assert first is not None, f"docs/cli.md has no heading {start!r}"
    out = [lines[first]]
    for ln in lines[first + 1 :]:
        m = re.match(r"^(#+) ", ln)
        if m and len(m.group(1)) <= len(level):
            break
        out.append(ln)
    return "\n".join(out)


def _section_of(path: str) -> str:
    own = f"### `tapearc {path}"
    if any(ln.startswith(own) for ln in CLI_MD.splitlines()):
        return _section(own)
    for (
        heading
    ) in CLI_MD.splitlines():  # a heading naming several commands: "### `tapearc copy`, `tapearc compare A B`"
        if heading.startswith("### ") and f"`tapearc {path}" in heading:
            return _section(heading)
    top = path.split(" ", 1)[0]
    assert top in SECTIONS, f"tapearc {path} has no section in docs/cli.md"
    return _section(SECTIONS[top])


COMMANDS = sorted(_commands(), key=lambda c: c[0])


@pytest.mark.parametrize("path,cmd,ctx", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_option_and_argument_is_in_its_section(
    path: str, cmd: typer.core.TyperCommand, ctx: typer.Context
) -> None:
    text = _section_of(path)
    for param in cmd.params:
        if isinstance(param, typer.core.TyperArgument):
            name = (param.metavar or param.name or "").upper()
            assert name in text, f"tapearc {path}: argument {name} is not in its section of docs/cli.md"
        elif isinstance(param, typer.core.TyperOption) and not param.hidden:
            longest = max(param.opts, key=len)
            if longest == "--help":
                continue
            assert re.search(rf"`[^`]*{re.escape(longest)}(?![\w-])", text), (
                f"tapearc {path}: {longest} is not in its section of docs/cli.md"
            )


def _shown_defaults() -> Iterator[tuple[str, str, str]]:
    """(command, option, default) of each option whose help shows its default."""
    group = typer.main.get_command(full_app())
    ctx = typer.Context(group, info_name="tapearc")
    for param in group.params:
        record = param.get_help_record(ctx)
        if record and (m := re.search(r"\[default: ([^\]]+)\]", record[1])):
            yield "", max(param.opts, key=len), m.group(1).strip()
    for path, cmd, sub in COMMANDS:
        for param in cmd.params:
            record = param.get_help_record(sub)
            if record and (m := re.search(r"\[default: ([^\]]+)\]", record[1])):
                yield path, max(param.opts, key=len), m.group(1).strip()


@pytest.mark.parametrize("path,option,default", list(_shown_defaults()))
def test_defaults_the_help_shows_are_documented(path: str, option: str, default: str) -> None:
    text = _section_of(path) if path else _section("## Global options")
    rows = [ln for ln in text.splitlines() if option in ln]
    said = (
        f"| `{default}` |",
        f"| {default} |",
        f"`{default}` (default)",
        f"default: `{default}`",
        f"default `{default}`",
        f"default {default}",
    )
    assert any(s in ln for s in said for ln in rows), (
        f"tapearc {path} {option}: default {default!r} not in docs/cli.md: {rows}"
    )


def test_every_command_is_listed_in_the_reference() -> None:
    reference = _section("## Every command and its options")
    for path, _, _ in COMMANDS:
        assert f"`tapearc {path}" in reference or path.split(" ", 1)[0] in SECTIONS, path
        top = path.split(" ", 1)[0]
        assert f"`{top}" in reference or f"`tapearc {top}" in reference, f"tapearc {top}: not in the reference"


@pytest.mark.parametrize("doc", OWN_OPTIONS_ONLY)
def test_docs_name_no_option_that_is_gone(doc: str) -> None:
    known = {"--help", "--install-completion", "--show-completion"}
    group = typer.main.get_command(full_app())
    known |= {o for p in group.params for o in p.opts}
    known |= {o for _, cmd, _ in COMMANDS for p in cmd.params for o in p.opts}
    text = (ROOT / "docs" / doc).read_text()
    gone = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)) - known)
    assert not gone, f"docs/{doc} names options no command has: {gone}"


def _anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a markdown file's headings (outside fenced code)."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_links_between_docs_reach_a_heading() -> None:
    files = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "hw-sim" / "README.md"]
    broken = []
    for f in files:
        for target, anchor in re.findall(r"\]\(([^)\s#]*)(?:#([^)\s]+))?\)", f.read_text()):
            if target.startswith(("http:", "https:", "mailto:")):
                continue
            dest = (f.parent / target).resolve() if target else f
            if not dest.exists():
                broken.append(f"{f.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
                broken.append(f"{f.relative_to(ROOT)}: {target}#{anchor}")
    assert not broken, broken


def test_every_job_file_key_is_in_operations_md() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    for key in (*jobfile.JOB_KEYS_ALL, *jobfile.VOLUME_KEYS):
        assert f"| `{key}` |" in text, f"job file key {key!r} has no row in docs/operations.md, 'Jobs'"


def test_files_and_tests_the_docs_name_exist() -> None:
    """Every file of the repository a doc names (tapearc/..., tests/...::test_x, hw-sim/...,
    contrib/...) is there, and a named test function too."""
    files = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "hw-sim" / "README.md"]
    pattern = r"(?<![\w/.-])((?:tapearc|tests|hw-sim|bench|scripts|contrib|formats)/[\w./-]+?\.(?:py|md|toml|sh|service|timer))(?:::(\w+))?"
    named, gone = 0, []
    for f in files:
        for path, func in re.findall(pattern, f.read_text()):
            named += 1
            target = ROOT / path
            if not target.exists():
                gone.append(f"{f.relative_to(ROOT)}: {path}")
            elif func and path.endswith(".py") and not re.search(rf"(def|class) {func}\b", target.read_text()):
                gone.append(f"{f.relative_to(ROOT)}: {path}::{func}")
    assert named > 100  # the pattern finds them
    assert not gone, gone
