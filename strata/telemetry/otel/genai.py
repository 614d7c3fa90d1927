"""The OpenTelemetry GenAI semantic conventions strata emits: instrument and attribute names,
the bucket boundaries the conventions recommend, and the two sets of instruments.

The model server (the engine) records `gen_ai.server.time_to_first_token`,
`gen_ai.server.time_per_output_token` and `gen_ai.server.request.duration`; the gateway, a
client of its upstreams, records `gen_ai.client.token.usage` and
`gen_ai.client.operation.duration`. Names follow the conventions' development status as of
semantic-conventions 1.37+ (`gen_ai.provider.name` replaced `gen_ai.system`).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.metrics import Meter
from opentelemetry.util.types import AttributeValue

Attributes = Mapping[str, AttributeValue]

# Instruments.
TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token"
TIME_PER_OUTPUT_TOKEN = "gen_ai.server.time_per_output_token"
REQUEST_DURATION = "gen_ai.server.request.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
OPERATION_DURATION = "gen_ai.client.operation.duration"

# Attributes.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

# Values: operations by OpenAI route, and strata as the provider of its own engine.
CHAT = "chat"
TEXT_COMPLETION = "text_completion"
OPERATIONS: Mapping[str, str] = {"/v1/chat/completions": CHAT, "/v1/completions": TEXT_COMPLETION}
STRATA = "strata"

# The boundaries the conventions say each histogram SHOULD have (seconds, or tokens).
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                  5.0, 7.5, 10.0)  # fmt: skip
TPOT_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS_S = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                      40.96, 81.92)  # fmt: skip
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ... 67,108,864


class ServerMetrics:
    """The model server's instruments, recorded once per finished request."""

    def __init__(self, meter: Meter) -> None:
        self._ttft = meter.create_histogram(
            TIME_TO_FIRST_TOKEN, unit="s",
            description="Time to generate first token for successful responses.",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS_S,
        )  # fmt: skip
        self._tpot = meter.create_histogram(
            TIME_PER_OUTPUT_TOKEN, unit="s",
            description="Time per output token generated after the first token for successful "
            "responses.",
            explicit_bucket_boundaries_advisory=TPOT_BUCKETS_S,
        )  # fmt: skip
        self._duration = meter.create_histogram(
            REQUEST_DURATION, unit="s",
            description="Generative AI server request duration such as time-to-last byte or "
            "last output token.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )  # fmt: skip

    def record(
        self,
        attributes: Attributes,
        duration_s: float,
        ttft_s: float | None,
        output_tokens: int,
        error_type: str | None = None,
    ) -> None:
        """A finished request: its duration always; TTFT and time per output token (the
        decode time over the tokens after the first) only when it succeeded."""
        if error_type is not None:
            self._duration.record(duration_s, {**attributes, ERROR_TYPE: error_type})
            return
        self._duration.record(duration_s, attributes)
        if ttft_s is None:
            return
        self._ttft.record(ttft_s, attributes)
        if output_tokens > 1:
            self._tpot.record((duration_s - ttft_s) / (output_tokens - 1), attributes)


class ClientMetrics:
    """The instruments of a client of model servers (the gateway), once per answered call."""

    def __init__(self, meter: Meter) -> None:
        self._tokens = meter.create_histogram(
            TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )  # fmt: skip
        self._duration = meter.create_histogram(
            OPERATION_DURATION, unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )  # fmt: skip

    def record(
        self,
        attributes: Attributes,
        duration_s: float,
        usage: tuple[int, int] | None,
        error_type: str | None = None,
    ) -> None:
        """`usage` is (input, output) tokens as the server reported them; None when it did not
        report them (the conventions forbid recording an estimate)."""
        outcome = attributes if error_type is None else {**attributes, ERROR_TYPE: error_type}
        self._duration.record(duration_s, outcome)
        if usage is not None:
            self._tokens.record(usage[0], {**attributes, TOKEN_TYPE: "input"})
            self._tokens.record(usage[1], {**attributes, TOKEN_TYPE: "output"})
