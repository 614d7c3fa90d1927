"""The guard step of the request pipeline: each tenant's policy applied to a request's texts.

It replaces the interim sanitize step: hidden characters are still refused with a 400 naming
the field, and beyond that the guard scores prompt injection, finds secrets and PII, and
blocks (400 `content_policy`), redacts or flags per the tenant's policy. System and developer
messages are the deployment's own words: sanitized and scanned for secrets, never scored for
injection. What the guard changed is what the upstream receives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from strata.config import GuardSettings
from strata.gateway.body import GenerationBody
from strata.guard import Guard, GuardPolicy, GuardVerdict, OutputFilter
from strata.guard.policy import TenantPolicies


class GuardStep:
    """One `Guard` and a policy per tenant, built and checked at start-up."""

    def __init__(self, settings: GuardSettings, guard: Guard | None = None) -> None:
        self._guard = guard or Guard()
        self._policies = TenantPolicies.from_mappings(settings.default, settings.tenants)

    def warm_up(self) -> None:
        self._guard.warm_up()

    def policy(self, tenant: str) -> GuardPolicy:
        return self._policies.of(tenant)

    def output_filter(self, tenant: str) -> Callable[[], OutputFilter]:
        """A maker of fresh output filters (one per answer choice) under `tenant`'s policy."""
        policy = self.policy(tenant)
        return lambda: self._guard.output_filter(policy)

    def check(self, body: GenerationBody, tenant: str) -> tuple[GenerationBody, GuardVerdict]:
        """The body to forward (redacted where the policy says) and the verdict; raises the
        400 of a blocked request."""
        verdict = self._guard.check_input(body.texts, self.policy(tenant), trusted=body.trusted)
        verdict.raise_if_blocked()
        if not verdict.changed:
            return body, verdict
        return with_texts(body, dict(verdict.texts)), verdict


def with_texts(body: GenerationBody, texts: Mapping[str, str]) -> GenerationBody:
    """`body` with the texts at the given field paths replaced in what is forwarded."""
    raw = _copy_path_parents(body.raw, texts)
    for path, text in texts.items():
        _set(raw, path.split("."), text)
    return replace(body, raw=raw, texts=tuple((p, texts.get(p, t)) for p, t in body.texts))


def _copy_path_parents(raw: dict[str, Any], texts: Mapping[str, str]) -> dict[str, Any]:
    """A copy of `raw` deep enough that setting the given paths leaves the caller's dict as
    it was (messages and prompts are copied; other fields are shared)."""
    copied = dict(raw)
    for key in ("messages", "prompt"):
        if any(p.split(".")[0] == key for p in texts) and isinstance(raw.get(key), list):
            copied[key] = [_shallow(item) for item in raw[key]]
    return copied


def _shallow(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: (list(map(_shallow, v)) if isinstance(v, list) else v) for k, v in item.items()}
    return item


def _set(node: Any, path: list[str], text: str) -> None:
    *parents, last = path
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = text
    else:
        node[last] = text
