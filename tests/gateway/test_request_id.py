from __future__ import annotations

from strata.gateway.request_id import request_id


def test_plain_caller_ids_are_kept() -> None:
    assert request_id("abc-123.x:y_z") == "abc-123.x:y_z"


def test_missing_or_unsafe_ids_are_replaced() -> None:
    for given in (None, "", "a b", "x" * 129, "evil\r\nSet-Cookie: y", "ünï"):
        new = request_id(given)
        assert new.startswith("req-") and new != given
    assert request_id(None) != request_id(None)
