from __future__ import annotations

from strata.guard.canary import Canary


def test_derived_canary_is_stable_and_secret_dependent() -> None:
    assert Canary.derive("a") == Canary.derive("a") != Canary.derive("b")
    assert Canary.derive("a").token.startswith("cnry-") and len(Canary.derive("a").token) == 21


def test_found_in_forgiving_forms() -> None:
    canary = Canary("cnry-0123456789abcdef")
    assert canary.token in canary.instruction()
    for leaked in (
        "CNRY-0123456789ABCDEF",
        "cnry 0123 4567 89ab cdef",
        "cnry-01234\u200b56789abcdef",
    ):
        assert canary.found_in(f"the marker is {leaked}.")
    assert not canary.found_in("cnry-0123456789abcdee")
    assert Canary.random() != Canary.random()
