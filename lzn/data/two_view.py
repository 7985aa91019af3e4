"""Two independently augmented views of each image, SimCLR v2 style (method.md §6.2, used by case study 2).

Pipeline per view: random resized crop -> horizontal flip -> colour jitter (with probability) ->
random grayscale -> Gaussian blur. The defaults are the release's ImageNet values (crop 224, kernel 23,
blur always); ``TwoViewConfig.for_size(32)`` keeps them but crops to 32 and blurs with a kernel of about
a tenth of the crop (3 taps), the usual scaling for small images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lzn.data.augment import color_jitter, gaussian_blur, random_flip, random_grayscale, random_resized_crop


@dataclass(frozen=True)
class TwoViewConfig:
    """Parameters of one view's augmentation; probabilities are per image."""

    crop_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_kernel_size: int | None = None  # None: odd, about crop_size / 10, at least 3 (23 at 224)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_p: float = 1.0  # the release blurs every view (method.md §6.2)

    def __post_init__(self) -> None:
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be a positive number of pixels, got {self.crop_size}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        k = self.blur_kernel_size
        if k is not None and (k < 1 or k % 2 == 0):
            raise ValueError(f"blur_kernel_size must be odd and >= 1 (or None), got {k}")

    @classmethod
    def for_size(cls, size: int, **overrides: object) -> TwoViewConfig:
        """The ImageNet values with crops of ``size`` pixels (and the blur kernel scaled with them)."""
        return cls(crop_size=size, **overrides)  # type: ignore[arg-type]

    @property
    def kernel_size(self) -> int:
        """The blur kernel actually used."""
        if self.blur_kernel_size is not None:
            return self.blur_kernel_size
        k = int(0.1 * self.crop_size)
        return max(3, k + 1 if k % 2 == 0 else k)


class TwoViewAugment:
    """``view1, view2 = TwoViewAugment(config)(images, generator)``: images (B, C, H, W) in [-1, 1] to
    two (B, C, crop_size, crop_size) views, each with its own random parameters per image."""

    def __init__(self, config: TwoViewConfig | None = None) -> None:
        self.config = TwoViewConfig() if config is None else config

    def view(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """One augmented view (B, C, crop_size, crop_size) of every image."""
        cfg = self.config
        x = random_resized_crop(images, generator, cfg.crop_size, cfg.crop_scale, cfg.crop_ratio)
        x = random_flip(x, generator, cfg.flip_p)
        x = color_jitter(x, generator, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, cfg.jitter_p)
        x = random_grayscale(x, generator, cfg.grayscale_p)
        return gaussian_blur(x, generator, cfg.kernel_size, cfg.blur_sigma, cfg.blur_p)

    def __call__(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Two views, each (B, C, crop_size, crop_size); both are drawn in one batched pass over 2B images."""
        both = self.view(torch.cat((images, images)), generator)  # (2B, C, S, S)
        view1, view2 = both.chunk(2)  # each (B, C, S, S)
        return view1, view2
