"""The reference bank (method.md §2.9): a fixed anchor set per data type, so that an inference latent does
not depend on the rest of its batch. Which training samples form it, which set an inference latent uses,
and the latents over it; :class:`~lzn.models.LatentZoningNetwork` delegates here, and each type's entry
(``lzn.models.datatypes``) names its buffer."""

from __future__ import annotations

import torch
from torch import Tensor

from lzn import checks
from lzn.core.reference import latents_with_reference
from lzn.models.inputs import check_rows
from lzn.models.outputs import Context, FlowConfig, Labels


def reference_indices(n: int, labels: Labels | None, size: int, seed: int = 0) -> Tensor:
    """Which of ``n`` training images form a reference bank of ``size`` (method.md §2.9): a seeded random
    draw, class-balanced when ``labels`` (n,) are given (round-robin over classes); int64 (min(size, n),)."""
    size = checks.positive_int("size", size)
    gen = torch.Generator().manual_seed(seed)
    if labels is None:
        return torch.randperm(n, generator=gen)[:size]
    labels = torch.as_tensor(labels).cpu()
    if labels.shape != (n,) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be {n} integer class indices (one per image), got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    per_class = [torch.nonzero(labels == k).flatten() for k in torch.unique(labels).tolist()]
    per_class = [c[torch.randperm(len(c), generator=gen)] for c in per_class]
    longest = max(len(c) for c in per_class)
    grid = torch.full((longest, len(per_class)), -1, dtype=torch.long)  # (rank in class, class)
    for k, c in enumerate(per_class):
        grid[: len(c), k] = c
    index = grid.flatten()
    return index[index >= 0][:size]  # round-robin: one of each class, then the next of each ...


def buffer_name(name: str, buffer: str | None) -> str:
    """``buffer``, the model buffer holding the reference anchors of data type ``name``; None (labels) is an
    error."""
    if buffer is None:
        raise ValueError(f"{name}s have no reference set: a {name}'s latent flows over every class's anchor")
    return buffer


def checked_anchors(anchors: Tensor, q: int) -> Tensor:
    """Reference anchors (R >= 1, q), finite, detached."""
    check_rows(anchors, q, "reference anchors", "R")
    return anchors.detach()


def pick_context(context: Context | None, reference: Tensor | None, what: str, how: str) -> Context:
    """The anchor set of an inference latent: "reference" by default when the type has a set, else "batch".
    ``what`` the set is called and ``how`` it is built, for the error without one."""
    if context is None:
        return "reference" if reference is not None else "batch"
    if context not in ("reference", "batch"):
        raise ValueError(f"context must be 'reference' or 'batch', got {context!r}")
    if context == "reference" and reference is None:
        raise ValueError(f"this model has no {what}: call {how} first, or use context='batch' "
                         "(the paper's batch protocol)")
    return context


def latents_over(anchors: Tensor, reference: Tensor, noise: Tensor | None, noise_scale: float,
                 generator: torch.Generator | None, flow: FlowConfig) -> Tensor:
    """Latents (B, q) of anchors (B, q), each over the reference anchors (R, q) plus its own."""
    if noise is None:
        noise = torch.randn(anchors.shape, generator=generator, device=anchors.device, dtype=anchors.dtype)
    return latents_with_reference(anchors, reference, noise, steps=flow.steps, solver=flow.solver, eps=flow.eps,
                                  noise_scale=noise_scale)
