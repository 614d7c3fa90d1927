"""The gateway: strata's one public front door (`strata serve`).

A request passes, in order: auth → limits & quotas (reserve) → guard → route → upstream →
settle → ledger. The gateway composes engine, guard, pipeline and telemetry; nothing imports it.
"""
