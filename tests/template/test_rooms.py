"""The domain stays in rooms a reader can find: no module of `layers/docdrop/docdrop` over about 400 lines, no class
over about 300, and no two modules that import each other (however far round)."""

from __future__ import annotations

import ast
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "layers" / "docdrop"
MAX_MODULE_LINES = 420  # "about 400": a docstring's worth of slack, not a second room
MAX_CLASS_LINES = 300


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((DOMAIN / "docdrop").rglob("*.py")):
        parts = path.relative_to(DOMAIN).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    assert len(found) > 20, "the domain package was not found"
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The domain modules `name` imports, type-only imports included: a circle of those is a circle for a reader too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            if base in modules:
                found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    found.discard(name)
    return found


def test_no_module_of_the_domain_is_over_about_400_lines() -> None:
    long = {
        name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_class_of_the_domain_is_over_about_300_lines() -> None:
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            size = (node.end_lineno or node.lineno) - node.lineno + 1 if isinstance(node, ast.ClassDef) else 0
            if size > MAX_CLASS_LINES:
                long[f"{name}.{getattr(node, 'name', '?')}"] = size
    assert not long, long


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of the import graph meets (each as the modules round it)."""
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return circles


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "docdrop.ledger.model" in graph["docdrop.ledger.objects"], "the import graph came out empty"
    return graph


def test_no_two_modules_of_the_domain_import_each_other_however_far_round() -> None:
    assert _circles(_graph()) == []


def test_the_circle_check_finds_the_ledgers_old_circle() -> None:
    """ledger.py and ledger_expression.py imported each other before the split: put that back, and the check fails."""
    graph = _graph()
    assert "docdrop.ledger.model" in graph["docdrop.ledger.expression"]  # its type-only import of Status
    graph["docdrop.ledger.model"].add("docdrop.ledger.expression")
    assert ["docdrop.ledger.expression", "docdrop.ledger.model", "docdrop.ledger.expression"] in _circles(graph)
