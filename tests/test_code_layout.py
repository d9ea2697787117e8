"""The house rules of sepkit's code that a reader relies on to find their way: modules short
enough to read, functions short enough to follow, and rooms that import each other in one
direction only (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPOSITORY

PACKAGE = REPOSITORY / "sepkit"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPOSITORY).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements a module runs when imported: its top level, inside ``if``/``try``
    blocks, but not in functions, classes' methods or ``if TYPE_CHECKING:``."""
    statements = []
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node):
                statements += _import_time_statements(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            handlers = [n for handler in node.handlers for n in handler.body]
            statements += _import_time_statements(node.body + handlers + node.finalbody)
        elif isinstance(node, ast.ClassDef):
            statements += _import_time_statements(node.body)
        else:
            statements.append(node)
    return statements


def _imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The sepkit modules that importing ``name`` imports directly."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported = set()
    for node in _import_time_statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            imported.add(base)
            imported |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in imported if module in known and module != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in index:
                visit(neighbour)
                lowlink[node] = min(lowlink[node], lowlink[neighbour])
            elif neighbour in on_stack:
                lowlink[node] = min(lowlink[node], index[neighbour])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_sepkit_modules_import_one_another_without_cycles():
    modules = _modules()
    graph = {name: _imported_modules(name, path, set(modules)) for name, path in modules.items()}
    assert "sepkit.audio" in graph["sepkit.data.base"], "the import walk misses imports"
    assert _cycles(graph) == []


def test_cycle_finder_reports_a_cycle_of_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_sepkit_module_is_longer_than_500_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    too_long = {name: length for name, length in lengths.items() if length > MAX_MODULE_LINES}
    assert len(lengths) > 50
    assert too_long == {}


def test_no_sepkit_function_is_longer_than_60_lines():
    too_long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long[f"{name}.{node.name}"] = length
    assert too_long == {}
