"""Ceilings: tiny real measurements, and the bound arithmetic on known numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from strata.bench.ceilings import (
    Ceilings,
    compute_bound_tok_s,
    decode_bound_tok_s,
    flops_per_token,
    matmul_gflops,
    measure_ceilings,
    memory_bandwidth_gbps,
    model_bounds,
    model_weight_bytes,
    parameter_shapes,
)
from strata.engine.model_config import ModelConfig

MiB = 1 << 20

SMOLLM2_135M = {
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "tie_word_embeddings": True,
}


def positive_finite(value: float) -> bool:
    return value > 0 and math.isfinite(value)


def test_small_measurements_are_positive_and_finite() -> None:
    assert positive_finite(memory_bandwidth_gbps(64 * MiB, repeats=2))
    assert positive_finite(matmul_gflops(torch.float32, n=512, repeats=2))
    assert positive_finite(matmul_gflops(torch.bfloat16, n=512, repeats=2))


def test_measure_ceilings_says_how() -> None:
    ceilings = measure_ceilings(copy_bytes=64 * MiB, matmul_n=256, repeats=1)
    assert positive_finite(ceilings.bandwidth_gbps)
    assert positive_finite(ceilings.matmul_gflops_fp32)
    assert positive_finite(ceilings.matmul_gflops_bf16)
    assert ceilings.threads == torch.get_num_threads()
    assert "read + write" in ceilings.method and "256^3" in ceilings.method


def test_decode_bound_is_bandwidth_over_weight_bytes() -> None:
    assert decode_bound_tok_s(538_000_000, 34.0) == pytest.approx(63.197, rel=1e-4)
    assert decode_bound_tok_s(269_000_000, 34.0, batch_size=4) == pytest.approx(505.58, rel=1e-4)


def test_compute_bound_is_gflops_over_flops_per_token() -> None:
    assert compute_bound_tok_s(270_000_000, 190.0) == pytest.approx(703.70, rel=1e-4)


def test_flops_per_token_of_smollm2() -> None:
    config = ModelConfig.from_dict(SMOLLM2_135M)
    # 30 layers x (q, o: 576x576; k, v: 576x192; MLP: 3 x 576x1536) + lm_head 576x49152
    parameters = 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536) + 576 * 49152
    assert parameters == 134_479_872
    assert flops_per_token(config) == 2 * parameters
    extra = flops_per_token(config, context_tokens=100) - flops_per_token(config)
    assert extra == 30 * 4 * 9 * 64 * 100


def test_weight_bytes_count_a_tied_embedding_once_and_skip_an_untied_one() -> None:
    tied = {
        "model.embed_tokens.weight": torch.zeros(10, 4),
        "model.layer.weight": torch.zeros(4, 4),
    }
    assert model_weight_bytes(tied, torch.float32) == (40 + 16) * 4
    untied = {**tied, "lm_head.weight": torch.zeros(10, 4)}
    assert model_weight_bytes(untied, torch.float32) == (16 + 40) * 4
    assert model_weight_bytes(untied, torch.bfloat16) == (16 + 40) * 2


def test_weight_bytes_from_a_folder(tiny_llama_folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_folder)
    read = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    assert model_weight_bytes(tiny_llama_folder, torch.float32) == read * 4
    assert model_weight_bytes(tiny_llama_folder, torch.bfloat16) == read * 2


def test_model_bounds_combine_the_pieces(tiny_llama_folder: Path) -> None:
    ceilings = Ceilings(
        bandwidth_gbps=30.0,
        matmul_gflops_fp32=200.0,
        matmul_gflops_bf16=400.0,
        threads=2,
        method="fixed",
    )
    fp32 = model_bounds(ceilings, tiny_llama_folder, torch.float32)
    bf16 = model_bounds(ceilings, tiny_llama_folder, torch.bfloat16)
    assert (fp32.dtype, bf16.dtype) == ("float32", "bfloat16")
    assert bf16.decode_bound_tok_s == pytest.approx(2 * fp32.decode_bound_tok_s)
    assert bf16.compute_bound_tok_s == pytest.approx(2 * fp32.compute_bound_tok_s)
    assert fp32.decode_bound_tok_s == pytest.approx(30e9 / fp32.weight_bytes)
    assert fp32.flops_per_token == flops_per_token(ModelConfig.from_folder(tiny_llama_folder))


def test_a_folder_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="safetensors"):
        parameter_shapes(tmp_path)
