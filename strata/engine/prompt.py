"""A request's prompt as token ids, exactly as the engine serves it.

The engine server uses these for every request, and a prefix-aware router uses them to hash a
prompt into the engine's KV blocks before sending it: one implementation, so both agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strata.engine.tokenizer import Tokenizer


def chat_prompt_ids(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Render the chat template; the template already holds the special tokens."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


def text_prompt_ids(tokenizer: Tokenizer, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, list):
        return prompt
    return tokenizer.encode(prompt, add_special_tokens=True)
