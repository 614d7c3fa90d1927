from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strata.engine.chat_template import ChatTemplate, tojson
from strata.engine.tokenizer import Tokenizer
from strata.errors import InvalidRequestError, ModelLoadError
from tests.conftest import hf_tokenizer, template_folder

CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "What is the weather?"}],
    [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "  Weather in Zürich <today> & 'tomorrow'?  "},
        {"role": "assistant", "content": "Checking."},
    ],
]

# Exercises everything the environment provides: whitespace control, loop controls, tojson
# (HTML left alone, unicode kept), strftime_now, bos/eos variables, tools and raise_exception.
FEATURE_TEMPLATE = """{{ bos_token }}
{%- if tools is not none %}Tools: {{ tools | tojson }}
{% endif %}
{% for message in messages %}
    {% if message.role not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('unknown role ' + message.role) }}
    {% endif %}
    {% if message.role == 'system' %}{% continue %}{% endif %}
[{{ message.role }}] {{ message.content | trim }}{{ eos_token }}
    {{ message | tojson(sort_keys=True) }}
{% endfor %}
{% if add_generation_prompt %}[assistant] ({{ strftime_now('%Y') }}){% endif %}"""


def test_feature_template_matches_transformers(smollm2_folder: Path, tmp_path: Path) -> None:
    folder = template_folder(smollm2_folder, tmp_path, FEATURE_TEMPLATE)
    tools = [{"type": "function", "function": {"name": "get<weather>", "description": "é & 😀"}}]
    ours, theirs = Tokenizer.from_folder(folder), hf_tokenizer(folder)
    for messages in CONVERSATIONS:
        tool_choices: list[dict[str, Any]] = [{"tools": tools}, {}]
        for kwargs in tool_choices:
            expected = theirs.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **kwargs
            )
            assert ours.apply_chat_template(messages, **kwargs) == expected
    rendered = ours.apply_chat_template(CONVERSATIONS[1], tools=tools)
    assert '"get<weather>"' in rendered and "😀" in rendered  # not HTML- or ASCII-escaped


def test_raise_exception_becomes_invalid_request(smollm2_folder: Path, tmp_path: Path) -> None:
    tokenizer = Tokenizer.from_folder(template_folder(smollm2_folder, tmp_path, FEATURE_TEMPLATE))
    with pytest.raises(InvalidRequestError, match="unknown role robot"):
        tokenizer.apply_chat_template([{"role": "robot", "content": "beep"}])


def test_template_cannot_mutate_its_inputs(smollm2_folder: Path, tmp_path: Path) -> None:
    folder = template_folder(smollm2_folder, tmp_path, "{{ messages.append({'role': 'x'}) }}")
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequestError, match="cannot render"):
        Tokenizer.from_folder(folder).apply_chat_template(messages)
    assert messages == [{"role": "user", "content": "hi"}]


def test_broken_template_fails_at_load_naming_the_file(
    smollm2_folder: Path, tmp_path: Path
) -> None:
    folder = template_folder(smollm2_folder, tmp_path, "{% for m in messages %}unclosed")
    with pytest.raises(ModelLoadError, match=r"chat_template\.jinja: the chat template"):
        Tokenizer.from_folder(folder)


def test_generation_markers_render_their_body(smollm2_folder: Path, tmp_path: Path) -> None:
    source = (
        "{% for m in messages %}{% generation %}<{{ m.content }}>{% endgeneration %}{% endfor %}"
    )
    folder = template_folder(smollm2_folder, tmp_path, source)
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    expected = hf_tokenizer(folder).apply_chat_template(messages, tokenize=False)
    assert Tokenizer.from_folder(folder).apply_chat_template(messages) == expected == "<a><b>"


def test_tojson_leaves_html_and_unicode_alone() -> None:
    assert tojson({"b": "<é>", "a": 1}, sort_keys=True) == '{"a": 1, "b": "<é>"}'
    assert tojson([1, 2], indent=2) == "[\n  1,\n  2\n]"


def test_special_token_variables_and_whitespace_control() -> None:
    source = (
        "{% if true %}\n"
        "    {% for m in messages %}\n"
        "{{ bos_token }}{{ m.content }}{{ eos_token }}\n"
        "    {% endfor %}\n"
        "{% endif %}"
    )
    template = ChatTemplate(source, "inline", {"bos_token": "<s>", "eos_token": "</s>"})
    assert template.render([{"role": "user", "content": "hi"}]) == "<s>hi</s>\n"
