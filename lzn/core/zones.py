"""Latent zones: the two atomic operations of LZN (method.md §2 latent computation, §3 latent alignment).

Clock: the latent flow's time is t, with t = 0 at the anchors and t = 1 at N(0, I) (method.md §1.2).
Shapes: B points, n anchors, q latent dimensions. Every function is differentiable w.r.t. anchors,
noise and latents, and never builds a (B, n, q) tensor (see ``zone_mean``).

Exactness: the flow commutes with translations (x_t - (1 - t) c solves the same ODE over anchors
shifted by c), so every entry point shifts anchors and points by the anchors' mean before the matmul
expansion of the distances. Far-from-origin anchors then cost no float32 precision.
"""

from __future__ import annotations

import math
import numbers
from contextlib import nullcontext
from typing import Literal

import torch
from torch import Tensor

from lzn.core.multistep import MultistepFlow, Plan
from lzn.core.zone_mean import ZoneMean, zone_logits

Solver = Literal["euler", "dpm3"]
DEFAULT_EPS = {"euler": 1e-4, "dpm3": 1e-3}


# ---------------------------------------------------------------------------------------------------
# validation at the public boundary


def _check_anchors(anchors: Tensor) -> None:
    if not isinstance(anchors, Tensor) or anchors.dim() != 2 or not anchors.is_floating_point():
        shape = tuple(anchors.shape) if isinstance(anchors, Tensor) else type(anchors).__name__
        raise ValueError(f"anchors must be a floating (n, q) tensor, got {shape}")
    if anchors.shape[0] == 0:
        raise ValueError("anchors must hold at least one anchor, got shape (0, q)")


def _check_points(name: str, x: Tensor, anchors: Tensor, rows: int | None = None) -> None:
    q = anchors.shape[1]
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != q or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        want = f"({rows}, {q})" if rows is not None else f"(B, {q})"
        raise ValueError(f"{name} must be a floating {want} tensor matching anchors {tuple(anchors.shape)}, got {shape}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows}, {q}) to match {rows} samples, got {tuple(x.shape)}")
    if x.device != anchors.device:
        raise ValueError(f"{name} is on {x.device} but anchors are on {anchors.device}")


def _check_log_weights(log_weights: Tensor | None, n: int) -> None:
    if log_weights is not None and (log_weights.shape != (n,) or not log_weights.is_floating_point()):
        raise ValueError(f"log_weights must be a floating ({n},) tensor (one per anchor), got {tuple(log_weights.shape)}")


def _check_index(name: str, index: Tensor, n: int, rows: int | None = None) -> None:
    if index.dim() != 1 or index.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be a 1-D integer tensor, got {tuple(index.shape)} {index.dtype}")
    if rows is not None and index.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows},), got {tuple(index.shape)}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise ValueError(f"{name} values must lie in [0, {n}), got range [{int(index.min())}, {int(index.max())}]")


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")


def check_noise_scale(noise_scale: float) -> float:
    """noise_scale (alpha of the start point, method.md §2.4) as a float; a finite number >= 0."""
    ok = isinstance(noise_scale, numbers.Real) and not isinstance(noise_scale, bool)
    value = float(noise_scale) if ok else math.nan
    if not ok or not math.isfinite(value) or value < 0.0:
        raise ValueError(f"noise_scale must be a finite number >= 0 (alpha of the start point), got {noise_scale!r}")
    return value


def _check_finite(anchors: Tensor, noise: Tensor) -> None:
    """One host sync: anchors and noise must be finite (the latent flow of a NaN anchor is NaN everywhere)."""
    if bool(torch.isfinite(anchors).all() & torch.isfinite(noise).all()):
        return
    for name, x, verb in (("anchors", anchors, "contain"), ("noise", noise, "contains")):
        rows = (~torch.isfinite(x)).any(dim=1).nonzero().flatten().tolist()
        if rows:
            shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
            raise ValueError(f"{name} {verb} NaN or inf values (rows [{shown}]); the latent flow needs finite {name}")


def _as_time(t: float | Tensor) -> float:
    value = float(t.detach()) if isinstance(t, Tensor) else float(t)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"t must lie in (0, 1] (t = 0 is the anchors, where the flow is singular), got {value}")
    return value


# ---------------------------------------------------------------------------------------------------
# shared plumbing: float32 or wider, no autocast, centred coordinates


