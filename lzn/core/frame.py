"""The frame every latent flow runs in: float32 or wider, autocast off, coordinates centred on the
anchors' mean (method.md §2.8).

The flow commutes with translations (x_t - (1 - t) c solves the same ODE over anchors shifted by c), so
shifting anchors and points by the anchors' mean before the matmul expansion of the distances costs
nothing and keeps far-from-origin anchors exact in float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor


def centred(anchors: Tensor, log_weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """-> (centre (q,), centred anchors (n, q), log weights), all in float32 or float64."""
    dtype = torch.promote_types(anchors.dtype, torch.float32)
    anchors = anchors.to(dtype)
    centre = anchors.detach().mean(dim=0)  # (q,); detached: the flow is exactly translation-equivariant
    logw = None if log_weights is None else log_weights.to(dtype)
    return centre, anchors - centre, logw


def no_autocast(x: Tensor) -> AbstractContextManager[Any]:
    """Autocast off on ``x``'s device (the squared distances would overflow in float16)."""
    return torch.autocast(x.device.type, enabled=False) if torch.is_autocast_enabled(x.device.type) else nullcontext()


def shift(x: Tensor, centre: Tensor, t: float) -> Tensor:
    """x - (1 - t) * centre, formed in float64 so that large coordinates lose nothing: (B, q)."""
    return (x.double() - (1.0 - t) * centre.double()).to(centre.dtype)


def norms(anchors: Tensor) -> Tensor:
    """Detached squared norms (n,); the kernel's backward differentiates them itself."""
    return anchors.detach().pow(2).sum(dim=1)
