"""No import cycle among lsmia_ext's modules, counting imports at module level and inside functions
(read with ast, nothing is imported).

Packages count as what Python runs: importing `pkg.mod` (or a name from `pkg`) first runs
`pkg/__init__.py`, so it is an edge to `pkg` (the __init__), whose own imports are its edges."""
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
                    edges |= _packages_run_first(t, name)
        graph[name] = edges
    return graph


def _packages_run_first(target: str, importer: str) -> set[str]:
    """The packages whose __init__ Python runs before `target`: its ancestors, except those of the
    importer itself (they are already being imported when the importer runs)."""
    parts = target.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
    return {a for a in ancestors if not (importer + ".").startswith(a + ".")}


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


def _is_own_package(a: str, b: str) -> bool:
    """A submodule importing a name of its own package: that package's __init__ is already running
    (or done) when the submodule runs, so the edge starts no import. (The reverse edge, an __init__
    importing its submodules, is real and kept: it is how a cycle through a package shows.)"""
    return a.startswith(b + ".")


def test_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_cycles_through_a_package_init(tmp_path, monkeypatch):
    """pkg.a imports other.b, other.b imports a name from pkg: Python runs pkg/__init__, which imports
    pkg.a: a cycle the graph must show (edges through __init__ and to the packages run first)."""
    root = tmp_path / "lsmia_ext"
    for rel, text in {"__init__.py": "", "pkg/__init__.py": "from .a import f\n",
                      "pkg/a.py": "def f():\n    from ..other.b import g\n",
                      "other/__init__.py": "", "other/b.py": "from ..pkg import f\n",
                      "other/c.py": "from . import b\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", root)
    graph = import_graph()
    assert "lsmia_ext.other" in graph["lsmia_ext.pkg.a"]  # importing other.b runs other/__init__ first
    assert not _is_own_package("lsmia_ext.pkg", "lsmia_ext.pkg.a")
    cycle = find_cycle({a: {b for b in bs if not _is_own_package(a, b)} for a, bs in graph.items()})
    assert cycle is not None and {"lsmia_ext.pkg", "lsmia_ext.pkg.a", "lsmia_ext.other.b"} <= set(cycle)


def test_no_import_cycle_among_lsmia_ext_modules():
    graph = import_graph()
    graph = {a: {b for b in bs if not _is_own_package(a, b)} for a, bs in graph.items()}
    assert "lsmia_ext.experiment.stages" in graph and graph["lsmia_ext.cli"] is not None
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)
