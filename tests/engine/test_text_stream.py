from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from strata.engine.text_stream import REPLACEMENT_CHAR, StopMatcher, TextStream
from strata.engine.tokenizer import Tokenizer

UNICODE_TEXT = "Zürich → 東京 😀👨‍👩‍👧 naïve café, ελληνικά и русский.\n  indented"


@pytest.fixture(scope="module")
def tiny_metaspace(
    tiny_sp_tokenizer_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Tokenizer:
    """The tiny SentencePiece-style tokenizer without byte fallback (unknown text -> <unk>)."""
    folder = tmp_path_factory.mktemp("tiny-metaspace")
    data = json.loads((tiny_sp_tokenizer_folder / "tokenizer.json").read_text())
    data["model"]["byte_fallback"] = False
    vocab = data["model"]["vocab"]
    for token in [t for t in vocab if t.startswith("<0x")]:
        del vocab[token]
    data["decoder"]["decoders"] = [
        d for d in data["decoder"]["decoders"] if d["type"] != "ByteFallback"
    ]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    shutil.copy(tiny_sp_tokenizer_folder / "tokenizer_config.json", folder)
    return Tokenizer.from_folder(folder)


@pytest.fixture(params=["smollm2", "tiny_sp", "tiny_metaspace"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return request.getfixturevalue(str(request.param))


def stream_all(stream: TextStream, ids: list[int], rng: random.Random | None = None) -> list[str]:
    """Push `ids` in chunks (of 1 token, or 1-3 when `rng` is given); deltas incl. flush."""
    deltas, i = [], 0
    while i < len(ids):
        size = rng.randint(1, 3) if rng else 1
        deltas.append(stream.push(ids[i : i + size]))
        i += size
    deltas.append(stream.flush())
    return deltas


def partial_utf8_ids(tokenizer: Tokenizer) -> list[int]:
    """Tokens that hold an incomplete UTF-8 sequence (they decode alone to U+FFFD)."""
    return [i for i in range(tokenizer.vocab_size) if REPLACEMENT_CHAR in tokenizer.decode([i])]


def random_ids(tokenizer: Tokenizer, rng: random.Random, tricky: list[int]) -> list[int]:
    """Random ids, half of them drawn from `tricky` (partial characters, special tokens)."""
    length = rng.randrange(1, 40)
    return [
        rng.choice(tricky) if rng.random() < 0.5 else rng.randrange(tokenizer.vocab_size)
        for _ in range(length)
    ]


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_concatenated_deltas_equal_full_decode(
    tokenizer: Tokenizer, skip_special_tokens: bool
) -> None:
    rng = random.Random(0)
    tricky = partial_utf8_ids(tokenizer) + list(range(4))
    assert tricky, "the property needs tokens with partial characters"
    for _ in range(300):
        ids = random_ids(tokenizer, rng, tricky)
        stream = tokenizer.text_stream(skip_special_tokens=skip_special_tokens)
        got = "".join(stream_all(stream, ids, rng))
        assert got == tokenizer.decode(ids, skip_special_tokens=skip_special_tokens), ids
        assert stream.text == got and stream.token_ids == ids


def test_cut_at_first_stop_string(tokenizer: Tokenizer) -> None:
    rng = random.Random(1)
    tricky = partial_utf8_ids(tokenizer) + list(range(4))
    checked = 0
    for _ in range(300):
        ids = random_ids(tokenizer, rng, tricky)
        full = tokenizer.decode(ids)
        if not full:
            continue
        start = rng.randrange(len(full))
        stop = full[start : start + rng.randint(1, 6)]
        stream = tokenizer.text_stream(stop=(stop, "\x00never"))
        got = "".join(stream_all(stream, ids, rng))
        assert got == full[: full.index(stop)], (ids, stop)
        assert stream.stopped and stream.stop_reason == stop
        checked += 1
    assert checked > 200


def test_stop_string_that_never_appears_changes_nothing(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(UNICODE_TEXT, add_special_tokens=False)
    stream = tokenizer.text_stream(stop=("Zürich →  ", "indented!"))
    assert "".join(stream_all(stream, ids)) == tokenizer.decode(ids)
    assert not stream.stopped and stream.stop_reason is None


def test_no_delta_holds_half_a_character(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(UNICODE_TEXT, add_special_tokens=False)
    deltas = stream_all(tokenizer.text_stream(), ids)
    assert "".join(deltas) == tokenizer.decode(ids)
    assert not any(REPLACEMENT_CHAR in delta for delta in deltas)


def test_byte_level_emoji_is_held_until_complete(smollm2: Tokenizer) -> None:
    ids = smollm2.encode("Hi 😀")
    assert len(ids) == 3  # "Hi", " " + first emoji bytes, last emoji byte
    stream = smollm2.text_stream()
    assert [stream.push([i]) for i in ids] == ["Hi", " ", "😀"]


def test_byte_fallback_run_is_held_until_a_normal_token(tiny_sp: Tokenizer) -> None:
    ids = tiny_sp.encode("the 中 the", add_special_tokens=False)
    byte_positions = [n for n, i in enumerate(ids) if tiny_sp.decode([i]) == REPLACEMENT_CHAR]
    assert len(byte_positions) == 3  # 中 is three <0x..> tokens in this vocabulary
    stream = tiny_sp.text_stream()
    deltas = [stream.push([i]) for i in ids]
    assert "".join(deltas) + stream.flush() == "the 中 the"
    assert [deltas[n] for n in byte_positions] == ["", "", ""]
    assert deltas[byte_positions[-1] + 1].startswith("中")  # once a normal token closes the run


def test_sentencepiece_leading_spaces_survive_streaming(tiny_sp: Tokenizer) -> None:
    text = "Hello world  and  the lazy dog"
    ids = tiny_sp.encode(text)
    deltas = stream_all(tiny_sp.text_stream(), ids)
    assert "".join(deltas) == text
    assert any(d.startswith(" ") for d in deltas)


@pytest.mark.parametrize("name", ["tiny_sp", "tiny_metaspace"])
def test_special_token_between_words_keeps_the_space(
    name: str, request: pytest.FixtureRequest
) -> None:
    tokenizer: Tokenizer = request.getfixturevalue(name)
    ids = [*tokenizer.encode("Hello"), 2, 2, *tokenizer.encode(" world", add_special_tokens=False)]
    assert tokenizer.decode(ids) == "Hello world"
    assert "".join(stream_all(tokenizer.text_stream(), ids)) == "Hello world"


def test_text_that_may_start_a_stop_string_is_held(smollm2: Tokenizer) -> None:
    stream = smollm2.text_stream(stop=("world",))
    assert stream.push(smollm2.encode("Hello")) == "Hello"
    assert stream.push(smollm2.encode(" wor")) == " "
    assert stream.push(smollm2.encode("ship")) == "worship"
    assert not stream.stopped


def test_stop_string_across_tokens(smollm2: Tokenizer) -> None:
    stream = smollm2.text_stream(stop=(" world", "xyz"))
    pieces = ["Hello", " wo", "rld", " and more"]
    assert [stream.push(smollm2.encode(p)) for p in pieces] == ["Hello", "", "", ""]
    assert stream.stopped and stream.stop_reason == " world"
    assert stream.flush() == ""
    assert stream.text == "Hello"


def test_flush_releases_a_held_partial_stop(smollm2: Tokenizer) -> None:
    stream = smollm2.text_stream(stop=("offer",))
    assert stream.push(smollm2.encode("The end of")) == "The end "
    assert stream.flush() == "of"


def test_earliest_stop_wins() -> None:
    matcher = StopMatcher(("cd", "b"))
    assert matcher.feed("abcd") == "a"
    assert matcher.matched == "b"
    assert matcher.feed("more") == ""


def test_overlapping_stop_prefixes() -> None:
    matcher = StopMatcher(("aab",))
    assert [matcher.feed(c) for c in "aaab"] == ["", "", "a", ""]
    assert matcher.matched == "aab"


def test_empty_stop_strings_are_ignored() -> None:
    matcher = StopMatcher(("",))
    assert matcher.feed("text") == "text"
    assert matcher.matched is None
