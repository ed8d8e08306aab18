"""Imports in swarmlab/ go one way: the import graph (every `import`/`from` statement, at module
level or inside a function, read with ast) has no cycle, and each module imports alone in a
fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import swarmlab
from swarmlab.model.shipped import SHIPPED

PACKAGE = Path(swarmlab.__file__).resolve().parent  # the package under test (installed or the checkout's)


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (not the repo directories an installed
    wheel carries inside it: deploys/ and inventories/ are pyinfra scripts, not modules)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1] in SHIPPED:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The swarmlab modules `name` imports (a `from pkg import mod` names the module mod)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue  # annotations only: never executed
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in child.names:
                    out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
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
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_every_kind_of_import() -> None:
    edges = graph()
    assert "swarmlab.model.spec" in edges["swarmlab.cli.commands"]  # from swarmlab.model.spec import ...
    assert any(m.startswith("swarmlab.provision.") for m in edges["swarmlab.provision.docker"])


def test_no_import_cycle_in_swarmlab() -> None:
    found = cycles(graph())
    assert not found, "import cycles (each list imports itself round):\n" + "\n".join(
        " -> ".join(c) for c in found)


@pytest.mark.parametrize("module", sorted(m for m in modules() if not m.endswith(".__main__")))
def test_each_module_imports_alone(module: str) -> None:
    """A fresh interpreter imports the module first (an order-dependent import fails here);
    a package's __main__ runs the program when imported, so it is only in the graph."""
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                         cwd=PACKAGE.parent.parent, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


# the flow's order (docs/architecture.md): a module imports its own layer and those before it
LAYERS = ["swarmlab", "model", "control", "containerlab", "vm", "provision", "verify", "report", "learn", "cli"]


def test_layers_import_back_along_the_flow_only() -> None:
    def layer(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "swarmlab"

    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} - set(SHIPPED)
    assert subpackages <= set(LAYERS), f"a package outside the layer order: {subpackages - set(LAYERS)}"
    wrong = sorted(f"{a} imports {b}" for a, bs in graph().items() for b in bs
                   if LAYERS.index(layer(b)) > LAYERS.index(layer(a)))
    assert not wrong, "imports against the flow (see docs/architecture.md):\n" + "\n".join(wrong)
