"""The router: model name → group of upstreams → one reply, with retries and failover.

    dispatch(model, call):
      resolve alias → group (404) → DPA filter (403) → supports filter (400)
      → fair admission (waits its tenant's turn while every upstream is saturated) → order policy
      → attempts: each untried available upstream in order, then tried ones again after an
        exponential backoff; at most 1 + routing.retries attempts, all before the deadline

An attempt fails over on a transport failure before the answer's head (connect error, timeout,
dropped connection), on a 429 or 5xx, and, for streams, on any failure before the first event
with content (`streaming`). A 4xx other than 429 comes back as the reply, as the upstream sent
it. Once a reply is returned nothing is retried: a later stream failure raises `UpstreamError`
from its events.

When no attempt can succeed:
- `OverloadedError` (503, Retry-After) when no upstream could even be tried (all down or their
  breakers open: try again later), or when every attempt was turned away with 429/503.
- `UpstreamError` (502) when upstreams were tried and failed otherwise: code "upstream_timeout"
  when the deadline ended it, else "upstream_failed".

Health checks and breakers decide which upstreams are available; see `health` and `breaker`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial

from strata.config import RoutingSettings, Settings, UpstreamSettings
from strata.errors import ConfigError, NotFoundError, OverloadedError, UpstreamError
from strata.gateway.upstream import eligibility
from strata.gateway.upstream.admission import FairAdmission
from strata.gateway.upstream.breaker import CircuitBreaker
from strata.gateway.upstream.errors import AttemptFailed, DeadlineExceeded, TransportError
from strata.gateway.upstream.health import HealthMonitor
from strata.gateway.upstream.member import Member, UpstreamHealth
from strata.gateway.upstream.policy import (
    OrderPolicy,
    RetryPolicy,
    TierOrder,
    check_spot_fallback,
)
from strata.gateway.upstream.prefix_routing import PrefixRouting
from strata.gateway.upstream.streaming import RoutedEvents, hold_until_content
from strata.gateway.upstream.upstreams import (
    EngineBinding,
    Upstream,
    UpstreamCall,
    UpstreamReply,
    build_upstream,
)

logger = logging.getLogger(__name__)


class Router:
    """Routes calls for model names to upstreams. `start()` (health checks) inside the event
    loop that will dispatch, `aclose()` at shutdown. One event loop."""

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        routing: RoutingSettings,
        *,
        order: OrderPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        declared: Iterable[str] = (),
        prefix: PrefixRouting | None = None,
    ) -> None:
        """`declared`: models served by upstreams that come later (`set_upstreams`);
        `prefix`: prefix-aware routing among strata engines, around `order`."""
        _check_unique_names(upstreams)
        breaker = partial(CircuitBreaker, routing.breaker_failures, routing.breaker_reset_s, clock)
        self._breaker = breaker
        self.members = tuple(Member(up, breaker()) for up in upstreams)
        self.groups = {**{model: () for model in declared}, **_groups(self.members)}
        self.aliases = _checked_aliases(routing.aliases, self.groups)
        check_spot_fallback(self.groups)
        self.prefix = prefix or PrefixRouting(routing, {})
        self.order = self.prefix.around(order or TierOrder())
        self.retry = RetryPolicy.from_settings(routing)
        self.health = HealthMonitor(self.members, routing.health_interval_s)
        self.admission = FairAdmission(routing.fairness, self.groups)

    @classmethod
    def from_settings(cls, settings: Settings, engine: EngineBinding | None = None) -> Router:
        """Upstreams from `upstream_settings(settings)`; `engine` binds kind "engine". Those
        with `discover` only declare their models: a `Discovery` adds their replicas."""
        listed = upstream_settings(settings, engine)
        upstreams = [build_upstream(s, engine) for s in listed if s.discover is None]
        declared = [model for s in listed if s.discover is not None for model in s.models]
        prefix = PrefixRouting.from_settings(settings)
        return cls(upstreams, settings.routing, declared=declared, prefix=prefix)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.health.start()
        self.prefix.start(lambda: self.members)

    async def aclose(self) -> None:
        await self.prefix.aclose()
        await self.health.aclose()
        for member in self.members:
            await member.upstream.aclose()

    # -- names -----------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Every public model name: served names (config order), then aliases."""
        return [*self.groups, *self.aliases]

    def resolve(self, model: str) -> str:
        """The served model behind `model` (an alias or a served name); 404 if none."""
        served = self.aliases.get(model, model)
        if served not in self.groups:
            raise NotFoundError(
                f"The model '{model}' does not exist; available models: "
                f"{', '.join(self.models()) or 'none'}.",
                code="model_not_found",
                param="model",
            )
        return served

    def drain(self, name: str, draining: bool = True) -> UpstreamHealth:
        """Stop (or resume) sending new requests to upstream `name`; in-flight ones finish.
        The hook a cloud's preemption notice calls. `NotFoundError` for an unknown name."""
        member = next((m for m in self.members if m.name == name), None)
        if member is None:
            raise NotFoundError(
                f"No upstream named '{name}'; upstreams: {[m.name for m in self.members]}.",
                code="upstream_not_found",
            )
        member.draining = draining
        logger.warning("upstream %s %s", name, "draining" if draining else "back in rotation")
        return member.snapshot()

    def set_upstreams(self, upstreams: Sequence[Upstream]) -> list[Member]:
        """Dynamic membership (`discovery`): route to `upstreams` from now on. A member whose
        upstream object stays keeps its breaker, health and in-flight count; a new one is
        health-checked at once. A model no upstream serves any more keeps its (empty) group:
        503, not 404. Returns the members that left; the caller closes their upstreams."""
        _check_unique_names(upstreams)
        old = {id(m.upstream): m for m in self.members}
        self.members = tuple(old.get(id(u)) or Member(u, self._breaker()) for u in upstreams)
        self.groups = {**{model: () for model in self.groups}, **_groups(self.members)}
        self.health.follow(self.members)
        _follow_groups(self.admission, self.groups)
        return [m for m in old.values() if m not in self.members]

    def models_with_dpa(self) -> set[str]:
        """Served models that at least one upstream with a data-processing agreement serves."""
        return {name for name, group in self.groups.items() if any(m.upstream.dpa for m in group)}

    def health_snapshot(self) -> list[UpstreamHealth]:
        return [member.snapshot() for member in self.members]

    # -- dispatch --------------------------------------------------------------------------

    async def dispatch(self, model: str, call: UpstreamCall) -> UpstreamReply:
        """The reply of the first upstream that answers `call` (see the module docstring for
        what is retried and what is raised). Cancelling it closes the upstream exchange."""
        members = self._eligible(model, call)
        async with self.admission.turn(self.resolve(model), call):  # waits if all are saturated
            return await self._first_answer(model, call, members)

    async def _first_answer(
        self, model: str, call: UpstreamCall, members: Sequence[Member]
    ) -> UpstreamReply:
        attempts = _Attempts(await self.order.order(members, call), self.retry)
        failures: list[AttemptFailed] = []
        loop = asyncio.get_running_loop()
        while (step := attempts.next()) is not None:
            member, delay = step
            if loop.time() + delay >= call.deadline:
                failures.append(_out_of_time(member))
                break
            if delay:
                await asyncio.sleep(delay)
            try:
                return await self._attempt(member, call)
            except AttemptFailed as failure:
                self._note_failure(member, call, failure)
                failures.append(failure)
        raise _exhausted(model, members, failures)

    def _eligible(self, model: str, call: UpstreamCall) -> Sequence[Member]:
        members: Sequence[Member] = self.groups[self.resolve(model)]
        if call.require_dpa:
            members = eligibility.with_dpa(model, members)
        return eligibility.supporting(model, members, call.body)

    async def _attempt(self, member: Member, call: UpstreamCall) -> UpstreamReply:
        """One try at `member`, settling its breaker permit exactly once."""
        if not member.breaker.acquire():
            raise AttemptFailed(member.name, "its circuit breaker is open", counts=False)
        try:
            reply = await self._send(member, call)
        except AttemptFailed as failure:
            if failure.counts:
                member.breaker.record_failure()
            else:
                member.breaker.release()
            raise
        except BaseException:
            member.breaker.release()
            raise
        member.breaker.record_success()
        return reply

    async def _send(self, member: Member, call: UpstreamCall) -> UpstreamReply:
        loop = asyncio.get_running_loop()
        deadline = min(call.deadline, loop.time() + member.upstream.settings.timeout_s)
        member.started()
        try:
            reply = await member.upstream.send(call, deadline)
        except BaseException as exc:
            member.finished()
            if isinstance(exc, DeadlineExceeded):
                raise AttemptFailed(member.name, str(exc), kind="timeout") from exc
            if isinstance(exc, TransportError):
                raise AttemptFailed(member.name, str(exc)) from exc
            raise
        reply.on_close(member.finished)
        if self.retry.retryable(reply.status):
            await reply.aclose()
            raise _status_failure(member, reply)
        if reply.events is None:
            return reply
        held = await hold_until_content(reply)
        return reply.with_events(
            RoutedEvents(member.name, held, reply.events, self._failed_midway(member, call))
        )

    def _failed_midway(self, member: Member, call: UpstreamCall) -> Callable[[str], None]:
        def record(reason: str) -> None:
            member.breaker.record_failure()
            self._note_failure(member, call, AttemptFailed(member.name, f"mid-stream: {reason}"))

        return record

    @staticmethod
    def _note_failure(member: Member, call: UpstreamCall, failure: AttemptFailed) -> None:
        member.last_error = failure.reason
        logger.warning(
            "upstream %s failed request %s: %s", member.name, call.request_id, failure.reason
        )


