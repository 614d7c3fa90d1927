from __future__ import annotations

from pathlib import Path

import pytest

from strata.engine.tokenizer import Tokenizer
from tests.engine.parity import DIVERGENCES


@pytest.fixture(scope="session")
def smollm2(smollm2_folder: Path) -> Tokenizer:
    """The bundled model's tokenizer."""
    return Tokenizer.from_folder(smollm2_folder)


@pytest.fixture(scope="session")
def tiny_sp(tiny_sp_tokenizer_folder: Path) -> Tokenizer:
    """A small SentencePiece-style tokenizer with byte fallback."""
    return Tokenizer.from_folder(tiny_sp_tokenizer_folder)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not DIVERGENCES:
        return
    terminalreporter.section("greedy near-ties tolerated against transformers")
    for d in DIVERGENCES:
        terminalreporter.write_line(
            f"{d.label}: position {d.position}: strata {d.ours} vs transformers {d.theirs}, "
            f"top-2 log-prob gap {d.gap:.2e}"
        )
