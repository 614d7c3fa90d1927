"""Fitting the first stage: idf, then L2-regularised logistic regression by L-BFGS (torch).

Rows are the hashed counts `features.bucket_counts` gives; they become the same L2-normalised
sublinear tf-idf vectors `features.featurize` builds at scoring time, stacked in one sparse
CSR matrix. The loss is sample-weighted binary cross-entropy (weights normalised to sum to 1)
plus `l2 / 2 · ‖w‖²`; its gradient is written out (Xᵀ·r), which keeps a fit over a million
buckets and 16,000 texts to seconds. Training only: scoring needs none of this.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from strata.guard.classifier import SparseModel
from strata.guard.features import NUM_BUCKETS

Counts = Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]
F32 = npt.NDArray[np.float32]


def fit_idf(rows: Counts) -> F32:
    """Smoothed idf per bucket: ln((1 + N) / (1 + df)) + 1."""
    df = np.zeros(NUM_BUCKETS, dtype=np.float64)
    for buckets, _ in rows:
        df[buckets] += 1.0
    return (np.log((1.0 + len(rows)) / (1.0 + df)) + 1.0).astype(np.float32)


def tfidf_matrix(rows: Counts, idf: F32) -> torch.Tensor:
    """(N, NUM_BUCKETS) sparse CSR of L2-normalised sublinear tf-idf rows."""
    pointers, indices, values = [0], [], []
    for buckets, counts in rows:
        v = (1.0 + np.log(counts)) * idf[buckets]
        norm = float(np.linalg.norm(v))
        values.append((v / norm if norm > 0 else v).astype(np.float32))
        indices.append(buckets)
        pointers.append(pointers[-1] + len(buckets))
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used plainly here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.tensor(pointers, dtype=torch.int64),
            torch.from_numpy(np.concatenate(indices) if indices else np.zeros(0, np.int64)),
            torch.from_numpy(np.concatenate(values) if values else np.zeros(0, np.float32)),
            size=(len(rows), NUM_BUCKETS),
            check_invariants=False,
        )


def fit(rows: Counts, labels: F32, weights: F32, idf: F32, l2: float) -> SparseModel:
    """Weighted L2 logistic regression over `rows` (L-BFGS with a strong-Wolfe line search)."""
    x = tfidf_matrix(rows, idf)
    xt = x.to_sparse_coo().t().coalesce().to_sparse_csr()
    y = torch.from_numpy(labels.astype(np.float32))
    sw = torch.from_numpy(weights / weights.sum()).float()
    w = torch.zeros(NUM_BUCKETS, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], max_iter=300, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-7, tolerance_change=1e-10,
    )  # fmt: skip

    def closure() -> torch.Tensor:
        with torch.no_grad():
            z = torch.mv(x, w) + b
            loss = (sw * (torch.nn.functional.softplus(z) - y * z)).sum() + l2 / 2 * w.dot(w)
            residual = sw * (torch.sigmoid(z) - y)  # d loss / d z
            w.grad = torch.mv(xt, residual) + l2 * w
            b.grad = residual.sum().reshape(1)
        return loss

    opt.step(closure)
    return SparseModel(w.detach().numpy().copy(), idf, float(b.detach().item()))


def logits(model: SparseModel, rows: Counts) -> F32:
    """The model's logit for each row (as `SparseModel.logit` gives for the text)."""
    x = tfidf_matrix(rows, model.idf)
    z: F32 = (torch.mv(x, torch.from_numpy(model.weights)) + model.bias).numpy()
    return z
