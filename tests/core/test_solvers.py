"""lzn.core.solvers against closed-form ODE solutions, convergence orders and scipy's RK45."""

from __future__ import annotations

import math

import pytest
import torch

from lzn.core import solvers
from lzn.core.solvers import SolverStats, dopri5, dopri5_with_stats, euler, heun, solve

F64 = torch.float64


class Counted:
    """Wrap a velocity field, count calls and record the s values it was given."""

    def __init__(self, f):
        self.f, self.calls, self.s_seen = f, 0, []

    def __call__(self, x, s):
        assert s.dim() == 0 and s.dtype == x.dtype and s.device == x.device
        self.calls += 1
        self.s_seen.append(float(s))
        return self.f(x, s)


def linear_problem(shape=(3, 2, 4, 4), seed=0, stiffness=1.0, dtype=F64):
    """dx/ds = a x + b, elementwise a, b; exact x(s1) = e^{a d} x0 + (e^{a d} - 1) b / a."""
    g = torch.Generator().manual_seed(seed)
    a = stiffness * (torch.rand(shape, generator=g, dtype=F64) * 2 - 1.5)  # in [-1.5, 0.5) * stiffness
    b = torch.randn(shape, generator=g, dtype=F64)
    x0 = torch.randn(shape, generator=g, dtype=F64)
    a, b, x0 = a.to(dtype), b.to(dtype), x0.to(dtype)

    def exact(s0, s1):
        e = torch.exp(a * (s1 - s0))
        return e * x0 + (e - 1) * b / a

    return (lambda x, s: a * x + b), x0, exact


def quadratic_time(x, s):
    """dx/ds = 2 s x (non-autonomous); exact x(s1) = x0 exp(s1^2 - s0^2)."""
    return 2 * s * x


def rel_err(x, ref):
    return float((x - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("method", ["euler", "heun", "dopri5"])
@pytest.mark.parametrize("s0,s1", [(1e-3, 1.0), (1.0, 1e-3), (0.3, -0.7)])
def test_constant_velocity_is_exact_for_every_method(method, s0, s1):
    c = torch.randn(2, 3, 5, 5, dtype=F64)
    x0 = torch.randn(2, 3, 5, 5, dtype=F64)
    x1 = solve(lambda x, s: c, x0, s0, s1, method, steps=3)
    torch.testing.assert_close(x1, x0 + (s1 - s0) * c, rtol=0, atol=1e-13)


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2)])
@pytest.mark.parametrize("problem", ["linear", "time"])
def test_fixed_step_convergence_orders(method, order, problem):
    if problem == "linear":
        f, x0, exact = linear_problem()
        ref = exact(0.0, 1.0)
    else:
        f, x0 = quadratic_time, torch.randn(4, 3, dtype=F64)
        ref = x0 * math.exp(1.0)
    errs = [rel_err(solve(f, x0, 0.0, 1.0, method, steps=n), ref) for n in (8, 16, 32, 64)]
    orders = [math.log2(e0 / e1) for e0, e1 in zip(errs, errs[1:])]
    assert all(abs(p - order) < 0.15 for p in orders[1:]), orders  # measured: ~1.0 and ~2.0
    assert errs[-1] < (0.03 if order == 1 else 1e-3)


def test_step_grid_and_evaluation_counts():
    f = Counted(lambda x, s: x)
    euler(f, torch.ones(2, dtype=F64), 1e-3, 1.0, 4)
    h = (1 - 1e-3) / 4
    assert f.calls == 4 and f.s_seen == pytest.approx([1e-3 + k * h for k in range(4)], abs=1e-15)
    f = Counted(lambda x, s: x)
    heun(f, torch.ones(2, dtype=F64), 1.0, 0.0, 5)
    assert f.calls == 10 and f.s_seen[0] == 1.0 and f.s_seen[-1] == 0.0


@pytest.mark.parametrize("method", ["euler", "heun", "dopri5"])
def test_backward_integration_matches_exact_and_round_trips(method):
    f, x0, exact = linear_problem(seed=1)
    steps = 4000 if method == "euler" else 200
    back = solve(f, x0, 1.0, 0.2, method, steps=steps, rtol=1e-8, atol=1e-8)
    tol = {"euler": 1e-3, "heun": 1e-5, "dopri5": 1e-6}[method]
    assert rel_err(back, exact(1.0, 0.2)) < tol
    there_and_back = solve(f, back, 0.2, 1.0, method, steps=steps, rtol=1e-8, atol=1e-8)
    assert rel_err(there_and_back, x0) < 2 * tol


