"""How many prompt tokens a request will cost, known before any upstream has tokenized it.

The gateway reserves `estimate + max_tokens` at admission and settles with the upstream's real
usage afterwards, so the estimate only has to be close and cheap (a few microseconds, no
tokenizer). Byte-level BPE vocabularies average ~4 bytes of English per token; dividing by 3
leans high, so a reservation rarely under-counts. Chat templates add a few tokens per message.
"""

from __future__ import annotations

from strata.gateway.body import GenerationBody

BYTES_PER_TOKEN = 3
TEMPLATE_TOKENS_PER_MESSAGE = 4
TEMPLATE_TOKENS_PER_REQUEST = 8


def estimate_prompt_tokens(body: GenerationBody) -> int:
    """An estimate of the prompt's token count, leaning high."""
    text_bytes = sum(len(text.encode()) for _, text in body.texts)
    template = TEMPLATE_TOKENS_PER_MESSAGE * body.num_messages
    if body.endpoint == "chat":
        template += TEMPLATE_TOKENS_PER_REQUEST
    return -(-text_bytes // BYTES_PER_TOKEN) + template + body.prompt_token_ids
