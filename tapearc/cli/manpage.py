"""The tapearc(1) man page, generated from the command line's own help.

``python -m tapearc.cli.manpage [OUT]`` (``make man``) writes it (to docs/man/tapearc.1 by
default); read it with ``man -l docs/man/tapearc.1``. Every command, its arguments and options
and their help come from the typer app, so the page cannot drift from ``tapearc CMD -h``.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
import typer.main

from tapearc.cli.app import full_app, package_version

DEFAULT_OUT = Path("docs/man/tapearc.1")


def roff(text: str) -> str:
    """``text`` safe in a roff line: backslashes and hyphens escaped, no line starting with a
    control character, paragraphs of the help joined into lines."""
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _param_lines(ctx: typer.Context, param: typer.core.TyperOption | typer.core.TyperArgument) -> Iterator[str]:
    if isinstance(param, typer.core.TyperArgument):
        name = (param.metavar or param.name or "ARG").upper()
        yield ".TP"
        yield f"\\fI{roff(name)}\\fR"
        yield roff(param.help or "")
        return
    record = param.get_help_record(ctx)
    if record is None:  # a hidden option
        return
    opts, help_text = record
    yield ".TP"
    yield f"\\fB{roff(opts)}\\fR"
    yield roff(help_text)


def _command_lines(
    ctx: typer.Context, cmd: typer.core.TyperCommand | typer.core.TyperGroup, path: str
) -> Iterator[str]:
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    yield f".SS {roff(path)}"
    yield f"\\fB{roff(path)}\\fR {roff(usage)}"
    yield ".PP"
    yield roff(cmd.help or "")
    for param in cmd.params:
        if isinstance(param, (typer.core.TyperOption, typer.core.TyperArgument)):
            yield from _param_lines(ctx, param)


def _walk(ctx: typer.Context, group: typer.core.TyperGroup, path: str) -> Iterator[str]:
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = typer.Context(cmd, info_name=name, parent=ctx)
        if isinstance(cmd, typer.core.TyperGroup):
            yield from _walk(sub, cmd, f"{path} {name}")
        elif isinstance(cmd, typer.core.TyperCommand):
            yield from _command_lines(sub, cmd, f"{path} {name}")


def _page_date() -> datetime.date:
    """Today, or the date of $SOURCE_DATE_EPOCH (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).date()
    return datetime.date.today()


def render_man(date: datetime.date | None = None) -> str:
    """The whole page as roff text."""
    group = typer.main.get_command(full_app())
    assert isinstance(group, typer.core.TyperGroup)
    ctx = typer.Context(group, info_name="tapearc")
    day = (date or _page_date()).isoformat()
    lines = [
        f'.TH TAPEARC 1 "{day}" "tapearc {roff(package_version())}" "User Commands"',
        ".SH NAME",
        "tapearc \\- archive block volumes to tape and restore them exactly",
        ".SH SYNOPSIS",
        "\\fBtapearc\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
        ".SH DESCRIPTION",
        roff(group.help or ""),
        ".PP",
        roff(
            "Errors are one line on standard error, starting 'tapearc: error:', with a distinct exit "
            "code (2: a usage error); with --json a JSON object on standard output as well."
        ),
        ".SH GLOBAL OPTIONS",
    ]
    for param in group.params:
        if isinstance(param, typer.core.TyperOption):
            lines += _param_lines(ctx, param)
    lines.append(".SH COMMANDS")
    lines += _walk(ctx, group, "tapearc")
    lines += [".SH SEE ALSO", "tapesim(1), mt(1), mtx(1)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_man(), encoding="utf-8")
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