@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-8])
def test_dopri5_error_within_ten_tolerances(tol):
    f, x0, exact = linear_problem(seed=2)
    for s0, s1 in [(1e-3, 1.0), (1.0, 1e-3)]:
        ref = exact(s0, s1)
        err = (dopri5(f, x0, s0, s1, rtol=tol, atol=tol) - ref).abs()
        assert bool((err <= 10 * (tol + tol * ref.abs())).all()), float(err.max())
    x1 = torch.randn(5, dtype=F64)
    out = dopri5(quadratic_time, x1, -0.5, 1.5, rtol=tol, atol=tol)
    torch.testing.assert_close(out, x1 * math.exp(1.5**2 - 0.5**2), rtol=10 * tol, atol=10 * tol)


def test_dopri5_work_grows_as_tolerance_tightens_and_stats_add_up():
    f, x0, _ = linear_problem(seed=3)
    stats = [dopri5_with_stats(Counted(f), x0, 0.0, 1.0, rtol=t, atol=t)[1] for t in (1e-3, 1e-5, 1e-7, 1e-9)]
    nfe = [st.nfe for st in stats]
    assert nfe == sorted(nfe) and len(set(nfe)) == 4, nfe
    for st in stats:
        assert st.nfe == 6 * (st.accepted + st.rejected) + 2
    counted = Counted(f)
    _, st = dopri5_with_stats(counted, x0, 0.0, 1.0)
    assert counted.calls == st.nfe
    assert st == SolverStats(nfe=26, accepted=4, rejected=0)  # golden: seeded problem, rtol = atol = 1e-5


@pytest.mark.parametrize("s0,s1", [(0.0, 1.0), (1.0, 1e-3)])
def test_dopri5_matches_scipy_rk45_step_for_step(s0, s1):
    np = pytest.importorskip("numpy")
    integrate = pytest.importorskip("scipy.integrate")
    f, x0, _ = linear_problem(shape=(2, 3, 4), seed=4)
    f_np = lambda s, y: f(torch.from_numpy(y).reshape(x0.shape), s).reshape(-1).numpy()  # noqa: E731
    ref = integrate.solve_ivp(f_np, (s0, s1), x0.reshape(-1).numpy(), method="RK45", rtol=1e-6, atol=1e-6)
    out, st = dopri5_with_stats(f, x0, s0, s1, rtol=1e-6, atol=1e-6)
    assert (st.nfe, st.accepted) == (ref.nfev, len(ref.t) - 1)
    np.testing.assert_allclose(out.reshape(-1).numpy(), ref.y[:, -1], rtol=1e-12, atol=1e-12)


def test_dopri5_dtype_device_first_step_and_zero_interval():
    f, x0, exact = linear_problem(seed=5, dtype=torch.float32)
    out = dopri5(f, x0, 0.0, 1.0, first_step=0.01)
    assert out.dtype == torch.float32 and out.device == x0.device
    assert rel_err(out, exact(0.0, 1.0)) < 1e-4
    same, st = dopri5_with_stats(f, x0, 0.5, 0.5)
    assert same is x0 and st.nfe == 0


def test_dopri5_rejects_and_recovers_from_a_too_large_first_step():
    f, x0, exact = linear_problem(seed=6, stiffness=8.0)
    out, st = dopri5_with_stats(f, x0, 0.0, 1.0, rtol=1e-7, atol=1e-7, first_step=1.0)
    assert st.rejected >= 1
    assert rel_err(out, exact(0.0, 1.0)) < 1e-6


def test_errors_are_loud():
    x = torch.zeros(2, 3)
    f = lambda x, s: x  # noqa: E731
    with pytest.raises(ValueError, match="euler, heun, dopri5"):
        solve(f, x, 0.0, 1.0, "rk4", steps=3)
    with pytest.raises(ValueError, match="steps"):
        solve(f, x, 0.0, 1.0, "euler")
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            solve(f, x, 0.0, 1.0, "heun", steps=bad)
    with pytest.raises(ValueError, match="rtol"):
        dopri5(f, x, 0.0, 1.0, rtol=0.0)
    with pytest.raises(ValueError, match="x0"):
        euler(f, torch.zeros(2, dtype=torch.long), 0.0, 1.0, 2)
    with pytest.raises(RuntimeError, match="max_steps"):
        dopri5(lambda x, s: torch.cos(50 * s) * torch.ones_like(x), x, 0.0, 10.0, rtol=1e-9, atol=1e-9, max_steps=20)
    assert solvers.METHODS == ("euler", "heun", "dopri5")
