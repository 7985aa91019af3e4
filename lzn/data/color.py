"""Per-image colour operations on [0, 1] images (B, C, H, W), C = 1 or 3, with per-image factors (B,).

They follow torchvision's functional definitions (used by the SimCLR colour jitter of method.md §6.2):
blends clamp to [0, 1]; luma weights (0.2989, 0.587, 0.114); hue shifts go through HSV. On one-channel
images saturation and hue are no-ops and the grey image is the image itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LUMA = (0.2989, 0.587, 0.114)


def grayscale(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of RGB images (B, 3, H, W); one-channel images are returned unchanged."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)  # each (B, H, W)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)  # (B, 1, H, W)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1]; factor (B,) broadcast over (C, H, W)."""
    f = factor.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    return (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with black: factor 0 gives black, 1 the image."""
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)  # (B,) -> (B, 1, 1, 1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean grey level: factor 0 gives a flat grey image, 1 the image."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the grey image: factor 0 gives grey, 1 the image (no-op for one channel)."""
    if x.shape[1] == 1:
        return x
    return _blend(x, grayscale(x), factor)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB (B, 3, H, W) in [0, 1] to HSV (B, 3, H, W), hue in [0, 1)."""
    r, g, b = x.unbind(1)  # each (B, H, W)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    flat = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(flat, ones, maxc)
    div = torch.where(flat, ones, chroma)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.remainder((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV (B, 3, H, W), hue in [0, 1), to RGB (B, 3, H, W) in [0, 1].

    Closed form per channel n = (5, 3, 1) for (R, G, B): k = (n + 6 h) mod 6,
    value - value * saturation * clamp(min(k, 4 - k), 0, 1); the same sextant rule as torchvision's
    table, without building per-pixel index tensors.
    """
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]  # each (B, 1, H, W)
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h, 6.0)  # (B, 3, H, W)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return (v - v * s * ramp).clamp_(0.0, 1.0)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` (B,) turns, in [-0.5, 0.5] (no-op for one channel)."""
    if x.shape[1] == 1:
        return x
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)  # (B, H, W)
    return hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))
