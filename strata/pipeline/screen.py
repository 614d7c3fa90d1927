"""Indirect prompt injection: the guard's document scan on every chunk bound for the index.

`DocumentScreen` judges one chunk's text under its tenant's guard policy (`guard.default`
merged with `guard.tenants.<tenant>`); the policy's `documents` action decides:

- `block`: a flagged chunk is *quarantined*: stored with its vector and verdict, never
  retrieved (neither by `/v1/retrieve` nor into a RAG prompt) until an admin releases it
  (`strata pipeline quarantine release`);
- `flag`: a flagged chunk is stored with its score and categories and retrieved as usual; the
  RAG prompt labels it as flagged;
- `off`: chunks are not scanned.

The indexer scans only chunk texts it has no stored verdict for (new or changed texts, by
content hash, like embeddings); a stored verdict is judged again under the tenant's current
policy, so a policy change reaches unchanged chunks on their next write. The screen knows
nothing of the store; with `guard.enabled: false` there is no screen and nothing is scanned.
"""

from __future__ import annotations

from dataclasses import replace

from strata.config import GuardSettings
from strata.guard import Guard
from strata.guard.policy import TenantPolicies
from strata.pipeline.index import ChunkVerdict


class DocumentScreen:
    """One `Guard` and every tenant's policy; stateless per call, shared by all sources."""

    def __init__(self, guard: Guard, policies: TenantPolicies) -> None:
        self._guard = guard
        self._policies = policies

    @classmethod
    def from_settings(cls, settings: GuardSettings, guard: Guard | None = None) -> DocumentScreen:
        """Raises `ConfigError` naming a bad policy setting."""
        policies = TenantPolicies.from_mappings(settings.default, settings.tenants)
        return cls(guard or Guard(), policies)

    def scans(self, tenant: str) -> bool:
        """Whether `tenant`'s chunks are scanned at all (policy `documents` is not `off`)."""
        return self._policies.of(tenant).documents != "off"

    def scan(self, tenant: str, text: str) -> ChunkVerdict:
        """The verdict on one chunk text of `tenant`."""
        verdict = self._guard.scan_document(text, self._policies.of(tenant))
        return self.judge(tenant, ChunkVerdict(verdict.score, verdict.categories, False))

    def judge(self, tenant: str, verdict: ChunkVerdict) -> ChunkVerdict:
        """`verdict` with its quarantine decided by `tenant`'s current policy: flagged under
        `documents: block` and not released by an admin."""
        block = self._policies.of(tenant).documents == "block"
        quarantined = block and verdict.flagged and not verdict.released
        return replace(verdict, quarantined=quarantined)


def screen_for(settings: GuardSettings) -> DocumentScreen | None:
    """The pipeline's screen, or None with the guard off (`guard.enabled: false`)."""
    return DocumentScreen.from_settings(settings) if settings.enabled else None
