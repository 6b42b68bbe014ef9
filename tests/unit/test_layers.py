"""The layers' contract, read from the source: main -> bench -> server -> tools -> index ->
errors, no circles.

Every ``import`` and ``from ... import`` of a ``rerank_mcp`` module is collected, also those
inside functions (a lazy import is still a dependency). ``tools/`` and ``index/`` never import
``mcp``; nothing above ``index/`` imports an engine's parts (store, FAISS, tantivy): it goes
through the index contract. ``bench/`` (evaluation and benchmarks) is on top: the product never
names it, not even in a string handed to importlib; only the console entry point
(``main.py``) wires its verbs in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"errors": 0, "index": 1, "tools": 2, "server": 3, "bench": 4, "main": 5}
PRODUCT = ("errors", "index", "tools", "server")  # what the server runs: never imports bench
# modules of the embedded engine that only index/ itself may import
ENGINE_PARTS = {"rerank_mcp.index.store", "rerank_mcp.index.dense", "rerank_mcp.index.sparse",
                "rerank_mcp.index.engine", "rerank_mcp.index.persist", "rerank_mcp.index.qdrant"}


def is_engine_part(mod: str) -> bool:
    """An engine module, or a module of an engine's package."""
    return any(mod == p or mod.startswith(p + ".") for p in ENGINE_PARTS)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["rerank_mcp", *parts])


def source_files() -> list[Path]:
    files = [ROOT / "errors.py", ROOT / "__init__.py", ROOT / "main.py"]
    for layer in ("index", "tools", "server", "bench"):
        files += sorted((ROOT / layer).rglob("*.py"))
    return files


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names)."""
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            for a in node.names:  # `from rerank_mcp.index import engine` imports a module too
                out.add(f"{mod}.{a.name}")
    return out


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in source_files()}
    g: dict[str, set[str]] = {}
    for name, path in mods.items():
        g[name] = {m for m in imports_of(path) if m in mods and m != name}
    return g


def layer_of(mod: str) -> int | None:
    parts = mod.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_module_imports_a_layer_above_it():
    bad = []
    for mod, deps in graph().items():
        mine = layer_of(mod)
        if mine is None:
            continue
        for d in deps:
            theirs = layer_of(d)
            if theirs is not None and theirs > mine:
                bad.append(f"{mod} imports {d}")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_the_product_never_names_bench():
    """Not imported, lazily or otherwise, and not named in a string (importlib, __import__)."""
    bad = []
    for path in source_files():
        mod = module_name(path)
        if layer_of(mod) not in [LAYERS[x] for x in PRODUCT] and mod != "rerank_mcp":
            continue
        bad += [f"{mod} imports {m}" for m in imports_of(path) if m.startswith(("rerank_mcp.bench", "rerank_mcp.main"))]
        if "rerank_mcp.bench" in path.read_text():
            bad.append(f"{mod} names rerank_mcp.bench in its text")
    assert not bad, "the product must work without bench/ (pass verbs in through server.cli.run):\n" + "\n".join(bad)


def test_every_source_file_is_in_a_layer():
    assert all(layer_of(module_name(p)) is not None or p.name == "__init__.py" for p in source_files())


def test_only_server_speaks_mcp():
    bad = []
    for path in source_files():
        mod = module_name(path)
        if layer_of(mod) in (LAYERS["index"], LAYERS["tools"], LAYERS["errors"]):
            bad += [f"{mod} imports {m}" for m in imports_of(path) if m == "mcp" or m.startswith("mcp.")]
    assert not bad, "\n".join(bad)


def test_nothing_above_index_reaches_into_an_engine():
    bad = []
    for mod, deps in graph().items():
        if layer_of(mod) in (LAYERS["tools"], LAYERS["server"]):
            bad += [f"{mod} imports {d}" for d in deps if is_engine_part(d)]
    assert not bad, "use the index contract (rerank_mcp.index.contract / engines) instead:\n" + "\n".join(bad)


def test_no_import_circles():
    g = graph()
    # packages' __init__ modules are implied by their children; a circle through one is no circle
    edges = {m: {d for d in deps if not (ROOT / Path(*d.split(".")[1:]) / "__init__.py").exists()}
             for m, deps in g.items()}
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(edges, WHITE)
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        color[m] = GREY
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if color.get(d) == GREY:
                cycles.append(stack[stack.index(d):] + [d])
            elif color.get(d) == WHITE:
                visit(d)
        stack.pop()
        color[m] = BLACK

    for m in sorted(edges):
        if color[m] == WHITE:
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("mod,dep", [("rerank_mcp.index.x", "rerank_mcp.tools.y"), ("rerank_mcp.errors", "rerank_mcp.index.z")])
def test_the_checker_sees_an_upward_import(mod, dep):
    assert layer_of(dep) > layer_of(mod)
