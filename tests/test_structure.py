"""The structure rules of the code (issue 13), checked on the source tree so that they stay true.

- no function in tapearc/ or hw-sim/ is longer than 60 lines (from its ``def`` to its last line);
- no module imports a private (``_name``) name from another module, nor reads one as
  ``module._name``;
- no import cycle between the modules of tapearc, nor between those of tapesim (imports inside
  functions count; imports under ``if TYPE_CHECKING:`` do not, they never run);
- the ``TAPEARC_*`` environment variables are read in one module of tapearc (its settings
  module, ``tapearc/settings.py`` or ``tapearc/env.py``) and in one module of tapesim.

Each failure lists every offender as ``file:line ...`` so that it can be fixed from the message.
Lint and type checks are not repeated here: CI runs ruff and mypy (``make lint``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
# the packages, as (import name, folder)
PACKAGES = {"tapearc": ROOT / "tapearc", "tapesim": ROOT / "hw-sim" / "tapesim"}
SETTINGS_MODULES = {"tapearc.settings", "tapearc.env"}  # where tapearc reads its TAPEARC_* variables
ENV_NAME = re.compile(r"TAPEARC_[A-Z0-9_]+")


@dataclass
class Module:
    name: str  # dotted import name, e.g. tapearc.media.stlike
    path: Path
    tree: ast.Module
    is_package: bool  # an __init__.py

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@dataclass
class Edge:
    target: str
    line: int


@dataclass
class Graph:
    edges: dict[str, list[Edge]] = field(default_factory=dict)


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join(parts)
            found[name] = Module(name, path, ast.parse(path.read_text(), str(path)), is_package)
    return found


MODULES = _modules()


def _all_python_files() -> Iterator[Path]:
    """Every source file of tapearc/ and hw-sim/."""
    for top in ("tapearc", "hw-sim"):
        yield from sorted((ROOT / top).rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, in functions too, except under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for orelse in child.orelse:
                yield from _runtime_imports(orelse)
        else:
            yield from _runtime_imports(child)


def _base(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module name a ``from ... import`` statement imports from."""
    if not node.level:
        return node.module or ""
    package = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def _known(name: str) -> str | None:
    """``name`` or its longest prefix that is a module of ours; None outside tapearc/tapesim."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imported(mod: Module, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules of ours an import statement imports (the most specific one for each name)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            target = _known(alias.name)
            if target is not None:
                yield target
        return
    base = _base(mod, node)
    for alias in node.names:
        target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else _known(base)
        if target is not None:
            yield target


def _module_names(mod: Module, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str]]:
    """(local name, module of ours it stands for) for the modules an import statement binds."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname is not None:
                if alias.name in MODULES:
                    yield alias.asname, alias.name
            else:  # `import a.b.c` binds a: attributes spell the rest
                first = alias.name.split(".")[0]
                if first in MODULES:
                    yield first, first
        return
    base = _base(mod, node)
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:  # from package import submodule
            yield alias.asname or alias.name, f"{base}.{alias.name}"


