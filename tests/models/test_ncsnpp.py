"""NCSN++ decoder and encoder (method.md §5.4, §5.5): exact parameter counts at the paper
settings, shapes and gradients on small variants of the same code paths, input validation."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from lzn.models.ncsnpp import NCSNppDecoder, NCSNppEncoder, ncsnpp_decoder, ncsnpp_encoder


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Small variants: same settings (FIR / progressive / Fourier / output scaling for "256"), tiny widths.
SMALL: dict[str, dict[str, Any]] = {
    "cifar10": dict(nf=16, image_size=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), head_hidden=32),
    "256": dict(
        nf=16, image_size=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), head_hidden=32,
        head_max_resolution=16,
    ),
}


@pytest.mark.parametrize(
    "setting, latent_dim, num_classes, expected",
    [
        ("cifar10", 200, None, 61_906_819),  # CS1 RF + LZN
        ("cifar10", 200, 10, 61_911_939),  # CS3 RF + LZN
        ("cifar10", 0, None, 61_804_419),  # CS1 RF baseline
        ("cifar10", 0, 10, 61_809_539),  # CS3 RF baseline
        ("256", 200, None, 65_676_949),
        ("256", 0, None, 65_574_549),
    ],
)
def test_decoder_parameter_counts(setting: str, latent_dim: int, num_classes: int | None, expected: int) -> None:
    """method.md §5.4. The 256^2 count includes the 128 frozen Fourier frequencies, as in score-SDE."""
    model = ncsnpp_decoder(setting, latent_dim=latent_dim, num_classes=num_classes)
    assert n_params(model) == expected
    assert model.latent_dim == latent_dim and model.num_classes == (num_classes or 0)


@pytest.mark.parametrize("setting, expected", [("cifar10", 49_790_260), ("256", 87_768_896)])
def test_encoder_parameter_counts(setting: str, expected: int) -> None:
    model = ncsnpp_encoder(setting, latent_dim=200)
    assert n_params(model) == expected
    assert model.feature_dim == 256 and model.latent_dim == 200


def test_full_cifar_decoder_and_encoder_forward_at_batch_one() -> None:
    torch.manual_seed(0)
    dec = ncsnpp_decoder("cifar10", latent_dim=200).eval()
    enc = ncsnpp_encoder("cifar10", latent_dim=200).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        v = dec(x, torch.tensor([0.3]), latent=torch.randn(1, 200))
        a = enc(x)
        f = enc.features(x)
    assert v.shape == (1, 3, 32, 32) and a.shape == (1, 200) and f.shape == (1, 256)
    assert torch.isfinite(v).all() and torch.isfinite(a).all()
    assert v.abs().max() < 1e-3  # init_scale 0: the output conv starts near zero


@pytest.mark.parametrize("setting", ["cifar10", "256"])
def test_small_decoder_shapes_and_gradients(setting: str) -> None:
    torch.manual_seed(0)
    model = ncsnpp_decoder(setting, latent_dim=8, num_classes=3, init_scale=1.0, dropout=0.1, **SMALL[setting])
    size = SMALL[setting]["image_size"]
    assert (model.image_channels, model.image_size, model.latent_dim, model.num_classes) == (3, size, 8, 3)
    x = torch.randn(2, 3, size, size)
    v = model(x, torch.tensor([0.2, 0.9]), latent=torch.randn(2, 8), labels=torch.tensor([0, 2]))
    assert v.shape == x.shape and torch.isfinite(v).all()
    v.square().mean().backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert name.endswith("fourier.W")  # the frozen Fourier frequencies (256 setting only)
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("setting", ["cifar10", "256"])
def test_small_encoder_shapes_and_gradients(setting: str) -> None:
    torch.manual_seed(0)
    model = ncsnpp_encoder(setting, latent_dim=8, **SMALL[setting])
    size = model.image_size
    x = torch.randn(2, 3, size, size)
    a = model(x)
    assert a.shape == (2, 8) and model.features(x).shape == (2, model.feature_dim)
    a.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_encoder_heads_follow_head_max_resolution() -> None:
    """Small 256 variant: maps at 32 (stem + 1 block) get no head; 16, 8, 4 and the middle do (method.md §5.5)."""
    model = ncsnpp_encoder("256", latent_dim=8, **SMALL["256"])
    # skip maps: stem@32, block@32, down@16, block@16, down@8, block@8, down@4, block@4; then middle@4
    assert model.head_on == [False, False, True, True, True, True, True, True, True]
    assert len(model.heads) == 7
    cifar = ncsnpp_encoder("cifar10", latent_dim=8, **SMALL["cifar10"])
    assert all(cifar.head_on) and len(cifar.heads) == len(cifar.head_on)


def test_encoder_dropout_makes_training_anchors_stochastic() -> None:
    torch.manual_seed(0)
    model = ncsnpp_encoder("cifar10", latent_dim=8, init_scale=1.0, **SMALL["cifar10"])
    x = torch.randn(2, 3, 16, 16)
    assert not torch.equal(model.train()(x), model(x))  # dropout active in training (method.md §5.5)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), model(x))


def test_time_is_clamped_to_unit_interval() -> None:
    torch.manual_seed(0)
    model = ncsnpp_decoder("cifar10", latent_dim=0, init_scale=1.0, **SMALL["cifar10"]).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor([-0.5, 2.0])), model(x, torch.tensor([0.0, 1.0])))


def test_256_output_is_divided_by_999_s() -> None:
    torch.manual_seed(0)
    scaled = ncsnpp_decoder("256", latent_dim=4, init_scale=1.0, **SMALL["256"]).eval()
    plain = ncsnpp_decoder("256", latent_dim=4, init_scale=1.0, scale_output_by_time=False, **SMALL["256"]).eval()
    plain.load_state_dict(scaled.state_dict())
    x, s, z = torch.randn(2, 3, 32, 32), torch.tensor([0.01, 0.7]), torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(scaled(x, s, z) * (999 * s)[:, None, None, None], plain(x, s, z))


def test_decoder_rejects_missing_or_misshaped_conditions() -> None:
    model = ncsnpp_decoder("cifar10", latent_dim=4, num_classes=3, **SMALL["cifar10"])
    x, s, z, y = torch.randn(2, 3, 16, 16), torch.rand(2), torch.randn(2, 4), torch.tensor([0, 1])
    for bad in [
        dict(latent=None, labels=y),
        dict(latent=torch.randn(2, 5), labels=y),
        dict(latent=torch.randn(3, 4), labels=y),
        dict(latent=z, labels=None),
        dict(latent=z, labels=torch.tensor([[0], [1]])),
    ]:
        with pytest.raises(ValueError):
            model(x, s, **bad)
    with pytest.raises(ValueError):
        model(torch.randn(2, 3, 8, 8), s, z, y)  # wrong image size
    with pytest.raises(ValueError):
        model(x, torch.rand(2, 1), z, y)  # s must be (B,)
    plain = ncsnpp_decoder("cifar10", latent_dim=0, **SMALL["cifar10"])
    with pytest.raises(ValueError):
        plain(x, s, latent=z)
    with pytest.raises(ValueError):
        plain(x, s, labels=y)


def test_constructors_validate_settings_and_overrides() -> None:
    with pytest.raises(ValueError):
        ncsnpp_decoder("imagenet")
    with pytest.raises(ValueError):
        ncsnpp_decoder("cifar10", nf_typo=16)
    with pytest.raises(ValueError):
        ncsnpp_decoder("cifar10", image_size=20, nf=16)  # not divisible by 2^3
    with pytest.raises(ValueError):
        ncsnpp_encoder("cifar10", latent_dim=0, **SMALL["cifar10"])
    enc = ncsnpp_encoder("cifar10", latent_dim=8, **SMALL["cifar10"])
    with pytest.raises(ValueError):
        enc(torch.randn(2, 1, 16, 16))
    assert isinstance(enc, NCSNppEncoder)
    assert isinstance(ncsnpp_decoder("256", latent_dim=0, **SMALL["256"]), NCSNppDecoder)
