"""Sampling defaults a model ships in its `generation_config.json`.

A request that leaves `temperature`, `top_p` or `top_k` unset gets the model's own choice
(as in `transformers.generate` and vLLM's `--generation-config auto`): explicit values in
the file win; `do_sample: false` there means greedy; with neither, OpenAI's defaults apply
(temperature 1, top_p 1, no top-k).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.errors import ModelLoadError


@dataclass(frozen=True)
class SamplingDefaults:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    @classmethod
    def from_folder(cls, folder: Path) -> SamplingDefaults:
        path = folder / "generation_config.json"
        if not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path}: not readable JSON ({exc}).") from exc
        return cls.from_dict(raw if isinstance(raw, dict) else {})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SamplingDefaults:
        temperature = float(raw.get("temperature", 1.0))
        if raw.get("do_sample") is False:
            temperature = 0.0
        return cls(
            temperature=temperature,
            top_p=float(raw.get("top_p", 1.0)),
            top_k=int(raw.get("top_k") or 0),
        )
