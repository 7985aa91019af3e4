"""lzn.data augmentations: identities, invariants, determinism (method.md §5.2 flip, §6.2 SimCLR views)."""

from __future__ import annotations

import colorsys

import pytest
import torch

from lzn.data import (
    TwoViewAugment,
    TwoViewConfig,
    color_jitter,
    gaussian_blur,
    random_flip,
    random_grayscale,
    random_resized_crop,
)
from lzn.data.color import adjust_hue, hsv_to_rgb, rgb_to_hsv


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 6, c: int = 3, h: int = 16, w: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=gen(seed)) * 2 - 1


ALL = {
    "crop": lambda x, g: random_resized_crop(x, g, 12),
    "flip": lambda x, g: random_flip(x, g),
    "jitter": lambda x, g: color_jitter(x, g, p=1.0),
    "gray": lambda x, g: random_grayscale(x, g, p=0.5),
    "blur": lambda x, g: gaussian_blur(x, g, 5, p=0.5),
    "two_view": lambda x, g: torch.cat(TwoViewAugment(TwoViewConfig.for_size(12))(x, g)),
}


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("channels", [1, 3])
def test_range_dtype_shape_and_determinism(name, channels):
    x = images(b=16, c=channels)
    x[0] = 1.0  # saturated images stress the clamps
    x[1] = -1.0
    out = ALL[name](x, gen(3))
    assert out.dtype == x.dtype and out.shape[1] == channels and out.shape[0] in (16, 32)
    assert out.shape[-1] == (12 if name in ("crop", "two_view") else 16)
    assert out.min() >= -1 and out.max() <= 1 and torch.isfinite(out).all()
    assert torch.equal(out, ALL[name](x, gen(3)))
    if (name, channels) != ("gray", 1):  # grayscale is a no-op on one channel
        assert not torch.equal(out, ALL[name](x, gen(4)))


def test_flip_with_p_one_and_zero():
    x = images()
    assert torch.equal(random_flip(x, gen(), p=1.0), torch.flip(x, dims=[3]))
    assert torch.equal(random_flip(x, gen(), p=0.0), x)
    mixed = random_flip(images(b=64), gen(), p=0.5)
    flipped = (mixed == images(b=64).flip(3)).flatten(1).all(1)
    assert 10 < int(flipped.sum()) < 54  # per-sample decisions


def test_crop_of_the_full_square_is_the_identity():
    x = images(h=16, w=16)
    out = random_resized_crop(x, gen(), 16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(out, x, atol=1e-5)


def test_crop_resampling_matches_grid_sample_and_antialiased_interpolate():
    from torch.nn import functional as F

    from lzn.data.augment import _resample_matrix

    x = images(b=4, h=16, w=16)
    x0, y0 = torch.tensor([0.0, 3.2, 5.0, 1.5]), torch.tensor([2.0, 0.0, 4.5, 0.3])
    bw, bh = torch.tensor([16.0, 8.3, 6.0, 10.0]), torch.tensor([14.0, 12.0, 9.0, 7.0])
    ours = _resample_matrix(y0, bh, 16, 20)[:, None] @ x @ _resample_matrix(x0, bw, 16, 20)[:, None].mT
    theta = torch.zeros(4, 2, 3)  # the same boxes as affine maps of normalised coordinates
    theta[:, 0, 0], theta[:, 0, 2] = bw / 16, (2 * x0 + bw) / 16 - 1
    theta[:, 1, 1], theta[:, 1, 2] = bh / 16, (2 * y0 + bh) / 16 - 1
    grid = F.affine_grid(theta, [4, 3, 20, 20], align_corners=False)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-5)  # enlarging: plain bilinear
    whole = _resample_matrix(torch.zeros(4), torch.full((4,), 16.0), 16, 7)  # (4, 7, 16) shrinking
    ref = F.interpolate(x, size=(7, 7), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(whole[:, None] @ x @ whole[:, None].mT, ref, atol=1e-5)


def test_crop_fallback_uses_the_whole_allowed_box():
    x = images(b=2, h=8, w=32)  # aspect 4 is outside (3/4, 4/3): no proposal of area >= 0.9 fits
    out = random_resized_crop(x, gen(), 8, scale=(0.9, 1.0))
    assert out.shape == (2, 3, 8, 8) and out.min() >= -1 and out.max() <= 1


def test_grayscale_gives_equal_channels_and_one_channel_is_untouched():
    x = images()
    gray = random_grayscale(x, gen(), p=1.0)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    luma = 0.2989 * (x[:, 0] + 1) / 2 + 0.587 * (x[:, 1] + 1) / 2 + 0.114 * (x[:, 2] + 1) / 2
    assert torch.allclose(gray[:, 0], luma * 2 - 1, atol=1e-6)
    one = images(c=1)
    assert torch.equal(random_grayscale(one, gen(), p=1.0), one)


def test_hue_zero_is_identity_and_hsv_matches_colorsys():
    x = (images(b=3, h=5, w=5) + 1) / 2
    assert torch.allclose(adjust_hue(x, torch.zeros(3)), x, atol=1e-6)
    hsv = rgb_to_hsv(x)
    for r, g, b, h, s, v in zip(*x.flatten(2)[0], *hsv.flatten(2)[0]):
        ref = colorsys.rgb_to_hsv(float(r), float(g), float(b))
        assert abs(ref[0] - float(h)) < 1e-5 or abs(abs(ref[0] - float(h)) - 1) < 1e-5
        assert abs(ref[1] - float(s)) < 1e-5 and abs(ref[2] - float(v)) < 1e-5
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-6)
    half = adjust_hue(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1), torch.tensor([0.5]))
    assert torch.allclose(half.flatten(), torch.tensor([0.0, 1.0, 1.0]), atol=1e-6)  # red -> cyan


