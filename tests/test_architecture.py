"""Layers point one way (common <- probes <- agent) and no module imports itself in a circle.

Every import statement counts, including those inside functions and under
TYPE_CHECKING: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import os

from tests.helpers import ROOT

PACKAGES = ("common", "probes", "agent")
# Which installed packages each may import.
ALLOWED = {"common": {"common"}, "probes": {"common", "probes"}, "agent": {"common", "probes", "agent"}}


def _modules() -> dict[str, str]:
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[module.removesuffix(".__init__")] = path
    return out


def _imports(path: str, module: str, known: set[str]) -> set[str]:
    """Modules of ours that ``module`` imports (``from a.b import c`` counts a.b.c if that is a module)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: {i for i in _imports(p, m, known) if i in known} for m, p in modules.items()}


def test_layers_point_one_way():
    wrong = sorted((m, i) for m, imports in _graph().items() for i in imports
                   if i.split(".")[0] not in ALLOWED[m.split(".")[0]])
    assert wrong == [], f"imports against the layering (module, imported): {wrong}"


def test_no_import_cycles():
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A package imports its own modules to re-export them; that is not a cycle back up.
            if node == nxt.rpartition(".")[0] or nxt == node:
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walker_sees_real_imports():
    """The checks above are only as good as the graph: it must contain the edges we know exist."""
    graph = _graph()
    assert "probes.base" in graph["agent.store"]
    assert "common.model" in graph["probes.base"]
    assert "probes.snmp.caller" in graph["probes.snmp.walk"]
    assert "probes.icmp.probe" in graph["probes.icmp.kind"]  # a lazy import inside a method
