"""The package's layering rules, read from its import statements (function-local ones included):
no import circles; the prior knows nothing of masks or mask learning; samplers know nothing of
mask learning; data flows one way, the CLI calls the library and no library module imports the CLI
(learn-mask's work is ``fastmri_diffmask.learn.api``; compare calls it directly)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "fastmri_diffmask"


def _module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(PKG.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of this package it imports}``, from every import statement."""
    paths = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {n for n in names if n in paths and n != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan 1972)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert import_cycles(import_graph()) == []


def _edges(graph, source: str, target: str) -> list[tuple[str, str]]:
    return sorted((a, b) for a, bs in graph.items() for b in bs
                  if a.startswith(f"fastmri_diffmask.{source}") and b.startswith(f"fastmri_diffmask.{target}"))


def test_layering_rules():
    graph = import_graph()
    assert _edges(graph, "prior", "masks") == []
    assert _edges(graph, "prior", "learn") == []
    assert _edges(graph, "sample", "learn") == []
    library = {a: bs for a, bs in graph.items() if not a.startswith("fastmri_diffmask.cli")}
    assert _edges(library, "", "cli") == []
