"""Pure-PyTorch FIR resampling for the 256^2 NCSN++ networks (method.md §5.6).

The release compiles StyleGAN2's ``upfirdn2d`` CUDA extension; the same operation is a zero-insertion
up-sampling, a constant padding, a true 2-D convolution with a small FIR kernel and a decimation, all of
which plain PyTorch ops express on any device:

* ``fir_kernel_2d([1, 3, 3, 1])`` -> the (4, 4) outer product normalised to sum 1;
* ``upsample_2d``: kernel x factor^2, pads ((p + 1) // 2 + factor - 1, p // 2) with p = K - factor;
* ``downsample_2d``: kernel as is, pads ((p + 1) // 2, p // 2), keep every factor-th pixel.

With taps [1, 1] the two reduce to nearest-neighbour up-sampling and 2x2 average pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def fir_kernel_2d(taps: Sequence[float] | Tensor) -> Tensor:
    """1-D taps (K,) -> separable (K, K) kernel outer(taps, taps) / sum; a 2-D kernel is only normalised."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.dim() == 1:
        k = k[:, None] * k[None, :]  # (K, 1) * (1, K) -> (K, K)
    if k.dim() != 2 or k.numel() == 0:
        raise ValueError(f"FIR taps must be a non-empty 1-D or 2-D array, got shape {tuple(k.shape)}")
    total = k.sum()
    if total == 0:
        raise ValueError("FIR taps must not sum to zero")
    return k / total


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Up-sample by zero insertion, pad, convolve with ``kernel``, down-sample (StyleGAN2's upfirdn2d).

    x (B, C, H, W), kernel (Kh, Kw). Both spatial axes are padded by ``pad = (before, after)`` (negative
    values crop). The filter is a true convolution (the kernel is flipped), applied to every channel on
    its own. Output (B, C, (H up + before + after - Kh) // down + 1, same for W).
    """
    if x.dim() != 4 or kernel.dim() != 2:
        shapes = f"{tuple(x.shape)}, {tuple(kernel.shape)}"
        raise ValueError(f"upfirdn2d expects x (B, C, H, W) and a 2-D kernel, got {shapes}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got {up}, {down}")
    B, C, H, W = x.shape
    y = x.reshape(B * C, 1, H, 1, W, 1)
    if up > 1:
        # insert up-1 zeros after every pixel along both axes: (BC, 1, H, up, W, up)
        y = F.pad(y, (0, up - 1, 0, 0, 0, up - 1))
    y = y.reshape(B * C, 1, H * up, W * up)
    before, after = pad
    y = F.pad(y, (before, after, before, after))  # (BC, 1, H up + before + after, ...)
    weight = kernel.flip(0, 1).to(dtype=y.dtype, device=y.device)[None, None]  # (1, 1, Kh, Kw)
    y = F.conv2d(y, weight, stride=down)  # stride = convolve then keep every down-th pixel
    return y.reshape(B, C, y.shape[-2], y.shape[-1])  # (BC, 1, H', W') -> (B, C, H', W')


def upsample_2d(x: Tensor, kernel: Tensor, factor: int = 2) -> Tensor:
    """FIR up-sampling (B, C, H, W) -> (B, C, factor H, factor W); ``kernel`` from ``fir_kernel_2d``."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel * factor**2, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: Tensor, kernel: Tensor, factor: int = 2) -> Tensor:
    """FIR down-sampling (B, C, H, W) -> (B, C, H / factor, W / factor); ``kernel`` from ``fir_kernel_2d``."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))
