"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models", sec. 2): k-NN balls around each feature vector estimate the manifold of a set.

precision = share of fake samples inside the real manifold (any real ball, radius = distance to the
k-th nearest other real sample); recall = share of real samples inside the fake manifold. Distances are
computed ``chunk_size`` rows at a time: memory is O(chunk_size * N), never N x N.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _as_features(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (N, D) feature tensor, got {shape}")
    return x.to(torch.promote_types(x.dtype, torch.float32))


@torch.no_grad()
def knn_radii(feats: Tensor, k: int = 3, chunk_size: int = 1024) -> Tensor:
    """(N, D) -> (N,): Euclidean distance from each row to its k-th nearest other row."""
    feats = _as_features(feats, "feats")
    if not 1 <= k < feats.shape[0]:
        raise ValueError(f"k must be in [1, N - 1] = [1, {feats.shape[0] - 1}] for N = {feats.shape[0]}, got {k}")
    out = []
    for rows in feats.split(chunk_size):
        dist = torch.cdist(rows, feats)  # (c, N); each row's own distance 0 is its 1st neighbour
        out.append(dist.kthvalue(k + 1, dim=1).values)  # (c,)
    return torch.cat(out)


@torch.no_grad()
def inside_manifold(queries: Tensor, refs: Tensor, radii: Tensor, chunk_size: int = 1024) -> Tensor:
    """(M, D) queries, (N, D) refs, (N,) radii -> bool (M,): query within radius of at least one ref."""
    queries, refs = _as_features(queries, "queries"), _as_features(refs, "refs")
    out = []
    for rows in queries.split(chunk_size):
        dist = torch.cdist(rows.to(refs.dtype), refs)  # (c, N)
        out.append((dist <= radii[None, :]).any(dim=1))  # (c,)
    return torch.cat(out)


def precision_recall(real_feats: Tensor, fake_feats: Tensor, k: int = 3,
                     chunk_size: int = 1024) -> tuple[float, float]:
    """(N, D) real, (M, D) fake features -> (precision, recall), each in [0, 1]; k = 3 as in the paper."""
    real, fake = _as_features(real_feats, "real_feats"), _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real_feats and fake_feats must have the same width D, got {real.shape[1]} and "
                         f"{fake.shape[1]}")
    dtype = torch.promote_types(real.dtype, fake.dtype)
    real, fake = real.to(dtype), fake.to(dtype)
    precision = inside_manifold(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    recall = inside_manifold(real, fake, knn_radii(fake, k, chunk_size), chunk_size)
    return float(precision.double().mean()), float(recall.double().mean())
