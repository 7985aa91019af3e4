"""Latent zones: the two atomic operations of LZN (method.md §2 latent computation, §3 latent alignment).

Clock: the latent flow's time is t, with t = 0 at the anchors and t = 1 at N(0, I) (method.md §1.2).
Shapes: B points, n anchors, q latent dimensions. Every function is differentiable w.r.t. anchors,
noise and latents, and never builds a (B, n, q) tensor (see ``zone_mean``).

Every entry point checks its arguments (``validate``), then works in the flow's frame (``frame``:
float32 or wider, autocast off, anchors and points centred on the anchors' mean). ``flow_memory`` (bytes)
sizes the row blocks of the responsibilities (``budget``, method.md §2.8); results do not depend on it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from lzn.core import budget, frame, validate
from lzn.core.latent_flow import EAGER, GRIDS, LatentFlow, dpm3_plan, solver_plan
from lzn.core.validate import DEFAULT_EPS, Solver
from lzn.core.validate import noise_scale as check_noise_scale
from lzn.core.zone_mean import ZoneMean, responsibilities

__all__ = ["DEFAULT_EPS", "Solver", "alignment_loss", "check_noise_scale", "flow_back", "flow_back_end", "latents",
           "nearest", "posteriors", "velocity"]


def _blocks(flow_memory: int | None, x: Tensor, a: Tensor, steps: int = 1) -> budget.Blocks:
    memory = budget.resolve(budget.check_flow_memory(flow_memory), a.device)
    return budget.blocks(memory, x.shape[0], a.shape[0], a.element_size(), steps)


# ---------------------------------------------------------------------------------------------------
# pointwise quantities (method.md §2.2-§2.3)


def _pointwise(x: Tensor, anchors: Tensor, t: float | Tensor,
               log_weights: Tensor | None) -> tuple[float, Tensor, Tensor, Tensor, Tensor | None]:
    """Checked, centred inputs of posteriors / velocity: (t, centre, x - (1 - t) c, A - c, log pi)."""
    validate.anchors(anchors)
    validate.points("x", x, anchors)
    validate.log_weights(log_weights, anchors.shape[0])
    tv = validate.time(t)
    centre, a, logw = frame.centred(anchors, log_weights)
    return tv, centre, frame.shift(x, centre, tv), a, logw


def posteriors(x: Tensor, anchors: Tensor, t: float | Tensor, log_weights: Tensor | None = None) -> Tensor:
    """Responsibilities w_l(x, t) of method.md §2.2: (B, q), (n, q) -> (B, n), rows sum to 1."""
    with frame.no_autocast(x):
        tv, _, xc, a, logw = _pointwise(x, anchors, t, log_weights)
        return responsibilities(xc, a, tv, logw, frame.norms(a))


def velocity(x: Tensor, anchors: Tensor, t: float | Tensor, log_weights: Tensor | None = None, *,
             flow_memory: int | None = None) -> Tensor:
    """Closed-form flow-matching velocity dx/dt = (x - abar(x, t)) / t (method.md §2.3): -> (B, q)."""
    with frame.no_autocast(x):
        tv, centre, xc, a, logw = _pointwise(x, anchors, t, log_weights)
        rows = _blocks(flow_memory, xc, a).rows
        mean = ZoneMean.apply(xc, a, frame.norms(a), logw, tv, None, "none", None, rows)[0]  # (B, q)
        # d/dt [x - (1 - t) c] = v + c, so the velocity in plain coordinates is the centred one minus c
        return (xc - mean) / tv - centre


# ---------------------------------------------------------------------------------------------------
# latent computation: anchors -> latents (method.md §2.4-§2.6)


def latents(
    anchors: Tensor,
    noise: Tensor,
    *,
    index: Tensor | None = None,
    steps: int = 20,
    solver: Solver = "euler",
    eps: float | None = None,
    noise_scale: float = 1.0,
    log_weights: Tensor | None = None,
    allow_nonfinite: bool = False,
    compile: bool = False,
    flow_memory: int | None = None,
) -> Tensor:
    """Flow each sample's anchor from t = eps to the Gaussian side: -> latents (B, q).

    anchors (n, q) is the anchor set of the flow; ``index`` (B,) picks each sample's own anchor
    (default: all n rows, B = n); ``noise`` (B, q) is z in the start point (1 - g) a_i + g * noise_scale * z.
    solver "euler" integrates to t = 1 (method.md §2.5, default eps 1e-4); "dpm3" is DPM-Solver++ 3M on a
    uniform grid from eps to 1 - eps (method.md §2.6, default eps 1e-3); "dpm3_logsnr" the same solver on a grid
    uniform in the log-SNR (method.md §2.6.1: the same cost, far more latents inside their own zone).

    NaN / inf anchors or noise raise (one host sync); ``allow_nonfinite=True`` skips that check and
    lets them through to non-finite latents (training, where the loop skips a non-finite loss).
    ``compile=True`` runs the flow and its backward through ``torch.compile`` (``lzn.core.compiled``,
    method.md §2.11; ``train.compile``): same results up to float round-off, a one-time build per
    plan and shape, and a RuntimeError where the compiler is missing. ``flow_memory``: bytes for the
    responsibilities (method.md §2.8; default ``lzn.core.budget``), same results for every value.
    """
    validate.anchors(anchors)
    n = anchors.shape[0]
    if index is not None:
        validate.index("index", index, n)
    rows = n if index is None else index.shape[0]
    validate.points("noise", noise, anchors, rows)
    validate.log_weights(log_weights, n)
    validate.steps(steps)
    g = validate.solver_eps(solver, eps)
    noise_scale = validate.noise_scale(noise_scale)
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be True or False, got {compile!r}")
    budget.check_flow_memory(flow_memory)
    if not allow_nonfinite:
        validate.finite(anchors, noise)
    with frame.no_autocast(anchors):
        centre, a, logw = frame.centred(anchors, log_weights)
        own = a if index is None else a[index]  # (B, q)
        x = (1.0 - g) * own + (g * noise_scale) * noise.to(a.dtype)
        plan, t_end = solver_plan(solver, steps, g)
        blocks = _blocks(flow_memory, x, a, len(plan))
        fns = EAGER
        if compile:
            from lzn.core.compiled import flow_functions  # the compiler stack only when asked for

            fns = flow_functions(x, a, plan, blocks) or EAGER
        x = LatentFlow.apply(x, a, frame.norms(a), logw, plan, fns, blocks.rows, blocks.keep)
        return x + (1.0 - t_end) * centre


# ---------------------------------------------------------------------------------------------------
# latent alignment: latents -> anchors with per-step assignment probabilities (method.md §3)


def flow_back(
    latents: Tensor,
    anchors: Tensor,
    *,
    steps: int = 20,
    log_weights: Tensor | None = None,
    targets: Tensor | None = None,
    flow_memory: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Reverse Euler flow from t = 1 to t = 0 over ``anchors`` (method.md §3.2).

    Returns (end points (B, q), probs). probs are the responsibilities recorded *before* each step
    (t = 1, 1 - 1/steps, ..., 1/steps): (steps, B, n), or with ``targets`` (B,) only the target's,
    (steps, B), which never materialises steps x B x n. ``flow_memory`` as in ``latents``.
    """
    record = "full" if targets is None else "target"
    end, recorded = _reverse(latents, anchors, steps, log_weights, record, targets, flow_memory)
    return end, torch.stack(recorded)


