"""The alerts package is part of the telemetry leaf: it imports no gateway, engine or pipeline
module (what it needs from them comes in as values and Protocols)."""

from __future__ import annotations

import ast
from pathlib import Path

import strata.telemetry.alerts as package

FORBIDDEN = ("strata.gateway", "strata.engine", "strata.pipeline")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_the_alerts_package_imports_no_gateway_engine_or_pipeline() -> None:
    modules = sorted(Path(package.__file__).parent.glob("*.py"))
    assert len(modules) >= 9
    for module in modules:
        bad = [name for name in _imports(module) if name.startswith(FORBIDDEN)]
        assert not bad, f"{module.name} imports {bad}"
