"""Batched image augmentations with per-sample random parameters (method.md §5.2 flip, §6.2 SimCLR views).

Every function takes images (B, C, H, W) in [-1, 1] on any device and a ``torch.Generator``; the
random parameters of all B samples are drawn at once on the generator's device (so a seeded generator
gives the same output on every call, a CPU generator also drives CUDA images) and the work is
vectorised over the batch: two batched matmuls for the crops, one grouped convolution per blur
direction, batched colour maths. Outputs stay in [-1, 1] and keep the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from lzn.data.color import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, grayscale


def _rand(generator: torch.Generator, *shape: int, like: Tensor) -> Tensor:
    """U[0, 1) of ``shape`` drawn on the generator's device, moved to ``like``'s device and dtype."""
    u = torch.rand(*shape, generator=generator, device=generator.device)
    return u.to(device=like.device, dtype=like.dtype)


def _uniform(generator: torch.Generator, n: int, low: float, high: float, like: Tensor) -> Tensor:
    return low + (high - low) * _rand(generator, n, like=like)  # (n,)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a floating (B, C, H, W) tensor in [-1, 1], got {shape}")


def _check_colour(images: Tensor) -> None:
    _check_images(images)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"colour operations need 1 (grey) or 3 (RGB) channels, got {images.shape[1]}")


def _check_p(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def random_flip(images: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability ``p`` (the only train transform of method.md §5.2)."""
    _check_images(images)
    _check_p("p", p)
    flip = _rand(generator, images.shape[0], like=images) < p  # (B,)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def _resample_matrix(start: Tensor, length: Tensor, in_size: int, out_size: int) -> Tensor:
    """Rows of linear-interpolation weights (B, out_size, in_size) that resample the pixel span
    [start, start + length) (B,) of a line of ``in_size`` pixels to ``out_size`` pixels.

    A triangle filter of half-width max(1, length / out_size) input pixels: plain bilinear when
    enlarging, anti-aliased (as torch's ``antialias=True``) when shrinking; rows renormalised at the
    border, which equals clamping coordinates to the edge pixels.
    """
    step = length / out_size  # (B,) input pixels per output pixel
    out_pos = torch.arange(out_size, device=start.device, dtype=start.dtype) + 0.5
    centre = start[:, None] + out_pos[None] * step[:, None] - 0.5  # (B, out) source pixel coordinate
    in_pos = torch.arange(in_size, device=start.device, dtype=start.dtype)
    support = step.clamp(min=1.0)[:, None, None]  # (B, 1, 1)
    weight = (1.0 - (centre[:, :, None] - in_pos[None, None]).abs() / support).clamp_(min=0.0)  # (B, out, in)
    return weight / weight.sum(dim=2, keepdim=True)


def random_resized_crop(images: Tensor, generator: torch.Generator, size: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """RandomResizedCrop: per image a box of area fraction ~ U[scale] and aspect ratio w/h log-uniform in
    ``ratio``, placed uniformly inside the image, resampled to (B, C, size, size).

    As in torchvision, 10 proposals are drawn per image and the first that fits is kept; if none fits,
    the whole image cut to the nearest allowed ratio is used. The box is not rounded to whole pixels.
    Resampling is separable: ``rows @ image @ cols^T`` with per-image bilinear weight matrices,
    anti-aliased when the box is larger than the output (torchvision's ``antialias=True``).
    """
    _check_images(images)
    if size < 1 or not 0.0 < scale[0] <= scale[1] <= 1.0 or not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"need size >= 1, 0 < scale[0] <= scale[1] <= 1, 0 < ratio[0] <= ratio[1]; "
                         f"got size={size}, scale={scale}, ratio={ratio}")
    b, c, h, w = images.shape
    tries = 10
    area = (scale[0] + (scale[1] - scale[0]) * _rand(generator, b, tries, like=images)) * (h * w)  # (B, 10)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(generator, b, tries, like=images))  # (B, 10)
    bw, bh = torch.sqrt(area * aspect), torch.sqrt(area / aspect)  # (B, 10) box sizes in pixels
    fits = (bw <= w) & (bh <= h)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1) first fitting proposal
    bw, bh = bw.gather(1, first).squeeze(1), bh.gather(1, first).squeeze(1)  # (B,)
    # fallback: the whole image, cut to the nearest allowed aspect ratio
    in_ratio = w / h
    fw = w if in_ratio <= ratio[1] else h * ratio[1]
    fh = h if in_ratio >= ratio[0] else w / ratio[0]
    found = fits.any(dim=1)
    bw, bh = torch.where(found, bw, torch.full_like(bw, fw)), torch.where(found, bh, torch.full_like(bh, fh))
    x0 = _rand(generator, b, like=images) * (w - bw)  # (B,) left edge in pixels
    y0 = _rand(generator, b, like=images) * (h - bh)  # (B,) top edge
    rows = _resample_matrix(y0, bh, h, size)  # (B, size, H)
    cols = _resample_matrix(x0, bw, w, size)  # (B, size, W)
    out = rows[:, None] @ images @ cols[:, None].transpose(-1, -2)  # (B,1,S,H) @ (B,C,H,W) @ (B,1,W,S)
    return out.clamp_(-1.0, 1.0)


