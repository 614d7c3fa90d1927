"""Every error an HTTP caller can meet comes back in the OpenAI shape with the right status."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from strata.errors import (
    EngineError,
    InvalidRequestError,
    ModelLoadError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
)
from strata.http_errors import (
    INTERNAL_ERROR_MESSAGE,
    describe_validation_errors,
    field_path,
    install_error_handlers,
)


class Message(BaseModel):
    role: str
    content: str


class Body(BaseModel):
    messages: list[Message]
    max_tokens: int | None = None


def _app() -> FastAPI:
    app = FastAPI(strict_content_type=False)
    install_error_handlers(app)
    errors: dict[str, Exception] = {
        "invalid": InvalidRequestError("temperature is bad.", param="temperature", code="x"),
        "missing": NotFoundError("no such model.", code="model_not_found", param="model"),
        "rate": RateLimitError("slow down.", retry_after_s=2.2),
        "overloaded": OverloadedError("queue full.", retry_after_s=0.5, code="queue_full"),
        "engine": EngineError("the engine failed at /srv/secret/weights."),
        "model": ModelLoadError("/srv/secret/model.safetensors is truncated."),
        "crash": RuntimeError("password=hunter2 at /srv/secret"),
    }

    @app.get("/raise/{name}")
    async def raise_(name: str) -> None:
        raise errors[name]

    @app.post("/items")
    async def items(body: Body) -> dict[str, int]:
        return {"n": len(body.messages)}

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(_app())


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return dict(body["error"])


def test_request_errors_keep_their_status_type_code_and_param(client: TestClient) -> None:
    response = client.get("/raise/invalid")
    assert response.status_code == 400
    assert _error(response) == {
        "message": "temperature is bad.",
        "type": "invalid_request_error",
        "code": "x",
        "param": "temperature",
    }
    response = client.get("/raise/missing")
    assert response.status_code == 404
    assert _error(response)["code"] == "model_not_found"


def test_rate_limit_and_overload_carry_retry_after_in_whole_seconds(client: TestClient) -> None:
    response = client.get("/raise/rate")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert _error(response)["type"] == "rate_limit_error"
    response = client.get("/raise/overloaded")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert _error(response)["code"] == "queue_full"


@pytest.mark.parametrize("name", ["engine", "model", "crash"])
def test_server_side_failures_are_500_without_internals(
    client: TestClient, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="strata.http_errors"):
        response = client.get(f"/raise/{name}")
    assert response.status_code == 500
    error = _error(response)
    assert error["message"] == INTERNAL_ERROR_MESSAGE
    assert error["type"] == "server_error"
    assert "secret" not in response.text and "hunter2" not in response.text
    assert any(record.exc_info for record in caplog.records), "logged with its traceback"


def test_validation_error_names_the_nested_field(client: TestClient) -> None:
    response = client.post("/items", json={"messages": [{"role": "user", "content": 5}]})
    assert response.status_code == 400
    error = _error(response)
    assert error["param"] == "messages.0.content"
    assert error["message"].startswith("messages.0.content: ")
    assert error["type"] == "invalid_request_error"


def test_missing_field_is_reported_as_required(client: TestClient) -> None:
    response = client.post("/items", json={"max_tokens": 3})
    error = _error(response)
    assert response.status_code == 400
    assert error["message"] == "messages: is required"
    assert error["code"] == "missing_required_parameter"


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/items", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_json"
    assert "not valid JSON" in error["message"]


def test_a_body_that_is_not_json_is_400(client: TestClient) -> None:
    response = client.post("/items", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 400
    assert "JSON object" in _error(response)["message"]
    assert client.post("/items").status_code == 400  # no body at all


def test_unknown_route_is_404_in_openai_shape(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    error = _error(response)
    assert error["type"] == "not_found_error"
    assert "/v1/nothing-here" in error["message"]


def test_wrong_method_is_405_with_allow_header(client: TestClient) -> None:
    response = client.get("/items")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert _error(response)["code"] == "method_not_allowed"


def test_field_path_drops_the_body_prefix() -> None:
    assert field_path(("body", "messages", 0, "content")) == "messages.0.content"
    assert field_path(("query", "limit")) == "query.limit"
    assert field_path(("body",)) == ""


def test_value_errors_report_their_own_text_and_extra_errors_are_counted() -> None:
    errors = [
        {
            "type": "value_error",
            "loc": ("body", "n"),
            "msg": "Value error, x",
            "ctx": {"error": "x"},
        }
    ] + [{"type": "int_type", "loc": ("body", f"f{i}"), "msg": "bad"} for i in range(6)]
    message, param, code = describe_validation_errors(errors)
    assert message.startswith("n: x; f0: bad")
    assert message.endswith("and 2 more errors")
    assert (param, code) == ("n", "invalid_value")
