from __future__ import annotations

import json

from strata.bench.gateway.modes import MODES, PLAIN, STREAM


def test_request_bodies() -> None:
    plain, streamed = json.loads(PLAIN.request_body()), json.loads(STREAM.request_body())
    assert plain["stream"] is False and "stream_options" not in plain
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    assert plain["model"] != streamed["model"]


def test_modes_differ_in_model_and_prefix() -> None:
    assert len({m.model for m in MODES}) == len({m.prefix for m in MODES}) == len(MODES)
