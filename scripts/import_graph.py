#!/usr/bin/env python
"""The package's import graph and its layers: which module imports which, and every edge that points up.

Layers, bottom to top (a module may import its own layer and the ones below, never one above):

    base      inrlib, inrlib.io, inrlib.resources, inrlib.coords, inrlib.ntk.terms (the kernel-term protocol)
    model     inrlib.encodings, inrlib.layers, inrlib.models
    engines   inrlib.ntk.*, inrlib.train*, inrlib.metrics, inrlib.render
    data      inrlib.data.*
    research  inrlib.research.*
    book      inrlib.book.*

Every ``import`` and ``from ... import`` counts, those inside functions too (a lazy import still points
where it points). ``python scripts/import_graph.py [ROOT]`` prints the edges between layers, the upward
ones and the cycles; tests/test_architecture.py fails on any of them.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

LAYERS = ("base", "model", "engines", "data", "research", "book")
#: module-name prefix -> layer; the longest matching prefix wins.
LAYER_OF = {
    "inrlib": "base", "inrlib.io": "base", "inrlib.resources": "base", "inrlib.coords": "base",
    "inrlib.ntk.terms": "base",
    "inrlib.encodings": "model", "inrlib.layers": "model", "inrlib.models": "model",
    "inrlib.ntk": "engines", "inrlib.train": "engines", "inrlib.metrics": "engines", "inrlib.render": "engines",
    "inrlib.spectra": "engines", "inrlib.fused": "engines",
    "inrlib.data": "data",
    "inrlib.research": "research", "inrlib.experiments": "research", "inrlib.claims": "research",
    "inrlib.theory": "research",
    "inrlib.book": "book", "inrlib.studies": "book", "inrlib.widgets": "book", "inrlib.plotting": "book",
}


def layer_of(module: str) -> str:
    if module == "inrlib":
        return LAYER_OF[module]
    parts = module.split(".")
    for n in range(len(parts), 1, -1):         # "inrlib" alone is the package's __init__, not a catch-all
        prefix = ".".join(parts[:n])
        if prefix in LAYER_OF:
            return LAYER_OF[prefix]
    raise KeyError(f"module {module} is in no layer: add it to LAYER_OF in scripts/import_graph.py")


def modules(root: Path) -> dict[str, Path]:
    """``{module name: file}`` for every ``.py`` file of the package under ``root/inrlib``."""
    out = {}
    for path in sorted((root / "inrlib").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(root: Path) -> dict[str, set[str]]:
    """``{module: the inrlib modules it imports}``; ``from pkg import name`` counts as ``pkg.name`` when
    that is a module, else as ``pkg``."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(node, module, is_package)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    targets.add(sub if sub in known else target)
        graph[module] = {t for t in targets if (t == "inrlib" or t.startswith("inrlib.")) and t != module}
    return graph


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges ``(a, b)`` where ``b``'s layer is above ``a``'s."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted((a, b) for a, targets in graph.items() for b in targets if rank[layer_of(b)] > rank[layer_of(a)])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module, or a self-loop),
    leaving out a package's edges to its own submodules (``__init__`` re-exports them by design)."""
    def own(a: str, b: str) -> bool:
        return b.startswith(a + ".")
    edges = {a: {b for b in bs if not own(a, b) and not own(b, a)} for a, bs in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:            # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], int]:
    """How many module edges go from each layer to each other layer."""
    out: dict[tuple[str, str], int] = {}
    for a, targets in graph.items():
        for b in targets:
            key = (layer_of(a), layer_of(b))
            if key[0] != key[1]:
                out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (LAYERS.index(kv[0][0]), LAYERS.index(kv[0][1]))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]),
                    help="the repository root (default: this checkout)")
    args = ap.parse_args(argv)
    graph = imports(Path(args.root))
    print("layer -> layer: module edges")
    for (a, b), n in layer_edges(graph).items():
        print(f"  {a:>8} -> {b:<8} {n:3d}{'   UPWARD' if LAYERS.index(b) > LAYERS.index(a) else ''}")
    up = upward_edges(graph)
    print(f"upward edges: {len(up)}")
    for a, b in up:
        print(f"  {a} -> {b}")
    cyc = cycles(graph)
    print(f"cycles: {len(cyc)}")
    for c in cyc:
        print("  " + " <-> ".join(c))
    return 1 if up or cyc else 0


if __name__ == "__main__":
    raise SystemExit(main())
