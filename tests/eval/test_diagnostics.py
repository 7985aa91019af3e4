"""Zone diagnostics: keys and ranges on a tiny model, the KS statistic against scipy, the exact first
step of the label trajectory (posterior = prior at t = 1), agreement with ``accuracy`` in the batch
context, and, for well-separated anchors, round trips near 1 and pooled latents close to N(0, I)."""

from __future__ import annotations

import json

import pytest
import torch
from scipy import stats
from torch import Tensor, nn

from lzn import FlowConfig, LatentZoningNetwork
from lzn.eval import accuracy, normal_ks, zone_diagnostics
from tests.models.tiny import tiny_model


@pytest.fixture
def model() -> LatentZoningNetwork:
    return tiny_model(FlowConfig(steps=10, label_steps=20))


def _data(n: int = 60) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.arange(n) % 3


class SpreadEncoder(nn.Module):
    """Stand-in encoder: a fixed random projection of the pixels into q = 32. The anchors lie far apart
    compared with the start noise (eps = 1e-3), but not so far that the flow turns stiff near t = 1 (with
    anchors 50 apart, 20 solver steps miss the sharp switch of the posteriors and the round trip fails)."""

    image_channels, image_size, latent_dim = 1, 8, 32

    def __init__(self, scale: float = 0.5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.proj = nn.Parameter(torch.randn(64, self.latent_dim, generator=g) * scale / 8.0, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.proj  # (B, 64) @ (64, q) -> (B, q)


def test_keys_ranges_and_json(model):
    images, labels = _data()
    out = zone_diagnostics(model, images, labels, batch_size=25, step_factors=(1, 2))
    json.loads(json.dumps(out, allow_nan=False))  # plain, finite values only
    assert out["num_latents"] == out["num_images"] == 60 and out["num_chunks"] == 3 and out["latent_dim"] == 4
    assert out["anchor_set"] == 25  # the last set holds 10
    assert set(out["round_trip"]) == set(out["round_trip_logsnr"]) == {"x1", "x2"}
    for v in [*out["round_trip"].values(), *out["round_trip_logsnr"].values(), out["label_zone_fraction"], *out["assignment_trajectory"]]:
        assert 0.0 <= v <= 1.0
    assert len(out["assignment_trajectory"]) == len(out["assignment_t"]) == model.flow.label_steps
    assert out["assignment_t"][0] == 1.0
    assert out["assignment_trajectory"][0] == pytest.approx(1 / 3, abs=1e-6)  # at t = 1 posterior = prior
    assert out["latent_cov_eig_min"] <= out["latent_cov_eig_max"]
    assert 0.0 <= out["latent_ks_mean"] <= out["latent_ks_max"] <= 1.0
    assert out == zone_diagnostics(model, images, labels, batch_size=25, step_factors=(1, 2))  # seeded


def test_without_labels_and_subsample(model):
    images, labels = _data()
    out = zone_diagnostics(model, images, step_factors=(1,), max_images=40)
    assert out["num_latents"] == 40 and out["label_zone_fraction"] is None and out["assignment_trajectory"] is None
    assert zone_diagnostics(model, images, labels, step_factors=(1,), max_images=40, seed=5)["num_latents"] == 40


def test_label_zone_fraction_matches_batch_accuracy(model):
    images, labels = _data()
    out = zone_diagnostics(model, images, labels, batch_size=25, step_factors=(1,), seed=7)
    acc = accuracy(model, images, labels, batch_size=25, context="batch", seed=7)
    assert out["label_zone_fraction"] == pytest.approx(acc, abs=1e-6)  # the same noise and predictions


def test_bad_inputs(model):
    images, labels = _data()
    with pytest.raises(ValueError, match=r"labels must have shape \(60,\)"):
        zone_diagnostics(model, images, labels[:10])
    with pytest.raises(TypeError, match="integer class indices"):
        zone_diagnostics(model, images, labels.float())
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        zone_diagnostics(model, images, labels + 5)
    with pytest.raises(ValueError, match="scaled to"):
        zone_diagnostics(model, images * 100)
    with pytest.raises(ValueError, match="step_factors"):
        zone_diagnostics(model, images, step_factors=())
    with pytest.raises(ValueError, match="step factor"):
        zone_diagnostics(model, images, step_factors=(1, 0))
    with pytest.raises(ValueError, match="batch_size"):
        zone_diagnostics(model, images, batch_size=0)
    with pytest.raises(ValueError, match="at least 2 images"):
        zone_diagnostics(model, images, max_images=1)
    no_labels = LatentZoningNetwork(model.encoder, model.decoder, None, model.flow)
    with pytest.raises(ValueError, match="no label anchors"):
        zone_diagnostics(no_labels, images, labels)


def test_normal_ks_matches_scipy():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(257, 3, generator=g), 0.5 + 2.0 * torch.rand(257, 2, generator=g)], dim=1)
    ours = normal_ks(x)
    ref = torch.tensor([stats.kstest(x[:, j].double().numpy(), "norm").statistic for j in range(x.shape[1])],
                       dtype=torch.float64)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert ours[:3].max() < 0.1 < ours[3:].min()  # Gaussian columns pass, shifted uniforms do not


def test_separated_anchors_round_trip_and_gaussian_prior():
    images, _ = _data(400)
    net = LatentZoningNetwork(SpreadEncoder(), flow=FlowConfig(steps=20)).eval()
    out = zone_diagnostics(net, images, batch_size=200, step_factors=(1, 2, 4))
    assert min(out["round_trip"].values()) > 0.93 and out["round_trip"]["x4"] > 0.97
    assert out["latent_ks_mean"] < 0.1 and out["latent_cov_max_abs_dev"] < 0.3
    assert 0.4 < out["latent_cov_eig_min"] and out["latent_cov_eig_max"] < 2.0  # q / N = 0.08: edges 0.72, 1.65
    assert out["latent_mean_norm"] < 3 * (32 / 400) ** 0.5  # sampling scale of the mean: sqrt(q / N)


def test_packed_anchors_need_the_log_snr_grid():
    # anchors packed tightly (as a trained encoder's, method.md §2.6.1): the paper's time grid leaves latents
    # outside their zones whichever way they flow back; on the log-SNR grid they are home, which only the
    # log-SNR flow back sees (reverse Euler with 20 steps lands on a neighbour)
    images, _ = _data(400)
    rt = {}
    for solver in ("dpm3", "dpm3_logsnr"):
        net = LatentZoningNetwork(SpreadEncoder(0.02), flow=FlowConfig(steps=20, solver=solver)).eval()
        out = zone_diagnostics(net, images, batch_size=200, step_factors=(1,))
        rt[solver] = (out["round_trip"]["x1"], out["round_trip_logsnr"]["x1"])
    assert rt["dpm3"][1] < 0.2 and rt["dpm3_logsnr"][1] > 0.9, rt  # 0.07 and 0.95
    assert rt["dpm3_logsnr"][0] < 0.2, rt  # 0.09
