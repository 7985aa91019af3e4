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

Rows of w are independent softmaxes, so forward and backward run over blocks of ``rows`` rows, chosen
from a memory budget (``lzn.core.budget``): the largest temporary is then (rows, n) instead of (B, n), and
the flow's memory grows linearly in the anchor count rather than quadratically (method.md §2.8). Blocks
change only the order of float summation in the anchor gradient. A caller with room to spare keeps
w from the forward pass (``keep``) and the backward skips its recomputation: the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lzn.core.budget import row_blocks


def responsibilities(x: Tensor, anchors: Tensor, t: float, log_weights: Tensor | None, sq: Tensor) -> Tensor:
    """w = softmax(logits): (B, q), (n, q) -> (B, n), rows sum to 1."""
    return torch.softmax(zone_logits(x, anchors, t, log_weights, sq), dim=1)


def zone_means(x: Tensor, anchors: Tensor, t: float, log_weights: Tensor | None, sq: Tensor,
               rows: int | None = None) -> Tensor:
    """abar = w @ A, (B, q) -> (B, q), over blocks of ``rows`` rows (None: one block)."""
    if rows is None or rows >= x.shape[0]:
        return responsibilities(x, anchors, t, log_weights, sq) @ anchors  # (B, n) @ (n, q)
    return torch.cat([responsibilities(x[b], anchors, t, log_weights, sq) @ anchors
                      for b in row_blocks(x.shape[0], rows)])


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
    """(x, A, ||A||^2, log pi) -> (y, recorded probabilities), one step of a flow back (or a velocity).

    ``sq`` (n,) must be the detached squared norms of A: the backward's anchor gradient already
    includes their contribution.

    With ``k = None`` the first output is abar (B, q); with a float k it is the Euler update
    x + k (x - abar), i.e. x + h v with k = h / t (forward flow) or k = -h / t (flow back), fused so
    that a step adds no autograd nodes of its own. ``record`` is "none" (second output empty),
    "full" ((B, n) responsibilities, one block) or "target" ((B,) responsibility of ``targets[b]``).
    ``rows``: rows per block; ``keep``: save w (one block) instead of recomputing it in backward.
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
        rows: int | None = None,
        keep: bool = False,
    ) -> tuple[Tensor, Tensor]:
        rows = None if record == "full" else rows  # "full" returns the whole (B, n) anyway: one block
        parts, recs, ws = [], [], []
        for b in _blocks(x.shape[0], rows):
            w = responsibilities(x[b], anchors, t, log_weights, sq)  # (rows, n)
            parts.append(w @ anchors)  # (rows, n) @ (n, q) -> (rows, q)
            if keep:
                ws.append(w)
            if record == "full":
                recs.append(w)
            elif record == "target":
                assert targets is not None
                recs.append(_gather_targets(w, targets[b]))
        abar = _join(parts)  # (B, q)
        rec = _join(recs) if recs else x.new_empty(0)
        kept = ws[0] if keep and len(ws) == 1 else None
        ctx.save_for_backward(x, anchors, sq, log_weights, targets, kept)
        ctx.t, ctx.k, ctx.record, ctx.rows = t, k, record, rows
        out = abar if k is None else torch.lerp(x, abar, -k)  # x + k (x - abar)
        return out, rec

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor, g_rec: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, anchors, sq, log_weights, targets, kept = ctx.saved_tensors
        k = ctx.k
        g_abar = g_out if k is None else g_out * (-k)  # (B, q)
        need_x, need_a, _, need_w = ctx.needs_input_grad[:4]
        g_x, g_anchors, g_logw = zone_mean_vjp(x, anchors, sq, log_weights, ctx.t, g_abar, need_x, need_a,
                                               need_w and log_weights is not None, ctx.record, g_rec, targets,
                                               ctx.rows, kept)
        if g_x is not None and k is not None:
            g_x.add_(g_out, alpha=1.0 + k)  # the x term of x + k (x - abar)
        return g_x, g_anchors, None, g_logw, None, None, None, None, None, None


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
    rows: int | None = None,
    w: Tensor | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Vector-Jacobian product of abar(x, A, log pi) (plus the recorded probabilities' cotangent
    ``g_rec``): -> (dL/dx (B, q), dL/dA (n, q), dL/dlog pi (n,)), None where not needed. Runs over
    blocks of ``rows`` rows (None, or ``record`` "full": one block), recomputing w unless the forward
    kept it (``w`` (B, n), one block).

    With one block every term is formed out of place (the form ``torch.compile`` traces, method.md §2.11);
    with several, the anchor gradient accumulates in place through ``addmm_`` and the column sums once per
    block, so a block adds no (n, q) temporaries and no extra passes over (n, q)."""
    blocks = _blocks(x.shape[0], None if record == "full" or w is not None else rows)
    s = 1.0 - t
    c = s / (t * t)
    one = len(blocks) == 1
    g_xs: list[Tensor] = []
    g_anchors = col = None
    for b in blocks:
        xb, gb = x[b], g_abar[b]
        wb = responsibilities(xb, anchors, t, log_weights, sq) if w is None else w  # (rows, n), recomputed
        g_logits = _logit_grads(wb, anchors, gb, record, g_rec if record == "full" or g_rec is None else g_rec[b],
                                None if targets is None else targets[b])
        if need_x:
            # d logits_bl / d x_b = -(x_b - s a_l) / t^2; the x_b part vanishes because rows of g_logits sum to 0
            g_xs.append((g_logits @ anchors) * c)  # (rows, n) @ (n, q) -> (rows, q)
        if need_anchors:
            # from abar = w A: w^T g_abar; from the logits: s / t^2 (g_logits^T x - s colsum(g_logits) a_l)
            if one:
                g_anchors = wb.t() @ gb  # (n, B) @ (B, q) -> (n, q)
                if c != 0.0:
                    g_anchors = g_anchors + (g_logits.t() @ xb) * c
            else:
                g_anchors = wb.t() @ gb if g_anchors is None else g_anchors.addmm_(wb.t(), gb)
                if c != 0.0:
                    g_anchors.addmm_(g_logits.t(), xb, alpha=c)
        if need_log_weights or (need_anchors and c != 0.0):
            part = g_logits.sum(dim=0)  # (n,)
            col = part if col is None else col + part
    if need_anchors and c != 0.0:
        g_anchors = g_anchors - anchors * (col * (c * s))[:, None]  # type: ignore[operator, index]
    return (_join(g_xs) if g_xs else None), g_anchors, (col if need_log_weights else None)


