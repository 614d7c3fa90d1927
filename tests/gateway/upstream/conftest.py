from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.mock_upstream import MockUpstream

MockFactory = Callable[..., MockUpstream]


@pytest.fixture
def mocks() -> Iterator[MockFactory]:
    """Start `MockUpstream`s on demand (same arguments); all are stopped after the test."""
    started: list[MockUpstream] = []

    def start(
        name: str = "mock", *, models: tuple[str, ...] = ("mock-model",), api_key: str = ""
    ) -> MockUpstream:
        mock = MockUpstream(name, models=models, api_key=api_key)
        started.append(mock.__enter__())
        return mock

    yield start
    for mock in started:
        mock.__exit__(None, None, None)


@pytest.fixture
def mock(mocks: MockFactory) -> MockUpstream:
    return mocks()
