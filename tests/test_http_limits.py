"""Oversized request bodies are refused with a 413 in the OpenAI error shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from strata.http_errors import install_error_handlers
from strata.http_limits import BodySizeLimitMiddleware


class Body(BaseModel):
    text: str


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=100)

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        return {"n": len(body.text)}

    return TestClient(app)


def chunks(total: int) -> Iterator[bytes]:
    yield b'{"text": "'
    for _ in range(total // 10):
        yield b"x" * 10
    yield b'"}'


def test_small_bodies_pass(client: TestClient) -> None:
    response = client.post("/echo", json={"text": "hello"})
    assert response.status_code == 200 and response.json() == {"n": 5}


def test_declared_length_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post("/echo", json={"text": "x" * 200})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "100 bytes" in error["message"]


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post(
        "/echo", content=chunks(500), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_under_the_limit_passes(client: TestClient) -> None:
    response = client.post(
        "/echo", content=chunks(50), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and response.json() == {"n": 50}
