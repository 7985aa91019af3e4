"""The contrastive baselines' losses against loops over pairs written from the papers (float64, one process):
NT-Xent (SimCLR, Chen et al. 2020, eq. 1) and CLIP's symmetric InfoNCE (Radford et al. 2021, fig. 3), the
latter with a target spread uniformly over every correct partner (repeated captions)."""

from __future__ import annotations

import math

import torch

from lzn.recipes.baselines import nt_xent
from lzn.recipes.clip import symmetric_info_nce


def _unit(n: int, q: int, seed: int) -> torch.Tensor:
    z = torch.randn(n, q, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return z / z.norm(dim=1, keepdim=True)


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Views 2k and 2k+1 of sample k; l(i, j) = -log exp(s_ij / t) / sum_{m != i} exp(s_im / t); the mean
    of l over both orders of every positive pair."""
    views = [v for k in range(z1.shape[0]) for v in (z1[k], z2[k])]
    sim = [[float(a @ b) / temperature for b in views] for a in views]
    total = 0.0
    for i in range(len(views)):
        j = i + 1 if i % 2 == 0 else i - 1
        denominator = sum(math.exp(sim[i][m]) for m in range(len(views)) if m != i)
        total += -math.log(math.exp(sim[i][j]) / denominator)
    return total / len(views)


def naive_symmetric_info_nce(img: torch.Tensor, txt: torch.Tensor, scale: float, match: list[list[bool]]) -> float:
    """Mean over images of the cross-entropy of the text softmax against a target uniform over the image's
    correct texts, and the same with roles swapped; the two directions averaged."""
    n = img.shape[0]

    def direction(queries: torch.Tensor, keys: torch.Tensor) -> float:
        total = 0.0
        for i in range(n):
            logits = [scale * float(queries[i] @ keys[j]) for j in range(n)]
            log_norm = math.log(sum(math.exp(v) for v in logits))
            partners = [j for j in range(n) if match[i][j]]
            total += -sum((logits[j] - log_norm) / len(partners) for j in partners)
        return total / n

    return 0.5 * (direction(img, txt) + direction(txt, img))


def test_nt_xent_matches_the_paper_loop():
    z1, z2 = _unit(6, 5, 0), _unit(6, 5, 1)
    for temperature in (0.1, 0.5, 2.0):
        got = float(nt_xent(z1, z2, temperature))
        assert math.isclose(got, naive_nt_xent(z1, z2, temperature), rel_tol=1e-12, abs_tol=1e-12)


def test_nt_xent_identical_views_far_apart_is_small():
    z = torch.eye(4, dtype=torch.float64)  # orthogonal samples, each view equal to its partner
    assert float(nt_xent(z, z, 0.05)) < 1e-6


def test_symmetric_info_nce_matches_the_loop_with_one_partner_each():
    img, txt = _unit(5, 4, 2), _unit(5, 4, 3)
    match = [[i == j for j in range(5)] for i in range(5)]
    got = float(symmetric_info_nce(img, txt, torch.tensor(7.0, dtype=torch.float64), torch.tensor(match)))
    assert math.isclose(got, naive_symmetric_info_nce(img, txt, 7.0, match), rel_tol=1e-12)


def test_symmetric_info_nce_spreads_the_target_over_repeated_captions():
    captions = ["zero", "one", "zero", "two", "one", "zero"]
    match = [[a == b for b in captions] for a in captions]
    img, txt = _unit(6, 3, 4), _unit(6, 3, 5)
    got = float(symmetric_info_nce(img, txt, torch.tensor(3.0, dtype=torch.float64), torch.tensor(match)))
    assert math.isclose(got, naive_symmetric_info_nce(img, txt, 3.0, match), rel_tol=1e-12)
