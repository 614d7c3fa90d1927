"""Fine-tune MiniLM's first four layers, with a linear read-out, into an injection scorer.

    texts ─▶ WordPiece ids (≤ `TuneConfig.max_tokens`) ─▶ length-bucketed batches
          ─▶ SentenceEncoder.pooled (layers trainable, embeddings frozen) ─▶ w·pooled + b
          ─▶ weighted BCE, AdamW, linear warm-up then linear decay

The embeddings stay MiniLM's (they are most of its parameters and do not need to move), so the
artifact carries only the four layers and the read-out. Batches hold texts of similar length
(far less padding); their order is shuffled by a seeded generator, and torch runs on a fixed
number of threads: the same data, seed and thread count give the same weights.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from strata.guard.encoder import DIMS, SentenceEncoder, is_layer_weight

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TuneConfig:
    """Fine-tuning hyper-parameters; the defaults built the committed artifact."""

    seed: int = 0
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5  # the layers; the read-out learns at `readout_learning_rate`
    readout_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_tokens: int = 128  # longer texts are cut while training (scoring reads 256)
    threads: int = 2


@dataclass(frozen=True)
class Tuned:
    """What fine-tuning produced: the layers' weights and the read-out (w·pooled + b)."""

    layers: dict[str, F32]
    readout: F32  # (DIMS,)
    bias: float


def batches(lengths: Sequence[int], size: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped into batches of similar length, in shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] + rng.random() * 4)
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    return groups


def fine_tune(
    texts: Sequence[str],
    labels: F32,
    weights: F32,
    config: TuneConfig,
    progress: Callable[[str], None] | None = None,
) -> Tuned:
    """Train the layers and read-out on `texts` (weighted binary cross-entropy)."""
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    encoder = SentenceEncoder()
    params = {}
    for name, value in encoder.weights.items():
        if is_layer_weight(name):
            params[name] = torch.nn.Parameter(value.clone())
            encoder.weights[name] = params[name]
    readout = torch.nn.Linear(DIMS, 1)
    opt = torch.optim.AdamW(
        [
            {"params": list(params.values()), "lr": config.learning_rate},
            {"params": list(readout.parameters()), "lr": config.readout_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    ids = encoder.token_ids(texts, config.max_tokens)
    total = config.epochs * math.ceil(len(ids) / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / config.warmup_steps) * max(0.0, 1.0 - s / total)
    )
    y, w = torch.from_numpy(labels), torch.from_numpy(weights)
    start, step = time.monotonic(), 0
    for _ in range(config.epochs):
        for batch in batches([len(i) for i in ids], config.batch_size, rng):
            logits = readout(encoder.pooled([ids[i] for i in batch])).squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y[batch], weight=w[batch]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            step += 1
            if progress and step % 100 == 0:
                progress(f"step {step}/{total} loss {loss.item():.4f} "
                         f"{time.monotonic() - start:.0f} s")  # fmt: skip
    return Tuned(
        {k: v.detach().numpy().astype(np.float32).copy() for k, v in params.items()},
        readout.weight.detach().numpy()[0].astype(np.float32).copy(),
        float(readout.bias.item()),
    )
