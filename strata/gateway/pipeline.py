"""The gateway's request pipeline, one small step each, in the order a request meets them:

    authenticate → parse & validate → model access → guard (sanitize) → reserve limits
      → route & dispatch (retries, failover) → relay → settle usage → ledger row
      (and, for a tenant an admin opted in, its request log)

Every step raises a `StrataError` subclass for what a caller did wrong; the HTTP edge maps it.
A reservation taken is always either settled (with the real usage) or released (on failure):
`Finisher` runs exactly once per admitted call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from strata.config import Settings
from strata.errors import (
    InvalidRequestError,
    PermissionDeniedError,
    RequestError,
    StrataError,
)
from strata.fairness import FairnessTag
from strata.gateway import relay
from strata.gateway.answer_guard import AnswerGuard
from strata.gateway.auth import Authenticator
from strata.gateway.body import Endpoint, GenerationBody, parse_generation, parse_json
from strata.gateway.call import Call, TokenUsage
from strata.gateway.guard_step import GuardStep
from strata.gateway.hot_routes import read_body
from strata.gateway.ledger import LedgerWriter, UsageRecord
from strata.gateway.limits import Ask, Limiter, Reservation, Usage
from strata.gateway.principal import Principal
from strata.gateway.rag import Search, augment, rag_request
from strata.gateway.request_id import HEADER as REQUEST_ID_HEADER
from strata.gateway.request_id import request_id
from strata.gateway.request_logs.service import RequestLogs
from strata.gateway.request_logs.transcript import Transcript
from strata.gateway.sanitize import check_texts
from strata.gateway.tokens import estimate_prompt_tokens
from strata.gateway.upstream import Router, UpstreamCall
from strata.guard import GuardVerdict
from strata.http_disconnect import unless_disconnected
from strata.telemetry.alerts import AlertService, Outcome
from strata.telemetry.gateway_metrics import GatewayMetrics, RequestUsage
from strata.telemetry.otel import CallOutcome, GatewayTelemetry, RequestTrace, stage
from strata.telemetry.pricing import PriceTable

logger = logging.getLogger(__name__)
PATHS: Mapping[Endpoint, str] = {"chat": "/chat/completions", "completions": "/completions"}
ROUTES: Mapping[Endpoint, str] = {e: "/v1" + path for e, path in PATHS.items()}


@dataclass(frozen=True)
class GatewayParts:
    """Everything the pipeline composes; built and closed by `strata.gateway.runtime`."""

    settings: Settings
    auth: Authenticator
    limiter: Limiter
    router: Router
    ledger: LedgerWriter
    prices: PriceTable
    search: Search | None = None  # retrieval for RAG chat; None: `rag` requests are refused
    metrics: GatewayMetrics | None = None
    guard: GuardStep | None = None  # None: only the hidden-character check runs
    otel: GatewayTelemetry | None = None  # None: OpenTelemetry is off
    alerts: AlertService | None = None  # None: no alert rules run here
    request_logs: RequestLogs | None = None  # None: no request is logged


class Gateway:
    """Runs one generation request through the pipeline."""

    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts
        self._gateway = parts.settings.gateway
        self._default_max_tokens = parts.settings.limits.default_max_tokens

    async def authenticate(self, request: Request) -> Principal:
        return await self.parts.auth.principal(request.headers.get("authorization"))

    async def generate(self, endpoint: Endpoint, request: Request) -> Response:
        otel = self.parts.otel
        trace = None if otel is None else otel.trace(request.headers, ROUTES[endpoint])
        if trace is None:
            return await self._generate(endpoint, request, None)
        try:
            return await self._generate(endpoint, request, trace)
        except BaseException as exc:
            trace.failed(exc)
            raise

    async def _generate(
        self, endpoint: Endpoint, request: Request, trace: RequestTrace | None
    ) -> Response:
        received = time.perf_counter()  # the call's TTFT and duration run from here
        rid = request_id(request.headers.get(REQUEST_ID_HEADER))
        with stage(trace, "auth"):
            principal = await self.authenticate(request)
        if trace is not None:
            trace.identify(principal.tenant)
        raw = await read_body(request, int(self._gateway.max_body_bytes))
        body = parse_generation(endpoint, parse_json(raw), self._max_messages)
        model = self._model_for(principal, body.model)
        with stage(trace, "guard"):
            # In a worker thread: a text the cheap first stage finds suspicious goes on to the
            # MiniLM stage (tens of milliseconds), which must not stall the event loop.
            if self.parts.guard is None:
                body, verdict = self._guarded(body, principal)
            else:
                body, verdict = await asyncio.to_thread(self._guarded, body, principal)
        transcript = self._transcript(request, principal, body)
        body = await self._augmented(body, principal, trace)
        call = Call(rid, principal, model, estimate_prompt_tokens(body), self._max_tokens(body),
                    started=received, route=ROUTES[endpoint], guard=verdict,
                    trace=trace)  # fmt: skip
        call.transcript = transcript
        with stage(trace, "limits"):
            finish = await self.admit(call, call.prompt_estimate, call.max_tokens)
        return await self._dispatch(request, body, call, finish)

    def _guarded(
        self, body: GenerationBody, principal: Principal
    ) -> tuple[GenerationBody, GuardVerdict | None]:
        """The guard step: the tenant's policy (block, redact, flag) on the request's texts."""
        if self.parts.guard is None:
            check_texts(body.texts)
            return body, None
        try:
            guarded, verdict = self.parts.guard.check(body, principal.tenant)
        except StrataError as exc:
            if self.parts.metrics is not None:
                self.parts.metrics.guarded(exc.code or exc.error_type)
            raise
        if self.parts.metrics is not None:
            for finding in verdict.findings:
                self.parts.metrics.guarded(f"{finding.detector}:{finding.action}")
        return guarded, verdict

    def _transcript(
        self, request: Request, principal: Principal, body: GenerationBody
    ) -> Transcript | None:
        """The call's request log, to fill while it runs: None unless its tenant is logged."""
        logs = self.parts.request_logs
        return None if logs is None else logs.transcript(request.headers, principal.tenant, body)

    def _answer_guard(self, call: Call) -> AnswerGuard | None:
        if self.parts.guard is None:
            return None
        return AnswerGuard(self.parts.guard.output_filter(call.principal.tenant))

    async def _augmented(
        self, body: GenerationBody, principal: Principal, trace: RequestTrace | None
    ) -> GenerationBody:
        """With a `rag` extension: the caller's documents put into the prompt as data."""
        rag = rag_request(body)
        if rag is None:
            return body
        if self.parts.search is None:
            raise InvalidRequestError("rag: retrieval is not enabled on this gateway.", param="rag")
        with stage(trace, "retrieval"):
            return await augment(body, rag, principal, self.parts.search)

    @property
    def _max_messages(self) -> int:
        return self._gateway.max_messages

    def _model_for(self, principal: Principal, public_name: str) -> str:
        """The served model behind `public_name` (404 if none), if this key may use it (403)."""
        served = self.parts.router.resolve(public_name)
        if not (principal.may_use_model(public_name) or principal.may_use_model(served)):
            raise PermissionDeniedError(
                f"This API key may not use the model '{public_name}'; ask an admin to add it "
                "to the key's models.",
                code="model_not_allowed",
                param="model",
            )
        return served

    def _max_tokens(self, body: GenerationBody) -> int:
        return body.max_tokens or self._default_max_tokens

    def _fair_share(self, principal: Principal) -> FairnessTag:
        """Whose share of busy upstreams a call draws on: its tenant's (`routing.fairness`)."""
        weight = self.parts.settings.routing.fairness.weight_of(principal.tenant)
        return FairnessTag(principal.tenant, weight)

    async def _dispatch(
        self, request: Request, body: GenerationBody, call: Call, finish: Finisher
    ) -> Response:
        upstream_call = UpstreamCall(
            path=PATHS[body.endpoint],
            body=body.upstream_body(call.model, call.max_tokens),
            stream=body.stream,
            request_id=call.request_id,
            deadline=asyncio.get_running_loop().time() + self._gateway.request_timeout_s,
            require_dpa=call.principal.require_dpa,
            trace_headers=() if call.trace is None else call.trace.upstream_headers(call.model),
            fairness=self._fair_share(call.principal),
            reserved_tokens=call.prompt_estimate + call.max_tokens,
        )
        try:
            reply = await unless_disconnected(
                request, self.parts.router.dispatch(call.model, upstream_call)
            )
        except BaseException as exc:
            await finish.failed(call, exc)
            raise
        if reply is None:  # the client went away before the upstream answered
            call.status, call.error_code = relay.CLIENT_CLOSED_REQUEST, "client_closed"
            await finish(call)
            return Response(status_code=relay.CLIENT_CLOSED_REQUEST)
        call.upstream = reply.upstream
        headers = {REQUEST_ID_HEADER: call.request_id}
        guard = self._answer_guard(call)
        if body.stream and reply.events is not None:
            return relay.stream_response(call, reply, body.include_usage, finish, headers, guard)
        try:
            return relay.json_response(call, reply, headers, guard)
        finally:
            await reply.aclose()
            await finish(call)

    async def admit(self, call: Call, prompt_tokens: int, completion_tokens: int = 0) -> Finisher:
        """Reserve the call's worst case (priced for `call.model`) against every limit of the
        caller, or raise the limit's error; the returned finisher settles or releases it and
        writes the ledger row."""
        cost = self.parts.prices.cost(call.model, prompt_tokens, completion_tokens)
        ask = Ask(requests=1, tokens=prompt_tokens + completion_tokens, cost_usd=cost)
        try:
            reservation = await self.parts.limiter.reserve(call.principal.scopes(), ask)
        except RequestError as exc:
            if self.parts.metrics is not None:
                self.parts.metrics.rejected(exc.code or exc.error_type)
            raise
        return Finisher(self, reservation)

    def record(self, call: Call, usage: TokenUsage, cost: float) -> None:
        """The finished call's ledger row and metrics (and its trace's end)."""
        if self.parts.otel is not None:
            self.parts.otel.finished(_outcome(call, usage), call.trace)
        if self.parts.metrics is not None:
            ttft = call.ttft_ms
            self.parts.metrics.request(
                call.route,
                call.status,
                call.principal.tenant,
                RequestUsage(usage.prompt_tokens, usage.completion_tokens, cost,
                             call.duration_ms / 1000, None if ttft is None else ttft / 1000),
            )  # fmt: skip
        if self.parts.alerts is not None:
            self.parts.alerts.observe(_alert_outcome(call, usage.total, cost))
        self.parts.ledger.record(
            UsageRecord(
                request_id=call.request_id,
                at=datetime.now(UTC),
                tenant=call.principal.tenant,
                user=call.principal.user,
                key_id=call.principal.key_id,
                model=call.model,
                upstream=call.upstream,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                ttft_ms=call.ttft_ms,
                duration_ms=call.duration_ms,
                status=call.status,
                error_code=call.error_code,
                cost_usd=cost,
                guard_score=call.guard.score if call.guard else None,
                guard_flags=_flags(call),
            )
        )
        if self.parts.request_logs is not None:
            self.parts.request_logs.record(call, usage, cost)


