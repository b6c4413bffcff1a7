"""docs/errors.md lists every error class of tapearc/errors.py under its exit code and kind."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from tapearc import errors

ROOT = Path(__file__).resolve().parents[1]


def _error_classes() -> list[type[errors.TapearcError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.TapearcError) and cls.__module__ == errors.__name__
    ]


def _table() -> dict[int, set[str]]:
    """exit code -> the kinds its row in docs/errors.md names."""
    text = (ROOT / "docs" / "errors.md").read_text()
    rows: dict[int, set[str]] = {}
    for code, kinds in re.findall(r"^\| (\d+) \| ([^|]*) \|", text, re.M):
        rows[int(code)] = set(re.findall(r"`([a-z-]+)`", kinds))
    return rows


def test_every_error_class_is_in_the_table() -> None:
    table = _table()
    for cls in _error_classes():
        if cls is errors.MediumError or cls.__name__.startswith("_") or cls is errors.TapearcError:
            continue  # abstract bases: never raised themselves
        assert cls.exit_code in table, cls
        assert cls.kind in table[cls.exit_code], (cls, cls.exit_code, cls.kind)


def test_exit_codes_live_in_errors_py() -> None:
    """No class outside errors.py gives itself an exit code."""
    for f in (ROOT / "tapearc").rglob("*.py"):
        if f.name == "errors.py" and f.parent.name == "tapearc":
            continue
        assert not re.search(r"^\s+exit_code = \d+", f.read_text(), re.M), f


def test_medium_error_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        errors.MediumError("x")
    err = errors.MediumStateError("the stream medium is closed", medium="-")
    assert isinstance(err, errors.MediumError)
    assert (err.exit_code, err.kind) == (14, "medium")
    assert errors.MediumError.exit_code != errors.MediumIOError.exit_code


def test_every_row_of_the_table_is_an_error_tapearc_has() -> None:
    """No row documents an exit code or a kind that no class has any more (0 and 141 are no
    errors' codes)."""
    kinds: dict[int, set[str]] = {}
    for cls in _error_classes():
        kinds.setdefault(cls.exit_code, set()).add(cls.kind)
    for code, named in _table().items():
        if code in (0, 141):
            continue
        assert code in kinds, f"docs/errors.md documents exit {code}, which no error class has"
        assert named <= kinds[code], f"exit {code}: docs/errors.md names kinds no class has: {named - kinds[code]}"


def test_every_row_says_what_to_do() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    for code, what_to_do in re.findall(r"^\| (\d+) \|[^|]*\|.*\| ([^|]*) \|$", text, re.M):
        if int(code) not in (0,):
            assert what_to_do.strip(), f"exit {code}: the 'what to do' column is empty"


def _hints() -> list[tuple[str, str]]:
    """(where, text) of every hint given to an error in tapearc/ (its string parts)."""
    out = []
    for f in sorted((ROOT / "tapearc").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "hint":
                    parts = [
                        c.value for c in ast.walk(kw.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    ]
                    out.append((f"{f.relative_to(ROOT)}:{node.lineno}", " ".join(parts)))
    return out


#: Words that follow "tapearc" in prose ("the other tapearc to finish", "a tapearc medium").
PROSE = {
    "to",
    "process",
    "command",
    "with",
    "pick",
    "image",
    "makes",
    "for",
    "was",
    "tapearc",
    "medium",
    "never",
    "prints",
    "writes",
}


def test_hints_and_the_table_name_what_exists() -> None:
    """The hints, and the table's 'what to do', name options tapearc has, commands it has, and
    docs (and their sections) that exist."""
    from tests.test_docs_cli import COMMANDS

    options = {o for _, cmd, _ in COMMANDS for p in cmd.params for o in p.opts} | {"--debug", "--help"}
    commands = {path.split(" ", 1)[0] for path, _, _ in COMMANDS}
    foreign = {"--persistent", "--shared", "--cache", "--listen", "--pty", "--slots"}  # qemu-nbd's, tapesim's
    texts = [*_hints(), ("docs/errors.md", (ROOT / "docs" / "errors.md").read_text())]
    assert len(texts) > 100  # the scan found the hints
    for where, text in texts:
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text):
            assert opt in options | foreign, f"{where}: {opt} is no option of tapearc"
        for cmd in re.findall(r"\btapearc ([a-z]+)\b", text):
            assert cmd in commands | PROSE, f"{where}: 'tapearc {cmd}' names no command"
        for doc, title in re.findall(r"(docs/[a-z0-9_-]+\.md)(?:, ['\"]([^'\"]+)['\"])?", text):
            assert (ROOT / doc).exists(), f"{where}: {doc} does not exist"
            if title:
                headings = re.findall(r"^#+ (.*)$", (ROOT / doc).read_text(), re.M)
                assert any(h.startswith(title) for h in headings), f"{where}: {doc} has no section {title!r}"
