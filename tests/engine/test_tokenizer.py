from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from strata.engine.tokenizer import TextStream, Tokenizer
from strata.errors import InvalidRequestError, ModelLoadError
from tests.conftest import hf_tokenizer, template_folder

TEXTS = [
    "Hello world",
    "",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "tabs\tand\nnew lines\n\n",
    "héllo 中文 😀 👨‍👩‍👧",
    "<|im_start|>user\nhi<|im_end|>",
    "<s>x</s> a <s> b",
    "def f(x):\n    return x ** 2  # 12345",
    "The capital of France is",
]


@pytest.mark.parametrize("folder_fixture", ["smollm2_folder", "tiny_sp_tokenizer_folder"])
@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_encode_matches_transformers(
    folder_fixture: str, add_special_tokens: bool, request: pytest.FixtureRequest
) -> None:
    folder = request.getfixturevalue(folder_fixture)
    ours, theirs = Tokenizer.from_folder(folder), hf_tokenizer(folder)
    for text in TEXTS:
        expected = theirs.encode(text, add_special_tokens=add_special_tokens)
        assert ours.encode(text, add_special_tokens=add_special_tokens) == expected, text


@pytest.mark.parametrize("folder_fixture", ["smollm2_folder", "tiny_sp_tokenizer_folder"])
@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_decode_matches_transformers(
    folder_fixture: str, skip_special_tokens: bool, request: pytest.FixtureRequest
) -> None:
    folder = request.getfixturevalue(folder_fixture)
    ours, theirs = Tokenizer.from_folder(folder), hf_tokenizer(folder)
    rng = random.Random(1)
    for _ in range(50):
        ids = [rng.randrange(ours.vocab_size) for _ in range(rng.randrange(1, 30))]
        expected = theirs.decode(ids, skip_special_tokens=skip_special_tokens)
        assert ours.decode(ids, skip_special_tokens=skip_special_tokens) == expected, ids


def test_smollm2_adds_no_bos_and_ends_turns_with_im_end(smollm2: Tokenizer) -> None:
    assert smollm2.bos_token_id == 1  # <|im_start|>, which the tokenizer never prepends
    assert smollm2.encode("Hello")[0] != smollm2.bos_token_id
    assert smollm2.eos_token_ids == frozenset({2})  # <|im_end|>
    assert smollm2.vocab_size == 49152
    assert smollm2.encode("<|im_end|>") == [2]


def test_sentencepiece_tokenizer_adds_bos_only_with_special_tokens(tiny_sp: Tokenizer) -> None:
    assert tiny_sp.bos_token_id == 1
    assert tiny_sp.encode("Hello")[0] == 1
    assert tiny_sp.encode("Hello", add_special_tokens=False)[0] != 1
    assert tiny_sp.eos_token_ids == frozenset({2})


def test_round_trip_keeps_unicode(smollm2: Tokenizer, tiny_sp: Tokenizer) -> None:
    text = "héllo 中文 😀 and <b>tags</b>"
    assert smollm2.decode(smollm2.encode(text)) == text
    assert tiny_sp.decode(tiny_sp.encode(text)) == text


def test_eos_ids_are_the_union_of_all_sources(smollm2_folder: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_folder / name, tmp_path / name)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 7}))
    assert Tokenizer.from_folder(tmp_path).eos_token_ids == frozenset({0, 2, 7})


def test_named_special_token_missing_from_vocab_is_added(
    smollm2_folder: Path, tmp_path: Path
) -> None:
    shutil.copy(smollm2_folder / "tokenizer.json", tmp_path / "tokenizer.json")
    config = {"eos_token": "<|my_eos|>", "bos_token": "<|im_start|>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours, theirs = Tokenizer.from_folder(tmp_path), hf_tokenizer(tmp_path)
    new_id = ours.token_to_id("<|my_eos|>")
    assert new_id == 49152
    assert ours.eos_token_ids == frozenset({new_id})
    assert ours.encode("a<|my_eos|>") == theirs.encode("a<|my_eos|>")
    assert ours.decode(ours.encode("a<|my_eos|>")) == "a"


def test_missing_tokenizer_json_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json: not found"):
        Tokenizer.from_folder(tmp_path)


def test_corrupt_tokenizer_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": 3}}')
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json: not a valid tokenizer file"):
        Tokenizer.from_folder(tmp_path)


def test_malformed_tokenizer_config_is_named(smollm2_folder: Path, tmp_path: Path) -> None:
    shutil.copy(smollm2_folder / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"tokenizer_config\.json: not readable JSON"):
        Tokenizer.from_folder(tmp_path)


CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a colour <b>in bold</b> & 'quoted' — ünïcode 😀"},
    ],
]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_chat_template_matches_transformers(
    smollm2: Tokenizer, smollm2_folder: Path, add_generation_prompt: bool
) -> None:
    theirs = hf_tokenizer(smollm2_folder)
    for messages in CONVERSATIONS:
        expected = theirs.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        got = smollm2.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        assert got == expected
    assert smollm2.apply_chat_template(CONVERSATIONS[0]).endswith("<|im_start|>assistant\n")


def test_jinja_file_wins_over_tokenizer_config(smollm2_folder: Path, tmp_path: Path) -> None:
    folder = template_folder(smollm2_folder, tmp_path, "from the jinja file")
    assert Tokenizer.from_folder(folder).apply_chat_template([]) == "from the jinja file"


def test_named_templates_pick_tool_use_when_tools_are_given(
    smollm2_folder: Path, tmp_path: Path
) -> None:
    shutil.copy(smollm2_folder / "tokenizer.json", tmp_path / "tokenizer.json")
    templates = [
        {"name": "default", "template": "plain"},
        {"name": "tool_use", "template": "tools"},
    ]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": templates}))
    tokenizer = Tokenizer.from_folder(tmp_path)
    assert tokenizer.apply_chat_template([]) == "plain"
    assert tokenizer.apply_chat_template([], tools=[{"type": "function"}]) == "tools"


def test_no_chat_template_is_an_invalid_request(tiny_sp: Tokenizer) -> None:
    assert not tiny_sp.has_chat_template
    with pytest.raises(InvalidRequestError, match="no chat template; use /v1/completions"):
        tiny_sp.apply_chat_template([{"role": "user", "content": "hi"}])


def test_text_stream_is_exported_here(smollm2: Tokenizer) -> None:
    stream = smollm2.text_stream(stop=("!",))
    assert isinstance(stream, TextStream)
    assert stream.push(smollm2.encode("Hi there! more")) == "Hi there"
    assert stream.stopped and stream.stop_reason == "!"
