"""Argument checks of the zone functions, at the public boundary, once (method.md §2, §3).

Each raises ``ValueError`` naming the argument and what it must be; shapes are B points, n anchors,
q latent dimensions.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch
from torch import Tensor

Solver = Literal["euler", "dpm3", "dpm3_logsnr"]
DEFAULT_EPS: dict[str, float] = {"euler": 1e-4, "dpm3": 1e-3, "dpm3_logsnr": 1e-3}
"""Start time g of each solver when ``eps`` is not given (method.md §2.5, §2.6, §2.6.1)."""


def anchors(a: Tensor) -> None:
    """A floating (n, q) tensor with n >= 1."""
    if not isinstance(a, Tensor) or a.dim() != 2 or not a.is_floating_point():
        shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
        raise ValueError(f"anchors must be a floating (n, q) tensor, got {shape}")
    if a.shape[0] == 0:
        raise ValueError("anchors must hold at least one anchor, got shape (0, q)")


def points(name: str, x: Tensor, a: Tensor, rows: int | None = None) -> None:
    """A floating (B, q) tensor (B = ``rows`` if given) on the anchors' device."""
    q = a.shape[1]
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != q or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        want = f"({rows}, {q})" if rows is not None else f"(B, {q})"
        raise ValueError(f"{name} must be a floating {want} tensor matching anchors {tuple(a.shape)}, got {shape}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows}, {q}) to match {rows} samples, got {tuple(x.shape)}")
    if x.device != a.device:
        raise ValueError(f"{name} is on {x.device} but anchors are on {a.device}")


def log_weights(logw: Tensor | None, n: int) -> None:
    """None or a floating (n,) tensor."""
    if logw is not None and (logw.shape != (n,) or not logw.is_floating_point()):
        raise ValueError(f"log_weights must be a floating ({n},) tensor (one per anchor), got {tuple(logw.shape)}")


def index(name: str, idx: Tensor, n: int, rows: int | None = None) -> None:
    """A 1-D integer tensor of values in [0, n), of length ``rows`` if given (one host sync)."""
    if idx.dim() != 1 or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be a 1-D integer tensor, got {tuple(idx.shape)} {idx.dtype}")
    if rows is not None and idx.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows},), got {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"{name} values must lie in [0, {n}), got range [{int(idx.min())}, {int(idx.max())}]")


def steps(value: object) -> int:
    """A positive int (booleans are not step counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"steps must be a positive int, got {value!r}")
    return value


def noise_scale(value: float) -> float:
    """noise_scale (alpha of the start point, method.md §2.4) as a float; a finite number >= 0."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    out = float(value) if ok else math.nan
    if not ok or not math.isfinite(out) or out < 0.0:
        raise ValueError(f"noise_scale must be a finite number >= 0 (alpha of the start point), got {value!r}")
    return out


def solver_eps(solver: str, eps: float | None) -> float:
    """The start time g of ``solver`` ("euler": (0, 1); the DPM solvers: (0, 0.5), they end at 1 - g)."""
    if solver not in DEFAULT_EPS:
        raise ValueError(f"solver must be one of {sorted(DEFAULT_EPS)}, got {solver!r}")
    g = DEFAULT_EPS[solver] if eps is None else float(eps)
    top = 1.0 if solver == "euler" else 0.5
    if not 0.0 < g < top:
        raise ValueError(f"eps must lie in (0, {top}) for solver {solver!r}, got {g}")
    return g


def finite(a: Tensor, noise: Tensor) -> None:
    """One host sync: anchors and noise must be finite (the latent flow of a NaN anchor is NaN everywhere)."""
    if bool(torch.isfinite(a).all() & torch.isfinite(noise).all()):
        return
    for name, x, verb in (("anchors", a, "contain"), ("noise", noise, "contains")):
        rows = (~torch.isfinite(x)).any(dim=1).nonzero().flatten().tolist()
        if rows:
            shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
            raise ValueError(f"{name} {verb} NaN or inf values (rows [{shown}]); the latent flow needs finite {name}")


def time(t: float | Tensor) -> float:
    """t in (0, 1] as a float (t = 0 is the anchors, where the flow is singular)."""
    value = float(t.detach()) if isinstance(t, Tensor) else float(t)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"t must lie in (0, 1] (t = 0 is the anchors, where the flow is singular), got {value}")
    return value
