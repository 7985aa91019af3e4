"""Small encoder and latent-conditioned U-Net decoder that train in minutes on a CPU (8x8 to 32x32).

These are scaled-down stand-ins for the NCSN++ decoder and U-Net encoder of method.md §5.4-§5.5,
keeping their interfaces:

* ``SmallEncoder``: (B, C, S, S) -> anchors (B, q); conv + GroupNorm + SiLU layers with stride-2
  down-sampling, global average pooling ("features"), an MLP head. Unconstrained output, or with
  ``head_norm`` a GroupNorm over groups of 8 coordinates with a learnable affine (anchors of norm about
  sqrt(q), as case study 2's projection head); optional dropout (active in training mode, method.md §5.5).
* ``SmallUNet``: the image rectified-flow velocity network v(x_s, s | latent, label). The condition
  vector is ``ConditionMLP([latent, one-hot label, sinusoidal(999 s)])`` (method.md §5.4); every residual
  block adds SiLU -> Linear -> channel-wise bias of it. s is the image RF clock (0 = noise, 1 = data),
  clamped to [0, 1]. The final conv is zero-initialised, so a fresh network outputs exactly 0.

Odd sizes (7x7 after two halvings of 28x28) are handled by padded stride-2 convs on the way down and
nearest up-sampling to the exact size of the matching skip on the way up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn.models.embeddings import ConditionMLP, sinusoidal_embedding


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with min(C/4, 32) groups (method.md §5.4), lowered until it divides C."""
    groups = max(1, min(max_groups, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


def anchor_norm(latent_dim: int) -> nn.GroupNorm:
    """GroupNorm over groups of 8 anchor coordinates (fewer groups when 8 does not divide q), learnable
    affine: each group standardised, so anchors sit at a norm of about sqrt(q) whatever the trunk does."""
    groups = max(1, latent_dim // 8)
    while latent_dim % groups:
        groups -= 1
    return nn.GroupNorm(groups, latent_dim, eps=1e-6)


def _check_images(x: Tensor, channels: int, size: int, who: str) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != (channels, size, size):
        raise ValueError(
            f"{who} expects images of shape (B, {channels}, {size}, {size}) "
            f"(image_channels={channels}, image_size={size}), got {tuple(x.shape)}"
        )


def _check_config(cfg: Any) -> None:
    if cfg.image_channels <= 0 or cfg.image_size <= 0:
        raise ValueError(f"image_channels and image_size must be positive, got {cfg.image_channels}, {cfg.image_size}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")


# ----------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------


@dataclass
class SmallEncoderConfig:
    """SmallEncoder shape. ``channels[i]`` is the width at resolution S / 2^i."""

    image_channels: int = 1
    image_size: int = 8
    latent_dim: int = 16
    channels: tuple[int, ...] = (32, 64, 128)
    hidden: int = 256
    dropout: float = 0.0
    head_norm: bool = False  # end the head in GroupNorm over groups of 8 coordinates (method.md §5.5)


class SmallEncoder(nn.Module):
    """Small CNN encoder: (B, C, S, S) in [-1, 1] -> anchors (B, latent_dim).

    stem conv3x3 -> GN -> SiLU; per further level: conv3x3/2 -> GN -> SiLU -> conv3x3 -> GN -> SiLU;
    global average pool -> ``features`` (B, channels[-1]); head Linear -> SiLU -> Dropout -> Linear, then
    with ``head_norm`` GroupNorm(max(1, latent_dim // 8) groups, affine) over the anchor coordinates.
    Build with a config, keyword overrides, or both: ``SmallEncoder(image_size=28, latent_dim=32)``.
    """

    def __init__(self, config: SmallEncoderConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = dataclasses.replace(config or SmallEncoderConfig(), **overrides)
        cfg = dataclasses.replace(cfg, channels=tuple(cfg.channels))  # lists come back from JSON
        _check_config(cfg)
        if cfg.latent_dim <= 0 or cfg.hidden <= 0 or not cfg.channels or min(cfg.channels) <= 0:
            raise ValueError(f"latent_dim, hidden and channels (non-empty) must be positive, got {cfg}")
        self.config = cfg
        self.image_channels = cfg.image_channels
        self.image_size = cfg.image_size
        self.latent_dim = cfg.latent_dim
        self.feature_dim = cfg.channels[-1]

        layers: list[nn.Module] = [nn.Conv2d(cfg.image_channels, cfg.channels[0], 3, padding=1)]
        layers += [group_norm(cfg.channels[0]), nn.SiLU()]
        for cin, cout in zip(cfg.channels[:-1], cfg.channels[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), group_norm(cout), nn.SiLU()]
            layers += [nn.Conv2d(cout, cout, 3, padding=1), group_norm(cout), nn.SiLU()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(self.feature_dim, cfg.hidden),
            nn.SiLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.latent_dim),
            *([anchor_norm(cfg.latent_dim)] if cfg.head_norm else []),
        )

    def features(self, x: Tensor) -> Tensor:
        """Pooled backbone feature: (B, C, S, S) -> (B, feature_dim)."""
        _check_images(x, self.image_channels, self.image_size, "SmallEncoder")
        return self.trunk(x).mean(dim=(2, 3))  # (B, F, S', S') -> (B, F)

    def forward(self, x: Tensor) -> Tensor:
        """Anchors: (B, C, S, S) -> (B, latent_dim)."""
        return self.head(self.features(x))


# ----------------------------------------------------------------------------------------------
# Decoder (velocity network)
# ----------------------------------------------------------------------------------------------


@dataclass
class SmallUNetConfig:
    """SmallUNet shape. Level i works at resolution S / 2^i with ``channels * channel_mult[i]`` maps.

    ``cond_dim`` is the width of the ConditionMLP output (4 nf in NCSN++); ``attention`` adds a
    self-attention block and a second residual block in the middle (lowest resolution). The defaults
    (widths 16/32/64) keep a forward+backward at batch 256 on 8x8 images around 0.05 s on 2 CPU cores.
    """

    image_channels: int = 1
    image_size: int = 8
    latent_dim: int = 0
    num_classes: int = 0
    channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    time_dim: int = 64
    cond_dim: int = 128
    attention: bool = False
    dropout: float = 0.0


class ResBlock(nn.Module):
    """GN -> SiLU -> conv3x3, + channel bias from SiLU -> Linear(cond), GN -> SiLU -> Dropout -> conv3x3,
    + (1x1-projected) input; the sum is scaled by 1/sqrt(2) (skip rescale, method.md §5.4)."""

    def __init__(self, cin: int, cout: int, cond_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.cond = nn.Linear(cond_dim, cout)
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, cout, H, W)
        h = h + self.cond(F.silu(cond))[:, :, None, None]  # (B, cout) -> (B, cout, 1, 1) bias
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class SelfAttention(nn.Module):
    """Single-head self-attention over the H*W positions, residual, output projection zero-initialised."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2)  # (B, 3, HW, C)
        q, k, v = qkv.unbind(dim=1)  # each (B, HW, C)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        h = h.transpose(1, 2).reshape(B, C, H, W)  # (B, HW, C) -> (B, C, H, W)
        return (x + self.proj(h)) / math.sqrt(2.0)


class SmallUNet(nn.Module):
    """Latent-conditioned rectified-flow velocity network (small stand-in for method.md §5.4).

    forward(x (B, C, S, S), s (B,), latent (B, q) | None, labels (B,) | None) -> velocity (B, C, S, S).
    Build with a config, keyword overrides, or both: ``SmallUNet(image_size=28, latent_dim=16)``.
    """

    def __init__(self, config: SmallUNetConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = dataclasses.replace(config or SmallUNetConfig(), **overrides)
        cfg = dataclasses.replace(cfg, channel_mult=tuple(cfg.channel_mult))  # lists come back from JSON
        _check_config(cfg)
        if cfg.latent_dim < 0 or cfg.num_classes < 0:
            raise ValueError(f"latent_dim and num_classes must be >= 0 (0 = none), got {cfg}")
        if not cfg.channel_mult or min(cfg.channels, cfg.num_res_blocks, cfg.cond_dim, *cfg.channel_mult) <= 0:
            raise ValueError(f"channels, channel_mult (non-empty), num_res_blocks, cond_dim must be positive, got {cfg}")
        if cfg.time_dim < 4:
            raise ValueError(f"time_dim must be >= 4, got {cfg.time_dim}")
        self.config = cfg
        self.image_channels = cfg.image_channels
        self.image_size = cfg.image_size
        self.latent_dim = cfg.latent_dim
        self.num_classes = cfg.num_classes
        cond_dim = cfg.cond_dim
        self.condition = ConditionMLP(cfg.time_dim, cond_dim, cfg.latent_dim, cfg.num_classes)  # method.md §5.4

        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(cfg.image_channels, widths[0], 3, padding=1)
        # Down path: num_res_blocks blocks per level, one skip per level, stride-2 conv between levels.
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        cin = widths[0]
        for i, w in enumerate(widths):
            self.down_blocks.append(nn.ModuleList(ResBlock(cin if j == 0 else w, w, cond_dim, cfg.dropout)
                                                  for j in range(cfg.num_res_blocks)))
            cin = w
            if i < len(widths) - 1:
                self.downsamples.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.mid1 = ResBlock(cin, cin, cond_dim, cfg.dropout)
        self.mid_attn = SelfAttention(cin) if cfg.attention else None
        self.mid2 = ResBlock(cin, cin, cond_dim, cfg.dropout) if cfg.attention else None
        # Up path, lowest level first: concat the level's skip, num_res_blocks blocks, then (above
        # level 0) a 3x3 conv to the next level's width at the low resolution and nearest up-sampling.
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for i in reversed(range(len(widths))):
            w = widths[i]
            self.up_blocks.append(nn.ModuleList(ResBlock(cin + w if j == 0 else w, w, cond_dim, cfg.dropout)
                                                for j in range(cfg.num_res_blocks)))
            cin = w
            if i > 0:
                self.upsamples.append(nn.Conv2d(w, widths[i - 1], 3, padding=1))
                cin = widths[i - 1]
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, s: Tensor, latent: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Velocity u ~ x_data - noise at image-RF time s (0 = noise, 1 = data); s is clamped to [0, 1]."""
        _check_images(x, self.image_channels, self.image_size, "SmallUNet")
        if s.shape != (x.shape[0],):
            raise ValueError(f"SmallUNet expects s of shape ({x.shape[0]},), got {tuple(s.shape)}")
        temb = sinusoidal_embedding(999.0 * s.clamp(0.0, 1.0), self.config.time_dim).to(x.dtype)  # (B, T)
        cond = self.condition(temb, latent, labels)  # (B, cond_dim)

        h = self.conv_in(x)  # (B, c0, S, S)
        skips = []
        for i, level in enumerate(self.down_blocks):
            for block in level:
                h = block(h, cond)
            skips.append(h)  # (B, c_i, S_i, S_i)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)  # (B, c_i, ceil(S_i / 2), ceil(S_i / 2))
        h = self.mid1(h, cond)
        if self.mid_attn is not None and self.mid2 is not None:
            h = self.mid2(self.mid_attn(h), cond)
        for i, level in enumerate(self.up_blocks):
            h = torch.cat([h, skips.pop()], dim=1)  # (B, 2 c_i, S_i, S_i)
            for block in level:
                h = block(h, cond)  # (B, c_i, S_i, S_i)
            if i < len(self.upsamples):
                h = self.upsamples[i](h)  # (B, c_{i-1}, S_i, S_i)
                h = F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest")  # (B, c_{i-1}, S_{i-1}, S_{i-1})
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, S, S)
