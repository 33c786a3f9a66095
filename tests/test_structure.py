"""The package's shape (issue 12): one Colorizer, no import cycles, a core that never reaches up, short files.

Walks every ``.py`` file of the package (not tests/ or benchmarks/) with ``ast`` and resolves its relative
imports (function-level ones too: a lazy import is still a dependency) into a module graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"tests", "benchmarks", "runs", "node_modules", "__pycache__"}
UPPER = ("export", "eval", "nodes", "cli", "reproduce")
MAX_LINES = 450


def _files() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.startswith(".") or part.startswith("reproduce-") for part in rel.parts[:-1]):
            continue
        out[_modname(rel)] = p
    return out


def _modname(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)  # "" is the root package


def _graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for mod, path in files.items():
        pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        pkg = [p for p in pkg if p]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg[: len(pkg) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    cand = f"{target}.{alias.name}" if target else alias.name
                    deps.add(cand if cand in files else target)
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(m or "(root __init__)" for m in comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_relative_imports():
    graph = _graph(_files())
    assert "polycolor_core.model.modelinfo" in graph["polycolor_core.model.checkpoint"]
    assert "export.colorizer" in graph[""]  # the root's lazy Colorizer import counts


def test_no_import_cycles():
    assert _cycles(_graph(_files())) == []


def test_the_core_never_imports_from_above():
    graph = _graph(_files())
    up = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith("polycolor_core")
                for d in deps if d == "" or d.split(".")[0] in UPPER)
    assert up == []


def test_exactly_one_colorizer_class():
    found = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in _files().values()
             for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(n, ast.ClassDef) and n.name == "Colorizer"]
    assert [f.split(":")[0] for f in found] == ["export/colorizer.py"], found


def test_no_file_over_450_lines():
    long = sorted(f"{p.relative_to(ROOT)} ({n} lines)" for p in _files().values()
                  if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_LINES)
    assert long == []
