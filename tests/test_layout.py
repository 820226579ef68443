"""The package's layout: no import circles inside webapp, and no benchmark code in it.

The import graph is read from the source with ast, not by importing: every `from .x import`,
`from ..x import`, `from webapp.x import` and `import webapp.x`, at module level and inside
functions alike (a function-level import only hides a circle until the function runs). A
package's `__init__.py` is the package's module. `from P import name` is an arrow to the
submodule P.name when there is one, else to P itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from webapp import config

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "webapp"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The webapp modules that module `name` (its file at `path`) imports."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # The package the dots count from: a package's own __init__ is inside it.
                anchor = name.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as the list of modules along it (first repeated last), or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done:
            return None
        visiting.append(module)
        for target in sorted(graph[module]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_the_import_reader_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert "webapp.config" in graph["webapp"]  # from . import config (module level)
    assert "webapp.sessions.policy" in graph["webapp"]  # from .sessions import policy (in a def)
    assert "webapp.clock" in graph["webapp.sessions.policy"]  # from .. import clock
    assert "webapp.sessions.store" in graph["webapp.sessions.files"]  # from .store import ...
    assert "webapp.models" in graph["webapp.migrations.env"]  # from webapp.models import ...


def test_find_cycle_names_the_modules_along_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_webapp_has_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def names_in(path: Path) -> list[str]:
    """Identifiers and string constants (docstrings left out) of a module's code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.append(node.id)
        elif isinstance(node, ast.Attribute):
            found.append(node.attr)
        elif isinstance(node, ast.alias):
            found.append(node.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.arg):
            found.append(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.extend([] if id(node) in docstrings else [node.value])
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_benchmark_code_or_switch_in_the_package(path):
    """Benchmarks live in bench/ and wrap create_app from outside: webapp neither holds a bench
    module nor reads a switch (setting, variable, config key) that turns benchmark code on."""
    assert "bench" not in str(path.relative_to(PACKAGE)).lower()
    assert [name for name in names_in(path) if "bench" in name.lower()] == []


def test_no_setting_is_a_benchmark_switch():
    assert [name for name in config.SETTINGS if "BENCH" in name] == []
