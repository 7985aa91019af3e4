import math

import pytest
import torch

from lzn.core import zones
from lzn.models.label_anchors import LabelAnchors


def hand_placed(k=4, q=6, scale=4.0):
    la = LabelAnchors(k, q)
    with torch.no_grad():
        la.weight.copy_(scale * torch.eye(k, q))  # well-separated anchors on the axes
    return la


def test_init_is_standard_normal_and_parameters_get_gradients():
    la = LabelAnchors(10, 200, generator=torch.Generator().manual_seed(0))
    assert la.weight.shape == (10, 200)
    assert abs(la.weight.mean().item()) < 0.05 and abs(la.weight.std().item() - 1) < 0.05
    lat = torch.randn(8, 200)
    probs = la.alignment_probs(lat, torch.arange(8) % 10, steps=10)
    zones.alignment_loss(probs).backward()
    assert la.weight.grad is not None and torch.isfinite(la.weight.grad).all() and la.weight.grad.abs().sum() > 0


def test_decode_returns_class_of_zone():
    la = hand_placed()
    labels = torch.tensor([0, 1, 2, 3, 3, 1])
    lat = la.conditional_latents(labels, torch.randn(6, 6, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(la.decode(lat), labels)
    # points sitting on an anchor's Gaussian side near the anchor direction decode to that class
    assert torch.equal(la.decode(torch.tensor([[3.0, 0, 0, 0, 0, 0], [0, 0, 0, 3.0, 0, 0]])), torch.tensor([0, 3]))


def test_class_log_weights_count_zero_classes():
    la = LabelAnchors(4, 3)
    logw = la.class_log_weights(torch.tensor([0, 0, 1, 3]))
    assert logw[2] == -math.inf
    torch.testing.assert_close(logw.exp(), torch.tensor([0.5, 0.25, 0.0, 0.25]))
    probs = la.alignment_probs(torch.randn(4, 3), torch.tensor([0, 0, 1, 3]), steps=5, log_weights=logw)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs[0], torch.tensor([0.5, 0.5, 0.25, 0.25]))  # first step = pi


@pytest.mark.parametrize("bad", [torch.tensor([0, 4]), torch.tensor([-1]), torch.tensor([[0]]), torch.tensor([0.0])])
def test_bad_labels(bad):
    with pytest.raises(ValueError, match="labels"):
        LabelAnchors(4, 3)(bad)


@pytest.mark.parametrize("k,q", [(10, 16), (10, 9), (3, 2), (2, 1), (5, 200)])
def test_simplex_init_is_centred_equidistant_and_of_norm_sqrt_q(k, q):
    # naive reference: every pair of anchors at the same distance, the regular simplex's
    # sqrt(2 K / (K - 1)) x the common norm, and the anchors summing to zero
    la = LabelAnchors(k, q, init="simplex", generator=torch.Generator().manual_seed(0))
    w = la.weight.detach().double()
    assert w.shape == (k, q)
    norms = w.norm(dim=1)
    assert torch.allclose(norms, torch.full((k,), math.sqrt(q), dtype=torch.float64), atol=1e-4)
    expected = math.sqrt(q) * math.sqrt(2 * k / (k - 1))
    for i in range(k):
        for j in range(i + 1, k):
            assert abs((w[i] - w[j]).norm().item() - expected) < 1e-4
    assert w.sum(dim=0).abs().max().item() < 1e-4


def test_simplex_init_depends_on_the_generator_and_refuses_too_few_dimensions():
    a = LabelAnchors(4, 8, init="simplex", generator=torch.Generator().manual_seed(0)).weight
    b = LabelAnchors(4, 8, init="simplex", generator=torch.Generator().manual_seed(1)).weight
    assert not torch.allclose(a, b)  # a random orientation, not one fixed layout
    with pytest.raises(ValueError, match="latent_dim >= 9"):
        LabelAnchors(10, 8, init="simplex")
    with pytest.raises(ValueError, match="init must be one of"):
        LabelAnchors(10, 16, init="orthogonal")
