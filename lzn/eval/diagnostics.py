"""Zone diagnostics of a trained ``LatentZoningNetwork`` (method.md §1.4-§1.6, §2, §3): are the pooled
latents N(0, I), do latents flow back to their own anchor, and how does a latent's true-label probability
grow along the reverse label flow. Functions of (model, tensors) -> plain numbers; no recipe.

Anchor sets follow the paper's batch protocol (method.md §1.6, §8.2): each chunk of ``batch_size`` images
is one anchor set, on this process only (no gather across processes).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lzn import checks
from lzn.core import zones
from lzn.models import LatentZoningNetwork


def normal_ks(x: Tensor) -> Tensor:
    """Kolmogorov-Smirnov statistic of each column of ``x`` (N, q) against N(0, 1): -> (q,) float64.

    D_j = max_i max(i / N - Phi(x_(i)j), Phi(x_(i)j) - (i - 1) / N) over the sorted column x_(.)j.
    """
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] < 1 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"normal_ks needs a floating (N >= 1, q) tensor, got {shape}")
    n = x.shape[0]
    cdf = torch.special.ndtr(x.detach().double().sort(dim=0).values)  # (N, q), Phi of the order statistics
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)[:, None]  # (N, 1)
    above = (i / n - cdf).amax(dim=0)  # (q,) D+
    below = (cdf - (i - 1) / n).amax(dim=0)  # (q,) D-
    return torch.maximum(above, below)


def _check_labels(model: LatentZoningNetwork, labels: Any, n: int) -> Tensor:
    """(N,) long class indices on the CPU, in [0, K) of the label anchors."""
    if model.label_anchors is None:
        raise ValueError("labels were given but the model has no label anchors: label diagnostics need a "
                         "label decoder (pass labels=None for the latent and round-trip diagnostics only)")
    k = model.label_anchors.num_classes
    if isinstance(labels, (list, tuple, np.ndarray)):
        labels = torch.as_tensor(np.asarray(labels))
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a (N,) tensor, list or array of class indices, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer class indices, got {labels.dtype}; use labels.long()")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the images, got {tuple(labels.shape)}")
    labels = labels.detach().cpu().long()
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
    return labels


@torch.no_grad()
def zone_diagnostics(
    model: LatentZoningNetwork,
    images: Tensor,
    labels: Any = None,
    *,
    batch_size: int = 2000,
    step_factors: Sequence[int] = (1, 2, 4),
    seed: int = 0,
    max_images: int = 2000,
) -> dict[str, Any]:
    """Zone diagnostics of ``model`` on ``images`` (N, C, H, W) in [-1, 1], optional ``labels`` (N,).

    At most ``max_images`` images are used (a seeded random subset, kept in data order); each chunk of
    ``batch_size`` of them is one anchor set. Latents use the model's flow (``model.flow``: solver, steps,
    eps) with noise_scale 1 and noise drawn per chunk from a generator seeded with ``seed`` on the model's
    device, exactly as ``model.classify(..., context="batch")`` draws it. The model's mode is kept (call
    ``model.eval()`` first for deterministic anchors). Returns JSON-serialisable values:

    * ``num_images``, ``num_chunks``, ``anchor_set`` (images per anchor set), ``num_latents``, ``latent_dim``;
    * pooled latents vs N(0, I) (method.md §1.4 property 1): ``latent_mean_norm`` (norm of the mean),
      ``latent_cov_max_abs_dev`` (max |Cov - I| entry), ``latent_cov_eig_min`` / ``_max``,
      ``latent_ks_mean`` / ``_max`` (per-coordinate Kolmogorov-Smirnov statistic against N(0, 1));
    * ``round_trip`` {"x<f>": fraction}: latents computed with f x flow.steps steps that flow back
      (reverse Euler, f x flow.steps steps, method.md §3.2) nearest to their own anchor in their chunk
      (property 2, the zones are disjoint); ``round_trip_logsnr`` the same with the flow back by
      DPM-Solver++ 3M on the log-SNR grid (method.md §2.6.1), which errs far less at the same steps, so
      that it measures where the latents are rather than the error of the flow back;
    * with label anchors and ``labels`` (else None): ``label_zone_fraction``, the fraction of latents
      whose label-decoder class (uniform class weights, as ``classify``) is the true label; and
      ``assignment_trajectory``, the mean true-label probability along the reverse label flow at
      ``assignment_t`` = 1, 1 - 1/R, ..., 1/R (R = flow.label_steps; method.md §3.2, §7.3).
    """
    encoder = model._need("encoder")
    model.check_images(images)
    batch_size = checks.positive_int("batch_size", batch_size)
    max_images = checks.positive_int("max_images", max_images)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if isinstance(step_factors, (str, bytes)) or not isinstance(step_factors, Sequence) or not step_factors:
        raise ValueError(f"step_factors must be a non-empty sequence of positive ints, got {step_factors!r}")
    factors = [checks.positive_int("each step factor", f) for f in step_factors]
    if len(set(factors)) != len(factors):
        raise ValueError(f"step_factors must not repeat, got {list(step_factors)}")
    n_all = images.shape[0]
    lab = None if labels is None else _check_labels(model, labels, n_all)

    # ---- deterministic subsample, kept in data order
    if n_all > max_images:
        keep = torch.randperm(n_all, generator=torch.Generator().manual_seed(int(seed)))[:max_images].sort().values
        images = images[keep.to(images.device)]
        lab = None if lab is None else lab[keep]
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"zone diagnostics need at least 2 images (a covariance and an anchor set), got {n}")

    flow, dev = model.flow, model.device
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    label_anchors = model.label_anchors if lab is not None else None
    pooled: list[Tensor] = []  # latents with the model's flow, (B, q) per chunk
    hits = {f: 0 for f in factors}
    hits_logsnr = {f: 0 for f in factors}
    correct = 0
    traj = torch.zeros(flow.label_steps, dtype=torch.float64)  # sum over images of P(true label) per step
    chunks = images.split(batch_size)
    start = 0
    for chunk in chunks:
        anchors = encoder(chunk.to(dev))  # (B, q): this chunk's anchor set
        b = anchors.shape[0]
        noise = torch.randn(anchors.shape, generator=gen, device=dev, dtype=anchors.dtype)  # (B, q)
        own = torch.arange(b, device=dev)

        def forward(steps: int, anchors: Tensor = anchors, noise: Tensor = noise) -> Tensor:
            return zones.latents(anchors, noise, steps=steps, solver=flow.solver, eps=flow.eps)  # (B, q)

        base = forward(flow.steps)
        pooled.append(base.double().cpu())
        for f in factors:
            lat = base if f == 1 else forward(f * flow.steps)
            end = zones.flow_back_end(lat, anchors, steps=f * flow.steps)  # (B, q) near t = 0
            hits[f] += int((zones.nearest(end, anchors) == own).sum())
            end = zones.flow_back_end(lat, anchors, steps=f * flow.steps, solver="dpm3_logsnr")
            hits_logsnr[f] += int((zones.nearest(end, anchors) == own).sum())
        if label_anchors is not None and lab is not None:
            target = lab[start:start + b].to(dev)
            pred = label_anchors.decode(base, steps=flow.label_steps)  # (B,), uniform class weights
            correct += int((pred == target).sum())
            probs = label_anchors.alignment_probs(base, target, steps=flow.label_steps)  # (R, B), t = 1 first
            traj += probs.double().sum(dim=1).cpu()
        start += b

    z = torch.cat(pooled)  # (N, q) float64
    q = z.shape[1]
    mean = z.mean(dim=0)  # (q,)
    centred = z - mean
    cov = centred.t() @ centred / (n - 1)  # (q, q)
    eig = torch.linalg.eigvalsh(cov)  # (q,) ascending
    ks = normal_ks(z)  # (q,)
    has_labels = label_anchors is not None
    return {
        "num_images": n,
        "num_chunks": len(chunks),
        "anchor_set": min(batch_size, n),  # anchors per set (the last set may be smaller)
        "num_latents": n,
        "latent_dim": q,
        "latent_mean_norm": float(mean.norm()),
        "latent_cov_max_abs_dev": float((cov - torch.eye(q, dtype=cov.dtype)).abs().max()),
        "latent_cov_eig_min": float(eig[0]),
        "latent_cov_eig_max": float(eig[-1]),
        "latent_ks_mean": float(ks.mean()),
        "latent_ks_max": float(ks.max()),
        "round_trip": {f"x{f}": hits[f] / n for f in factors},
        "round_trip_logsnr": {f"x{f}": hits_logsnr[f] / n for f in factors},
        "label_zone_fraction": correct / n if has_labels else None,
        "assignment_trajectory": (traj / n).tolist() if has_labels else None,
        "assignment_t": [1.0 - j / flow.label_steps for j in range(flow.label_steps)] if has_labels else None,
    }