def flow_back_end(latents: Tensor, anchors: Tensor, *, steps: int = 20, log_weights: Tensor | None = None,
                  flow_memory: int | None = None, solver: Solver = "euler", eps: float | None = None) -> Tensor:
    """End points (B, q) of the flow back over ``anchors``, recording nothing (label decoding, zone maps).

    solver "euler" is the reverse Euler flow of ``flow_back`` (t = 1 to 0, method.md §3.2; ``eps`` unused);
    "dpm3" / "dpm3_logsnr" run DPM-Solver++ 3M backwards on its grid from t = 1 - g to t = g (method.md
    §2.6.1; default g 1e-3), ending beside an anchor (at (1 - g) a plus a remainder of order g); on the log-SNR
    grid it lands where an accurate flow does far more often than reverse Euler with as many steps."""
    if solver == "euler":
        return _reverse(latents, anchors, steps, log_weights, "none", None, flow_memory)[0]
    validate.anchors(anchors)
    validate.points("latents", latents, anchors)
    validate.log_weights(log_weights, anchors.shape[0])
    validate.steps(steps)
    g = validate.solver_eps(solver, eps)
    budget.check_flow_memory(flow_memory)
    with frame.no_autocast(anchors):
        centre, a, logw = frame.centred(anchors, log_weights)
        x = frame.shift(latents.to(a.dtype), centre, 1.0 - g)
        plan = dpm3_plan(steps, g, GRIDS[solver], reverse=True)
        blocks = _blocks(flow_memory, x, a, len(plan))
        x = LatentFlow.apply(x, a, frame.norms(a), logw, plan, EAGER, blocks.rows, blocks.keep)
        return x + (1.0 - g) * centre