class _Attempts:
    """The attempt plan of one dispatch: which member next, after how long a wait."""

    def __init__(self, members: Sequence[Member], retry: RetryPolicy) -> None:
        self._members = members
        self._retry = retry
        self._left = retry.retries + 1
        self._tried: list[Member] = []
        self._backoffs = 0

    def next(self) -> tuple[Member, float] | None:
        if self._left == 0:
            return None
        available = [m for m in self._members if m.available]
        if not available:
            return None
        self._left -= 1
        untried = [m for m in available if m not in self._tried]
        if untried:
            self._tried.append(untried[0])
            return untried[0], 0.0
        member = available[self._backoffs % len(available)]
        self._backoffs += 1
        return member, self._retry.delay_s(self._backoffs - 1)


def _status_failure(member: Member, reply: UpstreamReply) -> AttemptFailed:
    return AttemptFailed(
        member.name,
        f"answered HTTP {reply.status}",
        kind="overloaded" if reply.status in (429, 503) else "failed",
        counts=RetryPolicy.counts_against(reply.status),
        retry_after_s=reply.retry_after_s,
    )


def _out_of_time(member: Member) -> AttemptFailed:
    reason = "not tried again: the deadline is too close"
    return AttemptFailed(member.name, reason, kind="timeout", counts=False)


