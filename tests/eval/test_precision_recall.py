"""Improved precision/recall against a naive O(N^2) transcription of Kynkäänniemi et al. (2019)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lzn.eval import knn_radii, precision_recall


def _naive(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(a):  # distance to the k-th nearest other point, by sorting every row
        return np.array([np.sort([np.linalg.norm(p - q) for q in a])[k] for p in a])

    def share_inside(queries, refs, r):
        return np.mean([any(np.linalg.norm(q - p) <= rp for p, rp in zip(refs, r)) for q in queries])

    return float(share_inside(fake, real, radii(real))), float(share_inside(real, fake, radii(fake)))


def test_matches_the_naive_reference_with_small_chunks():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    fake = 0.7 * torch.randn(33, 5, generator=gen, dtype=torch.float64) + 0.6
    for k in (1, 3, 5):
        expected = _naive(real.numpy(), fake.numpy(), k)
        assert precision_recall(real, fake, k=k, chunk_size=7) == pytest.approx(expected, abs=0)
        assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # the case is not trivial


def test_identical_sets_have_precision_and_recall_one():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(1))
    assert precision_recall(x, x.clone(), chunk_size=64) == (1.0, 1.0)


def test_disjoint_far_apart_sets_have_precision_and_recall_zero():
    gen = torch.Generator().manual_seed(2)
    real, fake = torch.randn(100, 8, generator=gen), torch.randn(80, 8, generator=gen) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_mode_dropping_lowers_recall_not_precision():
    gen = torch.Generator().manual_seed(3)
    real = torch.cat([torch.randn(300, 2, generator=gen), torch.randn(300, 2, generator=gen) + 20.0])
    fake = torch.randn(300, 2, generator=gen)  # covers one of the two modes
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9 and 0.4 < recall < 0.6


def test_radii_are_kth_neighbour_distances():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(x, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(x, k=3).tolist() == [6.0, 5.0, 3.0, 6.0]


def test_bad_inputs_name_the_expected_form():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"k must be in \[1, N - 1\]"):
        precision_recall(x, x, k=5)
    with pytest.raises(ValueError, match="same width D"):
        precision_recall(x, torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"\(N, D\) feature tensor"):
        precision_recall(x[0], x)
