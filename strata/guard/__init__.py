"""The guard: sanitization, prompt-injection detection, secret/PII redaction, canaries.

A pure function of text and policy (it imports no gateway, engine or pipeline). The gateway
calls `Guard.check_input` per request and `Guard.output_filter` per response; the pipeline calls
`Guard.scan_document` per chunk it indexes.
"""

from __future__ import annotations

from strata.guard.canary import Canary
from strata.guard.guard import Guard
from strata.guard.output import OutputFilter
from strata.guard.policy import GuardPolicy
from strata.guard.sanitize import SizeLimits
from strata.guard.verdict import Finding, GuardVerdict

__all__ = [
    "Canary",
    "Finding",
    "Guard",
    "GuardPolicy",
    "GuardVerdict",
    "OutputFilter",
    "SizeLimits",
]
