"""A judge for conditional samples: a classifier trained on real pixels, independent of the model judged
(``class_consistency`` and the caption checks take it as ``images -> class indices``, method.md §8.3).

Multinomial logistic regression on standardised pixels, fitted full-batch with L-BFGS: deterministic,
a few seconds on digits (98% test accuracy), enough to tell a generated "three" from a "seven".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def _standardise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (x.flatten(1).double() - mean) / std  # (N, D)


def pixel_judge(images: Tensor, labels: Tensor, num_classes: int | None = None, *, weight_decay: float = 1e-3,
                iterations: int = 200) -> Callable[[Tensor], Tensor]:
    """Fit on (N, C, H, W) images in [-1, 1] with labels (N,); returns ``judge(images) -> (B,) int64``."""
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"pixel_judge needs images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    flat = images.detach().cpu().flatten(1).double()  # (N, D)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-3)
    x, y = _standardise(images.cpu(), mean, std), labels.cpu().long()
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)  # (D, K)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        with torch.enable_grad():
            loss = F.cross_entropy(x @ w + b, y) + weight_decay * w.pow(2).sum()
            loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_, b_ = w.detach(), b.detach()

    def judge(batch: Tensor) -> Tensor:
        return (_standardise(batch.detach().cpu(), mean, std) @ w_ + b_).argmax(dim=1)  # (B,)

    return judge
