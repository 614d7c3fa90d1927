"""Start-time fair queueing by tokens (`strata.fairness`): the order, the shares, no banked
credit, and the headers that carry a key and weight."""

from __future__ import annotations

import pytest

from strata.errors import InvalidRequestError
from strata.fairness import (
    DEFAULT_KEY,
    KEY_HEADER,
    WEIGHT_HEADER,
    FairnessTag,
    FairQueue,
    VirtualClock,
    opaque_key,
    tag_from_headers,
)


def _serve(queue: FairQueue[str], tokens: int = 10, weights: dict[str, float] | None = None) -> str:
    """Pop the next item and charge its key `tokens` (what serving it costs)."""
    key, item = queue.pop()
    queue.clock.charge(key, tokens, (weights or {}).get(key, 1.0))
    return item


def test_one_key_is_first_come_first_served_and_push_front_goes_first() -> None:
    queue: FairQueue[str] = FairQueue()
    for name in ("a", "b", "c"):
        queue.push("k", name)
    assert _serve(queue) == "a"
    queue.push_front("k", "a-again")
    assert [_serve(queue) for _ in range(3)] == ["a-again", "b", "c"]
    assert len(queue) == 0 and queue.peek() is None


def test_a_flood_does_not_starve_a_key_that_arrives_later() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(100):
        queue.push("heavy", f"h{i}")
    for _ in range(5):
        _serve(queue)
    queue.push("light", "l0")
    queue.push("light", "l1")
    order = [_serve(queue) for _ in range(6)]
    assert order.index("l0") <= 1 and order.index("l1") <= 3  # alternating, not behind 95
    assert queue.num_keys == 1


def test_weights_two_to_one_give_two_to_one_token_shares() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(300):
        queue.push("gold", f"g{i}")
        queue.push("bronze", f"b{i}")
    weights = {"gold": 2.0, "bronze": 1.0}
    served = [_serve(queue, weights=weights) for _ in range(300)]
    gold = sum(item.startswith("g") for item in served)
    assert gold / (300 - gold) == pytest.approx(2.0, rel=0.05)


def test_unequal_costs_are_shared_by_tokens_not_by_requests() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(200):
        queue.push("long", f"L{i}")
        queue.push("short", f"s{i}")
    tokens = {"long": 100, "short": 10}
    used = {"long": 0, "short": 0}
    for _ in range(110):
        key, _item = queue.pop()
        queue.clock.charge(key, tokens[key], 1.0)
        used[key] += tokens[key]
    assert used["long"] == pytest.approx(used["short"], rel=0.1)


def test_an_idle_key_rejoins_at_the_current_virtual_time_without_banked_credit() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(50):
        queue.push("busy", f"x{i}")
    for _ in range(40):  # "idle" sent nothing all this time
        _serve(queue)
    for i in range(20):
        queue.push("idle", f"i{i}")
    order = [_serve(queue) for _ in range(10)]
    assert sum(item.startswith("x") for item in order) >= 4  # it shares at once, no catch-up


def test_ties_go_to_the_earliest_arrival_across_keys() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("b", "first")
    queue.push("a", "second")
    assert queue.peek() == "first"


def test_remove_takes_an_item_out_of_its_key() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "x")
    queue.push("a", "y")
    queue.remove("a", "x")
    assert list(queue) == ["y"]
    with pytest.raises(ValueError):
        queue.remove("b", "y")
    with pytest.raises(IndexError):
        FairQueue[str]().pop()


def test_the_clock_forgets_keys_that_fell_behind_and_treats_them_as_new() -> None:
    clock = VirtualClock()
    for i in range(500):
        clock.charge(f"k{i}", 1, 1.0)
    clock.charge("big", 10_000, 1.0)
    clock.start("big")  # now jumps past every small key
    assert len(clock._finish) < 500
    assert clock.start_tag("k3") == clock.now == clock.start_tag("never-seen")


# -- headers --------------------------------------------------------------------------------------


def test_a_tag_travels_as_an_opaque_key_and_a_weight() -> None:
    headers = dict(FairnessTag("acme", 2.5).wire_headers())
    assert headers == {KEY_HEADER.lower(): opaque_key("acme"), WEIGHT_HEADER.lower(): "2.5"}
    assert "acme" not in headers[KEY_HEADER.lower()] and len(opaque_key("acme")) == 16
    assert opaque_key("acme") != opaque_key("acme2")
    assert tag_from_headers(headers) == FairnessTag(opaque_key("acme"), 2.5)


def test_without_headers_the_fallback_then_the_default_key() -> None:
    assert tag_from_headers({}, fallback_key="alice") == FairnessTag("alice", 1.0)
    assert tag_from_headers({}) == FairnessTag(DEFAULT_KEY, 1.0)
    assert tag_from_headers({KEY_HEADER: "t1"}, fallback_key="alice").key == "t1"


@pytest.mark.parametrize("raw", ["0", "-1", "101", "nan", "inf", "two", ""])
def test_a_bad_weight_is_refused_naming_the_header(raw: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tag_from_headers({WEIGHT_HEADER.lower(): raw})
    assert caught.value.param == WEIGHT_HEADER and caught.value.status_code == 400
    assert "(0, 100]" in caught.value.message


@pytest.mark.parametrize("raw", ["", "x" * 257, "tab\there"])
def test_a_bad_key_is_refused_naming_the_header(raw: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tag_from_headers({KEY_HEADER.lower(): raw})
    assert caught.value.param == KEY_HEADER
