"""No import cycle among lsmia_ext's modules, counting imports at module level and inside functions
(read with ast, nothing is imported)."""
from __future__ import annotations

import ast
from pathlib import Path

import lsmia_ext

PACKAGE = Path(lsmia_ext.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["lsmia_ext", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in files:  # `from pkg import name`: the module pkg, or pkg.name if a module
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("lsmia_ext"):
                    edges.add(t)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _is_package_edge(a: str, b: str) -> bool:
    """`pkg/__init__.py` importing its own submodules, and a submodule importing its package's name,
    is how a package exposes its API, not a cycle between two modules."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_lsmia_ext_modules():
    graph = import_graph()
    graph = {a: {b for b in bs if not _is_package_edge(a, b)} for a, bs in graph.items()}
    assert "lsmia_ext.experiment.stages" in graph and graph["lsmia_ext.cli"] is not None
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)
