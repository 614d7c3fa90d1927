"""The guard is a pure function of text and policy: it imports no gateway, engine or pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import strata.guard

FORBIDDEN = ("strata.gateway", "strata.engine", "strata.pipeline")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_guard_imports_no_gateway_engine_or_pipeline() -> None:
    root = Path(strata.guard.__file__).parent
    for path in root.rglob("*.py"):
        bad = [n for n in _imports(path) if n.startswith(FORBIDDEN)]
        assert not bad, f"{path.name} imports {bad}"