def _reverse(latents: Tensor, anchors: Tensor, steps: int, log_weights: Tensor | None, record: str,
             targets: Tensor | None, flow_memory: int | None) -> tuple[Tensor, list[Tensor]]:
    validate.anchors(anchors)
    validate.points("latents", latents, anchors)
    validate.log_weights(log_weights, anchors.shape[0])
    validate.steps(steps)
    budget.check_flow_memory(flow_memory)
    if targets is not None:
        validate.index("targets", targets, anchors.shape[0], latents.shape[0])
        targets = targets.long()
    with frame.no_autocast(anchors):
        centre, a, logw = frame.centred(anchors, log_weights)
        x = latents.to(a.dtype)  # at t = 1 the centred and plain coordinates coincide
        h, sq = 1.0 / steps, frame.norms(a)
        rows, keep = _blocks(flow_memory, x, a, steps)
        recorded = []
        for j in range(steps):
            t = 1.0 - j * h
            x, rec = ZoneMean.apply(x, a, sq, logw, t, -h / t, record, targets, rows, keep)  # x - h v(x, t)
            recorded.append(rec)
        return x + centre, recorded


def alignment_loss(target_probs: Tensor, *, cutoff: float = 0.2, form: Literal["prob", "log"] = "prob") -> Tensor:
    """Max over late recorded steps of the correct anchor's probability, negated (method.md §3.3).

    target_probs (steps, B); the first floor(cutoff * steps) recorded steps are dropped. form "prob":
    -mean M; "log": -mean log M (M clamped at the dtype's smallest normal so the loss stays finite).
    """
    if target_probs.dim() != 2:
        raise ValueError(f"target_probs must be (steps, B), got shape {tuple(target_probs.shape)}")
    steps = target_probs.shape[0]
    drop = math.floor(cutoff * steps)
    if not 0.0 <= cutoff < 1.0 or drop >= steps:
        raise ValueError(f"cutoff must lie in [0, 1) and leave at least one of {steps} steps, got {cutoff}")
    best = target_probs[drop:].max(dim=0).values  # (B,)
    if form == "prob":
        return -best.mean()
    if form == "log":
        return -best.clamp_min(torch.finfo(best.dtype).tiny).log().mean()
    raise ValueError(f"form must be 'prob' or 'log', got {form!r}")


def nearest(points: Tensor, anchors: Tensor) -> Tensor:
    """Index of the nearest anchor in squared Euclidean distance (label decoding, method.md §3.5): -> (B,) long."""
    validate.anchors(anchors)
    validate.points("points", points, anchors)
    with torch.no_grad():
        centre, a, _ = frame.centred(anchors, None)
        p = points.to(a.dtype) - centre  # (B, q)
        d = a.pow(2).sum(dim=1) - 2.0 * (p @ a.t())  # (B, n), ||p||^2 dropped (constant per row)
        return d.argmin(dim=1)
