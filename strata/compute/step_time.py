"""How long one engine step takes, as a function of what the step computes.

A step of strata's engine costs a fixed part (scheduling, kernel launches, reading every weight
once), a part that grows with the tokens computed (the layers' matmuls), a part per sampled
sequence (the LM head, the sampler, per-request bookkeeping and streaming), and attention: each
decode gathers its context padded to the step's longest, each prefill chunk attends its tokens
to everything before them.

The matmuls' cost is not linear in the tokens: a few rows cost about what one row costs (the
weights are read once either way) and the cost per row changes as the matrices grow. So the
fit prices tokens piecewise: one slope per segment between `TOKEN_KNOTS` (1-2, 2-4, 4-8, ...
tokens), each segment's feature the tokens of the step that fall inside it. A single
`tokens` coefficient (one slope everywhere) is still understood, for profiles written before.
`StepShape.of` reads those quantities off a `SchedulerOutput`, so the profiler (watching the real
engine) and the simulator (running the real scheduler) describe a step by the same function.

`fit_step_time` fits seconds = Σ coefficient x feature by least squares on relative error (a
20 ms decode step counts as much as a 400 ms prefill step); a feature whose coefficient comes out
negative (noise on a small effect) is dropped and the rest refitted, so no step gets cheaper by
growing. The fit is then scaled so that the profiled steps' predicted time adds up to their
measured time: relative-error least squares alone prices noisy steps ~3% low, and every
latency the simulator predicts is a sum of steps. The ratios measured / predicted of the
profiled steps are kept: the simulator can draw from them to give its steps the engine's jitter.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from strata.engine.scheduler import SchedulerOutput
from strata.errors import ConfigError

TOKEN_KNOTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SEGMENTS = tuple(f"tokens_{lo}_{hi}" for lo, hi in itertools.pairwise(TOKEN_KNOTS))
OPEN_SEGMENT = f"tokens_{TOKEN_KNOTS[-1]}_up"
# What a fit estimates; `tokens` (one slope) is only read from older profiles.
FIT_FEATURES = ("base", *SEGMENTS, OPEN_SEGMENT, "samples", "decode_kv_tokens",
                "prefill_attention")  # fmt: skip
FEATURES = (*FIT_FEATURES, "tokens")
MIN_STEPS = 8  # fewer profiled steps than this cannot pin the coefficients


@dataclass(frozen=True)
class StepShape:
    """What one step computes, in the units the step-time model prices."""

    tokens: int  # tokens computed: one per decode, a chunk's length per prefill chunk
    samples: int  # sequences that sample a token this step
    decode_kv_tokens: int  # decodes x the longest decode context, padded to whole blocks
    prefill_attention: int  # Σ over prefill chunks of chunk tokens x tokens attended (its end)

    @classmethod
    def of(cls, output: SchedulerOutput, block_size: int) -> StepShape:
        """The shape of `output`, split into decodes and prefill chunks as the runner does."""
        decodes = [c for c in output.chunks if c.num_tokens == 1 and c.start > 0]
        prefills = [c for c in output.chunks if not (c.num_tokens == 1 and c.start > 0)]
        longest = max((c.start + 1 for c in decodes), default=0)
        padded = -(-longest // block_size) * block_size
        return cls(
            tokens=output.num_tokens,
            samples=len(output.sampling_chunks),
            decode_kv_tokens=len(decodes) * padded,
            prefill_attention=sum(c.num_tokens * (c.start + c.num_tokens) for c in prefills),
        )

    def features(self) -> dict[str, float]:
        """The value of every feature in `FEATURES`."""
        values = {
            "base": 1.0,
            "tokens": float(self.tokens),
            "samples": float(self.samples),
            "decode_kv_tokens": float(self.decode_kv_tokens),
            "prefill_attention": float(self.prefill_attention),
            OPEN_SEGMENT: float(max(0, self.tokens - TOKEN_KNOTS[-1])),
        }
        for name, (lo, hi) in zip(SEGMENTS, itertools.pairwise(TOKEN_KNOTS), strict=True):
            values[name] = float(min(max(self.tokens - lo, 0), hi - lo))
        return values


@dataclass(frozen=True)
class StepTimeModel:
    """seconds = Σ coefficients[f] x feature f; `ratios` are measured / predicted per step."""

    coefficients: dict[str, float]
    ratios: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.coefficients) - set(FEATURES)
        if unknown:
            raise ConfigError(f"step_time.coefficients: unknown features {sorted(unknown)}")
        if any(not math.isfinite(c) or c < 0 for c in self.coefficients.values()):
            raise ConfigError("step_time.coefficients: every coefficient must be finite and >= 0")
        if not self.coefficients.get("base", 0.0) > 0:
            raise ConfigError("step_time.coefficients.base: must be > 0 seconds")

    def predict(self, shape: StepShape) -> float:
        values = shape.features()
        return sum(c * values[name] for name, c in self.coefficients.items())

    def scaled(self, factor: float) -> StepTimeModel:
        """Every step `factor` times as long (a machine that runs slower or faster)."""
        return StepTimeModel({k: c * factor for k, c in self.coefficients.items()}, self.ratios)

    def jitter(self, rng: random.Random) -> float:
        """A measured / predicted ratio drawn from the profile (1.0 when none was kept)."""
        return rng.choice(self.ratios) if self.ratios else 1.0

    @property
    def median_error(self) -> float:
        """Median |measured / predicted - 1| over the profiled steps."""
        return statistics.median(abs(r - 1) for r in self.ratios) if self.ratios else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "coefficients": self.coefficients,
            "ratios": [round(r, 4) for r in self.ratios],
        }

    @classmethod
    def from_json(cls, data: Any) -> StepTimeModel:
        if not isinstance(data, dict) or not isinstance(data.get("coefficients"), dict):
            raise ConfigError("step_time.coefficients: missing (an object of seconds per feature)")
        ratios = data.get("ratios", [])
        if not isinstance(ratios, list) or not all(_positive(r) for r in ratios):
            raise ConfigError("step_time.ratios: must be a list of positive numbers")
        coefficients = data["coefficients"]
        if not all(isinstance(v, int | float) for v in coefficients.values()):
            raise ConfigError("step_time.coefficients: every value must be a number of seconds")
        return cls({k: float(v) for k, v in coefficients.items()}, tuple(map(float, ratios)))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def fit_step_time(samples: Sequence[tuple[StepShape, float]]) -> StepTimeModel:
    """Least squares on relative error over (shape, measured seconds) pairs."""
    usable = [(shape, seconds) for shape, seconds in samples if seconds > 0]
    if len(usable) < MIN_STEPS:
        raise ConfigError(
            f"a step-time fit needs at least {MIN_STEPS} measured steps, got {len(usable)}"
        )
    x = np.array([[shape.features()[f] for f in FIT_FEATURES] for shape, _ in usable])  # (N, F)
    y = np.array([seconds for _, seconds in usable])  # (N,)
    kept = [i for i in range(len(FIT_FEATURES)) if x[:, i].any()]  # a segment no step reached
    while True:
        coef = _weighted_lstsq(x[:, kept], y)
        negative = [i for i, c in zip(kept, coef, strict=True) if c < 0 and i != 0]
        if not negative:
            break
        kept.remove(min(negative, key=lambda i: coef[kept.index(i)]))
    coefficients = {FIT_FEATURES[i]: float(c) for i, c in zip(kept, coef, strict=True)}
    if not coefficients["base"] > 0:  # all the cost in the per-unit terms: keep a tiny floor
        coefficients["base"] = float(min(y)) * 0.01
    _extend_last_slope(coefficients, reached=int(max(shape.tokens for shape, _ in usable)))
    model = _sum_unbiased(StepTimeModel(coefficients), usable)
    ratios = tuple(float(s) / model.predict(shape) for shape, s in usable)
    return StepTimeModel(model.coefficients, ratios)


def _sum_unbiased(model: StepTimeModel, steps: Sequence[tuple[StepShape, float]]) -> StepTimeModel:
    """`model` scaled so the profiled steps' predicted seconds add up to their measured ones.
    Least squares on relative error prices a noisy step low (over-predicting a fast step costs
    more than under-predicting a slow one); latencies are sums of steps, so the sum must hold."""
    predicted = sum(model.predict(shape) for shape, _ in steps)
    return model.scaled(sum(seconds for _, seconds in steps) / predicted)


def _extend_last_slope(coefficients: dict[str, float], reached: int) -> None:
    """Segments above the most tokens any profiled step computed take the slope of the highest
    segment that was measured: a longer step is priced by extrapolation, not as free."""
    names = [*SEGMENTS, OPEN_SEGMENT]
    measured = [n for n, lo in zip(names, TOKEN_KNOTS, strict=True) if lo < reached]
    slope = next((coefficients[n] for n in reversed(measured) if n in coefficients), 0.0)
    for name, lo in zip(names, TOKEN_KNOTS, strict=True):
        if lo >= reached and slope > 0:
            coefficients[name] = slope


def _weighted_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minimise Σ ((x·c - y) / y)²: each row divided by its own measurement."""
    weights = 1.0 / y
    coef, *_ = np.linalg.lstsq(x * weights[:, None], y * weights, rcond=None)
    return np.asarray(coef)
