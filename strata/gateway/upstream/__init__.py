"""Talking to model endpoints: route a model name to its upstreams, retry, fail over.

The gateway builds one `Router` (`Router.from_settings(settings, engine=EngineBinding(...))`),
`start()`s it, and for each request calls `dispatch(model, UpstreamCall(...))`, which returns an
`UpstreamReply` (always `aclose()` it) or raises a `StrataError`. `models()`, `resolve()` and
`health_snapshot()` serve `/v1/models`, access checks and `/readyz`.

Modules, outside in: `router` (dispatch, attempts) with its policies (`eligibility`, `policy`,
`breaker`, `health`, `streaming`); `prefix_routing`, prefix-aware routing among strata engines
(`affinity` the policy, `kv_index` and `kv_feed` what each engine caches, `prompt_blocks` a
prompt's block hashes); `upstreams` (one interface, two kinds); the transports `http_client`
and `asgi`, which share `response`; `sse` for event streams.
"""

from strata.gateway.upstream.member import UpstreamHealth
from strata.gateway.upstream.router import Router, upstream_settings
from strata.gateway.upstream.upstreams import EngineBinding, UpstreamCall, UpstreamReply

__all__ = [
    "EngineBinding",
    "Router",
    "UpstreamCall",
    "UpstreamHealth",
    "UpstreamReply",
    "upstream_settings",
]