def _exhausted(
    model: str, members: Sequence[Member], failures: Sequence[AttemptFailed]
) -> OverloadedError | UpstreamError:
    if not failures:
        names = ", ".join(m.name for m in members) or "none registered"
        return OverloadedError(
            f"No upstream serving the model '{model}' is available now ({names}: down or "
            "cooling off after failures); retry later.",
            retry_after_s=_retry_after(members),
            code="upstream_unavailable",
        )
    tried = "; ".join(f"{f.upstream}: {f.reason}" for f in failures)
    if all(f.kind == "overloaded" for f in failures):
        hints = [f.retry_after_s for f in failures if f.retry_after_s is not None]
        return OverloadedError(
            f"Every upstream tried for the model '{model}' is overloaded ({tried}); retry later.",
            retry_after_s=max(1.0, min(hints, default=1.0)),
            code="upstream_overloaded",
        )
    if failures[-1].kind == "timeout":
        return UpstreamError(
            f"The model '{model}' did not answer in time ({tried}).", code="upstream_timeout"
        )
    return UpstreamError(
        f"The upstreams for the model '{model}' failed ({tried}).", code="upstream_failed"
    )


def _follow_groups(admission: FairAdmission, groups: Mapping[str, Sequence[Member]]) -> None:
    """Point each model's waiting room at its members now (`FairAdmission.follow`)."""
    admission.follow(groups)


def _retry_after(members: Sequence[Member]) -> float:
    waits = [m.breaker.retry_in() for m in members if m.breaker.state == "open"]
    return max(1.0, min(waits, default=1.0))


def _groups(members: Sequence[Member]) -> dict[str, tuple[Member, ...]]:
    groups: dict[str, list[Member]] = {}
    for member in members:
        for model in member.upstream.models:
            groups.setdefault(model, []).append(member)
    return {model: tuple(group) for model, group in groups.items()}


def _checked_aliases(aliases: dict[str, str], groups: Iterable[str]) -> dict[str, str]:
    served = set(groups)
    for alias, target in aliases.items():
        if target not in served:
            raise ConfigError(
                f"routing.aliases.{alias} points at '{target}', which no upstream serves "
                f"(served: {', '.join(sorted(served)) or 'none'})."
            )
        if alias in served:
            raise ConfigError(
                f"routing.aliases.{alias}: '{alias}' is already a served model name; an alias "
                "may not hide it."
            )
    return dict(aliases)


def _check_unique_names(upstreams: Sequence[Upstream]) -> None:
    seen: set[str] = set()
    for upstream in upstreams:
        if upstream.name in seen:
            raise ConfigError(f"upstreams: the name '{upstream.name}' is used twice.")
        seen.add(upstream.name)


def upstream_settings(
    settings: Settings, engine: EngineBinding | None = None
) -> list[UpstreamSettings]:
    """`settings.upstreams`, with the built-in engine first as upstream "engine" when it runs
    here (`gateway.engine` and an `engine` binding) and no upstream of kind "engine" is listed."""
    listed = list(settings.upstreams)
    if settings.gateway.engine and engine is not None and all(u.kind != "engine" for u in listed):
        # In this process: prompts never leave the machine, so a DPA holds trivially; the
        # hardware is whatever this host is paid for, counted as reserved capacity.
        listed.insert(0, UpstreamSettings(name="engine", kind="engine", tier="reserved", dpa=True))
    return listed
