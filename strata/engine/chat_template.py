"""A model's own Jinja chat template, rendered the way Hugging Face transformers renders it.

Templates ship with model files, so they are untrusted code: they run in Jinja's immutable
sandbox. The environment matches transformers' (`trim_blocks`, `lstrip_blocks`, loop
controls, `raise_exception`, `strftime_now`, a `tojson` that leaves HTML alone) so a prompt
rendered here is byte-for-byte the prompt the model was trained on.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from strata.errors import InvalidRequestError, ModelLoadError

NO_TEMPLATE_MESSAGE = "this model has no chat template; use /v1/completions"


class ChatTemplate:
    """One compiled chat template; `origin` names the file it came from, for error messages."""

    def __init__(self, source: str, origin: str, special_tokens: dict[str, str]) -> None:
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ModelLoadError(
                f"{origin}: the chat template does not compile (line {exc.lineno}: {exc.message})."
            ) from exc
        self.source = source
        self.origin = origin
        self._special_tokens = dict(special_tokens)

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """Render a conversation; a template that rejects it raises `InvalidRequestError`."""
        try:
            return self._template.render(
                messages=messages,
                tools=tools,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self._special_tokens,
            )
        except (jinja2.TemplateError, TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the chat template cannot render these messages: {exc}"
            ) from exc


def raise_exception(message: str) -> None:
    """Templates call this to reject a conversation (e.g. roles out of order)."""
    raise InvalidRequestError(str(message))


def strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """Plain `json.dumps`: Jinja's own filter would escape `<`, `>`, `&` and `'` as HTML."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class GenerationTag(Extension):
    """Accepts `{% generation %}...{% endgeneration %}` and renders the body unchanged.

    Some templates mark assistant turns this way for training masks; serving ignores it.
    """

    tags = {"generation"}  # noqa: RUF012 - overrides a plain attribute of jinja2.ext.Extension

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", GenerationTag],
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env
