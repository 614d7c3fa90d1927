"""OpenTelemetry for strata, off by default (`telemetry.otel.*`): traces of each request's
stages and the GenAI semantic-convention metrics, exported over OTLP.

Modules: `providers` (the SDK's tracer and meter providers and their OTLP exporters, built
from the settings and owned, never global), `genai` (the conventions' names, buckets and
instruments), `gateway_trace` (the gateway's request trace and client metrics) and
`engine_trace` (the engine server's spans and server metrics). Like the rest of
`strata.telemetry`, nothing here imports the gateway or the engine.
"""

from strata.telemetry.otel.engine_trace import EngineTelemetry
from strata.telemetry.otel.gateway_trace import (
    CallOutcome,
    GatewayTelemetry,
    RequestTrace,
    Upstream,
    stage,
)
from strata.telemetry.otel.providers import Otel

__all__ = [
    "CallOutcome",
    "EngineTelemetry",
    "GatewayTelemetry",
    "Otel",
    "RequestTrace",
    "Upstream",
    "stage",
]
