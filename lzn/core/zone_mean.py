"""The posterior-mean kernel of the latent flow, with a memory-light backward (method.md §2.2, §2.3, §2.8).

For points x (B, q), anchors A (n, q), time t and log mixture weights log pi (n,):

    logits_bl = log pi_l - ||x_b - s a_l||^2 / (2 t^2),   s = 1 - t
    w = softmax(logits)          (B, n)   responsibilities
    abar = w @ A                 (B, q)   posterior mean of the anchor ("data prediction")

The ``||x_b||^2`` term is constant along a row and drops out of the softmax, so the logits need one
(B, n) matrix product and never a (B, n, q) tensor. Callers pass *centred* inputs (anchors minus
their mean, see ``zones._centre``), which keeps the expansion exact in float32 when the anchors sit
far from the origin.

The autograd function saves only x, A and log pi; the backward recomputes w (one matmul), so a flow
of r steps keeps r x (B, q) tensors for backward instead of r x (B, n).

Rows of w are independent softmaxes, so forward and backward run over blocks of rows whenever B x n
exceeds ``BLOCK_ELEMENTS``: the largest temporary is then (rows per block, n) instead of (B, n), and the
flow's memory grows linearly in the anchor count rather than quadratically (method.md §2.8). Blocks change
only the order of float summation in the anchor gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


BLOCK_ELEMENTS = 1 << 20
"""Largest (rows, n) responsibility block (elements: 4 MiB in float32) before rows are split into blocks."""


def row_blocks(rows: int, cols: int) -> list[slice]:
    """Row slices of a (rows, cols) responsibility matrix, each at most ``BLOCK_ELEMENTS`` (one row at least)."""
    step = max(1, BLOCK_ELEMENTS // max(cols, 1))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)] if rows > step else [slice(0, rows)]


def zone_means(x: Tensor, anchors: Tensor, t: float, log_weights: Tensor | None, sq: Tensor) -> Tensor:
    """abar = softmax(logits) @ A, (B, q) -> (B, q), over blocks of rows (see ``row_blocks``)."""
    blocks = row_blocks(x.shape[0], anchors.shape[0])
    if len(blocks) == 1:
        return torch.softmax(zone_logits(x, anchors, t, log_weights, sq), dim=1) @ anchors  # (B, n) @ (n, q)
    return torch.cat([torch.softmax(zone_logits(x[b], anchors, t, log_weights, sq), dim=1) @ anchors
                      for b in blocks])


def zone_logits(x: Tensor, anchors: Tensor, t: float, log_weights: Tensor | None, sq: Tensor | None = None) -> Tensor:
    """Logits of the responsibilities, up to a per-row constant: (B, q), (n, q) -> (B, n).

    ``sq`` (n,) are the anchors' squared norms, if the caller has them (a flow computes them once).
    """
    s = 1.0 - t
    if s == 0.0:  # t = 1: every implied noise is x itself, the posterior is the prior
        bias = x.new_zeros(anchors.shape[0]) if log_weights is None else log_weights
        return bias.expand(x.shape[0], -1).clone()
    # -(||x||^2 - 2 s x.a + s^2 ||a||^2) / (2 t^2) + log pi, dropping ||x||^2 (constant per row);
    # one fused pass: bias (n,) broadcast into the (B, n) product
    if sq is None:
        sq = anchors.detach().pow(2).sum(dim=1)  # (n,)
    bias = sq * (-0.5 * s * s / (t * t))  # (n,)
    if log_weights is not None:
        bias = bias + log_weights
    return torch.addmm(bias, x, anchors.t(), alpha=s / (t * t))  # (B, q) @ (q, n) -> (B, n)


def _gather_targets(w: Tensor, targets: Tensor) -> Tensor:
    return w.gather(1, targets[:, None]).squeeze(1)  # (B,)


class ZoneMean(torch.autograd.Function):
    """(x, A, ||A||^2, log pi) -> (y, recorded probabilities), recomputing w in backward.

    ``sq`` (n,) must be the detached squared norms of A: the backward's anchor gradient already
    includes their contribution.

    With ``k = None`` the first output is abar (B, q); with a float k it is the Euler update
    x + k (x - abar), i.e. x + h v with k = h / t (forward flow) or k = -h / t (flow back), fused so
    that a step adds no autograd nodes of its own. ``record`` is "none" (second output empty),
    "full" ((B, n) responsibilities) or "target" ((B,) responsibility of ``targets[b]``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        anchors: Tensor,
        sq: Tensor,
        log_weights: Tensor | None,
        t: float,
        k: float | None,
        record: str,
        targets: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        # "full" returns the whole (B, n) anyway: one block
        blocks = [slice(0, x.shape[0])] if record == "full" else row_blocks(x.shape[0], anchors.shape[0])
        parts, recs = [], []
        for b in blocks:
            w = torch.softmax(zone_logits(x[b], anchors, t, log_weights, sq), dim=1)  # (rows, n)
            parts.append(w @ anchors)  # (rows, n) @ (n, q) -> (rows, q)
            if record == "full":
                recs.append(w)
            elif record == "target":
                assert targets is not None
                recs.append(_gather_targets(w, targets[b]))
        abar = _join(parts)  # (B, q)
        rec = _join(recs) if recs else x.new_empty(0)
        ctx.save_for_backward(x, anchors, sq, log_weights, targets)
        ctx.t, ctx.k, ctx.record = t, k, record
        out = abar if k is None else torch.lerp(x, abar, -k)  # x + k (x - abar)
        return out, rec

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor, g_rec: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, anchors, sq, log_weights, targets = ctx.saved_tensors
        k = ctx.k
        g_abar = g_out if k is None else g_out * (-k)  # (B, q)
        need_x, need_a, _, need_w = ctx.needs_input_grad[:4]
        g_x, g_anchors, g_logw = zone_mean_vjp(x, anchors, sq, log_weights, ctx.t, g_abar, need_x, need_a,
                                               need_w and log_weights is not None, ctx.record, g_rec, targets)
        if g_x is not None and k is not None:
            g_x.add_(g_out, alpha=1.0 + k)  # the x term of x + k (x - abar)
        return g_x, g_anchors, None, g_logw, None, None, None, None


def zone_mean_vjp(
    x: Tensor,
    anchors: Tensor,
    sq: Tensor,
    log_weights: Tensor | None,
    t: float,
    g_abar: Tensor,
    need_x: bool = True,
    need_anchors: bool = True,
    need_log_weights: bool = False,
    record: str = "none",
    g_rec: Tensor | None = None,
    targets: Tensor | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Vector-Jacobian product of abar(x, A, log pi) (plus the recorded probabilities' cotangent
    ``g_rec``), recomputing w: -> (dL/dx (B, q), dL/dA (n, q), dL/dlog pi (n,)), None where not needed.
    Runs over blocks of rows (``row_blocks``) unless ``record`` is "full"."""
    blocks = [slice(0, x.shape[0])] if record == "full" else row_blocks(x.shape[0], anchors.shape[0])
    g_xs: list[Tensor] = []
    g_anchors = g_logw = None
    for b in blocks:
        dx, da, dw = _block_vjp(x[b], anchors, sq, log_weights, t, g_abar[b], need_x, need_anchors, need_log_weights,
                                record, g_rec if record == "full" or g_rec is None else g_rec[b],
                                None if targets is None else targets[b])
        if dx is not None:
            g_xs.append(dx)
        g_anchors = da if g_anchors is None or da is None else g_anchors.add_(da)
        g_logw = dw if g_logw is None or dw is None else g_logw.add_(dw)
    return (_join(g_xs) if g_xs else None), g_anchors, g_logw


def _join(parts: list[Tensor]) -> Tensor:
    """Row blocks back into one tensor (no copy for a single block)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _block_vjp(x: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None, t: float, g_abar: Tensor,
               need_x: bool, need_anchors: bool, need_log_weights: bool, record: str, g_rec: Tensor | None,
               targets: Tensor | None) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``zone_mean_vjp`` on one block of rows: dL/dx of its rows, its shares of dL/dA and dL/dlog pi."""
    s = 1.0 - t
    w = torch.softmax(zone_logits(x, anchors, t, log_weights, sq), dim=1)  # (B, n), recomputed
    g_logits = g_abar @ anchors.t()  # dL/dw: (B, q) @ (q, n) -> (B, n)
    if record == "full":
        g_logits += g_rec
    elif record == "target":
        g_logits.scatter_add_(1, targets[:, None], g_rec[:, None])  # type: ignore[index]
    # softmax backward: dL/dlogits = w * (dL/dw - sum_l w_l dL/dw_l)
    row = (w * g_logits).sum(dim=1, keepdim=True)  # (B, 1)
    g_logits.sub_(row).mul_(w)  # (B, n); rows sum to zero

    g_x = g_anchors = g_logw = None
    c = s / (t * t)
    if need_x:
        # d logits_bl / d x_b = -(x_b - s a_l) / t^2; the x_b part vanishes because rows of g_logits sum to 0
        g_x = torch.mm(g_logits, anchors).mul_(c)  # (B, n) @ (n, q) -> (B, q)
    if need_anchors:
        # from abar = w A: w^T g_abar; from the logits: s / t^2 (g_logits^T x - s colsum(g_logits) a_l)
        g_anchors = w.t() @ g_abar  # (n, B) @ (B, q) -> (n, q)
        if c != 0.0:
            col = g_logits.sum(dim=0)  # (n,)
            g_anchors.addmm_(g_logits.t(), x, alpha=c).sub_(anchors * (col * (c * s))[:, None])
    if need_log_weights:
        g_logw = g_logits.sum(dim=0)  # (n,)
    return g_x, g_anchors, g_logw


# A linear multistep plan: step i evaluates m_i = abar(x_i, t_i), then
# x_{i+1} = alpha_i x_i + sum_j beta_ij m_j over earlier evaluations j <= i.
Plan = list[tuple[float, float, dict[int, float]]]  # (t_i, alpha_i, {j: beta_ij})


def integrate(x: Tensor, plan: Plan, mean: Callable[[Tensor, float], Tensor], keep: list[Tensor] | None = None) -> Tensor:
    """Run a ``Plan``: x_{i+1} = alpha_i x_i + sum_j beta_ij m_j with m_j = ``mean(x_j, t_j)`` (B, q),
    keeping only the zone means the next step still needs; ``keep`` collects every x_i (for backward)."""
    ms: dict[int, Tensor] = {}
    for i, (t, alpha, betas) in enumerate(plan):
        if keep is not None:
            keep.append(x)
        ms[i] = mean(x, t)
        nxt = x * alpha
        for j, beta in betas.items():
            nxt.add_(ms[j], alpha=beta)
        for j in [j for j in ms if j <= i - 2]:  # the next step looks back to m_{i-1} at most
            del ms[j]
        x = nxt
    return x


class MultistepFlow(torch.autograd.Function):
    """A whole forward latent flow (Euler or DPM-Solver++ 3M, given as a ``Plan``) as one autograd node.

    Forward runs without building a graph and keeps only the points x_i (steps x (B, q)); backward is the
    discrete adjoint: it walks the steps in reverse, spreading each step's cotangent over x_i and the
    m_j it used, and applies ``zone_mean_vjp`` once all users of m_i are done. At small sizes this saves
    the per-operation autograd overhead that otherwise dominates the flow.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None,  # type: ignore[override]
                plan: Plan) -> Tensor:
        xs: list[Tensor] = []
        x = integrate(x, plan, lambda xi, t: zone_means(xi, anchors, t, log_weights, sq), keep=xs)  # (B, q) per step
        ctx.save_for_backward(anchors, sq, log_weights, *xs)
        ctx.plan = plan
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        anchors, sq, log_weights, *xs = ctx.saved_tensors
        plan: Plan = ctx.plan
        need_a = ctx.needs_input_grad[1]
        need_w = log_weights is not None and ctx.needs_input_grad[3]
        g_x = g_out
        g_m: dict[int, Tensor] = {}
        g_anchors = torch.zeros_like(anchors) if need_a else None
        g_logw = torch.zeros_like(log_weights) if need_w else None
        for i in range(len(plan) - 1, -1, -1):
            t, alpha, betas = plan[i]
            for j, beta in betas.items():  # x_{i+1} = alpha x_i + sum_j beta_j m_j
                g_m[j] = g_x * beta if j not in g_m else g_m[j].add_(g_x, alpha=beta)
            g_x = g_x * alpha
            gm = g_m.pop(i, None)  # every user of m_i (steps >= i) has been visited
            if gm is not None:
                dx, da, dw = zone_mean_vjp(xs[i], anchors, sq, log_weights, t, gm, True, need_a, need_w)
                g_x.add_(dx)  # type: ignore[arg-type]
                if g_anchors is not None:
                    g_anchors.add_(da)  # type: ignore[arg-type]
                if g_logw is not None:
                    g_logw.add_(dw)  # type: ignore[arg-type]
        return g_x, g_anchors, None, g_logw, None
