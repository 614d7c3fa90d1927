"""`POST /v1/feedback` and the `/admin/logs` and `/admin/logging` routes on a live gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.gateway.request_logs.support import EMAIL, Logged


def _score(logged: Logged, key: str, body: dict[str, Any], status: int = 201) -> Any:
    reply = logged.feedback(key, body)
    assert reply.status_code == status, reply.text
    return reply.json()


def test_feedback_attaches_to_the_log_and_a_second_post_replaces_it(logged: Logged) -> None:
    rid = logged.chat(logged.acme)
    # at once, before the log's batch may have landed: this gateway knows it logged it
    made = _score(logged, logged.acme, {"request_id": rid, "score": 1, "name": "thumbs"})
    assert (made["object"], made["request_id"], made["score"]) == ("feedback", rid, 1.0)
    logged.wait_for_logs(1, tenant="acme")
    comment = f"Wrong, mail me at {EMAIL}\x00"
    _score(logged, logged.acme, {"request_id": rid, "score": -1, "name": "thumbs",
                                 "comment": comment})  # fmt: skip
    _score(logged, logged.acme, {"request_id": rid, "score": 4.5})
    shown = logged.show(rid)
    assert [(f["name"], f["score"], f["comment"]) for f in shown["feedback"]] == [
        ("score", 4.5, None),
        ("thumbs", -1.0, "Wrong, mail me at [REDACTED:email]\ufffd"),
    ]
    assert logged.logs(tenant="acme")[0]["scores"] == {"score": 4.5, "thumbs": -1.0}


def test_the_openai_sdk_can_post_feedback(logged: Logged) -> None:
    rid = logged.chat(logged.acme)
    client = logged.gw.client(logged.acme)
    made = client.post("/feedback", cast_to=object, body={"request_id": rid, "score": 5})
    assert isinstance(made, dict) and made["name"] == "score"


def test_another_tenants_or_an_unknown_request_is_a_404_that_reveals_nothing(
    logged: Logged,
) -> None:
    rid = logged.chat(logged.acme)
    logged.wait_for_logs(1, tenant="acme")
    other_acme_user = logged.gw.create_key("acme", "carol")
    _score(logged, other_acme_user, {"request_id": rid, "score": 1})  # same tenant: allowed
    assert logged.gw.admin("PUT", "/logging/beta", json={"enabled": True}).status_code == 200
    theirs = logged.feedback(logged.beta, {"request_id": rid, "score": 1})
    unknown = logged.feedback(logged.beta, {"request_id": "req-never-seen", "score": 1})
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["message"].replace(rid, "X") == unknown.json()["error"][
        "message"
    ].replace("req-never-seen", "X")
    assert logged.sql("SELECT tenant FROM request_log_feedback") == [("acme",)]


def test_feedback_for_a_tenant_that_is_not_logged_says_so(logged: Logged) -> None:
    rid = logged.chat(logged.beta)
    error = _score(logged, logged.beta, {"request_id": rid, "score": 1}, 404)["error"]
    assert "Request logs are off for your tenant" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"score": 1}, "request_id"),
        ({"request_id": "has space", "score": 1}, "request_id"),
        ({"request_id": "r"}, "score"),
        ({"request_id": "r", "score": 101}, "score"),
        ({"request_id": "r", "score": "1"}, "score"),
        ({"request_id": "r", "score": True}, "score"),
        ({"request_id": "r", "score": 1, "comment": "x" * 2001}, "comment"),
        ({"request_id": "r", "score": 1, "name": "no spaces"}, "name"),
        ({"request_id": "r", "score": 1, "extra": 1}, "extra"),
    ],
)
def test_bad_feedback_is_a_400_naming_the_field(
    logged: Logged, body: dict[str, Any], param: str
) -> None:
    error = _score(logged, logged.acme, body, 400)["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_feedback_needs_a_key(logged: Logged) -> None:
    assert logged.feedback(None, {"request_id": "r", "score": 1}).status_code == 401
    assert logged.feedback(None, {"nonsense": True}).status_code == 401


def test_admins_search_by_user_end_user_session_and_text(logged: Logged) -> None:
    dave = logged.gw.create_key("acme", "dave")
    logged.chat(logged.acme, "Where is my parcel?", extra_headers={"x-strata-session": "s-1"})
    logged.chat(dave, "How do refunds work?", user="shopper-9")
    logged.chat(logged.acme, "And the parcel tracking number?",
                extra_headers={"x-strata-session": "s-1"})  # fmt: skip
    logged.wait_for_logs(3, tenant="acme")
    previews = lambda **p: [r["prompt_preview"] for r in logged.logs(**p)]  # noqa: E731
    assert previews(user="dave") == ["How do refunds work?"]
    assert previews(end_user="shopper-9") == ["How do refunds work?"]
    assert previews(session="s-1") == ["And the parcel tracking number?", "Where is my parcel?"]
    assert previews(q="parcel") == previews(session="s-1")
    assert previews(q="refunds", tenant="beta") == []
    first = logged.gw.admin("GET", "/logs", params={"limit": 2}).json()
    rest = logged.gw.admin("GET", "/logs", params={"limit": 2, "cursor": first["next_cursor"]})
    assert len(first["data"]) == 2 and len(rest.json()["data"]) == 1
    assert rest.json()["next_cursor"] is None


def test_the_log_routes_are_for_admins_with_clear_errors(logged: Logged) -> None:
    with logged.gw.http(logged.acme) as http:
        assert http.get("/admin/logs").status_code == 403
        assert http.put("/admin/logging/acme", json={"enabled": False}).status_code == 403
    with logged.gw.http() as http:
        refused = http.get("/admin/logs")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "dashboard_login_required"
    for params, param in (({"limit": 0}, "limit"), ({"cursor": "nope"}, "cursor"),
                          ({"since": "yesterday"}, "since")):  # fmt: skip
        reply = logged.gw.admin("GET", "/logs", params=params)
        assert reply.status_code == 400 and param in reply.json()["error"]["param"]
    assert logged.gw.admin("GET", "/logs/req-none").status_code == 404
    for path, params in (("/logs", {"q": "a\x00b"}), ("/logs/a%00b", {}), ("/logging/a%00b", {})):
        assert logged.gw.admin("GET", path, params=params).status_code == 400
    missing = logged.gw.admin("PUT", "/logging/nobody", json={"enabled": True})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "tenant"
    bad = logged.gw.admin("PUT", "/logging/acme", json={"enabled": True, "retention_days": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "retention_days"


def test_the_dashboard_session_may_read_logs_but_change_nothing(logged: Logged) -> None:
    with logged.gw.http(logged.gw.admin_key) as http:
        assert http.post("/admin/dashboard/session").status_code == 201
        cookies = http.cookies
    with logged.gw.http() as http:
        http.cookies = cookies
        assert http.get("/admin/logs").status_code == 200
        assert http.delete("/admin/logs", params={"tenant": "acme"}).status_code == 401


def test_the_settings_are_listed_with_the_default_retention(logged: Logged) -> None:
    listed = logged.gw.admin("GET", "/logging").json()
    assert listed["retention_days"] == 30
    assert [(s["tenant"], s["enabled"]) for s in listed["data"]] == [("acme", True)]
    assert logged.gw.admin("GET", "/logging/beta").json()["enabled"] is False


def test_purge_deletes_old_logs_only_and_delete_erases_a_tenant(logged: Logged) -> None:
    fresh = logged.chat(logged.acme)
    logged.wait_for_logs(1, tenant="acme")
    logged.sql(
        "INSERT INTO request_logs SELECT gen_random_uuid(), 'old', %s, tenant, user_name, key_id,"
        " end_user, session_id, route, model, stream, messages, response, truncated,"
        " prompt_tokens, completion_tokens, cost_usd, ttft_ms, duration_ms, status, error_code"
        " FROM request_logs",
        datetime.now(UTC) - timedelta(days=31),
    )
    assert len(logged.logs(tenant="acme")) == 2
    assert logged.gw.admin("POST", "/logs/purge").json() == {"deleted": 1}
    assert [r["request_id"] for r in logged.logs()] == [fresh]
    reply = logged.gw.admin("DELETE", "/logs", params={"tenant": "acme"})
    assert reply.json() == {"tenant": "acme", "logs_deleted": 1, "scores_deleted": 0}
    assert logged.logs() == []
    assert logged.sql("SELECT action FROM audit_log WHERE target = 'acme' ORDER BY id")[-1] == (
        "request_logs.delete",
    )
