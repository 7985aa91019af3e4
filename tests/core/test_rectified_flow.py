"""lzn.core.rectified_flow against hand-written formulas and the closed-form RF flow of Gaussian data."""

from __future__ import annotations

import pytest
import torch

from lzn.core import rectified_flow as rf
from lzn.core.rectified_flow import S_MIN, interpolate, invert, rf_loss, sample, sample_s, target_velocity

F64 = torch.float64
SHAPE = (3, 2, 4, 4)  # (B, C, H, W)


def gaussian_data(seed=0):
    """Data ~ N(m, sigma^2) per pixel. With v(s) = s^2 sigma^2 + (1 - s)^2 the exact RF velocity is
    E[x - xi | x_s] = m + (s sigma^2 - (1 - s)) / v(s) (x_s - s m), and its flow maps
    x(s_a) -> s_b m + sqrt(v(s_b) / v(s_a)) (x(s_a) - s_a m)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(SHAPE[1:], generator=g, dtype=F64)
    sigma = 0.3 + 1.5 * torch.rand(SHAPE[1:], generator=g, dtype=F64)

    def var(s):
        return s * s * sigma**2 + (1 - s) ** 2

    def velocity(x, s):
        assert s.shape == (x.shape[0],)
        s = s.reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
        return m + (s * sigma**2 - (1 - s)) / var(s) * (x - s * m)

    def flow_map(x, s_a, s_b):
        return s_b * m + (var(s_b) / var(s_a)).sqrt() * (x - s_a * m)

    return velocity, flow_map


def single_point_velocity(x1):
    """Exact RF velocity when the data set is the single image x1: (x1 - x_s) / (1 - s), for s < 1."""
    return lambda x, s: (x1 - x) / (1 - s.reshape(-1, 1, 1, 1))


def test_interpolate_endpoints_broadcast_and_derivative():
    x, xi = torch.randn(SHAPE, dtype=F64), torch.randn(SHAPE, dtype=F64)
    torch.testing.assert_close(interpolate(x, xi, torch.zeros(3, dtype=F64)), xi)
    torch.testing.assert_close(interpolate(x, xi, torch.ones(3, dtype=F64)), x)
    s = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    out = interpolate(x, xi, s)
    for b in range(3):  # per-sample s broadcast over (C, H, W)
        torch.testing.assert_close(out[b], s[b] * x[b] + (1 - s[b]) * xi[b])
    d = (interpolate(x, xi, s + 1e-6) - out) / 1e-6
    torch.testing.assert_close(d, target_velocity(x, xi), rtol=1e-6, atol=1e-6)


def test_sample_s_range_shape_and_seed():
    s = sample_s(10_000, generator=torch.Generator().manual_seed(0))
    assert s.shape == (10_000,) and s.dtype == torch.float32
    assert float(s.min()) >= S_MIN and float(s.max()) <= 1.0
    assert abs(float(s.mean()) - (1 + S_MIN) / 2) < 0.01
    again = sample_s(10_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, again) and sample_s(4, dtype=F64).dtype == F64


def test_rf_loss_matches_a_loop_over_samples():
    g = torch.Generator().manual_seed(1)
    x, xi = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    s = torch.tensor([0.2, 0.6, 0.95])
    w = torch.randn(SHAPE[1:], generator=g)
    net = lambda x_s, s: w * x_s + s.reshape(-1, 1, 1, 1)  # noqa: E731
    ref = 0.0
    for b in range(3):  # method.md §5.3, transcribed
        x_s = s[b] * x[b] + (1 - s[b]) * xi[b]
        v_hat = w * x_s + s[b]
        ref += ((x[b] - xi[b] - v_hat) ** 2).mean() / 3
    torch.testing.assert_close(rf_loss(net, x, noise=xi, s=s), ref)


def test_rf_loss_draws_s_then_noise_from_the_generator():
    x = torch.randn(SHAPE)
    net = lambda x_s, s: 0.5 * x_s  # noqa: E731
    got = rf_loss(net, x, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    s = sample_s(3, generator=g)
    xi = torch.randn(SHAPE, generator=g)
    torch.testing.assert_close(got, rf_loss(net, x, noise=xi, s=s))


def test_rf_loss_is_zero_for_the_exact_velocity_of_one_data_point_and_has_gradients():
    x1 = torch.randn(SHAPE[1:], dtype=F64)
    x = x1.expand(SHAPE)
    loss = rf_loss(single_point_velocity(x1), x, generator=torch.Generator().manual_seed(2))
    assert float(loss) < 1e-20
    w = torch.zeros((), dtype=F64, requires_grad=True)
    rf_loss(lambda x_s, s: w * x_s, x, generator=torch.Generator().manual_seed(2)).backward()
    assert w.grad is not None and torch.isfinite(w.grad)


def test_euler_grids_and_per_sample_s():
    seen = []

    def record(x, s):
        assert s.shape == (x.shape[0],) and bool((s == s[0]).all())
        seen.append(float(s[0]))
        return torch.ones_like(x)

    xi = torch.randn(SHAPE, dtype=F64)
    out = sample(record, xi, method="euler", steps=4)
    h = (1 - S_MIN) / 4
    assert seen == pytest.approx([S_MIN + k * h for k in range(4)], abs=1e-15)
    torch.testing.assert_close(out, xi + (1 - S_MIN))  # constant velocity: exact
    seen.clear()
    back = invert(record, out, method="euler", steps=4)
    assert seen == pytest.approx([1 - k * h for k in range(4)], abs=1e-15)
    torch.testing.assert_close(back, xi)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_euler_lands_on_a_single_data_point(steps):
    """The one-point field is constant along its straight paths, so Euler is exact for any N."""
    x1, xi = torch.randn(SHAPE[1:], dtype=F64), torch.randn(SHAPE, dtype=F64)
    out = sample(single_point_velocity(x1), xi, method="euler", steps=steps)
    torch.testing.assert_close(out, x1.expand(SHAPE), rtol=0, atol=1e-12)


def test_dopri5_sample_matches_the_gaussian_closed_form():
    velocity, flow_map = gaussian_data()
    xi = torch.randn(SHAPE, dtype=F64, generator=torch.Generator().manual_seed(3))
    out = sample(velocity, xi)  # dopri5, rtol = atol = 1e-5 (method.md §5.9)
    ref = flow_map(xi, S_MIN, 1.0)
    back = invert(velocity, ref)
    for got, want in [(out, ref), (back, xi)]:  # RMS-controlled: RMS within 10 tolerances, max within 30
        ratio = (got - want).abs() / (1e-5 + 1e-5 * want.abs())
        assert float(ratio.square().mean().sqrt()) < 10 and float(ratio.max()) < 30
    coarse = sample(velocity, xi, method="euler", steps=10)
    assert float((coarse - ref).abs().max()) > 1e-3  # Euler N = 10 is visibly worse


@pytest.mark.parametrize("method,steps,tol", [("dopri5", None, 2e-4), ("heun", 100, 1e-3)])
def test_invert_then_sample_returns_the_input(method, steps, tol):
    velocity, _ = gaussian_data(seed=4)
    x = torch.randn(SHAPE, dtype=F64, generator=torch.Generator().manual_seed(5))
    noise = invert(velocity, x, method=method, steps=steps)
    x_hat = sample(velocity, noise, method=method, steps=steps)
    assert float((x_hat - x).abs().max()) < tol
    assert float((noise - x).abs().max()) > 0.1  # it did move


def test_float32_sample_keeps_dtype():
    velocity, flow_map = gaussian_data()
    xi = torch.randn(SHAPE)
    v32 = lambda x, s: velocity(x.double(), s.double()).float()  # noqa: E731
    out = sample(v32, xi)
    assert out.dtype == torch.float32
    assert float((out.double() - flow_map(xi.double(), S_MIN, 1.0)).abs().max()) < 1e-3


def test_errors_are_loud():
    x = torch.randn(SHAPE)
    v = lambda x_s, s: x_s  # noqa: E731
    with pytest.raises(ValueError, match="valid methods"):
        sample(v, x, method="rk4")
    with pytest.raises(ValueError, match="steps"):
        invert(v, x, method="euler")
    with pytest.raises(ValueError, match=r"s must be a \(3,\)"):
        interpolate(x, x, torch.rand(()))
    with pytest.raises(ValueError, match="noise shape"):
        interpolate(x, x[:2], torch.rand(3))
    with pytest.raises(ValueError, match="velocity_fn returned shape"):
        rf_loss(lambda x_s, s: x_s.mean(1), x)
    assert rf.S_MIN == 1e-3
