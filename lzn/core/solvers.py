"""ODE integrators over any velocity callable ``f(x, s) -> dx/ds`` (method.md §5.9, §8.1).

``x`` is a batched tensor of any shape, ``s`` is handed to ``f`` as a 0-dim tensor of ``x``'s dtype
and device. Every method integrates forward (s1 > s0) or backward (s1 < s0, used for inversion);
the step grid and the adaptive controller run on host floats (float64), the states stay in torch.
Nothing here disables autograd: wrap calls in ``torch.no_grad()`` for inference.

Evaluations of ``f``: euler ``steps``; heun ``2 * steps``; dopri5 ``6 * (accepted + rejected) + 2``
(FSAL: the 7th stage of an accepted step is the 1st of the next; +1 for f(x0), +1 for the initial
step-size guess), exactly as scipy's ``solve_ivp(method="RK45")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Velocity = Callable[[Tensor, Tensor], Tensor]
METHODS = ("euler", "heun", "dopri5")

# Dormand-Prince 5(4) tableau (Hairer, Norsett & Wanner, Table II.5.2), as in scipy's RK45.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# 5th- minus 4th-order weights over the 7 stages (the 7th is f at the new point).
_E = (-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERROR_EXPONENT = -1 / 5  # -1 / (error-estimator order 4 + 1)


@dataclass(frozen=True)
class SolverStats:
    """Work done by an adaptive solve: ``nfe`` evaluations of f, accepted and rejected steps."""

    nfe: int
    accepted: int
    rejected: int


def _check(x0: Tensor, s0: float, s1: float) -> None:
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating tensor, got {type(x0).__name__}")
    if not (math.isfinite(s0) and math.isfinite(s1)):
        raise ValueError(f"s0 and s1 must be finite, got s0={s0}, s1={s1}")


def _check_steps(steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return steps


def _at(s: float, x: Tensor) -> Tensor:
    return torch.tensor(s, dtype=x.dtype, device=x.device)  # 0-dim s for f


def euler(f: Velocity, x0: Tensor, s0: float, s1: float, steps: int) -> Tensor:
    """Fixed-step Euler: x += h f(x, s_k) with s_k = s0 + k h, h = (s1 - s0) / steps (method.md §5.9)."""
    _check(x0, s0, s1)
    s0, s1 = float(s0), float(s1)
    h = (s1 - s0) / _check_steps(steps)
    x = x0
    for k in range(steps):
        x = x + h * f(x, _at(s0 + k * h, x0))
    return x


def heun(f: Velocity, x0: Tensor, s0: float, s1: float, steps: int) -> Tensor:
    """Fixed-step Heun (explicit trapezoid, 2nd order): ``2 * steps`` evaluations of f.

    x_pred = x + h f(x, s_k);  x <- x + h/2 (f(x, s_k) + f(x_pred, s_{k+1})).
    """
    _check(x0, s0, s1)
    s0, s1 = float(s0), float(s1)
    h = (s1 - s0) / _check_steps(steps)
    grid = [s0 + k * h for k in range(steps)] + [s1]  # last node exactly s1
    x = x0
    for k in range(steps):
        d0 = f(x, _at(grid[k], x0))
        d1 = f(x + h * d0, _at(grid[k + 1], x0))
        x = x + (0.5 * h) * (d0 + d1)
    return x


def _rms(v: Tensor) -> float:
    """scipy's norm: sqrt(mean(v^2)) over all elements (the whole batch shares one step)."""
    return float(torch.linalg.vector_norm(v) / math.sqrt(max(v.numel(), 1)))


