"""Who is calling: the verified identity behind an API key and the limits that apply to it.

`Principal` is what authentication hands to every later step of the gateway pipeline; it is
immutable and carries no secrets. `Limits` is one set of ceilings (per key, user or tenant);
`None` means unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["admin", "user"]
ScopeKind = Literal["key", "user", "tenant"]


@dataclass(frozen=True)
class Limits:
    """Ceilings for one key, user or tenant; `None` means no limit of that kind."""

    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (prompt + completion) per minute
    concurrent: int | None = None  # requests in flight at once
    daily_tokens: int | None = None  # per UTC day
    monthly_tokens: int | None = None  # per UTC calendar month
    daily_cost_usd: float | None = None
    monthly_cost_usd: float | None = None

    @property
    def is_unlimited(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class Scope:
    """One thing whose limits a request counts against, e.g. ("user", "acme/alice")."""

    kind: ScopeKind
    id: str  # stable and unique within its kind: key id, "tenant/user", tenant name
    limits: Limits


@dataclass(frozen=True)
class Principal:
    """The caller behind a verified API key."""

    key_id: str
    tenant: str
    user: str
    role: Role
    key_limits: Limits = field(default_factory=Limits)
    user_limits: Limits = field(default_factory=Limits)
    tenant_limits: Limits = field(default_factory=Limits)
    models: frozenset[str] | None = None  # None: every model
    collections: frozenset[str] | None = None  # None: every RAG collection
    require_dpa: bool = False  # the tenant's data may only go to upstreams with a DPA
    expires_at: datetime | None = None

    @property
    def user_scope_id(self) -> str:
        return f"{self.tenant}/{self.user}"

    def scopes(self) -> tuple[Scope, ...]:
        """Every scope a request by this principal counts against, narrowest first."""
        return (
            Scope("key", self.key_id, self.key_limits),
            Scope("user", self.user_scope_id, self.user_limits),
            Scope("tenant", self.tenant, self.tenant_limits),
        )

    def may_use_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def may_use_collection(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections
