"""Image-side rectified flow (method.md §1.2 image clock, §5.3 training loss, §5.9 generation, §8.1 inversion).

Clock: s in [0, 1], s = 0 at Gaussian image noise xi, s = 1 at the data image (never the latent
clock t). x_s = s x + (1 - s) xi, target velocity u = x - xi. The flow is integrated over
[S_MIN, 1], S_MIN = 1e-3.

``velocity_fn(x_s, s) -> v_hat`` is any network (closure over latents, if conditioned) taking images
x_s (B, ...) and a (B,) tensor s, and returning a (B, ...) velocity. Nothing here disables autograd:
wrap ``sample`` / ``invert`` in ``torch.no_grad()`` for inference.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from lzn.core.solvers import solve

S_MIN = 1e-3
VelocityFn = Callable[[Tensor, Tensor], Tensor]


def _check_batch(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() < 1 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating (B, ...) tensor, got {shape}")


def _check_s(s: Tensor, batch: int) -> None:
    if not isinstance(s, Tensor) or s.shape != (batch,):
        shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"s must be a ({batch},) tensor (one time per sample), got {shape}")


def _per_sample(s: Tensor, x: Tensor) -> Tensor:
    return s.reshape(-1, *([1] * (x.dim() - 1)))  # (B,) -> (B, 1, ..., 1)


def interpolate(x_data: Tensor, noise: Tensor, s: Tensor) -> Tensor:
    """x_s = s x_data + (1 - s) noise; x_data, noise (B, ...), s (B,) -> (B, ...) (method.md §5.3)."""
    _check_batch("x_data", x_data)
    if noise.shape != x_data.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} must equal x_data shape {tuple(x_data.shape)}")
    _check_s(s, x_data.shape[0])
    s_b = _per_sample(s, x_data)
    return s_b * x_data + (1 - s_b) * noise


def target_velocity(x_data: Tensor, noise: Tensor) -> Tensor:
    """u = x_data - noise = d x_s / ds, constant along each straight path; (B, ...)."""
    return x_data - noise


def sample_s(
    batch: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Training times s ~ U[S_MIN, 1], shape (batch,) (method.md §5.3)."""
    u = torch.rand(batch, generator=generator, device=device, dtype=dtype)
    return S_MIN + (1 - S_MIN) * u


def rf_loss(
    velocity_fn: VelocityFn,
    x_data: Tensor,
    *,
    noise: Tensor | None = None,
    s: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L_RF = mean_b mean_{C,H,W} (x - xi - v_hat(x_s, s))^2, a 0-dim tensor (method.md §5.3).

    Missing s is drawn first by :func:`sample_s`, then missing noise ~ N(0, I), both from
    ``generator`` on x_data's device.
    """
    _check_batch("x_data", x_data)
    batch = x_data.shape[0]
    if s is None:
        s = sample_s(batch, generator=generator, device=x_data.device, dtype=x_data.dtype)
    if noise is None:
        noise = torch.randn(x_data.shape, generator=generator, device=x_data.device, dtype=x_data.dtype)
    x_s = interpolate(x_data, noise, s)
    v_hat = velocity_fn(x_s, s)
    if v_hat.shape != x_data.shape:
        raise ValueError(f"velocity_fn returned shape {tuple(v_hat.shape)}, expected {tuple(x_data.shape)}")
    sq = (target_velocity(x_data, noise) - v_hat).square()  # (B, ...)
    return sq.reshape(batch, -1).mean(dim=1).mean()


def _scalar_clock(velocity_fn: VelocityFn, batch: int) -> Callable[[Tensor, Tensor], Tensor]:
    """Adapt the network's (B,) s to the solvers' 0-dim s."""

    def f(x: Tensor, s: Tensor) -> Tensor:
        return velocity_fn(x, s.repeat(batch))  # () -> (B,)

    return f


def sample(
    velocity_fn: VelocityFn,
    noise: Tensor,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Generate: integrate dx/ds = velocity_fn(x, s) from s = S_MIN (x = noise) to s = 1 (method.md §5.9).

    dopri5 (scipy RK45 equivalent, rtol = atol = 1e-5) for headline results; euler with ``steps`` = N
    uses s_k = S_MIN + k (1 - S_MIN) / N. noise (B, ...) -> images (B, ...).
    """
    _check_batch("noise", noise)
    return solve(_scalar_clock(velocity_fn, noise.shape[0]), noise, S_MIN, 1.0, method, steps, rtol, atol)


def invert(
    velocity_fn: VelocityFn,
    x_data: Tensor,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Encode images to noise: integrate the same ODE backward from s = 1 to s = S_MIN (method.md §8.1).

    Use the same sampler as :func:`sample`; ``sample(v, invert(v, x))`` reconstructs x up to solver
    error. x_data (B, ...) -> noise (B, ...).
    """
    _check_batch("x_data", x_data)
    return solve(_scalar_clock(velocity_fn, x_data.shape[0]), x_data, 1.0, S_MIN, method, steps, rtol, atol)
