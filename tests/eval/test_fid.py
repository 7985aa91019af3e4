"""FID, KID and generation_metrics against closed forms, naive references and torchmetrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from lzn.eval import custom_extractor, feature_statistics, fid, frechet_distance, generation_metrics, kid


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spd(d: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_commuting_gaussians_is_the_closed_form():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: FID = |m1 - m2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    gen = _gen()
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    a = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.01], dtype=torch.float64)
    b = torch.tensor([1.5, 0.2, 2.0, 4.0, 0.3], dtype=torch.float64)
    m1, m2 = torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64)
    expected = float((m1 - m2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    got = frechet_distance(m1, q @ torch.diag(a) @ q.T, m2, q @ torch.diag(b) @ q.T)
    assert got == pytest.approx(expected, abs=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_for_general_covariances():
    gen = _gen(1)
    s1, s2 = _spd(6, gen), _spd(6, gen)
    m1, m2 = torch.randn(6, generator=gen, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    root = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real  # the usual pytorch-fid formula
    expected = float((m1 - m2).square().sum()) + float(np.trace(s1.numpy() + s2.numpy() - 2 * root))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(m1.numpy(), s1.numpy(), m2.numpy(), s2.numpy()) == pytest.approx(expected, rel=1e-10)


def test_fid_of_samples_approaches_the_closed_form_of_their_gaussians():
    gen = _gen(2)
    d, n = 3, 40_000
    m1, m2 = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64), torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    s1, s2 = _spd(d, gen), _spd(d, gen)
    x = m1 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    y = m2 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    assert fid(x, y) == pytest.approx(frechet_distance(m1, s1, m2, s2), rel=0.03)
    # exactly the Fréchet distance of the sample moments (float64, unbiased covariance)
    assert fid(x, y) == frechet_distance(*feature_statistics(x), *feature_statistics(y))
    mu, sigma = feature_statistics(x)
    assert torch.allclose(sigma, torch.from_numpy(np.cov(x.numpy(), rowvar=False)), atol=1e-12)
    assert torch.allclose(mu, x.mean(0))


@pytest.mark.parametrize("n, d", [(300, 64), (30, 64)])  # full-rank and rank-deficient covariance
def test_fid_of_a_set_with_itself_is_zero(n, d):
    x = torch.rand(n, d, generator=_gen(3)).float() * 2  # float32 input, like extractor features
    scale = float(feature_statistics(x)[1].trace())
    assert abs(fid(x, x)) < 1e-6 * scale


def test_fid_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.image.fid")

    class Identity(torch.nn.Module):  # features in, features out: torchmetrics then only does the math
        num_features = 32

        def forward(self, x):
            return x

    gen = _gen(4)
    x = torch.randn(500, 32, generator=gen, dtype=torch.float64)
    y = 0.3 + 1.2 * torch.randn(400, 32, generator=gen, dtype=torch.float64)
    metric = tm.FrechetInceptionDistance(feature=Identity())
    metric.update(x, real=True)
    metric.update(y, real=False)
    assert fid(x, y) == pytest.approx(float(metric.compute()), rel=1e-9)


def _naive_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Bińkowski et al. eq. 3 with k(a, b) = (a.b / d + 1)^3, written as loops over pairs."""
    m, d = x.shape

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / m**2


def test_kid_with_one_full_subset_equals_the_naive_unbiased_mmd():
    gen = _gen(5)
    x = torch.randn(25, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(25, 4, generator=gen, dtype=torch.float64) + 0.5
    mean, std = kid(x, y, subsets=1, subset_size=1000)  # subset_size clipped to 25: the whole sets
    assert mean == pytest.approx(_naive_unbiased_mmd2(x.numpy(), y.numpy()), rel=1e-10)
    assert std == 0.0


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save all extracted features")
def test_kid_matches_torchmetrics_on_full_subsets():
    tm = pytest.importorskip("torchmetrics.image.kid")

    class Identity(torch.nn.Module):
        num_features = 8

        def forward(self, x):
            return x

    gen = _gen(6)
    x = torch.randn(60, 8, generator=gen, dtype=torch.float64)
    y = torch.randn(60, 8, generator=gen, dtype=torch.float64) * 1.3
    metric = tm.KernelInceptionDistance(feature=Identity(), subsets=3, subset_size=60)
    metric.update(x, real=True)
    metric.update(y, real=False)
    ref_mean, _ = metric.compute()
    assert kid(x, y, subsets=3, subset_size=60)[0] == pytest.approx(float(ref_mean), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_clearly_positive_for_a_shift():
    gen = _gen(7)
    x = torch.randn(1200, 16, generator=gen)
    same = kid(x[:600], x[600:], subsets=20, subset_size=300)
    shifted = kid(x[:600], x[600:] + 0.5, subsets=20, subset_size=300)
    assert abs(same[0]) < 3 * same[1] + 1e-3
    assert shifted[0] > 0.05 and shifted[0] > 20 * abs(same[0]) and shifted[0] > 10 * shifted[1]


def test_kid_is_reproducible_for_a_seed():
    x, y = torch.randn(200, 4, generator=_gen(8)), torch.randn(200, 4, generator=_gen(9))
    assert kid(x, y, subsets=5, subset_size=50, seed=1) == kid(x, y, subsets=5, subset_size=50, seed=1)
    assert kid(x, y, subsets=5, subset_size=50, seed=1) != kid(x, y, subsets=5, subset_size=50, seed=2)


def test_bad_inputs_name_the_expected_form():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match=r"\(N, D\) feature tensor with N >= 2"):
        fid(x[:1], x)
    with pytest.raises(ValueError, match="same width D"):
        fid(x, torch.randn(10, 5))
    with pytest.raises(ValueError, match="same width D"):
        kid(x, torch.randn(10, 5))
    with pytest.raises(ValueError, match="NaN"):
        fid(x, torch.full((10, 4), float("nan")))
    with pytest.raises(ValueError, match=r"means \(D,\) and covariances \(D, D\)"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))


def test_generation_metrics_reports_every_number_with_its_extractor_and_counts():
    gen = _gen(10)
    real = torch.rand(40, 1, 4, 4, generator=gen) * 2 - 1
    fake = (torch.rand(30, 1, 4, 4, generator=gen) * 2 - 1) * 0.5
    extractor = custom_extractor(torch.nn.Flatten(), "flat-pixels", progress=False)
    out = generation_metrics(real, fake, extractor, kid_subsets=4, kid_subset_size=20)
    assert set(out) == {"fid", "kid_mean", "kid_std", "precision", "recall", "extractor", "num_real", "num_fake"}
    assert out["extractor"] == "flat-pixels" and out["num_real"] == 40 and out["num_fake"] == 30
    feats_real, feats_fake = extractor(real), extractor(fake)  # gray repeated: (N, 3 * 16)
    assert feats_real.shape == (40, 48)
    assert out["fid"] == fid(feats_real, feats_fake)
    assert (out["kid_mean"], out["kid_std"]) == kid(feats_real, feats_fake, 4, 20)
    assert 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1
    with pytest.raises(TypeError, match="custom_extractor"):
        generation_metrics(real, fake, torch.nn.Flatten())