def _blocks(rows: int, step: int | None) -> list[slice]:
    return [slice(0, rows)] if step is None else row_blocks(rows, step)


def _join(parts: list[Tensor]) -> Tensor:
    """Row blocks back into one tensor (no copy for a single block)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _logit_grads(w: Tensor, anchors: Tensor, g_abar: Tensor, record: str, g_rec: Tensor | None,
                 targets: Tensor | None) -> Tensor:
    """One block of rows: dL/dlogits (rows, n) from the responsibilities w (rows, n). Eagerly the fresh
    (rows, n) product is updated in place (no more temporaries of that size than the row sum's); traced
    by ``torch.compile``, every term stays out of place. The same operations in the same order either way.

    The row sum is formed from this very w and dL/dw, so each row of the result sums to zero to rounding:
    the x gradient of ``zone_mean_vjp`` drops its x_b term on that. (Forming it as g_abar . abar from the
    forward's zone means would skip a pass over (rows, n) but breaks that consistency: in float64, flows at
    small t then differ between block sizes by 1e-9 instead of 1e-15.)"""
    g_logits = g_abar @ anchors.t()  # dL/dw: (B, q) @ (q, n) -> (B, n)
    eager = not torch.compiler.is_compiling()
    if record == "full":
        g_logits = g_logits.add_(g_rec) if eager else g_logits + g_rec  # type: ignore[arg-type, operator]
    elif record == "target":
        assert targets is not None and g_rec is not None
        g_logits = (g_logits.scatter_add_ if eager else g_logits.scatter_add)(1, targets[:, None], g_rec[:, None])
    # softmax backward: dL/dlogits = w * (dL/dw - sum_l w_l dL/dw_l)
    row = (w * g_logits).sum(dim=1, keepdim=True)  # (B, 1)
    return g_logits.sub_(row).mul_(w) if eager else (g_logits - row) * w  # (B, n); rows sum to zero
