"""SLO-aware batching: the batch cap, step token budget, batching window and admission are
derived online from measured latencies so that p95 stays inside a latency SLO.

The loop, evaluated every `adjust_interval_s`:
- *Step time* is what every running request waits between two tokens. Its target is the
  inter-token SLO, or a quarter of the TTFT SLO when only that is set (a new request needs at
  least one step after admission). The batch cap answers for *decode* steps (one token per
  request): p95 of recent decode steps over target: cap shrinks by a quarter; under 80% of
  target while the cap is what limits the batch: cap grows by an eighth (+1). Steps carrying
  prefill are the token budget's business: shrinking the cap would not shorten them, only
  starve the batch (the phased benchmark showed long prompts driving the cap to 1).
- *Token budget*: a least-squares fit of step time against tokens per step gives the most
  tokens a step can carry and stay on target; prefill chunks are cut to that.
- *Admission*: a new request's TTFT is predicted as the prefill time of every prompt token
  queued ahead of it (and its own): the steps needed at the budget left beside the running
  decodes, each priced by the fitted step model (p95 step time until it can fit), plus,
  when the batch is full, the wait for a slot at the measured service rate. Predicted over
  the SLO: shed with a retry hint, so admitted requests keep their latency instead of
  everyone's collapsing (a burst is caught before any request has finished). The measured
  p95 TTFT feeds back into how much of the SLO predictions may use (less when requests miss
  it, more when p95 sits well inside).
- *Batching window*: wait for company only when arrivals are frequent enough to bring some.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from strata.engine.batch_policy import BatchPolicy, QueueState

STEP_SHARE_OF_TTFT = 0.25  # step-time target when only a TTFT SLO is given
SHRINK, GROW = 0.75, 0.125
MAX_WINDOW_SHARE = 0.1  # the batching window never exceeds this share of the TTFT SLO
# How far measured TTFTs may scale what predictions are allowed: below 1 when requests miss the
# SLO despite the model, above 1 when the model is pessimistic and p95 sits well inside it.
MIN_TRUST, MAX_TRUST = 0.2, 1.5


@dataclass(frozen=True)
class SloTargets:
    ttft_p95_s: float
    itl_p95_s: float | None = None

    @property
    def step_s(self) -> float:
        return self.itl_p95_s or self.ttft_p95_s * STEP_SHARE_OF_TTFT


class RecentValues:
    """Values observed in the last `horizon_s` seconds (at most `max_len` of them)."""

    def __init__(self, horizon_s: float, max_len: int = 512):
        self.horizon_s = horizon_s
        self._items: deque[tuple[float, float]] = deque(maxlen=max_len)

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))

    def values(self, now: float) -> list[float]:
        while self._items and self._items[0][0] < now - self.horizon_s:
            self._items.popleft()
        return [v for _, v in self._items]

    def p95(self, now: float) -> float | None:
        values = sorted(self.values(now))
        return values[math.ceil(0.95 * len(values)) - 1] if values else None

    def rate(self, now: float) -> float | None:
        """Events per second over the window, None until two events are seen."""
        times = [t for t, _ in self._items if t >= now - self.horizon_s]
        if len(times) < 2 or now <= times[0]:
            return None
        return (len(times) - 1) / (now - times[0])


class StepModel:
    """step_time ≈ base + per_token × tokens, fitted by least squares on recent steps."""

    def __init__(self, max_len: int = 256):
        self._points: deque[tuple[int, float]] = deque(maxlen=max_len)

    def add(self, tokens: int, duration_s: float) -> None:
        self._points.append((tokens, duration_s))

    def fit(self) -> tuple[float, float] | None:
        """(base_s, per_token_s), or None until the steps vary enough in size to tell."""
        n = len(self._points)
        if n < 8:
            return None
        mx = sum(t for t, _ in self._points) / n
        my = sum(d for _, d in self._points) / n
        sxx = sum((t - mx) ** 2 for t, _ in self._points)
        if sxx < n:  # all steps about the same size
            return None
        slope = sum((t - mx) * (d - my) for t, d in self._points) / sxx
        slope = max(slope, 1e-7)
        return max(0.0, my - slope * mx), slope

    def tokens_within(self, seconds: float) -> int | None:
        fit = self.fit()
        if fit is None:
            return None
        base, per_token = fit
        return max(0, int((seconds - base) / per_token))


class SloBatchPolicy(BatchPolicy):
    def __init__(
        self,
        targets: SloTargets,
        *,
        max_num_seqs_limit: int,
        token_budget_limit: int,
        min_token_budget: int = 16,
        adjust_interval_s: float = 0.25,
        horizon_s: float = 10.0,
        max_window_s: float = 0.05,
    ):
        self.targets = targets
        self.max_num_seqs_limit = max_num_seqs_limit
        self.token_budget_limit = token_budget_limit
        self.min_token_budget = min(min_token_budget, token_budget_limit)
        self.adjust_interval_s = adjust_interval_s
        self.max_window_s = min(max_window_s, targets.ttft_p95_s * MAX_WINDOW_SHARE)
        self._cap = max_num_seqs_limit
        self._budget = token_budget_limit
        self._trust = 1.0  # share of the TTFT SLO admission predictions may use
        self._steps = RecentValues(horizon_s)
        self._decode_steps = RecentValues(horizon_s)
        self._ttfts = RecentValues(horizon_s)
        self._finishes = RecentValues(horizon_s)
        self._arrivals = RecentValues(horizon_s)
        self._model = StepModel()
        self._last_adjust = -math.inf
        self._cap_was_binding = False
        self._now = 0.0  # time of the latest observation
        self.num_shed = 0

    # -- what the scheduler asks -------------------------------------------------------------

    @property
    def max_num_seqs(self) -> int:
        return self._cap

    @property
    def token_budget(self) -> int:
        return self._budget

    @property
    def batch_window_s(self) -> float:
        rate = self._arrivals.rate(self._now)
        if rate is None or rate * self.max_window_s < 1.0:
            return 0.0  # no company is likely to arrive within the window
        return self.max_window_s

    def admit(self, queue: QueueState, now: float) -> float | None:
        self._now = now
        self._arrivals.add(now, 1.0)
        if queue.num_waiting > 0:
            self._cap_was_binding = True
        predicted = self.predicted_ttft(queue, now)
        allowed = self.targets.ttft_p95_s * self._trust
        if predicted is None or predicted <= allowed:
            return None
        self.num_shed += 1
        return max(1.0, predicted - allowed)

    def predicted_ttft(self, queue: QueueState, now: float) -> float | None:
        """Prefill of every queued prompt token ahead (and its own), plus the wait for a free
        slot when the batch is full; None before anything has been measured."""
        prefill = self._prefill_s(queue, now)
        step = self._steps.p95(now)
        if prefill is None or step is None:
            return None
        ahead = queue.num_running + queue.num_waiting + 1 - self._cap
        service_rate = self._finishes.rate(now)
        slot_wait = ahead / service_rate if ahead > 0 and service_rate else 0.0
        return prefill + slot_wait + step

    def _prefill_s(self, queue: QueueState, now: float) -> float | None:
        """The steps needed when running decodes take their share of every step's budget,
        each priced by the fitted step model for the tokens it carries (p95 of recent steps
        until the model can fit)."""
        step_p95 = self._steps.p95(now)
        if step_p95 is None:
            return None
        decodes = min(queue.num_running, self._cap)
        per_step = max(1, self._budget - decodes)
        steps = -(-queue.queued_tokens // per_step)
        fit = self._model.fit()
        if fit is None:
            return steps * step_p95
        base, per_token = fit
        return steps * base + per_token * (queue.queued_tokens + steps * decodes)

    # -- what the engine reports -------------------------------------------------------------

    def observe_step(self, duration_s: float, num_tokens: int, num_seqs: int, now: float) -> None:
        self._now = now
        self._steps.add(now, duration_s)
        if num_tokens == num_seqs:  # decode only: what the batch cap controls
            self._decode_steps.add(now, duration_s)
        self._model.add(num_tokens, duration_s)
        if num_seqs >= self._cap:
            self._cap_was_binding = True
        if now - self._last_adjust >= self.adjust_interval_s:
            self._adjust(now)
            self._last_adjust = now

    def observe_first_token(self, ttft_s: float, now: float) -> None:
        self._now = now
        self._ttfts.add(now, ttft_s)

    def observe_finish(self, now: float) -> None:
        self._now = now
        self._finishes.add(now, 1.0)

    @property
    def slo_attainment(self) -> float | None:
        """Share of recent requests whose TTFT met the SLO."""
        values = self._ttfts.values(self._now)
        if not values:
            return None
        return sum(v <= self.targets.ttft_p95_s for v in values) / len(values)

    # -- the control loop --------------------------------------------------------------------

    def _adjust(self, now: float) -> None:
        self._adjust_cap(now)
        self._adjust_budget()
        self._adjust_trust(now)
        self._cap_was_binding = False

    def _adjust_cap(self, now: float) -> None:
        step_p95 = self._decode_steps.p95(now)
        if step_p95 is None:
            return
        target = self.targets.step_s
        if step_p95 > target:
            self._cap = max(1, math.floor(self._cap * SHRINK))
        elif step_p95 < 0.8 * target and self._cap_was_binding:
            grown = self._cap + max(1, math.floor(self._cap * GROW))
            self._cap = min(self.max_num_seqs_limit, grown)

    def _adjust_budget(self) -> None:
        tokens = self._model.tokens_within(self.targets.step_s)
        if tokens is not None:
            self._budget = min(self.token_budget_limit, max(self.min_token_budget, tokens))

    def _adjust_trust(self, now: float) -> None:
        ttft_p95 = self._ttfts.p95(now)
        if ttft_p95 is None:
            return
        if ttft_p95 > self.targets.ttft_p95_s:  # back off faster than we lean in
            self._trust = max(MIN_TRUST, self._trust * 0.8)
        elif ttft_p95 < 0.8 * self.targets.ttft_p95_s:
            self._trust = min(MAX_TRUST, self._trust * 1.05)
