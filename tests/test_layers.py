"""Data flows one way: evaluation → experiments → reports → cli. A module never imports from a
package downstream of it, imports between qphi's packages form no cycle, and each package imports
first, alone, in a fresh interpreter (an import that works only in some order hides a cycle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import qphi

ROOT = Path(qphi.__file__).parent
UNITS = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()) + sorted(
    p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"
)
DOWNSTREAM = {
    "evaluation": ("qphi.experiments", "qphi.reports", "qphi.cli"),
    "reports": ("qphi.experiments", "qphi.cli"),
    "experiments": ("qphi.cli",),
    "models": ("qphi.evaluation", "qphi.experiments", "qphi.reports", "qphi.cli"),
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", list(DOWNSTREAM))
def test_no_package_imports_from_downstream(package):
    root = ROOT / package
    wrong = {
        f"{path.relative_to(root.parent)} imports {name}"
        for path in root.rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(DOWNSTREAM[package])
    }
    assert not wrong, sorted(wrong)


def unit_imports() -> dict[str, set[str]]:
    """package or top-level module → the other ones its source imports (also inside functions)."""
    graph: dict[str, set[str]] = {unit: set() for unit in UNITS}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        unit = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for name in imported_modules(path) if unit in graph else ():
            parts = name.split(".")
            if parts[0] == "qphi" and len(parts) > 1 and parts[1] != unit:
                graph[unit].add(parts[1])
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as a closed path of its nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    return next((cycle for node in sorted(graph) if node not in state and (cycle := visit(node))), None)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_packages_import_each_other_without_a_cycle():
    cycle = find_cycle(unit_imports())
    assert cycle is None, " → ".join(cycle)


@pytest.mark.parametrize("unit", UNITS)
def test_each_package_imports_first_in_a_fresh_interpreter(unit):
    done = subprocess.run([sys.executable, "-c", f"import qphi.{unit}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