def _outcome(call: Call, usage: TokenUsage) -> CallOutcome:
    ttft = call.ttft_ms
    return CallOutcome(
        call.route, call.model, call.upstream, call.principal.tenant, call.request_id,
        call.status, call.error_code, usage.prompt_tokens, usage.completion_tokens,
        usage.reported, call.duration_ms / 1000, None if ttft is None else ttft / 1000,
    )  # fmt: skip


def _alert_outcome(call: Call, tokens: int, cost: float) -> Outcome:
    ttft, who = call.ttft_ms, call.principal
    return Outcome(call.route, call.status, who.tenant, who.user_scope_id,
                   call.duration_ms / 1000, None if ttft is None else ttft / 1000, cost, tokens,
                   who.user_limits, who.tenant_limits)  # fmt: skip


def _flags(call: Call) -> str | None:
    """The guard's findings, request and answer, for the ledger: `detector:kind:action`."""
    found = [*(call.guard.findings if call.guard else ()), *call.output_findings]
    if not found:
        return None
    return ",".join(sorted({f"{f.detector}:{f.kind}:{f.action}" for f in found}))


class Finisher:
    """Settles or releases one reservation and writes the ledger row, exactly once."""

    def __init__(self, gateway: Gateway, reservation: Reservation) -> None:
        self._gateway = gateway
        self._reservation = reservation
        self._done = False

    async def __call__(self, call: Call) -> None:
        if self._done:
            return
        self._done = True
        limiter = self._gateway.parts.limiter
        usage = call.final_usage()
        cost = self._gateway.parts.prices.cost(
            call.model, usage.prompt_tokens, usage.completion_tokens,
            upstream=call.upstream, replica_seconds=usage.replica_seconds,
        )  # fmt: skip
        if call.status >= 400 and call.usage is None and call.chunks == 0:
            await limiter.release(self._reservation)  # nothing was generated: no charge
        else:
            await limiter.settle(self._reservation, Usage(tokens=usage.total, cost_usd=cost))
        self._gateway.record(call, usage, cost)

    async def failed(self, call: Call, exc: BaseException) -> None:
        if isinstance(exc, StrataError):
            call.status, call.error_code = exc.status_code, exc.code or exc.error_type
        else:
            call.status, call.error_code = relay.CLIENT_CLOSED_REQUEST, "cancelled"
        await self(call)
