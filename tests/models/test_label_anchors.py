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