def _initial_step(
    f: Velocity, x0: Tensor, f0: Tensor, s0: float, s1: float, rtol: float, atol: float
) -> float:
    """Hairer-Norsett-Wanner II.4 starting step, as scipy's ``select_initial_step`` (one evaluation)."""
    length, direction = abs(s1 - s0), math.copysign(1.0, s1 - s0)
    scale = atol + x0.abs() * rtol
    d0, d1 = _rms(x0 / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, length)
    f1 = f(x0 + (h0 * direction) * f0, _at(s0 + h0 * direction, x0))
    d2 = _rms((f1 - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1, length)


def dopri5_with_stats(
    f: Velocity,
    x0: Tensor,
    s0: float,
    s1: float,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    first_step: float | None = None,
    max_steps: int = 100_000,
) -> tuple[Tensor, SolverStats]:
    """Adaptive Dormand-Prince 5(4) with FSAL, the step-size controller of scipy's RK45 (method.md §5.9).

    Error of a trial step: RMS over all elements of h * sum_j E_j K_j / (atol + rtol max(|x|, |x_new|));
    accepted when < 1. One step size for the whole batch, as scipy on the flattened array. Raises
    RuntimeError after ``max_steps`` trial steps or if the step underflows. Returns (x(s1), stats).
    """
    _check(x0, s0, s1)
    s0, s1 = float(s0), float(s1)
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    if first_step is not None and not first_step > 0:
        raise ValueError(f"first_step must be positive, got {first_step}")
    if s0 == s1:
        return x0, SolverStats(nfe=0, accepted=0, rejected=0)
    direction = math.copysign(1.0, s1 - s0)
    x, s, k0 = x0, s0, f(x0, _at(s0, x0))
    nfe = 1
    if first_step is None:
        h_abs, nfe = _initial_step(f, x0, k0, s0, s1, rtol, atol), nfe + 1
    else:
        h_abs = min(float(first_step), abs(s1 - s0))
    accepted = rejected = 0
    while direction * (s - s1) < 0:
        min_step = 10 * abs(math.nextafter(s, direction * math.inf) - s)
        h_abs, step_rejected = max(h_abs, min_step), False
        while True:  # trial steps until one is accepted
            if accepted + rejected >= max_steps:
                raise RuntimeError(f"dopri5 exceeded max_steps={max_steps} at s={s} (rtol={rtol}, atol={atol})")
            if h_abs < min_step:
                raise RuntimeError(f"dopri5 step size underflow at s={s}: the problem may be stiff or singular")
            s_new = s + h_abs * direction
            if direction * (s_new - s1) > 0:
                s_new = s1
            h = s_new - s
            h_abs = abs(h)
            ks = [k0]
            for c, row in zip(_C[1:], _A[1:]):
                dx = sum(a * kj for a, kj in zip(row, ks) if a != 0.0)
                ks.append(f(x + h * dx, _at(s + c * h, x)))
            x_new = x + h * sum(b * kj for b, kj in zip(_B, ks) if b != 0.0)
            k_new = f(x_new, _at(s_new, x))  # FSAL: first stage of the next step
            nfe += 6
            ks.append(k_new)
            err = h * sum(e * kj for e, kj in zip(_E, ks) if e != 0.0)
            scale = atol + torch.maximum(x.abs(), x_new.abs()) * rtol
            error_norm = _rms(err / scale)
            if error_norm < 1:
                factor = _MAX_FACTOR if error_norm == 0 else min(_MAX_FACTOR, _SAFETY * error_norm**_ERROR_EXPONENT)
                h_abs *= min(1.0, factor) if step_rejected else factor
                accepted += 1
                break
            h_abs *= max(_MIN_FACTOR, _SAFETY * error_norm**_ERROR_EXPONENT)
            step_rejected, rejected = True, rejected + 1
        x, s, k0 = x_new, s_new, k_new
    return x, SolverStats(nfe=nfe, accepted=accepted, rejected=rejected)


def dopri5(
    f: Velocity,
    x0: Tensor,
    s0: float,
    s1: float,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    first_step: float | None = None,
    max_steps: int = 100_000,
) -> Tensor:
    """x(s1) by adaptive Dormand-Prince 5(4); see :func:`dopri5_with_stats` for the details."""
    x, _ = dopri5_with_stats(f, x0, s0, s1, rtol=rtol, atol=atol, first_step=first_step, max_steps=max_steps)
    return x


def solve(
    f: Velocity,
    x0: Tensor,
    s0: float,
    s1: float,
    method: str,
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Integrate dx/ds = f(x, s) from s0 to s1 with ``method`` in ``METHODS``.

    euler and heun need ``steps`` (rtol/atol unused); dopri5 uses rtol/atol (``steps`` unused).
    """
    if method == "dopri5":
        return dopri5(f, x0, s0, s1, rtol=rtol, atol=atol)
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; valid methods are {', '.join(METHODS)}")
    if steps is None:
        raise ValueError(f"method {method!r} is fixed-step: pass steps (a positive int)")
    return (euler if method == "euler" else heun)(f, x0, s0, s1, steps)
