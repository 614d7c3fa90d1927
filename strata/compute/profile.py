"""A step-time profile of strata's engine, as `strata bench engine --profile` writes it and
`strata plan batching` reads it: the engine's sizes, the fitted step-time model, the raw
measurements it was fitted on, and where and how they were measured.

    {"kind": "strata-step-profile", "version": 1,
     "engine": {"block_size": 16, "num_blocks": 23301, "max_model_len": 8192,
                "max_num_seqs": 32, "max_num_batched_tokens": 512, "max_waiting": 256,
                "enable_prefix_caching": true, "dtype": "bfloat16", "threads": 2},
     "step_time": {"coefficients": {"base": 0.021, "tokens_1_2": 0.0009, ...}, "ratios": [...]},
     "steps": [[tokens, samples, decode_kv_tokens, prefill_attention, seconds], ...],
     "meta": {"command": "...", "machine": "...", "date": "..."}}

Reading never trusts the file: every missing or wrong field raises `ConfigError` naming the
field, the file and how to make a good one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from strata.compute.step_time import StepShape, StepTimeModel
from strata.errors import ConfigError

KIND = "strata-step-profile"
VERSION = 1
REMAKE = "make one with `strata bench engine --profile FILE`"


@dataclass(frozen=True)
class EngineSizes:
    """The engine settings a profile was measured under (and the simulator defaults to)."""

    block_size: int
    num_blocks: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_waiting: int
    enable_prefix_caching: bool = True
    dtype: str = "unknown"
    threads: int = 0  # torch CPU threads; 0 when unknown

    @classmethod
    def from_json(cls, data: Any) -> EngineSizes:
        if not isinstance(data, dict):
            raise ConfigError("engine: missing (the engine settings the profile was measured at)")
        for name in ("block_size", "num_blocks", "max_model_len", "max_num_seqs",
                     "max_num_batched_tokens", "max_waiting"):  # fmt: skip
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"engine.{name}: must be a non-negative integer")
        if data["block_size"] < 1 or data["num_blocks"] < 1:
            raise ConfigError("engine.block_size and engine.num_blocks: must be >= 1")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class EngineProfile:
    engine: EngineSizes
    step_time: StepTimeModel
    steps: list[tuple[StepShape, float]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_profiled_batch(self) -> int:
        """The most sequences any profiled step sampled (caps above it are extrapolated)."""
        return max((shape.samples for shape, _ in self.steps), default=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": VERSION,
            "engine": asdict(self.engine),
            "step_time": self.step_time.to_json(),
            "steps": [[*_shape_values(shape), round(s, 6)] for shape, s in self.steps],
            "meta": self.meta,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


def _shape_values(shape: StepShape) -> list[int]:
    return [shape.tokens, shape.samples, shape.decode_kv_tokens, shape.prefill_attention]


def read_profile(path: Path, option: str = "--profile") -> EngineProfile:
    """The profile in `path`; `ConfigError` names `option`, the file and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{option} {path}: no such file; {REMAKE}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{option} {path}: not readable JSON ({exc}); {REMAKE}.") from None
    try:
        return _profile(data)
    except ConfigError as exc:
        raise ConfigError(f"{option} {path}: {exc.message}; {REMAKE}.") from None


def _profile(data: Any) -> EngineProfile:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ConfigError(f"not a step-time profile (its 'kind' is not {KIND!r})")
    if data.get("version") != VERSION:
        raise ConfigError(f"version: {data.get('version')!r}; this strata reads version {VERSION}")
    meta = data.get("meta", {})
    return EngineProfile(
        EngineSizes.from_json(data.get("engine")),
        StepTimeModel.from_json(data.get("step_time")),
        _steps(data.get("steps", [])),
        meta if isinstance(meta, dict) else {},
    )


def _steps(rows: Any) -> list[tuple[StepShape, float]]:
    if not isinstance(rows, list):
        raise ConfigError("steps: must be a list of [tokens, samples, decode_kv, prefill, s]")
    steps = []
    for number, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 5
                and all(isinstance(v, int | float) for v in row)):  # fmt: skip
            raise ConfigError(f"steps[{number}]: must be [tokens, samples, decode_kv, prefill, s]")
        steps.append((StepShape(*(int(v) for v in row[:4])), float(row[4])))
    return steps
