from __future__ import annotations

import torch

from strata.engine.sampler import SamplingBatch, sample


def _batch(
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    vocab: int = 8,
    generators: list[torch.Generator | None] | None = None,
    banned: list[tuple[int, list[int]]] | None = None,
) -> SamplingBatch:
    return SamplingBatch(
        temperatures=torch.full((n,), 1.0 if greedy else temperature),
        top_ks=torch.full((n,), top_k or vocab, dtype=torch.long),
        top_ps=torch.full((n,), top_p),
        greedy=torch.full((n,), greedy, dtype=torch.bool),
        all_greedy=greedy,
        generators=generators or [None] * n,
        banned=banned or [],
    )


LOGITS = torch.tensor([1.0, 3.0, 0.5, 2.5, -1.0, 0.0, 2.9, 1.5])


def test_greedy_takes_the_argmax_per_row() -> None:
    logits = torch.stack([LOGITS, LOGITS.flip(0)])
    assert sample(logits.clone(), _batch(2, greedy=True)).tolist() == [1, 6]


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    logits = LOGITS.repeat(64, 1)
    assert set(sample(logits.clone(), _batch(64, top_k=1)).tolist()) == {1}
    assert set(sample(logits.clone(), _batch(64, top_p=1e-6)).tolist()) == {1}


def test_top_k_restricts_to_the_k_most_likely() -> None:
    torch.manual_seed(0)
    picks = sample(LOGITS.repeat(2000, 1), _batch(2000, top_k=3)).tolist()
    assert set(picks) == {1, 6, 3}


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    torch.manual_seed(0)
    probs = LOGITS.softmax(-1)
    order = probs.argsort(descending=True).tolist()  # 1, 6, 3, 7, 0, ...
    mass_two = float(probs[order[0]] + probs[order[1]])
    picks = sample(LOGITS.repeat(2000, 1), _batch(2000, top_p=mass_two - 0.01)).tolist()
    assert set(picks) == set(order[:2])


def test_sampling_frequencies_follow_the_softmax() -> None:
    torch.manual_seed(0)
    n = 20000
    picks = sample(LOGITS.repeat(n, 1), _batch(n, temperature=0.7))
    observed = torch.bincount(picks, minlength=8).float() / n
    expected = (LOGITS / 0.7).softmax(-1)
    assert torch.allclose(observed, expected, atol=0.015)


def test_seeded_rows_do_not_depend_on_their_neighbours() -> None:
    def draw(batch_size: int) -> int:
        gens: list[torch.Generator | None] = [None] * batch_size
        gens[-1] = torch.Generator().manual_seed(42)
        logits = torch.randn(batch_size, 8)
        logits[-1] = LOGITS
        return sample(logits, _batch(batch_size, generators=gens)).tolist()[-1]

    seq = [draw(1) for _ in range(3)]
    assert [draw(5) for _ in range(3)] == seq


def test_banned_tokens_are_never_sampled() -> None:
    torch.manual_seed(0)
    picks = sample(LOGITS.repeat(500, 1), _batch(500, banned=[(i, [1, 6]) for i in range(500)]))
    assert not {1, 6} & set(picks.tolist())
    greedy = sample(LOGITS.repeat(1, 1), _batch(1, greedy=True, banned=[(0, [1])]))
    assert greedy.tolist() == [6]