def test_jitter_with_zero_strength_or_probability_is_the_identity():
    x = images()
    assert torch.allclose(color_jitter(x, gen(), 0.0, 0.0, 0.0, 0.0, p=1.0), x, atol=1e-5)
    assert torch.equal(color_jitter(x, gen(), p=0.0), x)
    gray_only = color_jitter(images(c=1), gen(), brightness=0.0, contrast=0.0, saturation=0.8, hue=0.5, p=1.0)
    assert torch.allclose(gray_only, images(c=1), atol=1e-6)  # saturation and hue: no-ops on one channel


def test_blur_keeps_constants_and_means_and_p_zero_is_identity():
    x = torch.full((3, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(x, gen(), 7, sigma=(0.5, 2.0)), x, atol=1e-6)
    y = images()
    blurred = gaussian_blur(y, gen(), 5, sigma=(1.0, 2.0))
    assert blurred.std() < y.std()
    assert torch.equal(gaussian_blur(y, gen(), 5, p=0.0), y)
    tiny = images(h=3, w=3)  # kernel 23 on 3x3 images falls back to replicate padding
    assert torch.allclose(gaussian_blur(torch.full_like(tiny, -0.5), gen(), 23), torch.full_like(tiny, -0.5))


def test_two_view_config_defaults_follow_the_spec_and_views_differ():
    cfg = TwoViewConfig()
    assert (cfg.crop_size, cfg.kernel_size, cfg.blur_p, cfg.jitter_p, cfg.grayscale_p) == (224, 23, 1.0, 0.8, 0.2)
    assert (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, cfg.blur_sigma) == (0.8, 0.8, 0.8, 0.2, (0.1, 2.0))
    assert TwoViewConfig.for_size(32).kernel_size == 3 and TwoViewConfig.for_size(96).kernel_size == 9
    v1, v2 = TwoViewAugment(TwoViewConfig.for_size(8))(images(), gen())
    assert v1.shape == v2.shape == (6, 3, 8, 8) and not torch.equal(v1, v2)


@pytest.mark.parametrize("call", [
    lambda: random_flip(torch.zeros(2, 3, 4), gen()),
    lambda: random_flip(images(), gen(), p=1.5),
    lambda: random_resized_crop(images(), gen(), 8, scale=(0.5, 0.2)),
    lambda: gaussian_blur(images(), gen(), 4),
    lambda: color_jitter(images(), gen(), hue=0.7),
    lambda: color_jitter(images(c=4), gen()),
    lambda: random_grayscale(images(c=2), gen()),
    lambda: TwoViewConfig(blur_kernel_size=6),
    lambda: TwoViewConfig(jitter_p=-0.1),
])
def test_bad_arguments_are_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_color_ops_against_per_image_formulas():
    from lzn.data.color import adjust_brightness, adjust_contrast, adjust_saturation

    x = (images(b=3) + 1) / 2
    f = torch.tensor([0.3, 1.0, 1.6])
    for i in range(3):
        luma = 0.2989 * x[i, 0] + 0.587 * x[i, 1] + 0.114 * x[i, 2]  # (H, W)
        assert torch.allclose(adjust_brightness(x, f)[i], (f[i] * x[i]).clamp(0, 1))
        assert torch.allclose(adjust_contrast(x, f)[i], (f[i] * x[i] + (1 - f[i]) * luma.mean()).clamp(0, 1))
        assert torch.allclose(adjust_saturation(x, f)[i], (f[i] * x[i] + (1 - f[i]) * luma).clamp(0, 1))


def test_brightness_only_jitter_scales_each_image_by_its_own_factor():
    x = images(b=8) * 0.4  # [-0.4, 0.4]: no clamping at factors in [0.5, 1.5]
    out = color_jitter(x, gen(), brightness=0.5, contrast=0.0, saturation=0.0, hue=0.0, p=1.0)
    ratio = ((out + 1) / (x + 1)).flatten(1)  # (B, CHW) per-image factor on [0, 1] pixels
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ratio[:, 0].min() >= 0.5 - 1e-6 and ratio[:, 0].max() <= 1.5 + 1e-6 and ratio[:, 0].std() > 0.01


def test_float64_images_keep_their_dtype():
    v1, v2 = TwoViewAugment(TwoViewConfig.for_size(8))(images().double(), gen())
    assert v1.dtype == v2.dtype == torch.float64
