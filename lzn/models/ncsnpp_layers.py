"""Building blocks of the NCSN++ / DDPM++ U-Net (method.md §5.4-§5.5), after score-SDE's architecture.

* ``ddpm_init_``: DDPM "fan_avg uniform" variance scaling; scale 0 means 1e-10 (near-zero last convs).
* ``Upsample2x`` / ``Downsample2x``: 2x resampling without a conv, FIR (method.md §5.6) or nearest / average.
* ``BigGANResBlock``: GN -> SiLU -> [resample] -> conv3x3 -> + Dense(SiLU(cond)) -> GN -> SiLU ->
  Dropout -> conv3x3 (init_scale), plus a (resampled, 1x1-projected) shortcut, summed and scaled 1/sqrt(2).
* ``AttnBlock``: single-head self-attention over H*W positions with 1x1 q, k, v and output projections.

Every GroupNorm has min(C // 4, 32) groups and eps 1e-6; every conv and Linear has the DDPM init and a
zero bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn.models.fir import downsample_2d, fir_kernel_2d, upsample_2d


@torch.no_grad()
def ddpm_init_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """In place: U(-b, b) with b = sqrt(3 scale / mean(fan_in, fan_out)); scale 0 is taken as 1e-10.

    Fans of a (out, in, *kernel) weight are in x prod(kernel) and out x prod(kernel).
    """
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    bound = math.sqrt(3.0 * scale / fan_avg)
    return weight.uniform_(-bound, bound)


def conv2d(cin: int, cout: int, kernel_size: int = 3, init_scale: float = 1.0) -> nn.Conv2d:
    """Same-size conv (padding K // 2) with DDPM init and zero bias."""
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
    ddpm_init_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def ddpm_linear_(layer: nn.Linear, init_scale: float = 1.0) -> nn.Linear:
    """Re-initialise a Linear in place with DDPM init and zero bias; returns it."""
    ddpm_init_(layer.weight, init_scale)
    nn.init.zeros_(layer.bias)
    return layer


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(C // 4, 32) groups and eps 1e-6 (method.md §5.4)."""
    groups = min(channels // 4, 32)
    if groups < 1 or channels % groups:
        raise ValueError(f"NCSN++ GroupNorm needs C // 4 >= 1 dividing C (min(C // 4, 32) groups), got C = {channels}")
    return nn.GroupNorm(groups, channels, eps=1e-6)


class Upsample2x(nn.Module):
    """(B, C, H, W) -> (B, C, 2H, 2W): FIR up-sampling with ``fir_taps``, or nearest when None."""

    kernel: Tensor | None

    def __init__(self, fir_taps: Sequence[float] | None = None) -> None:
        super().__init__()
        self.register_buffer("kernel", None if fir_taps is None else fir_kernel_2d(fir_taps), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel is None:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return upsample_2d(x, self.kernel, factor=2)


class Downsample2x(nn.Module):
    """(B, C, H, W) -> (B, C, H/2, W/2): FIR down-sampling with ``fir_taps``, or 2x2 average when None."""

    kernel: Tensor | None

    def __init__(self, fir_taps: Sequence[float] | None = None) -> None:
        super().__init__()
        self.register_buffer("kernel", None if fir_taps is None else fir_kernel_2d(fir_taps), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel is None:
            return F.avg_pool2d(x, 2, stride=2)
        return downsample_2d(x, self.kernel, factor=2)


class BigGANResBlock(nn.Module):
    """BigGAN-style residual block with optional resampling inside (score-SDE's ResnetBlockBigGANpp).

    x (B, cin, H, W), cond (B, cond_dim) or None -> (B, cout, H', W'), H' = H, 2H or H/2 by ``resample``.
    ``cond_dim = None`` builds the block without the conditioning Dense (encoder, method.md §5.5).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        cond_dim: int | None,
        resample: Upsample2x | Downsample2x | None = None,
        dropout: float = 0.0,
        init_scale: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(cin)
        self.resample = resample
        self.conv1 = conv2d(cin, cout, 3)
        self.cond = None if cond_dim is None else ddpm_linear_(nn.Linear(cond_dim, cout))
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv2d(cout, cout, 3, init_scale=init_scale)
        self.shortcut = conv2d(cin, cout, 1) if (cin != cout or resample is not None) else None

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = F.silu(self.norm1(x))
        if self.resample is not None:
            h = self.resample(h)
            x = self.resample(x)
        h = self.conv1(h)  # (B, cout, H', W')
        if self.cond is not None:
            if cond is None:
                raise ValueError("this residual block was built with a conditioning input but got cond=None")
            h = h + self.cond(F.silu(cond))[:, :, None, None]  # (B, cout) -> (B, cout, 1, 1) bias
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return (x + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions (score-SDE's AttnBlockpp), skip rescaled 1/sqrt(2).

    q, k, v and the output projection are 1x1 convs (the output one with ``init_scale``); the
    attention logits are q.k / sqrt(C).
    """

    def __init__(self, channels: int, init_scale: float = 0.0) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = conv2d(channels, channels, 1)
        self.k = conv2d(channels, channels, 1)
        self.v = conv2d(channels, channels, 1)
        self.proj = conv2d(channels, channels, 1, init_scale=init_scale)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(B, C, H * W).transpose(1, 2)  # (B, C, H, W) -> (B, HW, C)
        k = self.k(h).reshape(B, C, H * W).transpose(1, 2)  # (B, HW, C)
        v = self.v(h).reshape(B, C, H * W).transpose(1, 2)  # (B, HW, C)
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v: (B, HW, C)
        h = h.transpose(1, 2).reshape(B, C, H, W)  # (B, HW, C) -> (B, C, H, W)
        return (x + self.proj(h)) / math.sqrt(2.0)
