"""A whole forward latent flow as one autograd node: Euler or DPM-Solver++ 3M written as a linear
multistep plan, with its discrete adjoint (method.md §2.5, §2.6, §2.8).

A ``Plan`` lists, for step i, the time t_i of the zone mean m_i = abar(x_i, t_i) and the coefficients of

    x_{i+1} = alpha_i x_i + sum_j beta_ij m_j      (j <= i, at most three terms for DPM-Solver++ 3M)

``flow_points`` and ``flow_adjoint`` are plain tensor functions without in-place updates, so the same
code runs eagerly or through ``torch.compile`` (``lzn.core.compiled``, method.md §2.11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lzn.core.zone_mean import zone_mean_vjp, zone_means

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
            nxt = nxt + ms[j] * beta  # out of place and without add's alpha: Inductor gets both right
        for j in [j for j in ms if j <= i - 2]:  # the next step looks back to m_{i-1} at most
            del ms[j]
        x = nxt
    return x


def flow_points(x: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None,
                plan: Plan) -> tuple[Tensor, list[Tensor]]:
    """The flow's end point (B, q) and the points x_0 .. x_{r-1} its backward needs (each (B, q))."""
    xs: list[Tensor] = []
    end = integrate(x, plan, lambda xi, t: zone_means(xi, anchors, t, log_weights, sq), keep=xs)
    return end, xs


def flow_adjoint(g_out: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None, xs: list[Tensor], plan: Plan,
                 need_anchors: bool, need_log_weights: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Discrete adjoint of ``flow_points``: -> (dL/dx_0 (B, q), dL/dA (n, q), dL/dlog pi (n,)).

    Walks the steps in reverse, spreading each step's cotangent over x_i and the m_j it used, and
    applies ``zone_mean_vjp`` once every user of m_i (steps >= i) has been visited."""
    g_x = g_out
    g_m: dict[int, Tensor] = {}
    g_anchors = g_logw = None
    for i in range(len(plan) - 1, -1, -1):
        t, alpha, betas = plan[i]
        for j, beta in betas.items():  # x_{i+1} = alpha x_i + sum_j beta_j m_j
            g_m[j] = g_x * beta if j not in g_m else g_m[j] + g_x * beta
        g_x = g_x * alpha
        gm = g_m.pop(i, None)
        if gm is not None:
            dx, da, dw = zone_mean_vjp(xs[i], anchors, sq, log_weights, t, gm, True, need_anchors, need_log_weights)
            g_x = g_x + dx  # type: ignore[operator]
            if da is not None:
                g_anchors = da if g_anchors is None else g_anchors + da
            if dw is not None:
                g_logw = dw if g_logw is None else g_logw + dw
    return g_x, g_anchors, g_logw


class MultistepFlow(torch.autograd.Function):
    """(x_0, A, ||A||^2, log pi, plan, compiled) -> x_r, one autograd node for the whole flow.

    Forward keeps only the points x_i (steps x (B, q)); backward is ``flow_adjoint``. At small sizes this
    saves the per-operation autograd overhead that otherwise dominates the flow. ``compiled`` runs both
    through ``lzn.core.compiled`` (same results up to float round-off). ``sq`` must be the detached
    squared norms of A (the adjoint's anchor gradient includes their contribution)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None,  # type: ignore[override]
                plan: Plan, compiled: bool = False) -> Tensor:
        fns = None
        if compiled:
            from lzn.core.compiled import flow_functions

            need_a = ctx.needs_input_grad[1]
            need_w = log_weights is not None and ctx.needs_input_grad[3]
            fns = flow_functions(x, anchors, plan, need_a, need_w)
        end, xs = (fns[0] if fns is not None else flow_points)(x, anchors, sq, log_weights, plan)
        ctx.save_for_backward(anchors, sq, log_weights, *xs)
        ctx.plan, ctx.fns = plan, fns
        return end

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        anchors, sq, log_weights, *xs = ctx.saved_tensors
        need_a = ctx.needs_input_grad[1]
        need_w = log_weights is not None and ctx.needs_input_grad[3]
        if ctx.fns is not None:
            g_x, g_anchors, g_logw = ctx.fns[1](g_out.contiguous(), anchors, sq, log_weights, xs, ctx.plan)
        else:
            g_x, g_anchors, g_logw = flow_adjoint(g_out, anchors, sq, log_weights, xs, ctx.plan, need_a, need_w)
        return g_x, g_anchors if need_a else None, None, g_logw if need_w else None, None, None
