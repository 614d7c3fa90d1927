"""The step shape read off a schedule, and the step-time fit."""

from __future__ import annotations

import random

import pytest

from strata.compute.step_time import StepShape, StepTimeModel, fit_step_time
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams
from strata.engine.scheduler import ScheduledChunk, SchedulerOutput
from strata.errors import ConfigError


def request(prompt: int) -> Request:
    return Request("r", [7] * prompt, SamplingParams(max_tokens=4))


def test_shape_splits_decodes_and_prefill_chunks_as_the_runner_does() -> None:
    output = SchedulerOutput(
        chunks=(
            ScheduledChunk(request(30), 30, 1, True),  # a decode at context 31
            ScheduledChunk(request(10), 40, 1, True),  # a decode at context 41: the longest
            ScheduledChunk(request(100), 0, 64, False),  # a first chunk, does not sample yet
            ScheduledChunk(request(100), 64, 36, True),  # a last chunk, attends to 100 tokens
        ),
        preempted=(),
    )
    shape = StepShape.of(output, block_size=16)
    assert shape == StepShape(
        tokens=1 + 1 + 64 + 36,
        samples=3,
        decode_kv_tokens=2 * 48,  # two decodes x 41 padded to three 16-token blocks
        prefill_attention=64 * 64 + 36 * 100,
    )


def test_a_one_token_prompt_is_a_prefill_not_a_decode() -> None:
    output = SchedulerOutput((ScheduledChunk(request(1), 0, 1, True),), ())
    assert StepShape.of(output, 16) == StepShape(1, 1, 0, 1)


def synthetic(coefficients: dict[str, float], n: int = 60) -> list[tuple[StepShape, float]]:
    rng = random.Random(1)
    samples = []
    for _ in range(n):
        shape = StepShape(
            rng.randint(1, 512), rng.randint(1, 32), rng.randint(0, 20_000), rng.randint(0, 200_000)
        )
        seconds = StepTimeModel(coefficients).predict(shape)
        samples.append((shape, seconds))
    return samples


def test_the_fit_reproduces_noiseless_steps_of_one_slope_per_token() -> None:
    truth = StepTimeModel({
        "base": 0.02, "tokens": 0.001, "samples": 0.003, "decode_kv_tokens": 1e-6,
        "prefill_attention": 2e-8,
    })  # fmt: skip
    model = fit_step_time(synthetic(truth.coefficients))
    rng = random.Random(7)
    for _ in range(50):
        shape = StepShape(rng.randint(1, 512), rng.randint(1, 32), rng.randint(0, 20_000), 0)
        assert model.predict(shape) == pytest.approx(truth.predict(shape), rel=1e-6)
    assert model.median_error == pytest.approx(0.0, abs=1e-9)


def test_a_cost_flat_for_a_few_rows_then_linear_is_fitted_piecewise() -> None:
    """Up to 8 tokens a step costs what one token costs (the weights are read once either way),
    beyond that 2 ms per token: one slope everywhere would miss both ends by far more."""

    def seconds(tokens: int) -> float:
        return 0.05 + 0.002 * max(0, tokens - 8)

    sizes = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 100, 128, 200, 256, 400, 512]
    steps = [(StepShape(t, 1, 0, 0), seconds(t)) for t in sizes]
    model = fit_step_time(steps)
    for tokens in (1, 5, 8, 20, 300):
        assert model.predict(StepShape(tokens, 1, 0, 0)) == pytest.approx(seconds(tokens), rel=1e-6)
    assert model.median_error == pytest.approx(0.0, abs=1e-9)


def test_steps_longer_than_any_profiled_take_the_last_measured_slope() -> None:
    steps = [(StepShape(t, 1, 0, 0), 0.01 + 0.001 * t) for t in (1, 2, 4, 8, 16, 24, 32, 40, 48)]
    model = fit_step_time(steps)
    assert model.predict(StepShape(400, 1, 0, 0)) == pytest.approx(0.01 + 0.001 * 400, rel=1e-6)


def test_a_profile_written_with_one_token_slope_still_predicts() -> None:
    model = StepTimeModel.from_json({"coefficients": {"base": 0.01, "tokens": 0.001}})
    assert model.predict(StepShape(100, 1, 0, 0)) == pytest.approx(0.11)


def test_a_feature_that_would_make_steps_cheaper_is_dropped() -> None:
    truth = {"base": 0.05, "tokens": 0.002}
    samples = synthetic(truth)
    # Larger decode contexts measured slightly *faster*: noise the fit must not believe.
    samples = [(shape, s * (1 - 1e-6 * shape.decode_kv_tokens)) for shape, s in samples]
    model = fit_step_time(samples)
    assert "decode_kv_tokens" not in model.coefficients
    assert all(c >= 0 for c in model.coefficients.values())


def test_ratios_are_measured_over_predicted() -> None:
    samples = [(StepShape(10, 1, 0, 100), s) for s in (0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.2)]
    model = fit_step_time(samples)
    predicted = model.predict(StepShape(10, 1, 0, 100))
    assert sorted(model.ratios) == pytest.approx(sorted(s / predicted for _, s in samples))
    assert model.jitter(random.Random(0)) in model.ratios


def test_noisy_steps_are_priced_so_their_sum_holds() -> None:
    """Relative-error least squares alone would price these steps below their mean."""
    rng = random.Random(3)
    steps = []
    for _ in range(400):
        tokens = rng.choice([1, 4, 16, 64])
        steps.append((StepShape(tokens, 1, 0, 0), (0.02 + 0.001 * tokens) * rng.uniform(0.7, 1.4)))
    model = fit_step_time(steps)
    predicted = sum(model.predict(shape) for shape, _ in steps)
    assert predicted == pytest.approx(sum(s for _, s in steps), rel=1e-9)


def test_too_few_steps_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 8 measured steps"):
        fit_step_time([(StepShape(1, 1, 16, 0), 0.01)] * 3)


def test_scaled_multiplies_every_step() -> None:
    model = StepTimeModel({"base": 0.01, "tokens": 0.001})
    assert model.scaled(2.0).predict(StepShape(10, 1, 0, 0)) == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (None, "step_time.coefficients"),
        ({"coefficients": {"base": 0.01, "warp": 1.0}}, "unknown features"),
        ({"coefficients": {"base": -0.01}}, "step_time.coefficients"),
        ({"coefficients": {"tokens": 0.01}}, "step_time.coefficients.base"),
        ({"coefficients": {"base": "fast"}}, "step_time.coefficients"),
        ({"coefficients": {"base": 0.01}, "ratios": [1.0, -1]}, "step_time.ratios"),
    ],
)
def test_a_bad_model_names_the_field(data: object, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        StepTimeModel.from_json(data)


def test_json_round_trip() -> None:
    model = StepTimeModel({"base": 0.01, "samples": 0.002}, (0.9, 1.1))
    assert StepTimeModel.from_json(model.to_json()) == model
