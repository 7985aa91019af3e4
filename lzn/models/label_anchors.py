"""Labels as a data type: encoder, decoder and class-conditional latents (method.md §3.4, §3.5, §7).

The label encoder is a learnable (num_classes, q) anchor matrix initialised N(0, 1) (§7.2) or, with
``init="simplex"``, as the vertices of a randomly rotated regular simplex (every pair of classes equally far
apart, each anchor of norm sqrt(q), method.md §7.2); it is an ordinary parameter, so DDP all-reduces its
gradient like any other (no dummy inputs needed).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lzn.core import zones

LABEL_INITS = ("normal", "simplex")


def simplex_anchors(num_classes: int, latent_dim: int, generator: torch.Generator | None = None) -> Tensor:
    """K = ``num_classes`` points in R^q, centred at 0, pairwise equidistant, each of norm sqrt(q) (the typical
    norm of an N(0, I) draw), in a random orientation: (K, q). Needs K - 1 <= q."""
    k, q = num_classes, latent_dim
    if k - 1 > q:
        raise ValueError(f"a simplex of {k} label anchors needs latent_dim >= {k - 1}, got {q}; use init='normal'")
    centred = torch.eye(k, dtype=torch.float64) - 1.0 / k  # (K, K): rows equidistant, spanning K - 1 dimensions
    basis, _ = torch.linalg.qr(centred[:, : k - 1])  # (K, K-1): orthonormal basis of the sum-zero subspace
    coords = centred @ basis  # (K, K-1)
    rotation, _ = torch.linalg.qr(torch.randn(q, k - 1, generator=generator, dtype=torch.float64))  # (q, K-1)
    points = coords @ rotation.t()  # (K, q)
    return (points / points.norm(dim=1, keepdim=True) * q**0.5).float()


class LabelAnchors(nn.Module):
    def __init__(self, num_classes: int, latent_dim: int, *, init: str = "normal",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if num_classes < 2 or latent_dim < 1:
            raise ValueError(f"LabelAnchors needs num_classes >= 2 and latent_dim >= 1, got {num_classes}, {latent_dim}")
        if init not in LABEL_INITS:
            raise ValueError(f"label anchor init must be one of {list(LABEL_INITS)}, got {init!r}")
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        weight = (torch.randn(num_classes, latent_dim, generator=generator) if init == "normal"
                  else simplex_anchors(num_classes, latent_dim, generator))
        self.weight = nn.Parameter(weight)  # (K, q)

    def forward(self, labels: Tensor) -> Tensor:
        """Label encoder: (B,) class indices -> (B, q) anchors."""
        self.check_labels(labels)
        return self.weight[labels]

    def check_labels(self, labels: Tensor) -> None:
        if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be a 1-D integer tensor of class indices, got {tuple(labels.shape)} {labels.dtype}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
            )

    def class_log_weights(self, labels: Tensor, counts: Tensor | None = None) -> Tensor:
        """log pi from class counts of a batch (zero-count classes included -> -inf), method.md §3.4: (K,)."""
        if counts is None:
            counts = torch.bincount(labels, minlength=self.num_classes).to(self.weight.dtype)
        return torch.log(counts / counts.sum())

    def decode(self, latents: Tensor, *, steps: int = 100, log_weights: Tensor | None = None) -> Tensor:
        """Label decoder (§3.5): flow latents back over the label anchors, nearest anchor's class: (B,)."""
        with torch.no_grad():
            end = zones.flow_back_end(latents, self.weight, steps=steps, log_weights=log_weights)
            return zones.nearest(end, self.weight)

    def alignment_probs(self, latents: Tensor, labels: Tensor, *, steps: int = 100,
                        log_weights: Tensor | None = None) -> Tensor:
        """Per-step probability of each latent's true class on the reverse flow (§7.3 step 5): (steps, B)."""
        self.check_labels(labels)
        _, probs = zones.flow_back(latents, self.weight, steps=steps, log_weights=log_weights, targets=labels)
        return probs

    def conditional_latents(self, labels: Tensor, noise: Tensor, *, steps: int = 100, eps: float = 1e-4,
                            noise_scale: float = 1.0) -> Tensor:
        """Class-conditional latents (§7.5): forward Euler flow from each label's anchor: (B, q)."""
        self.check_labels(labels)
        return zones.latents(self.weight, noise, index=labels, steps=steps, solver="euler", eps=eps,
                             noise_scale=noise_scale)
