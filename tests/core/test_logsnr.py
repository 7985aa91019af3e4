"""DPM-Solver++ 3M on a log-SNR grid, forwards and backwards (method.md §2.6.1), against a naive loop of the
solver's update rules, closed forms with one anchor, and the zone property it is there for."""

from __future__ import annotations

import math

import pytest
import torch

from lzn.core import zones
from lzn.core.latent_flow import dpm3_times


def naive_mean(x, anchors, t):
    """Posterior mean of the anchor given x at time t: (B, n, q) differences, plain softmax."""
    logits = -((x[:, None, :] - (1 - t) * anchors[None]) ** 2).sum(-1) / (2 * t * t)
    return torch.softmax(logits, dim=1) @ anchors


def naive_dpm3(x, anchors, ts):
    """DPM-Solver++ 3M as method.md §2.6 writes it (order min(3, i), 20 steps or more), on any grid ts."""
    lam = [math.log((1 - t) / t) for t in ts]
    ms = []
    for i in range(1, len(ts)):
        ms.append(naive_mean(x, anchors, ts[i - 1]))
        h = lam[i] - lam[i - 1]
        phi1 = math.expm1(-h)
        a = 1 - ts[i]
        new = ts[i] / ts[i - 1] * x - a * phi1 * ms[-1]
        if i == 2:
            r0 = (lam[i - 1] - lam[i - 2]) / h
            new = new - 0.5 * a * phi1 * (ms[-1] - ms[-2]) / r0
        elif i >= 3:
            r0 = (lam[i - 1] - lam[i - 2]) / h
            r1 = (lam[i - 2] - lam[i - 3]) / h
            d0 = (ms[-1] - ms[-2]) / r0
            d1p = (ms[-2] - ms[-3]) / r1
            d1 = d0 + r0 / (r0 + r1) * (d0 - d1p)
            d2 = (d0 - d1p) / (r0 + r1)
            phi2 = phi1 / h + 1
            phi3 = phi2 / h - 0.5
            new = new + a * phi2 * d1 - a * phi3 * d2
        x = new
    return x


def test_logsnr_grid_is_uniform_in_lambda():
    g = 1e-3
    ts = dpm3_times(20, g, "logsnr")
    assert ts[0] == g and ts[-1] == 1 - g and all(a < b for a, b in zip(ts, ts[1:]))
    lam = [math.log((1 - t) / t) for t in ts]
    steps = [b - a for a, b in zip(lam, lam[1:])]
    assert max(steps) - min(steps) < 1e-9 and steps[0] == pytest.approx(-2 * math.log((1 - g) / g) / 20)
    assert dpm3_times(4, 0.1, "time") == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    with pytest.raises(ValueError, match="grid must be 'time' or 'logsnr'"):
        dpm3_times(4, 0.1, "karras")


def test_forward_and_reverse_match_naive():
    gen = torch.Generator().manual_seed(11)
    anchors = torch.randn(12, 3, generator=gen, dtype=torch.float64) * 0.4 + 1.5
    noise = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    g = 1e-3
    ts = dpm3_times(20, g, "logsnr")
    c = anchors.mean(0)  # the library works in the centred frame (method.md §2.8); the flow commutes with it
    want = naive_dpm3((1 - g) * (anchors - c) + g * noise, anchors - c, ts) + g * c
    got = zones.latents(anchors, noise, steps=20, solver="dpm3_logsnr")
    torch.testing.assert_close(got, want)
    back = zones.flow_back_end(got, anchors, steps=20, solver="dpm3_logsnr")
    want_back = naive_dpm3(got - g * c, anchors - c, ts[::-1]) + (1 - g) * c
    torch.testing.assert_close(back, want_back)


@pytest.mark.parametrize("solver", ["dpm3", "dpm3_logsnr"])
def test_single_anchor_closed_form_both_ways(solver):
    # one anchor: the data prediction is constant, the corrections vanish, and either grid is exact
    gen = torch.Generator().manual_seed(12)
    a, z = torch.randn(1, 5, generator=gen) * 3, torch.randn(1, 5, generator=gen)
    g = 1e-3
    lat = zones.latents(a, z, steps=20, solver=solver, noise_scale=0.7)
    torch.testing.assert_close(lat, (1 - g) * 0.7 * z + g * a, atol=1e-5, rtol=0)
    # backwards from 1 - g to g: x_t - (1 - t) a scales with t
    back = zones.flow_back_end(lat, a, steps=20, solver=solver)
    torch.testing.assert_close(back, (1 - g) * a + g / (1 - g) * (lat - g * a), atol=1e-5, rtol=0)


def test_both_grids_reach_the_same_flow_at_third_order():
    gen = torch.Generator().manual_seed(13)
    anchors = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    noise = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    ref = zones.latents(anchors, noise, steps=1280, solver="dpm3_logsnr")
    assert (zones.latents(anchors, noise, steps=1280, solver="dpm3") - ref).abs().max() < 2e-5  # the time grid is the coarser
    err = {n: (zones.latents(anchors, noise, steps=n, solver="dpm3_logsnr") - ref).abs().max().item()
           for n in (80, 160, 320)}
    assert err[80] / err[160] > 3.5 and err[160] / err[320] > 3.5


def test_logsnr_grid_keeps_latents_in_their_zones():
    # a packed anchor set (nearest anchors a few hundredths apart, as a trained encoder's): with 20 steps the
    # time-uniform grid leaves most latents outside their own zone, the log-SNR grid keeps most inside (an
    # accurate flow back, 160 steps, tells which zone a latent is in; with an accurate forward flow all are home)
    gen = torch.Generator().manual_seed(14)
    anchors = torch.randn(300, 8, generator=gen, dtype=torch.float64) * 0.02
    noise = torch.randn(300, 8, generator=gen, dtype=torch.float64)
    own = torch.arange(300)

    def home(lat):
        back = zones.flow_back_end(lat, anchors, steps=160, solver="dpm3_logsnr")
        return (zones.nearest(back, anchors) == own).double().mean().item()

    accurate = home(zones.latents(anchors, noise, steps=160, solver="dpm3_logsnr"))
    time_grid = home(zones.latents(anchors, noise, steps=20, solver="dpm3"))
    logsnr = home(zones.latents(anchors, noise, steps=20, solver="dpm3_logsnr"))
    assert accurate > 0.99
    assert time_grid < 0.2 and logsnr > 0.9, (time_grid, logsnr)  # 0.03 and 0.97


def test_reverse_solver_is_checked():
    a = torch.randn(4, 2)
    with pytest.raises(ValueError, match="solver must be one of"):
        zones.flow_back_end(a, a, solver="heun")
    with pytest.raises(ValueError, match="eps must lie in"):
        zones.flow_back_end(a, a, solver="dpm3_logsnr", eps=0.6)
