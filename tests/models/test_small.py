"""Small CPU encoder and latent-conditioned U-Net decoder (stand-ins for method.md §5.4-§5.5)."""

from __future__ import annotations

import pytest
import torch

from lzn.models.small import SmallEncoder, SmallEncoderConfig, SmallUNet, SmallUNetConfig

SIZES = [(1, 8), (1, 28), (3, 32), (1, 5)]  # (channels, size): digits, Fashion-MNIST, CIFAR, tiny odd


def _randomise_output_conv(model: SmallUNet) -> None:
    """The zero-initialised output conv blocks every gradient but its own; make it non-zero."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        model.conv_out.weight.copy_(0.1 * torch.randn(model.conv_out.weight.shape, generator=gen))


Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def _inputs(model: SmallUNet, batch: int = 2) -> Inputs:
    x = torch.randn(batch, model.image_channels, model.image_size, model.image_size)
    s = torch.rand(batch)
    latent = torch.randn(batch, model.latent_dim) if model.latent_dim else None
    labels = torch.randint(0, model.num_classes, (batch,)) if model.num_classes else None
    return x, s, latent, labels


@pytest.mark.parametrize(("channels", "size"), SIZES)
def test_encoder_shapes(channels: int, size: int) -> None:
    enc = SmallEncoder(image_channels=channels, image_size=size, latent_dim=12)
    x = torch.rand(3, channels, size, size) * 2 - 1
    assert enc.features(x).shape == (3, enc.feature_dim) == (3, 128)
    assert enc(x).shape == (3, 12)
    assert (enc.image_channels, enc.image_size, enc.latent_dim) == (channels, size, 12)


@pytest.mark.parametrize(("channels", "size"), SIZES)
def test_unet_shapes_and_zero_init(channels: int, size: int) -> None:
    dec = SmallUNet(image_channels=channels, image_size=size, latent_dim=8, num_classes=10)
    x, s, latent, labels = _inputs(dec)
    out = dec(x, s, latent, labels)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised final conv: a fresh network outputs exactly 0
    _randomise_output_conv(dec)
    assert torch.count_nonzero(dec(x, s, latent, labels)) > 0


def test_unet_gradients_reach_every_parameter_and_the_latent() -> None:
    dec = SmallUNet(image_size=8, latent_dim=8, num_classes=10, attention=True, dropout=0.1, num_res_blocks=2)
    _randomise_output_conv(dec)
    assert dec.mid_attn is not None
    torch.nn.init.normal_(dec.mid_attn.proj.weight, std=0.1)  # also zero-initialised
    x, s, latent, labels = _inputs(dec, batch=4)
    assert latent is not None
    latent.requires_grad_(True)
    dec(x, s, latent, labels).square().sum().backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert latent.grad is not None and latent.grad.abs().sum() > 0  # the encoder trains through the decoder


def test_encoder_gradients_and_dropout() -> None:
    enc = SmallEncoder(SmallEncoderConfig(image_size=8, latent_dim=16, dropout=0.5))
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    enc(x).square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    torch.manual_seed(0)
    assert not torch.equal(enc(x), enc(x))  # dropout active in training mode (method.md §5.5)
    enc.eval()
    assert torch.equal(enc(x), enc(x))


def test_time_is_clamped_to_unit_interval() -> None:
    dec = SmallUNet(image_size=8)
    _randomise_output_conv(dec)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(dec(x, torch.tensor([1.5, -0.3])), dec(x, torch.tensor([1.0, 0.0])), rtol=0, atol=0)
    assert not torch.equal(dec(x, torch.tensor([0.2, 0.2])), dec(x, torch.tensor([0.7, 0.7])))


def test_conditioning_changes_the_output() -> None:
    dec = SmallUNet(image_size=8, latent_dim=4, num_classes=3)
    _randomise_output_conv(dec)
    x, s = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1), torch.full((2,), 0.5)
    out = dec(x, s, torch.randn(2, 4), torch.tensor([1, 1]))
    assert not torch.equal(out[0], out[1])
    out = dec(x, s, torch.zeros(2, 4), torch.tensor([0, 2]))
    assert not torch.equal(out[0], out[1])


def test_config_round_trip_and_unknown_keys() -> None:
    cfg = SmallUNetConfig(image_size=28, latent_dim=16, channels=8)
    dec = SmallUNet(cfg, num_classes=10)
    assert dec.config == SmallUNetConfig(image_size=28, latent_dim=16, channels=8, num_classes=10)
    assert (dec.image_channels, dec.image_size, dec.latent_dim, dec.num_classes) == (1, 28, 16, 10)
    assert SmallUNet(channel_mult=[1, 2]).config.channel_mult == (1, 2)  # JSON round trips give lists
    assert SmallEncoder(channels=[8, 16]).config.channels == (8, 16)
    with pytest.raises(TypeError):
        SmallUNet(image_sizes=8)
    with pytest.raises(TypeError):
        SmallEncoder(latent=8)


def test_validation_errors() -> None:
    dec = SmallUNet(image_channels=1, image_size=8, latent_dim=4, num_classes=10)
    x, s, latent, labels = _inputs(dec)
    with pytest.raises(ValueError, match="expects a latent"):
        dec(x, s, None, labels)
    with pytest.raises(ValueError, match="expects a latent"):
        dec(x, s, torch.zeros(2, 5), labels)
    with pytest.raises(ValueError, match="class labels"):
        dec(x, s, latent)
    with pytest.raises(ValueError, match="image_channels=1"):
        dec(torch.zeros(2, 3, 8, 8), s, latent, labels)
    with pytest.raises(ValueError, match="image_size=8"):
        dec(torch.zeros(2, 1, 28, 28), s, latent, labels)
    with pytest.raises(ValueError, match=r"s of shape \(2,\)"):
        dec(x, torch.rand(2, 1), latent, labels)
    with pytest.raises(ValueError, match="without a latent"):
        SmallUNet(image_size=8)(x, s, latent)
    enc = SmallEncoder(image_channels=3, image_size=32)
    with pytest.raises(ValueError, match="image_channels=3"):
        enc(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="image_size=32"):
        enc.features(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="dropout"):
        SmallEncoder(dropout=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        SmallUNet(num_classes=-1)


@pytest.mark.parametrize("q,groups", [(16, 2), (32, 4), (8, 1), (12, 1), (4, 1), (200, 25)])
def test_head_norm_standardises_each_group_of_anchor_coordinates(q: int, groups: int) -> None:
    enc = SmallEncoder(SmallEncoderConfig(image_size=8, latent_dim=q, channels=(8, 16), hidden=32, head_norm=True))
    norm = enc.head[-1]
    assert isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == groups
    a = enc(torch.randn(5, 1, 8, 8) * 3 + 2)  # (5, q), affine still at its identity init
    per_group = a.reshape(5, groups, q // groups)
    assert torch.allclose(per_group.mean(-1), torch.zeros(5, groups), atol=1e-4)
    assert torch.allclose(per_group.var(-1, unbiased=False), torch.ones(5, groups), atol=1e-3)
    assert torch.allclose(a.norm(dim=1), torch.full((5,), q**0.5), atol=1e-2)
    plain = SmallEncoder(SmallEncoderConfig(image_size=8, latent_dim=q, channels=(8, 16), hidden=32))
    assert not isinstance(plain.head[-1], torch.nn.GroupNorm)
