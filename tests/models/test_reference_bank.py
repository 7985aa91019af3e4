"""The reference bank: inference latents that do not depend on the rest of the batch (method.md §2.9)."""

from __future__ import annotations

import pytest
import torch

from lzn import LatentZoningNetwork
from tests.models.tiny import tiny_model


@pytest.fixture
def model() -> LatentZoningNetwork:
    return tiny_model()


def _data(n: int = 60):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.arange(n) % 3


def test_bank_is_class_balanced_and_sized(model):
    images, labels = _data()
    labels[:30] = 0  # unbalanced: half the set is class 0
    bank = model.build_reference(images, labels, size=12)
    assert bank.shape == (12, 4) and torch.isfinite(bank).all()
    anchors = model.anchors(images)
    picked = [int(torch.cdist(b[None], anchors).argmin()) for b in bank]
    assert torch.bincount(labels[picked], minlength=3).tolist() == [4, 4, 4]


def test_one_image_alone_gets_its_in_batch_answer(model):
    images, labels = _data()
    model.build_reference(images, labels, size=30)
    batch = model.latents(images[:10], noise=torch.zeros(10, 4))
    alone = torch.cat([model.latents(images[i:i + 1], noise=torch.zeros(1, 4)) for i in range(10)])
    torch.testing.assert_close(alone, batch, rtol=0, atol=1e-4)  # float32 round-off of batched convolutions
    by_batch = model.classify(images, noise_scale=0.0, batch_size=60)
    one_by_one = model.classify(images, noise_scale=0.0, batch_size=1)
    assert torch.equal(by_batch, one_by_one)
    # the paper's batch protocol stays available, and does depend on the batch
    paper = model.latents(images[:10], noise=torch.zeros(10, 4), context="batch")
    assert not torch.allclose(paper, batch, atol=1e-3)


def test_bank_round_trips_and_old_folders_load_without_one(model, tmp_path):
    images, labels = _data()
    with pytest.raises(ValueError, match="no reference bank"):
        model.latents(images[:2], context="reference")
    model.save_pretrained(str(tmp_path / "plain"))
    plain = LatentZoningNetwork.from_pretrained(str(tmp_path / "plain"))
    assert plain.reference is None and plain.latents(images[:4]).shape == (4, 4)  # batch protocol
    model.build_reference(images, labels, size=9)
    model.save_pretrained(str(tmp_path / "bank"))
    same = LatentZoningNetwork.from_pretrained(str(tmp_path / "bank"))
    assert same.reference is not None and torch.equal(same.reference, model.reference)
    with pytest.raises(ValueError, match="context"):
        same.latents(images[:2], context="global")
    with pytest.raises(ValueError, match="reference anchors"):
        same.set_reference(torch.randn(3, 5))
