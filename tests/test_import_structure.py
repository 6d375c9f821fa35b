"""The structure drawn from the imports: no cycle, and no floor importing a floor above it.

Every module under ``framework/`` is parsed (nothing is imported, so this takes well under a
second). An edge is any ``import`` or ``from ... import`` statement in the module, at module level,
inside a function or under ``if TYPE_CHECKING`` alike; ``from package import name`` points at the
module ``package.name`` when there is one, else at the package itself. A module loaded by name at
run time is not an edge: that is how plugin discovery, on the second floor, fills the registries
with plugins from the floors above without importing them. Print the cycles and the upward
imports with ``python tests/test_import_structure.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "framework"

# Floors, lowest first (ARCHITECTURE.md: nn/data below tasks below training below tracking/sweeps
# below the commands). A module may import its own floor and the floors below it. A module is on
# the floor of the longest prefix listed here.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("framework", "framework.errors", "framework.figures"),
    ("framework.plugins", "framework.registry"),
    ("framework.nn", "framework.data", "framework.music"),
    ("framework.tasks", "framework.course"),
    ("framework.training",),
    ("framework.tracking", "framework.sweeps"),
    ("framework.cli", "framework.studies", "framework.hydra_plugins", "framework.__main__",
     "framework.bench", "framework.compare", "framework.coursebench", "framework.generate",
     "framework.predict", "framework.vanishing"),
)


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module and package under framework/."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The framework modules that module ``name`` imports anywhere in its body."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..y import z
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    out.add(f"{source}.{alias.name}")
                elif source in known:
                    out.add(source)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a cycle
    through its modules in import order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_walk(sorted(component), edges))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _walk(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A closed path from the component's first module back to it (for the message)."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(edges[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    return component


def floor(name: str) -> int | None:
    best, level = -1, None
    for i, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    return level


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)})"
            for a in sorted(edges) for b in sorted(edges[a])
            if floor(a) is not None and floor(b) is not None and floor(b) > floor(a)]


def test_the_graph_sees_every_kind_of_import():
    edges = graph()
    assert "framework.errors" in edges["framework.registry"]  # module level
    assert "framework.data.files.fetch" in edges["framework.tracking.run_info"]  # in a function
    assert "framework.cli.train" in edges["framework.__main__"]  # from package import module


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_a_cycle_is_found_and_named():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c", "a"]]


def test_every_module_has_a_floor():
    unplaced = [name for name in graph() if floor(name) is None]
    assert not unplaced, f"add these modules to a floor in FLOORS: {unplaced}"


def test_no_floor_imports_a_floor_above_it():
    found = upward(graph())
    assert not found, "imports from a higher floor:\n" + "\n".join(found)


if __name__ == "__main__":
    edges = graph()
    lines = [" -> ".join(c) for c in cycles(edges)] + upward(edges)
    sys.stdout.write("\n".join(lines or ["no cycle, no upward import"]) + "\n")
