"""A whole forward latent flow as one autograd node: Euler or DPM-Solver++ 3M written as a linear
multistep plan, with its discrete adjoint (method.md §2.5, §2.6, §2.8).

A ``Plan`` lists, for step i, the time t_i of the zone mean m_i = abar(x_i, t_i) and the coefficients of

    x_{i+1} = alpha_i x_i + sum_j beta_ij m_j      (j <= i, at most three terms for DPM-Solver++ 3M)

``flow_points`` and ``flow_adjoint`` are plain tensor functions without in-place updates, so the same
code runs eagerly or through ``torch.compile``. ``LatentFlow`` is handed the pair it runs (``EAGER``, or
the compiled pair of ``lzn.core.compiled``, method.md §2.11), so nothing here imports the compiler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lzn.core.zone_mean import responsibilities, zone_mean_vjp, zone_means

Plan = list[tuple[float, float, dict[int, float]]]  # (t_i, alpha_i, {j: beta_ij})
FlowFns = tuple[Callable[..., Any], Callable[..., Any]]  # (flow_points, flow_adjoint) or their compiled twins


def euler_plan(steps: int, g: float) -> Plan:
    """x_{j+1} = x_j + h (x_j - m_j) / t_j on t_j = g + j h, h = (1 - g) / steps (method.md §2.5)."""
    h = (1.0 - g) / steps
    return [(g + j * h, 1.0 + h / (g + j * h), {j: -h / (g + j * h)}) for j in range(steps)]


def dpm3_times(steps: int, g: float, grid: str = "time") -> list[float]:
    """The DPM-Solver++ grid t_0 = g < ... < t_steps = 1 - g: uniform in t ("time", the paper's, method.md §2.6)
    or in the half-log-SNR lambda = log((1 - t) / t) ("logsnr", method.md §2.6.1)."""
    if grid == "time":
        return [g + i * (1.0 - 2.0 * g) / steps for i in range(steps + 1)]
    if grid != "logsnr":
        raise ValueError(f"grid must be 'time' or 'logsnr', got {grid!r}")
    top = math.log((1.0 - g) / g)  # lambda at t = g; -top at t = 1 - g
    inner = [1.0 / (1.0 + math.exp(top - 2.0 * top * i / steps)) for i in range(1, steps)]
    return [g, *inner, 1.0 - g]


def dpm3_plan(steps: int, g: float, grid: str = "time", reverse: bool = False) -> Plan:
    """DPM-Solver++ 3M, data prediction abar, alpha_t = 1 - t, sigma_t = t, on the grid of ``dpm3_times``
    (method.md §2.6) as linear-multistep coefficients; python floats, so the schedule is float64. ``reverse``
    walks the same grid from 1 - g down to g (a latent flowed back to its anchor, method.md §2.6.1)."""
    ts = dpm3_times(steps, g, grid)
    if reverse:
        ts = ts[::-1]
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


GRIDS = {"dpm3": "time", "dpm3_logsnr": "logsnr"}  # DPM-Solver++ 3M solvers by grid (method.md §2.6, §2.6.1)


def solver_plan(solver: str, steps: int, g: float) -> tuple[Plan, float]:
    """(plan, end time) of ``solver`` from t = g: Euler ends at 1, DPM-Solver++ 3M (either grid) at 1 - g."""
    return (euler_plan(steps, g), 1.0) if solver == "euler" else (dpm3_plan(steps, g, GRIDS[solver]), 1.0 - g)


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


def flow_points(x: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None, plan: Plan,
                rows: int | None = None, keep: bool = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The flow's end point (B, q), the points x_0 .. x_{r-1} its backward needs (each (B, q)) and, with
    ``keep`` (one block), every step's responsibilities (each (B, n)); ``rows`` per block (None: one)."""
    xs: list[Tensor] = []
    ws: list[Tensor] = []

    def mean(xi: Tensor, t: float) -> Tensor:
        if not keep:
            return zone_means(xi, anchors, t, log_weights, sq, rows)
        ws.append(responsibilities(xi, anchors, t, log_weights, sq))  # (B, n)
        return ws[-1] @ anchors  # (B, n) @ (n, q) -> (B, q)

    end = integrate(x, plan, mean, keep=xs)
    return end, xs, ws


def flow_adjoint(g_out: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None, xs: list[Tensor],
                 ws: list[Tensor], plan: Plan, rows: int | None, need_anchors: bool,
                 need_log_weights: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Discrete adjoint of ``flow_points``: -> (dL/dx_0 (B, q), dL/dA (n, q), dL/dlog pi (n,)).

    Walks the steps in reverse, spreading each step's cotangent over x_i and the m_j it used, and
    applies ``zone_mean_vjp`` once every user of m_i (steps >= i) has been visited; ``ws`` are the kept
    responsibilities (empty: recomputed)."""
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
            dx, da, dw = zone_mean_vjp(xs[i], anchors, sq, log_weights, t, gm, True, need_anchors, need_log_weights,
                                       rows=rows, w=ws[i] if ws else None)
            g_x = g_x + dx  # type: ignore[operator]
            if da is not None:
                g_anchors = da if g_anchors is None else g_anchors + da
            if dw is not None:
                g_logw = dw if g_logw is None else g_logw + dw
    return g_x, g_anchors, g_logw


EAGER: FlowFns = (flow_points, flow_adjoint)


class LatentFlow(torch.autograd.Function):
    """(x_0, A, ||A||^2, log pi, plan, fns, rows, keep) -> x_r, one autograd node for the whole flow.

    Forward keeps the points x_i (steps x (B, q)) and, with ``keep``, the responsibilities (steps x
    (B, n)); backward is the adjoint. ``fns`` is the (forward, adjoint) pair with the signatures of
    ``flow_points`` and ``flow_adjoint``: ``EAGER`` or the compiled pair (same results up to float
    round-off). ``sq`` must be the detached squared norms of A (the adjoint's anchor gradient includes
    their contribution). ``rows``: rows per block (None: one block)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, anchors: Tensor, sq: Tensor, log_weights: Tensor | None,  # type: ignore[override]
                plan: Plan, fns: FlowFns = EAGER, rows: int | None = None, keep: bool = False) -> Tensor:
        end, xs, ws = fns[0](x, anchors, sq, log_weights, plan, rows, keep)
        ctx.save_for_backward(anchors, sq, log_weights, *xs, *ws)
        ctx.plan, ctx.fns, ctx.rows, ctx.points = plan, fns, rows, len(xs)
        return end

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        anchors, sq, log_weights, *saved = ctx.saved_tensors
        xs, ws = saved[:ctx.points], saved[ctx.points:]
        need_a = ctx.needs_input_grad[1]
        need_w = log_weights is not None and ctx.needs_input_grad[3]
        g_x, g_anchors, g_logw = ctx.fns[1](g_out, anchors, sq, log_weights, xs, ws, ctx.plan, ctx.rows,
                                            need_a, need_w)
        return g_x, g_anchors if need_a else None, None, g_logw if need_w else None, None, None, None, None
