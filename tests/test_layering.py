"""The package layering (README "Architecture"): every fsmrun import points down or sideways, no
two modules import each other (directly or round a circle), every module imports alone, and
the light stages (`lang`, `runs`) never load torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fsmrun"

# Bottom to top; a module imports only from its own layer or below. The top-level package
# (`fsmrun/__init__.py`, the public API) is above everything and imports lazily.
LAYERS = [
    {"_version", "base", "schemas", "experiments"},
    {"lang"},
    {"runs"},
    {"data"},
    {"nn"},
    {"train"},
    {"sweeps"},
    {"analysis"},
    {"cli", "__main__"},
]
TOP = "fsmrun"
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    """The layer of a dotted module name (the top-level package is above every layer)."""
    if module == TOP:
        return len(LAYERS)
    stage = module.split(".")[1]
    assert stage in LAYER_OF, f"{module}: package {stage!r} has no layer; add it to LAYERS"
    return LAYER_OF[stage]


def fsmrun_imports(module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every fsmrun import in `module`: top level, inside functions
    and under TYPE_CHECKING alike (a type-only import still ties the two modules together).
    `from pkg import name` counts as an import of `pkg.name` when that is a module."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == TOP]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != TOP:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append((sub if sub in MODULES else source, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the fsmrun modules importing it runs, explicit imports plus the parent
    packages Python initialises first (`fsmrun.a.b` runs `fsmrun/a/__init__.py`); the
    top-level package is left out: it imports only lazily, on attribute access."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module in MODULES:
        for target, _ in fsmrun_imports(module):
            parts = target.split(".")
            for depth in range(2, len(parts) + 1):
                parent = ".".join(parts[:depth])
                if parent in MODULES and parent != module and not module.startswith(parent + "."):
                    graph[module].add(parent)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_module_has_a_layer():
    assert len(MODULES) > 80  # the walk found the package
    for module in MODULES:
        layer(module)


def test_no_import_points_up_a_layer():
    upward = [
        f"{module}:{line} imports {target} ({layer(module)} -> {layer(target)})"
        for module in MODULES
        if module != TOP
        for target, line in fsmrun_imports(module)
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_checks_catch_an_upward_import_and_a_circle():
    graph = {"fsmrun.a": {"fsmrun.b"}, "fsmrun.b": {"fsmrun.c"}, "fsmrun.c": {"fsmrun.a"}}
    assert circles(graph) == [["fsmrun.a", "fsmrun.b", "fsmrun.c"]]
    assert circles({"fsmrun.a": {"fsmrun.b"}}) == []
    assert layer("fsmrun.runs.index") < layer("fsmrun.train.loop") < layer("fsmrun.cli.train")


# Each module imported in a process whose interpreter has loaded no fsmrun module: a fork of
# one parent that pre-imported only third-party packages (import order of those cannot hide
# a missing fsmrun import, and forking spares ~100 torch imports). The light stages get a
# plain fresh interpreter each, so that loading torch there cannot pass unnoticed.
FORK_EACH = """
import os, sys, traceback
import numpy, pydantic, rich, typer, torch  # third-party only: fsmrun is imported per child
names, running, failed = sys.argv[1:], {}, []
while names or running:
    if names and len(running) < (os.cpu_count() or 1):
        name = names.pop()
        pid = os.fork()
        if pid == 0:
            try:
                __import__(name)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        running[pid] = name
        continue
    pid, status = os.wait()
    if status != 0:
        failed.append(running[pid])
    del running[pid]
print(" ".join(failed))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_alone():
    proc = subprocess.run(
        [sys.executable, "-c", FORK_EACH, *sorted(MODULES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [], proc.stderr


NO_TORCH = """
import sys
for name in sys.argv[1:]:
    __import__(name)
loaded = sorted(m for m in ("torch", "matplotlib") if m in sys.modules)
assert not loaded, f"{sys.argv[1:]} loaded {loaded}"
"""


@pytest.mark.parametrize("stage", ["schemas", "experiments", "lang", "runs"])
def test_light_stage_never_imports_torch(stage):
    modules = [m for m in MODULES if m.split(".")[1:2] == [stage]]
    assert modules
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *modules], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
