"""The built-in serving engine: continuous batching over a paged KV cache with prefix reuse.

The engine knows token ids, blocks and steps. It knows nothing of tenants, API keys,
documents or durable state, and imports only torch, safetensors, tokenizers (and jinja2,
which torch itself requires), so it runs on a bare GPU machine without the web stack.
"""