_JITTER_OPS: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue,
)


def color_jitter(images: Tensor, generator: torch.Generator, brightness: float = 0.8, contrast: float = 0.8,
                 saturation: float = 0.8, hue: float = 0.2, p: float = 0.8) -> Tensor:
    """With probability ``p`` per image, torchvision's ColorJitter: brightness, contrast and saturation
    factors ~ U[max(0, 1 - v), 1 + v], hue shift ~ U[-hue, hue] turns, applied in a random order drawn
    per image. Saturation and hue leave one-channel images unchanged.
    """
    _check_colour(images)
    _check_p("p", p)
    if min(brightness, contrast, saturation) < 0 or not 0.0 <= hue <= 0.5:
        raise ValueError(f"need brightness, contrast, saturation >= 0 and hue in [0, 0.5], got "
                         f"{(brightness, contrast, saturation, hue)}")
    b = images.shape[0]
    apply = _rand(generator, b, like=images) < p  # (B,)
    factors = [_uniform(generator, b, max(0.0, 1 - v), 1 + v, images) for v in (brightness, contrast, saturation)]
    factors.append(_uniform(generator, b, -hue, hue, images))
    order = _rand(generator, b, 4, like=images).argsort(dim=1)  # (B, 4) a random permutation per image
    x = (images + 1.0) / 2.0  # [-1, 1] -> [0, 1]
    for position in range(4):
        for op_index, op in enumerate(_JITTER_OPS):
            chosen = torch.nonzero(apply & (order[:, position] == op_index)).squeeze(1)  # (K,)
            if chosen.numel():
                x[chosen] = op(x[chosen], factors[op_index][chosen])
    return (x * 2.0 - 1.0).clamp_(-1.0, 1.0)


def random_grayscale(images: Tensor, generator: torch.Generator, p: float = 0.2) -> Tensor:
    """Replace each RGB image by its luma on all channels with probability ``p`` (no-op for one channel)."""
    _check_colour(images)
    _check_p("p", p)
    gray = (grayscale((images + 1.0) / 2.0) * 2.0 - 1.0).expand_as(images)  # (B, 1, H, W) -> (B, C, H, W)
    pick = _rand(generator, images.shape[0], like=images) < p  # (B,)
    return torch.where(pick.view(-1, 1, 1, 1), gray, images)


def gaussian_blur(images: Tensor, generator: torch.Generator, kernel_size: int,
                  sigma: tuple[float, float] = (0.1, 2.0), p: float = 1.0) -> Tensor:
    """With probability ``p`` per image, a separable Gaussian blur of odd ``kernel_size`` taps with
    sigma ~ U[sigma] pixels, reflect padding (replicate when the image is too small to reflect)."""
    _check_images(images)
    _check_p("p", p)
    if kernel_size < 1 or kernel_size % 2 == 0 or not 0.0 < sigma[0] <= sigma[1]:
        raise ValueError(f"need an odd kernel_size >= 1 and 0 < sigma[0] <= sigma[1], got {kernel_size}, {sigma}")
    b, c, h, w = images.shape
    sig = _uniform(generator, b, sigma[0], sigma[1], images)  # (B,)
    blur = _rand(generator, b, like=images) < p  # (B,)
    taps = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - (kernel_size - 1) / 2
    kernel = torch.softmax(-0.5 * (taps[None] / sig[:, None]) ** 2, dim=1)  # (B, k) normalised Gaussian
    delta = (taps == 0).to(images.dtype).expand(b, kernel_size)  # (B, k) identity kernel
    kernel = torch.where(blur[:, None], kernel, delta).repeat_interleave(c, dim=0)  # (B*C, k)
    pad = kernel_size // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(images.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode=mode)  # (1, B*C, H+2p, W+2p)
    x = F.conv2d(x, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)  # (1, B*C, H+2p, W)
    x = F.conv2d(x, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)  # (1, B*C, H, W)
    return x.view(b, c, h, w).clamp_(-1.0, 1.0)
