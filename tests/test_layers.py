"""Data flows one way: evaluation → experiments → reports → cli. A module never imports from a
package downstream of it (an import cycle between packages would make that flow a loop)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qphi

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
    root = Path(qphi.__file__).parent / package
    wrong = {
        f"{path.relative_to(root.parent)} imports {name}"
        for path in root.rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(DOWNSTREAM[package])
    }
    assert not wrong, sorted(wrong)
