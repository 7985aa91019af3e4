"""Latents against a fixed reference set of anchors, so that a sample's latent does not depend on who
else is in its batch (method.md §2.9).

The paper's latent of sample i is computed over the anchors of its whole batch. For inference that
makes every answer batch-dependent: alone, a sample is the only anchor of its flow and its latent is
just Gaussian noise around it. Here each sample's anchor set is a fixed *reference bank* (R, q) of
anchors (e.g. a class-balanced sample of training anchors) plus the sample's own anchor, with uniform
mixture weights over the R + 1 anchors. The flow and its solvers are those of ``zones.latents``
(same start point, same Euler / DPM-Solver++ 3M plans); only the anchor set differs per sample, so
the result for one sample is the same alone or in any batch.

Inference only (no autograd node of its own; differentiable through plain torch if needed).
Memory: a (chunk, R) matrix per step; time: O(steps B R q).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lzn.core import validate
from lzn.core.frame import no_autocast
from lzn.core.latent_flow import Plan, integrate, solver_plan
from lzn.core.validate import Solver
from lzn.core.zone_mean import zone_logits


def latents_with_reference(
    own: Tensor,
    reference: Tensor,
    noise: Tensor,
    *,
    steps: int = 20,
    solver: Solver = "euler",
    eps: float | None = None,
    noise_scale: float = 1.0,
    chunk: int = 4096,
) -> Tensor:
    """Latents (B, q) of samples with anchors ``own`` (B, q), each over the anchor set
    ``reference`` (R, q) + its own anchor; ``noise`` (B, q) is z of the start point."""
    for name, x in (("own", own), ("reference", reference), ("noise", noise)):
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
            raise ValueError(f"{name} must be a floating 2-D tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if reference.shape[0] == 0 or reference.shape[1] != own.shape[1] or noise.shape != own.shape:
        raise ValueError(f"expected own (B, q), reference (R >= 1, q), noise (B, q); got {tuple(own.shape)}, "
                         f"{tuple(reference.shape)}, {tuple(noise.shape)}")
    if not bool(torch.isfinite(own).all() & torch.isfinite(reference).all() & torch.isfinite(noise).all()):
        raise ValueError("own anchors, reference anchors and noise must be finite")
    validate.steps(steps)
    g = validate.solver_eps(solver, eps)
    alpha = validate.noise_scale(noise_scale)
    plan, t_end = solver_plan(solver, steps, g)
    with no_autocast(own):
        dtype = torch.promote_types(own.dtype, torch.float32)
        centre = reference.to(dtype).mean(dim=0)  # (q,); the flow is translation-equivariant
        bank = reference.to(dtype) - centre  # (R, q)
        sq = bank.pow(2).sum(dim=1)  # (R,)
        out = []
        for o, z in zip((own.to(dtype) - centre).split(chunk), noise.to(dtype).split(chunk)):
            out.append(_flow(o, z, bank, sq, g, alpha, plan))
        return torch.cat(out) + (1.0 - t_end) * centre


def _flow(own: Tensor, noise: Tensor, bank: Tensor, sq: Tensor, g: float, alpha: float, plan: Plan) -> Tensor:
    """The plan of ``zones.latents`` with each sample's zone mean over the bank plus its own anchor."""
    own_sq = own.pow(2).sum(dim=1)  # (B,)
    r = bank.shape[0]

    def mean(x: Tensor, t: float) -> Tensor:
        s = 1.0 - t
        logits = torch.empty(x.shape[0], r + 1, dtype=x.dtype, device=x.device)  # (B, R + 1)
        logits[:, :r] = zone_logits(x, bank, t, None, sq)  # (B, R), ||x||^2 dropped per row
        logits[:, r] = (x * own).sum(dim=1) * (s / (t * t)) - own_sq * (0.5 * s * s / (t * t))  # own anchor
        w = torch.softmax(logits, dim=1)
        return w[:, :r] @ bank + w[:, r:] * own  # (B, R) @ (R, q) + (B, 1) * (B, q) -> (B, q)

    return integrate((1.0 - g) * own + (g * alpha) * noise, plan, mean)  # the start point of zones.latents
