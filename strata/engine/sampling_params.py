"""What a caller asks of one generation: length, randomness and when to stop."""

from __future__ import annotations

from dataclasses import dataclass

from strata.errors import InvalidRequestError


@dataclass(frozen=True)
class SamplingParams:
    """Validated on construction; every bad value names its field (`param`)."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    min_tokens: int = 0

    def __post_init__(self) -> None:
        _check(self.max_tokens >= 1, "max_tokens", "must be at least 1")
        _check(0.0 <= self.temperature <= 100.0, "temperature", "must be between 0 and 100")
        _check(0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]")
        _check(self.top_k >= 0, "top_k", "must be 0 (off) or positive")
        _check(0 <= self.min_tokens <= self.max_tokens, "min_tokens", "must be in [0, max_tokens]")
        _check(len(self.stop) <= 16, "stop", "at most 16 stop strings")
        _check(all(0 < len(s) <= 256 for s in self.stop), "stop", "each 1 to 256 characters")
        _check(all(t >= 0 for t in self.stop_token_ids), "stop_token_ids", "must be >= 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


def _check(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise InvalidRequestError(f"{param} {message}.", param=param, code="invalid_value")