def _function_lengths(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    """(line, qualified name, length in lines) of every function and method under ``tree``."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[int, str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                yield child.lineno, name, child.end_lineno - child.lineno + 1
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def test_no_function_is_longer_than_60_lines() -> None:
    offenders = []
    for path in _all_python_files():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT).as_posix()
        for line, name, length in _function_lengths(tree):
            if length > MAX_FUNCTION_LINES:
                offenders.append(f"{rel}:{line} {name} {length} lines")
    if offenders:
        pytest.fail(
            f"{len(offenders)} functions are longer than {MAX_FUNCTION_LINES} lines (def to last line); "
            "split them into named steps:\n" + "\n".join(offenders)
        )


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _private_uses(mod: Module) -> Iterator[str]:
    bound: dict[str, str] = {}  # local name -> module of ours it stands for
    for node in _runtime_imports(mod.tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = _base(mod, node)
            for alias in node.names:
                if _is_private(alias.name) and _known(base) is not None:
                    yield f"{mod.rel}:{node.lineno} imports {alias.name} from {base}"
        bound.update(_module_names(mod, node))
    for node in ast.walk(mod.tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        chain = _dotted(node.value)
        if not chain or chain[0] not in bound:
            continue
        owner = ".".join([bound[chain[0]], *chain[1:]])
        if owner in MODULES and owner != mod.name:
            yield f"{mod.rel}:{node.lineno} uses {owner}.{node.attr}"


def test_no_module_uses_a_private_name_of_another() -> None:
    offenders = [use for mod in MODULES.values() for use in _private_uses(mod)]
    if offenders:
        pytest.fail(
            f"{len(offenders)} uses of another module's private (_name) names; make the name public "
            "(and documented) or move the code:\n" + "\n".join(offenders)
        )


def _import_graph(package: str) -> Graph:
    graph = Graph()
    for name, mod in MODULES.items():
        if name.split(".")[0] != package:
            continue
        edges = graph.edges.setdefault(name, [])
        for node in _runtime_imports(mod.tree):
            for target in _imported(mod, node):
                if target != name and target.split(".")[0] == package:
                    edges.append(Edge(target, node.lineno))
    return graph


def _strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in graph.edges.get(v, []):
            if e.target not in index:
                visit(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    for v in sorted(graph.edges):
        if v not in index:
            visit(v)
    return [g for g in groups if len(g) > 1]


def _a_cycle(graph: Graph, group: list[str]) -> list[tuple[str, Edge]]:
    """One cycle through the first module of ``group`` (a breadth-first path back to it)."""
    start, members = group[0], set(group)
    came: dict[str, tuple[str, Edge]] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for e in graph.edges.get(v, []):
            if e.target not in members:
                continue
            if e.target == start:
                path = [(v, e)]
                while v != start:
                    v, edge = came[v]
                    path.append((v, edge))
                return path[::-1]
            if e.target not in came:
                came[e.target] = (v, e)
                queue.append(e.target)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a group is a cycle


def _describe_cycles(package: str) -> list[str]:
    graph = _import_graph(package)
    lines = []
    for group in _strongly_connected(graph):
        cycle = _a_cycle(graph, group)
        steps = " -> ".join(f"{MODULES[v].rel}:{e.line} imports {e.target}" for v, e in cycle)
        lines.append(f"{len(group)} modules import each other: {', '.join(group)}\n    e.g. {steps}")
    return lines


def test_no_import_cycle_in_tapearc() -> None:
    cycles = _describe_cycles("tapearc")
    if cycles:
        pytest.fail(f"{len(cycles)} import cycles in tapearc:\n" + "\n".join(cycles))


def test_no_import_cycle_in_tapesim() -> None:
    cycles = _describe_cycles("tapesim")
    if cycles:
        pytest.fail(f"{len(cycles)} import cycles in tapesim:\n" + "\n".join(cycles))


def _is_environ(node: ast.expr) -> bool:
    chain = _dotted(node)
    return chain is not None and chain[-1] == "environ"


def _env_name(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value):
        return node.value
    return None


def _env_reads(mod: Module) -> Iterator[str]:
    """Where ``mod`` reads a TAPEARC_* variable: from the environment (``os.environ[...]``,
    ``os.environ.get``, ``os.getenv``, ``... in os.environ``) or by passing its name to a reader
    (``flag("TAPEARC_PIPELINE", True)``, a parameter defaulting to the name)."""
    for node in ast.walk(mod.tree):
        found: list[tuple[ast.expr, str]] = []  # (the name's constant, how it is read)
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            found.append((node.slice, "os.environ[...]"))
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            found.append((node.left, "in os.environ"))
        elif isinstance(node, ast.Call):
            how = ".".join(_dotted(node.func) or ["a call"])
            found += [(a, f"{how}(...)") for a in [*node.args, *(k.value for k in node.keywords)]]
        elif isinstance(node, ast.arguments):
            found += [(d, "a parameter's default") for d in [*node.defaults, *node.kw_defaults] if d is not None]
        for const, how in found:
            name = _env_name(const)
            if name is not None:
                yield f"{mod.rel}:{const.lineno} {name} ({how})"


def _env_offenders(package: str, allowed: set[str] | None) -> tuple[list[str], set[str]]:
    reads = {name: list(_env_reads(mod)) for name, mod in MODULES.items() if name.split(".")[0] == package}
    readers = {name for name, sites in reads.items() if sites}
    if allowed is None:  # any one module, whichever it is
        allowed = set(sorted(readers, key=lambda n: -len(reads[n]))[:1])
    offenders = [site for name in sorted(readers - allowed) for site in reads[name]]
    return offenders, readers


def test_tapearc_reads_its_environment_variables_in_its_settings_module() -> None:
    offenders, readers = _env_offenders("tapearc", SETTINGS_MODULES)
    if offenders:
        pytest.fail(
            f"TAPEARC_* variables are read in {len(readers)} modules of tapearc ({', '.join(sorted(readers))}); "
            f"only the settings module ({' or '.join(sorted(SETTINGS_MODULES))}) may read them. "
            f"{len(offenders)} reads elsewhere:\n" + "\n".join(offenders)
        )


def test_tapesim_reads_its_environment_variables_in_one_module() -> None:
    offenders, readers = _env_offenders("tapesim", None)
    if offenders:
        pytest.fail(
            f"TAPEARC_* variables are read in {len(readers)} modules of tapesim ({', '.join(sorted(readers))}), "
            f"not one. {len(offenders)} reads outside the main one:\n" + "\n".join(offenders)
        )


# ---------------------------------------------------------------- the checks find what they look for


def _fake(source: str, name: str = "tapearc.engine.fake") -> Module:
    return Module(name, ROOT / "tapearc" / "engine" / "fake.py", ast.parse(source), is_package=False)


def test_the_length_check_counts_from_def_to_the_last_line() -> None:
    tree = ast.parse(
        "class C:\n    def m(self):\n\n        x = 1\n        return x\n\n\ndef f():\n    def g():\n        pass\n"
    )
    assert sorted(_function_lengths(tree)) == [(2, "C.m", 4), (8, "f", 3), (9, "f.g", 2)]


def test_the_private_name_check_finds_imports_and_attributes() -> None:
    mod = _fake(
        "from __future__ import annotations\n"
        "import os\n"
        "from tapearc.media import _PREFIX, open_medium\n"
        "from ..media import stlike as st\n"
        "import tapearc.media.base\n"
        "def f():\n"
        "    from . import scan\n"
        "    return st._x, tapearc.media.base._y, scan._z, os._exit, st.__name__, self._own\n"
    )
    assert [u.split(" ", 1)[1] for u in _private_uses(mod)] == [
        "imports _PREFIX from tapearc.media",
        "uses tapearc.media.stlike._x",
        "uses tapearc.media.base._y",
        "uses tapearc.engine.scan._z",
    ]


def test_the_cycle_check_finds_a_cycle_and_a_path_round_it() -> None:
    graph = Graph({"a": [Edge("b", 1)], "b": [Edge("c", 2), Edge("d", 3)], "c": [Edge("a", 4)], "d": []})
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert [(v, e.target) for v, e in _a_cycle(graph, ["a", "b", "c"])] == [("a", "b"), ("b", "c"), ("c", "a")]
    mod = _fake(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import scan\ndef f():\n    from .. import media\n"
    )
    assert [t for n in _runtime_imports(mod.tree) for t in _imported(mod, n)] == ["tapearc.media"]


def test_the_environment_check_finds_every_way_of_reading_a_variable() -> None:
    mod = _fake(
        "import os\n"
        'a = os.environ["TAPEARC_A"]\n'
        'b = os.environ.get("TAPEARC_B", "")\n'
        'c = os.getenv("TAPEARC_C")\n'
        'd = "TAPEARC_D" in os.environ\n'
        'e = flag("TAPEARC_E", True)\n'
        'def f(name="TAPEARC_F"): pass\n'
        'raise UsageError("set TAPEARC_G=1 to wait", hint="TAPEARC_H" if a else "")\n'
        'env = {"TAPEARC_I": "1"}\n'
    )
    assert [r.split(" ")[1] for r in _env_reads(mod)] == [f"TAPEARC_{c}" for c in "ABCDEF"]
