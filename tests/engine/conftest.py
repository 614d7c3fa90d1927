from __future__ import annotations

import pytest

from tests.engine.parity import DIVERGENCES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not DIVERGENCES:
        return
    terminalreporter.section("greedy near-ties tolerated against transformers")
    for d in DIVERGENCES:
        terminalreporter.write_line(
            f"{d.label}: position {d.position}: strata {d.ours} vs transformers {d.theirs}, "
            f"top-2 log-prob gap {d.gap:.2e}"
        )