def _prepare(anchors: Tensor, log_weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """-> (centre (q,), centred anchors (n, q), log weights), all in float32 or float64.

    The kernel also takes the centred anchors' squared norms; flows compute them once with ``_norms``.
    """
    dtype = torch.promote_types(anchors.dtype, torch.float32)
    anchors = anchors.to(dtype)
    centre = anchors.detach().mean(dim=0)  # (q,); detached: the flow is exactly translation-equivariant
    logw = None if log_weights is None else log_weights.to(dtype)
    return centre, anchors - centre, logw


def _no_autocast(x: Tensor):  # type: ignore[no-untyped-def]
    return torch.autocast(x.device.type, enabled=False) if torch.is_autocast_enabled(x.device.type) else nullcontext()


def _shift(x: Tensor, centre: Tensor, t: float) -> Tensor:
    """x - (1 - t) * centre, formed in float64 so that large coordinates lose nothing: (B, q)."""
    return (x.double() - (1.0 - t) * centre.double()).to(centre.dtype)


def _norms(anchors: Tensor) -> Tensor:
    return anchors.detach().pow(2).sum(dim=1)  # (n,); the kernel's backward differentiates them itself


def _mean(x: Tensor, anchors: Tensor, sq: Tensor, logw: Tensor | None, t: float) -> Tensor:
    return ZoneMean.apply(x, anchors, sq, logw, t, None, "none", None)[0]  # (B, q)


# ---------------------------------------------------------------------------------------------------
# pointwise quantities (method.md §2.2-§2.3)


def _pointwise(x: Tensor, anchors: Tensor, t: float | Tensor, log_weights: Tensor | None):  # type: ignore[no-untyped-def]
    """Checked, centred inputs of posteriors / velocity: (t, centre, x - (1 - t) c, A - c, log pi)."""
    _check_anchors(anchors)
    _check_points("x", x, anchors)
    _check_log_weights(log_weights, anchors.shape[0])
    tv = _as_time(t)
    centre, a, logw = _prepare(anchors, log_weights)
    return tv, centre, _shift(x, centre, tv), a, logw


def posteriors(x: Tensor, anchors: Tensor, t: float | Tensor, log_weights: Tensor | None = None) -> Tensor:
    """Responsibilities w_l(x, t) of method.md §2.2: (B, q), (n, q) -> (B, n), rows sum to 1."""
    with _no_autocast(x):
        tv, _, xc, a, logw = _pointwise(x, anchors, t, log_weights)
        return torch.softmax(zone_logits(xc, a, tv, logw), dim=1)


def velocity(x: Tensor, anchors: Tensor, t: float | Tensor, log_weights: Tensor | None = None) -> Tensor:
    """Closed-form flow-matching velocity dx/dt = (x - abar(x, t)) / t (method.md §2.3): -> (B, q)."""
    with _no_autocast(x):
        tv, centre, xc, a, logw = _pointwise(x, anchors, t, log_weights)
        # d/dt [x - (1 - t) c] = v + c, so the velocity in plain coordinates is the centred one minus c
        return (xc - _mean(xc, a, _norms(a), logw, tv)) / tv - centre


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
) -> Tensor:
    """Flow each sample's anchor from t = eps to the Gaussian side: -> latents (B, q).

    anchors (n, q) is the anchor set of the flow; ``index`` (B,) picks each sample's own anchor
    (default: all n rows, B = n); ``noise`` (B, q) is z in the start point (1 - g) a_i + g * noise_scale * z.
    solver "euler" integrates to t = 1 (method.md §2.5, default eps 1e-4); "dpm3" is DPM-Solver++ 3M on a
    uniform grid from eps to 1 - eps (method.md §2.6, default eps 1e-3).

    NaN / inf anchors or noise raise (one host sync); ``allow_nonfinite=True`` skips that check and
    lets them through to non-finite latents (training, where the loop skips a non-finite loss).
    ``compile=True`` runs the flow and its backward through ``torch.compile`` (``lzn.core.compiled``,
    method.md §2.11; ``train.compile``): same results up to float round-off, a one-time build per
    plan and shape, and a RuntimeError where the compiler is missing.
    """
    _check_anchors(anchors)
    n = anchors.shape[0]
    if index is not None:
        _check_index("index", index, n)
    rows = n if index is None else index.shape[0]
    _check_points("noise", noise, anchors, rows)
    _check_log_weights(log_weights, n)
    _check_steps(steps)
    if solver not in DEFAULT_EPS:
        raise ValueError(f"solver must be one of {sorted(DEFAULT_EPS)}, got {solver!r}")
    g = DEFAULT_EPS[solver] if eps is None else float(eps)
    top = 1.0 if solver == "euler" else 0.5  # dpm3 integrates from eps to 1 - eps
    if not 0.0 < g < top:
        raise ValueError(f"eps must lie in (0, {top}) for solver {solver!r}, got {g}")
    noise_scale = check_noise_scale(noise_scale)
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be True or False, got {compile!r}")
    if not allow_nonfinite:
        _check_finite(anchors, noise)
    with _no_autocast(anchors):
        centre, a, logw = _prepare(anchors, log_weights)
        own = a if index is None else a[index]  # (B, q)
        x = (1.0 - g) * own + (g * noise_scale) * noise.to(a.dtype)
        plan, t_end = (_euler_plan(steps, g), 1.0) if solver == "euler" else (_dpm3_plan(steps, g), 1.0 - g)
        x = MultistepFlow.apply(x, a, _norms(a), logw, plan, compile)
        return x + (1.0 - t_end) * centre


