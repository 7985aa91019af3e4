"""FID and KID on feature vectors, and ``generation_metrics`` that reports them with precision/recall.

docs/method.md §8.4. FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to two
feature sets. KID (Bińkowski et al. 2018, "Demystifying MMD GANs", sec. 4): the unbiased MMD^2 with the
cubic polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets. All arithmetic is float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lzn.eval.features import FeatureExtractor
from lzn.eval.precision_recall import precision_recall

ArrayLike = Tensor | np.ndarray


def _features(x: ArrayLike, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a (N, D) feature tensor with N >= 2, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.to(torch.float64)


def feature_statistics(feats: ArrayLike) -> tuple[Tensor, Tensor]:
    """(N, D) features -> float64 mean (D,) and unbiased covariance (D, D); what FID compares."""
    f = _features(feats, "feats")
    return f.mean(0), torch.cov(f.T)  # (D,), (D, D)


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), in float64.

    tr((S1 S2)^1/2) equals the sum of square roots of the eigenvalues of the symmetric PSD matrix
    S1^1/2 S2 S1^1/2 (same spectrum as S1 S2), so two symmetric eigendecompositions replace a general
    matrix square root; eigenvalues below 0 from rounding are clipped to 0.
    """
    m1, m2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    d = m1.shape[0] if m1.dim() == 1 else -1
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"expected means (D,) and covariances (D, D) of one D, got {tuple(m1.shape)}, "
                         f"{tuple(s1.shape)}, {tuple(m2.shape)}, {tuple(s2.shape)}")
    s2 = s2.to(s1.device)
    w, v = torch.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T  # S1^1/2, (D, D)
    inner = root1 @ s2 @ root1  # (D, D), symmetric PSD up to rounding
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    diff = (m1 - m2.to(m1.device)).square().sum()
    return float(diff + s1.trace() + s2.trace() - 2 * tr_sqrt)


def fid(real_feats: ArrayLike, fake_feats: ArrayLike) -> float:
    """Fréchet distance between the Gaussians fitted to (N, D) real and (M, D) fake features."""
    mu1, s1 = feature_statistics(real_feats)
    mu2, s2 = feature_statistics(fake_feats)
    if mu1.shape != mu2.shape:
        raise ValueError(f"real and fake features must have the same width D, got {mu1.shape[0]} and {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)


def _polynomial_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 of (m, D) x and (m, D) y with k(a, b) = (a.b / D + 1)^3; Bińkowski et al. eq. 3."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3  # (m, m)
    k_yy = (y @ y.T / d + 1) ** 3  # (m, m)
    k_xy = (x @ y.T / d + 1) ** 3  # (m, m)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def kid(real_feats: ArrayLike, fake_feats: ArrayLike, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID: mean and (population) std of the unbiased polynomial MMD^2 over ``subsets`` random subsets.

    Each subset draws min(subset_size, N, M) real and as many fake rows without replacement, from a
    generator seeded with ``seed`` (the same call gives the same numbers).
    """
    real, fake = _features(real_feats, "real_feats"), _features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features must have the same width D, got {real.shape[1]} and {fake.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    gen = torch.Generator().manual_seed(seed)
    fake = fake.to(real.device)
    scores = torch.stack([
        _polynomial_mmd2(real[torch.randperm(real.shape[0], generator=gen)[:m].to(real.device)],
                         fake[torch.randperm(fake.shape[0], generator=gen)[:m].to(real.device)])
        for _ in range(subsets)
    ])  # (subsets,)
    return float(scores.mean()), float(scores.std(correction=0))


def generation_metrics(real_images: Tensor, fake_images: Tensor, extractor: FeatureExtractor,
                       kid_subsets: int = 100, kid_subset_size: int = 1000, k: int = 3,
                       seed: int = 0) -> dict[str, Any]:
    """FID, KID, precision and recall of (M, C, H, W) fakes against (N, C, H, W) reals, images in [-1, 1].

    Features are extracted once per set; every number is reported with the extractor's name and the
    sample counts, since FID depends on both.
    """
    name = getattr(extractor, "name", None)
    if not isinstance(name, str):
        raise TypeError("extractor must be a lzn.eval FeatureExtractor (inception_extractor(), fast_extractor() "
                        f"or custom_extractor(module, name)), got {type(extractor).__name__}")
    real, fake = extractor(real_images), extractor(fake_images)  # (N, D), (M, D)
    kid_mean, kid_std = kid(real, fake, kid_subsets, kid_subset_size, seed)
    precision, recall = precision_recall(real, fake, k)
    return {"fid": fid(real, fake), "kid_mean": kid_mean, "kid_std": kid_std, "precision": precision,
            "recall": recall, "extractor": name, "num_real": int(real.shape[0]), "num_fake": int(fake.shape[0])}
