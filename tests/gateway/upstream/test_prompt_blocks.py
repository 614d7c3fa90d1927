"""The gateway hashes a request body into an engine's KV blocks with the engine's own code: the
same token ids the engine server computes, the last token left out, and no hash at all for
bodies the engine would refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.engine.block_hash import prefix_hashes
from strata.engine.prompt import chat_prompt_ids
from strata.engine.tokenizer import Tokenizer
from strata.errors import ConfigError
from strata.gateway.upstream.prompt_blocks import (
    BUNDLED,
    PromptHasher,
    PromptTokens,
    load_hashers,
    spec_key,
)

MESSAGES = [
    {"role": "system", "content": "You are the Acme support assistant. " * 8},
    {"role": "user", "content": "Where is my order?"},
]


@pytest.fixture(scope="module")
def hasher(smollm2_folder: Path) -> PromptHasher:
    return load_hashers([str(smollm2_folder)], Path("/nonexistent"))[str(smollm2_folder)]


def test_chat_bodies_become_the_engines_prompt_ids(hasher: PromptHasher) -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 5, "stream": True}
    prompt = hasher.tokens("/chat/completions", body)
    assert prompt is not None
    assert prompt.token_ids == chat_prompt_ids(hasher.tokenizer, MESSAGES)
    assert prompt.hashes(16) == prefix_hashes(prompt.token_ids[:-1], 16)


def test_completion_bodies_text_or_token_ids(hasher: PromptHasher) -> None:
    text = hasher.tokens("/completions", {"prompt": "Once upon a time"})
    assert text is not None and text.token_ids == hasher.tokenizer.encode("Once upon a time")
    ids = hasher.tokens("/completions", {"prompt": list(range(40))})
    assert ids is not None and ids.hashes(16) == prefix_hashes(list(range(39)), 16)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/embeddings", {"input": "x"}), ("/chat/completions", {"messages": []}),
     ("/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}),
     ("/chat/completions", {"messages": MESSAGES, "tools": [{"type": "function"}]}),
     ("/completions", {"prompt": ["a", "b"]}), ("/completions", {"prompt": "\ud800 lone"})],
)  # fmt: skip
def test_bodies_the_engine_would_refuse_are_not_hashed(
    hasher: PromptHasher, path: str, body: dict[str, object]
) -> None:
    assert hasher.tokens(path, body) is None


def test_token_ids_out_of_int32_range_have_no_hashes() -> None:
    assert PromptTokens([2**31] * 40).hashes(16) is None
    assert PromptTokens(list(range(10))).hashes(16) == []


def test_specs_name_one_model_each(smollm2_folder: Path, tmp_path: Path) -> None:
    assert spec_key(None) == spec_key("") == spec_key(" bundled ") == BUNDLED
    assert spec_key(" /models/a ") == "/models/a"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"engine_model .*empty.*tokenizer.json"):
        load_hashers([str(tmp_path / "empty")], tmp_path)
    tokenizer_only = tmp_path / "tok"
    tokenizer_only.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tokenizer_only / name).write_bytes((smollm2_folder / name).read_bytes())
    loaded = load_hashers([str(tokenizer_only), str(tokenizer_only)], tmp_path)
    assert list(loaded) == [str(tokenizer_only)]
    assert isinstance(loaded[str(tokenizer_only)].tokenizer, Tokenizer)
