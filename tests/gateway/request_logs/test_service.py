"""Requests through a live gateway and the real openai SDK are logged, redacted, for opted-in
tenants only; opting in takes effect at runtime; a failing log store never fails a request."""

from __future__ import annotations

import time

import openai
import pytest

from tests.gateway.request_logs.support import ANSWER_EMAIL, EMAIL, OPENAI_KEY, Logged

SECRET_PROMPT = f"My key is {OPENAI_KEY} and my mail is {EMAIL}; summarise my account."


def _no_raw_secret_stored(logged: Logged) -> None:
    stored = logged.sql("SELECT messages::text || response FROM request_logs")
    assert stored
    for (text,) in stored:
        for raw in (OPENAI_KEY, EMAIL, ANSWER_EMAIL):
            assert raw not in text


def test_a_logged_tenants_chat_is_stored_redacted_under_its_request_id(logged: Logged) -> None:
    logged.upstream.text = f"Write to {ANSWER_EMAIL} for help"
    rid = logged.chat(
        logged.acme, SECRET_PROMPT, user="end-user-7", extra_headers={"x-strata-session": "conv-1"}
    )
    assert OPENAI_KEY in str(logged.upstream.requests[-1].body)  # acme's guard let it through
    (row,) = logged.wait_for_logs(1, tenant="acme")
    assert (row["request_id"], row["user"], row["end_user"], row["session"]) == (
        rid, "alice", "end-user-7", "conv-1",
    )  # fmt: skip
    assert (row["status"], row["stream"], row["prompt_tokens"], row["completion_tokens"]) == (
        200, False, 5, 5,
    )  # fmt: skip
    shown = logged.show(rid)
    content = shown["messages"][0]["content"]
    assert "[REDACTED:openai_key]" in content and "[REDACTED:email]" in content
    assert shown["response"] == "Write to [REDACTED:email] for help"
    _no_raw_secret_stored(logged)


def test_a_stream_is_logged_with_the_answer_the_client_saw(logged: Logged) -> None:
    logged.upstream.text = f"Streamed reply mentioning {ANSWER_EMAIL} once"
    stream = logged.gw.client(logged.acme).chat.completions.create(
        model="mock-model",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": SECRET_PROMPT},
        ],
        stream=True,
    )
    seen = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert seen == logged.upstream.text
    (row,) = logged.wait_for_logs(1, tenant="acme")
    shown = logged.show(row["request_id"])
    assert shown["stream"] is True and shown["completion_tokens"] == 5
    assert [m["role"] for m in shown["messages"]] == ["system", "user"]
    assert shown["response"] == "Streamed reply mentioning [REDACTED:email] once"
    _no_raw_secret_stored(logged)


def test_a_completion_is_logged_as_a_prompt_message(logged: Logged) -> None:
    logged.gw.client(logged.acme).completions.create(model="mock-model", prompt="Once upon")
    (row,) = logged.wait_for_logs(1, tenant="acme")
    shown = logged.show(row["request_id"])
    assert shown["route"] == "/v1/completions"
    assert shown["messages"] == [{"role": "prompt", "content": "Once upon"}]
    assert shown["response"] == "Hello from mock upstream"


def test_a_tenant_that_did_not_opt_in_is_not_logged(logged: Logged) -> None:
    logged.chat(logged.beta, "beta's private question")
    logged.chat(logged.acme, "acme's question")  # written in the same or a later batch
    logged.wait_for_logs(1, tenant="acme")
    assert logged.logs(tenant="beta") == []
    assert logged.sql("SELECT count(*) FROM request_logs WHERE tenant = 'beta'") == [(0,)]


def test_opting_in_and_out_takes_effect_at_runtime(logged: Logged) -> None:
    reply = logged.gw.admin("PUT", "/logging/beta", json={"enabled": True, "retention_days": 3})
    assert reply.status_code == 200 and reply.json()["retention_days"] == 3
    logged.chat(logged.beta, "now logged")  # this gateway applies its own change at once
    logged.wait_for_logs(1, tenant="beta")
    assert logged.gw.admin("PUT", "/logging/beta", json={"enabled": False}).status_code == 200
    logged.chat(logged.beta, "not logged")
    # A change made elsewhere (the CLI, another replica) lands within request_logs.refresh_s.
    logged.sql("UPDATE request_log_tenants SET enabled = true WHERE tenant = 'beta'")
    time.sleep(0.6)
    logged.chat(logged.beta, "logged again")
    found = logged.wait_for_logs(2, tenant="beta")
    assert [r["prompt_preview"] for r in found] == ["logged again", "now logged"]


def test_a_failing_log_store_never_fails_a_request(logged: Logged) -> None:
    logged.sql("ALTER TABLE request_logs RENAME TO request_logs_away")
    client = logged.gw.client(logged.acme)
    for _ in range(2):
        assert logged.chat(logged.acme, "still answered")
        stream = client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = list(stream)
        assert chunks
    time.sleep(0.2)  # the writer has failed and is retrying
    assert logged.gw.runtime.request_logs.writer.buffered == 4
    logged.sql("ALTER TABLE request_logs_away RENAME TO request_logs")
    logged.wait_for_logs(4, tenant="acme")


def test_a_bad_session_header_is_a_400_naming_it(logged: Logged) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        logged.chat(logged.beta, extra_headers={"x-strata-session": "x" * 200})
    assert caught.value.body["param"] == "x-strata-session"  # type: ignore[index]
