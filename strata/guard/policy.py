"""Per-tenant guard policy: one action per detector, and the thresholds.

Actions: `block` refuses the request (400 `content_policy` naming the field) or stops an output
stream; `redact` replaces the span and passes; `flag` passes unchanged and records the finding;
`off` skips the detector. Injection has no span to redact, so `redact` is refused for it.
The gateway builds one `GuardPolicy` per tenant from config; the guard never reads config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from strata.errors import ConfigError
from strata.guard.sanitize import HiddenAction, SizeLimits

Action = Literal["block", "redact", "flag", "off"]
ACTIONS: tuple[str, ...] = get_args(Action)


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard does with each detector's findings, for one tenant."""

    injection: Action = "block"
    injection_threshold: float | None = None  # probability; None: the artifact's calibrated one
    secrets: Action = "redact"
    pii: Action = "flag"
    canary: Action = "block"
    hidden_characters: HiddenAction = "refuse"
    limits: SizeLimits = field(default_factory=SizeLimits)
    documents: Action = "flag"  # indirect injection in an indexed chunk: block = quarantine

    def __post_init__(self) -> None:
        for name in ("injection", "secrets", "pii", "canary", "documents"):
            if getattr(self, name) not in ACTIONS:
                raise ConfigError(f"guard.{name}: {getattr(self, name)!r} is not one of {ACTIONS}")
        if self.injection == "redact":
            raise ConfigError("guard.injection: 'redact' has no meaning; use block, flag or off")
        if self.hidden_characters not in ("refuse", "strip"):
            raise ConfigError("guard.hidden_characters: must be 'refuse' or 'strip'")
        threshold = self.injection_threshold
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ConfigError(f"guard.injection_threshold: {threshold} is not in (0, 1)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> GuardPolicy:
        """A policy from a config mapping; unknown keys raise `ConfigError` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"guard: unknown setting(s) {unknown}; known: {sorted(known)}")
        items = dict(values)
        if isinstance(items.get("limits"), Mapping):
            items["limits"] = SizeLimits(**items["limits"])
        return replace(cls(), **items)


@dataclass(frozen=True)
class TenantPolicies:
    """Each tenant's policy: its own settings merged over the default (config `guard.default`,
    `guard.tenants`), built and checked once. The gateway and the pipeline share it."""

    default: GuardPolicy
    tenants: Mapping[str, GuardPolicy]

    @classmethod
    def from_mappings(
        cls, default: Mapping[str, Any], tenants: Mapping[str, Mapping[str, Any]]
    ) -> TenantPolicies:
        """Raises `ConfigError` naming `guard.default` or `guard.tenants.<name>`."""
        return cls(
            _checked(default, "guard.default"),
            {n: _checked({**default, **v}, f"guard.tenants.{n}") for n, v in tenants.items()},
        )

    def of(self, tenant: str) -> GuardPolicy:
        return self.tenants.get(tenant, self.default)


def _checked(values: Mapping[str, Any], where: str) -> GuardPolicy:
    try:
        return GuardPolicy.from_mapping(values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
