"""Which of a model's upstreams may take a request, before any is tried.

Two filters, applied in this order:
- DPA: a call with `require_dpa` goes only to upstreams with `dpa: true` (else 403).
- supports: a request using an optional OpenAI field at a non-neutral value (`n=2`, `tools`,
  `response_format` json, ...) goes only to upstreams whose `supports` is None (forward
  everything) or names the field (else 400 with `param` = the field). Naming `tools` also covers
  `tool_choice` and `parallel_tool_calls`; naming `logprobs` covers `top_logprobs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strata.errors import InvalidRequestError, PermissionDeniedError
from strata.gateway.upstream.member import Member

# Optional fields and the values at which they change nothing (compared by type and value,
# so `logprobs: 0` on /completions is not mistaken for `False`).
NEUTRAL: Mapping[str, tuple[object, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "tools": ([],),
    "tool_choice": ("none",),
    "functions": ([],),
    "logit_bias": ({},),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
    "parallel_tool_calls": (True,),
    "response_format": ({"type": "text"},),
}
COVERED_BY = {"tool_choice": "tools", "parallel_tool_calls": "tools", "top_logprobs": "logprobs"}


def optional_fields_used(body: Mapping[str, Any]) -> list[str]:
    """The optional fields `body` sets to something other than a neutral value."""
    return [name for name, neutral in NEUTRAL.items() if not _neutral(body.get(name), neutral)]


def _neutral(value: object, neutral: tuple[object, ...]) -> bool:
    return value is None or any(type(value) is type(n) and value == n for n in neutral)


def honours(member: Member, field: str) -> bool:
    supports = member.upstream.supports
    return supports is None or field in supports or COVERED_BY.get(field, "") in supports


def with_dpa(model: str, members: Sequence[Member]) -> Sequence[Member]:
    """The members with a data-processing agreement; 403 naming the model when none has."""
    covered = [m for m in members if m.upstream.dpa]
    if not covered:
        raise PermissionDeniedError(
            f"Your organization requires a data-processing agreement (DPA), and no upstream "
            f"serving the model '{model}' has one; use another model or ask an admin to route "
            "it to an upstream with `dpa: true`.",
            code="dpa_required",
            param="model",
        )
    return covered


def supporting(model: str, members: Sequence[Member], body: Mapping[str, Any]) -> Sequence[Member]:
    """The members that honour every optional field `body` uses; 400 naming the first field
    none of them honours."""
    if all(m.upstream.supports is None for m in members):
        return members
    for field in optional_fields_used(body):
        honouring = [m for m in members if honours(m, field)]
        if not honouring:
            raise _unsupported(model, members, field)
        members = honouring
    return members


def _unsupported(model: str, members: Sequence[Member], field: str) -> InvalidRequestError:
    offers = "; ".join(
        f"{m.name} supports {', '.join(sorted(m.upstream.supports or ())) or 'no optional field'}"
        for m in members
    )
    return InvalidRequestError(
        f"'{field}' is not supported for the model '{model}': no upstream serving it honours "
        f"it ({offers}). Remove '{field}' or set it to its default.",
        code="unsupported_parameter",
        param=field,
    )
