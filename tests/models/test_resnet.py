"""GroupNorm ResNet encoders (method.md §6.3): sizes, init, input mapping, checkpointing, validation."""

from __future__ import annotations

import pytest
import torch

from lzn.models.resnet import ResNetEncoder, resnet18_encoder, resnet50_encoder


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _randomise_zero_init(model: ResNetEncoder) -> None:
    """Give the zero-initialised last GN of every block a non-zero scale so every gradient is non-trivial."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for blk in layer:
                blk.last_norm.weight.copy_(torch.rand(blk.last_norm.weight.shape, generator=gen) + 0.5)


def test_resnet50_parameter_counts() -> None:
    model = resnet50_encoder(latent_dim=256)
    trunk = _n_params(model) - _n_params(model.head)
    assert trunk == 23_508_032  # torchvision ResNet-50 without fc; GN has weight + bias like BN
    # 2-layer head: 2048 * 2048 + GN(2048) + 2048 * 256 + GN(256)
    assert _n_params(model.head) == 2048 * 2048 + 2 * 2048 + 2048 * 256 + 2 * 256
    assert _n_params(model) == 28_231_232
    assert model.feature_dim == 2048 and model.latent_dim == 256
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def test_zero_init_of_last_norms_and_head_bias() -> None:
    model = resnet18_encoder(latent_dim=64, image_size=16, small_input=True)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for blk in layer:
            assert torch.count_nonzero(blk.last_norm.weight) == 0
    assert torch.count_nonzero(model.head.gn2.bias) == 0
    assert torch.all(model.head.gn2.weight == 1)


@pytest.mark.parametrize(("small_input", "size"), [(True, 8), (True, 32), (False, 32)])
def test_shapes(small_input: bool, size: int) -> None:
    model = resnet18_encoder(latent_dim=64, image_channels=1, image_size=size, small_input=small_input)
    x = torch.rand(3, 1, size, size) * 2 - 1
    assert model.features(x).shape == (3, 512)
    assert model(x).shape == (3, 64)
    assert (model.image_channels, model.image_size, model.latent_dim, model.feature_dim) == (1, size, 64, 512)


def test_input_is_mapped_to_unit_interval() -> None:
    model = resnet18_encoder(latent_dim=32, image_size=8, small_input=True)
    seen: list[torch.Tensor] = []
    model.stem[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    model(x)
    torch.testing.assert_close(seen[0], (x + 1) / 2, rtol=0, atol=1e-7)
    assert seen[0].min() >= 0 and seen[0].max() <= 1


def test_gradients_reach_every_parameter() -> None:
    model = resnet18_encoder(latent_dim=32, image_size=8, small_input=True)
    _randomise_zero_init(model)
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    model(x).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_checkpointing_gives_identical_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = resnet18_encoder(latent_dim=32, image_size=8, small_input=True)
    _randomise_zero_init(model)
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    stem_calls = [0]
    model.stem.register_forward_hook(lambda *_: stem_calls.__setitem__(0, stem_calls[0] + 1))

    def run(segments: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        model.checkpoint_segments = segments
        stem_calls[0] = 0
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out.pow(3).sum().backward()
        assert xi.grad is not None
        return out.detach(), xi.grad, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    out0, gx0, grads0 = run(0)
    assert stem_calls[0] == 1
    out1, gx1, grads1 = run(3)
    assert stem_calls[0] == 2  # the first segment (stem included) is recomputed in the backward pass
    torch.testing.assert_close(out1, out0, rtol=0, atol=0)
    torch.testing.assert_close(gx1, gx0, rtol=1e-6, atol=1e-7)
    assert grads1.keys() == grads0.keys() == {n for n, _ in model.named_parameters()}
    for name in grads0:
        torch.testing.assert_close(grads1[name], grads0[name], rtol=1e-6, atol=1e-7, msg=name)
    with torch.no_grad():  # no recomputation without autograd
        stem_calls[0] = 0
        torch.testing.assert_close(model(x), out0, rtol=0, atol=0)
        assert stem_calls[0] == 1


def test_validation_errors() -> None:
    model = resnet18_encoder(latent_dim=32, image_channels=3, image_size=16, small_input=True)
    with pytest.raises(ValueError, match="image_channels=3"):
        model(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="image_size=16"):
        model.features(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        model(torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="multiple of 32"):
        resnet18_encoder(latent_dim=200)
    with pytest.raises(ValueError, match="depth"):
        ResNetEncoder(depth=20)
    with pytest.raises(ValueError, match="checkpoint_segments"):
        resnet18_encoder(checkpoint_segments=-1)
