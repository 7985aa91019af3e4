"""LatentZoningNetwork: composition, validation, determinism, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from lzn.core import zones
from lzn.models import FlowConfig, LabelAnchors, LatentZoningNetwork, build

Q, K = 16, 4


def small_model(num_classes: int = K, label_anchors: bool = True, seed: int = 0) -> LatentZoningNetwork:
    torch.manual_seed(seed)
    enc = build("small_encoder", image_channels=1, image_size=8, latent_dim=Q, channels=[8, 16], hidden=32)
    dec = build("small_unet", image_channels=1, image_size=8, latent_dim=Q, num_classes=num_classes, channels=8,
                channel_mult=[1, 2], time_dim=16, cond_dim=32)
    with torch.no_grad():  # the decoder's last conv starts at zero; give it a non-trivial output
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    la = LabelAnchors(num_classes, Q) if label_anchors else None
    return LatentZoningNetwork(enc, dec, la, FlowConfig(steps=6, label_steps=12)).eval()


def images(n=6, seed=1):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_latents_match_core_on_the_batch_anchor_set():
    model = small_model()
    x, noise = images(), torch.randn(6, Q)
    a = model.anchors(x)
    want = zones.latents(a, noise, steps=6, solver="dpm3")
    torch.testing.assert_close(model.latents(x, noise=noise), want)
    assert model.embed(x).shape == (6, model.encoder.feature_dim)
    torch.testing.assert_close(model.embed(x, head=True), a)


def test_generate_is_deterministic_under_a_seeded_generator():
    model = small_model()
    out1 = model.generate(num=3, sampler="euler", steps=4, generator=torch.Generator().manual_seed(5))
    out2 = model.generate(num=3, sampler="euler", steps=4, generator=torch.Generator().manual_seed(5))
    assert out1.images.shape == (3, 1, 8, 8) and out1.labels.shape == (3,) and out1.latents.shape == (3, Q)
    assert torch.equal(out1.images, out2.images) and torch.equal(out1.labels, out2.labels)
    out3 = model.generate(num=3, sampler="euler", steps=4, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(out1.images, out3.images)
    # unconditional labels come from the label decoder applied to the latent
    assert torch.equal(out1.labels, model.label_anchors.decode(out1.latents, steps=12))


def test_class_conditional_generation_uses_label_zones():
    model = small_model()
    labels = torch.tensor([0, 3, 3])
    out = model.generate(labels=labels, sampler="heun", steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.labels, labels)
    assert torch.equal(model.label_anchors.decode(out.latents, steps=200), labels)  # latents sit in their label's zone


def test_classify_with_hand_placed_label_anchors():
    # an encoder whose anchors are exactly the label anchors of the images' classes: the zones line up
    model = small_model()
    with torch.no_grad():
        model.label_anchors.weight.copy_(6 * torch.eye(K, Q))
    classes = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3])
    x = images(8)

    class Oracle(torch.nn.Module):
        image_channels, image_size, latent_dim, feature_dim = 1, 8, Q, Q

        def forward(self, imgs):
            return model.label_anchors.weight[classes[: imgs.shape[0]]] + 0.01 * torch.randn(imgs.shape[0], Q)

        features = forward

    model.encoder = Oracle()
    model.flow = FlowConfig()  # the paper's step counts: 20 DPM steps, 100 label steps
    assert torch.equal(model.classify(x, batch_size=8), classes)


def test_reconstruct_shapes_and_needs_labels():
    model = small_model()
    x = images(4)
    rec = model.reconstruct(x, labels=torch.tensor([0, 1, 2, 3]), sampler="euler", steps=3)
    assert rec.shape == x.shape and torch.isfinite(rec).all()
    with pytest.raises(ValueError, match="needs the true labels"):
        model.reconstruct(x)


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.rand(2, 3, 8, 8), r"shape \(B, 1, 8, 8\)"),
        (torch.rand(2, 1, 16, 16), r"shape \(B, 1, 8, 8\)"),
        (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
        (torch.rand(1, 8, 8), r"\(B, 1, 8, 8\) tensor"),
    ],
)
def test_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        small_model().latents(bad)


def test_bad_labels_and_parts():
    model = small_model()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        model.generate(labels=torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="num"):
        model.generate()
    with pytest.raises(ValueError, match="one latent dimension"):
        LatentZoningNetwork(build("small_encoder", latent_dim=8), None, LabelAnchors(3, 5))
    no_labels = small_model(label_anchors=False)
    with pytest.raises(ValueError, match="label anchors"):
        no_labels.classify(images())


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = small_model()
    model.save_pretrained(str(tmp_path / "m"))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["encoder"]["name"] == "small_encoder" and cfg["label_anchors"] == {"num_classes": K, "latent_dim": Q}
    loaded = LatentZoningNetwork.from_pretrained(str(tmp_path / "m")).eval()
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert loaded.flow == model.flow
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(model.generate(num=2, sampler="euler", steps=2, generator=g()).images,
                       loaded.generate(num=2, sampler="euler", steps=2, generator=g()).images)


def test_load_rejects_missing_and_corrupted_files(tmp_path):
    d = tmp_path / "m"
    small_model().save_pretrained(str(d))
    blob = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(blob[:-10])
    with pytest.raises(ValueError, match="corrupted or truncated"):
        LatentZoningNetwork.from_pretrained(str(d))
    (d / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors is missing"):
        LatentZoningNetwork.from_pretrained(str(d))
    (d / "model.safetensors").write_bytes(blob)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LatentZoningNetwork.from_pretrained(str(d))


def test_hand_made_networks_cannot_be_saved_by_name(tmp_path):
    from lzn.models.small import SmallEncoder

    model = LatentZoningNetwork(SmallEncoder(latent_dim=8))
    with pytest.raises(ValueError, match="lzn.models.build"):
        model.save_pretrained(str(tmp_path / "x"))