def _euler_plan(steps: int, g: float) -> Plan:
    """x_{j+1} = x_j + h (x_j - m_j) / t_j on t_j = g + j h, h = (1 - g) / steps (method.md §2.5)."""
    h = (1.0 - g) / steps
    return [(g + j * h, 1.0 + h / (g + j * h), {j: -h / (g + j * h)}) for j in range(steps)]


def _dpm3_plan(steps: int, g: float) -> Plan:
    """DPM-Solver++ 3M, data prediction abar, alpha_t = 1 - t, sigma_t = t, uniform grid on [g, 1 - g]
    (method.md §2.6), as linear-multistep coefficients; python floats, so the schedule is float64."""
    ts = [g + i * (1.0 - 2.0 * g) / steps for i in range(steps + 1)]
    lam = [math.log((1.0 - t) / t) for t in ts]
    plan: Plan = []
    hs: list[float] = []
    for i in range(1, steps + 1):  # step i - 1 evaluates m_{i-1} at t_{i-1} and lands on t_i
        h = lam[i] - lam[i - 1]
        hs.append(h)
        order = min(3, i) if steps >= 10 else min(3, i, steps + 1 - i)
        a, phi1 = 1.0 - ts[i], math.expm1(-h)
        m1, m2, m3 = i - 1, i - 2, i - 3
        if order == 1:
            betas = {m1: -a * phi1}
        elif order == 2:
            r0 = hs[-2] / h  # D = (m1 - m2) / r0; x -= a phi1 (m1 + D / 2)
            betas = {m1: -a * phi1 - 0.5 * a * phi1 / r0, m2: 0.5 * a * phi1 / r0}
        else:
            r0, r1 = hs[-2] / h, hs[-3] / h
            c = r0 / (r0 + r1)
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            # x += a phi2 D1 - a phi3 D2 with D1 = (1 + c) d0 - c d1', D2 = (d0 - d1') / (r0 + r1),
            # d0 = (m1 - m2) / r0, d1' = (m2 - m3) / r1: collect the coefficients of d0 and d1'
            p = a * phi2 * (1.0 + c) - a * phi3 / (r0 + r1)
            qc = -a * phi2 * c + a * phi3 / (r0 + r1)
            betas = {m1: -a * phi1 + p / r0, m2: -p / r0 + qc / r1, m3: -qc / r1}
        plan.append((ts[i - 1], ts[i] / ts[i - 1], betas))
    return plan


# ---------------------------------------------------------------------------------------------------
# latent alignment: latents -> anchors with per-step assignment probabilities (method.md §3)


def flow_back(
    latents: Tensor,
    anchors: Tensor,
    *,
    steps: int = 20,
    log_weights: Tensor | None = None,
    targets: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Reverse Euler flow from t = 1 to t = 0 over ``anchors`` (method.md §3.2).

    Returns (end points (B, q), probs). probs are the responsibilities recorded *before* each step
    (t = 1, 1 - 1/steps, ..., 1/steps): (steps, B, n), or with ``targets`` (B,) only the target's,
    (steps, B), which never materialises steps x B x n.
    """
    end, recorded = _reverse(latents, anchors, steps, log_weights, "full" if targets is None else "target", targets)
    return end, torch.stack(recorded)


def flow_back_end(latents: Tensor, anchors: Tensor, *, steps: int = 20, log_weights: Tensor | None = None) -> Tensor:
    """End points (B, q) of the reverse Euler flow of ``flow_back``, recording nothing (label decoding, zone maps)."""
    return _reverse(latents, anchors, steps, log_weights, "none", None)[0]


def _reverse(latents: Tensor, anchors: Tensor, steps: int, log_weights: Tensor | None, record: str,
             targets: Tensor | None) -> tuple[Tensor, list[Tensor]]:
    _check_anchors(anchors)
    _check_points("latents", latents, anchors)
    _check_log_weights(log_weights, anchors.shape[0])
    _check_steps(steps)
    if targets is not None:
        _check_index("targets", targets, anchors.shape[0], latents.shape[0])
        targets = targets.long()
    with _no_autocast(anchors):
        centre, a, logw = _prepare(anchors, log_weights)
        x = latents.to(a.dtype)  # at t = 1 the centred and plain coordinates coincide
        h, sq = 1.0 / steps, _norms(a)
        recorded = []
        for j in range(steps):
            t = 1.0 - j * h
            x, rec = ZoneMean.apply(x, a, sq, logw, t, -h / t, record, targets)  # x - h v(x, t)
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
    _check_anchors(anchors)
    _check_points("points", points, anchors)
    with torch.no_grad():
        centre, a, _ = _prepare(anchors, None)
        p = points.to(a.dtype) - centre  # (B, q)
        d = a.pow(2).sum(dim=1) - 2.0 * (p @ a.t())  # (B, n), ||p||^2 dropped (constant per row)
        return d.argmin(dim=1)
