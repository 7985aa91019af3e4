"""Warm-up factor, LR decay, EMA decay rule and per-step seeds as pure functions (method.md §9.1, §9.3, §9.6)."""

from __future__ import annotations

import math

import pytest

from lzn.training import decay_factor, ema_decay, step_seed, warmup_factor


def test_warmup_default_is_linear_from_one_5000th():
    assert warmup_factor(0) == pytest.approx(1 / 5000)
    assert warmup_factor(1) == pytest.approx(2 / 5000)
    assert warmup_factor(2499) == pytest.approx(2500 / 5000)
    assert warmup_factor(4999) == 1.0 and warmup_factor(5000) == 1.0 and warmup_factor(10**7) == 1.0
    for k in range(0, 5000, 37):
        assert warmup_factor(k) == pytest.approx(min(1.0, (k + 1) / 5000), rel=1e-12)


def test_warmup_custom_and_degenerate():
    assert [warmup_factor(k, 5, 0.2) for k in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert [warmup_factor(k, 3, 0.5) for k in range(3)] == pytest.approx([0.5, 0.75, 1.0])
    assert warmup_factor(0, 0) == 1.0 and warmup_factor(0, 1) == 1.0
    factors = [warmup_factor(k, 100, 0.01) for k in range(120)]
    assert all(a <= b for a, b in zip(factors, factors[1:]))
    with pytest.raises(ValueError):
        warmup_factor(-1)
    with pytest.raises(ValueError):
        warmup_factor(0, 10, 0.0)


def test_lr_decay_closed_forms():
    # warm-up of 5 steps: the full LR is first reached at iteration 4; the decay runs over iterations 4..13
    assert [decay_factor(k, 14, 5, None) for k in (0, 7, 13, 100)] == [1.0] * 4
    assert [decay_factor(k, 14, 5, "cosine") for k in range(5)] == [1.0] * 5
    assert decay_factor(9, 14, 5, "cosine") == pytest.approx(0.5)  # half-way: 5 of 10 iterations
    assert decay_factor(9, 14, 5, "linear") == pytest.approx(0.5)
    assert decay_factor(13, 14, 5, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    assert decay_factor(13, 14, 5, "linear") == pytest.approx(0.1)
    assert decay_factor(14, 14, 5, "cosine") == pytest.approx(0.0, abs=1e-15)  # a frozen module's next step
    cosine = [decay_factor(k, 1000, 0, "cosine") for k in range(1000)]
    assert cosine[0] == 1.0 and all(a > b > 0 for a, b in zip(cosine, cosine[1:]))
    assert sum(cosine) / 1000 == pytest.approx(0.5, abs=1e-3)  # a half cosine averages 1/2
    # no room to decay: a budget within the warm-up keeps the factor at 1
    assert [decay_factor(k, 4, 5, "cosine") for k in range(4)] == [1.0] * 4
    with pytest.raises(ValueError, match="cosine"):
        decay_factor(0, 10, 0, "cosin")
    with pytest.raises(ValueError):
        decay_factor(-1, 10, 0, "linear")


def test_ema_decay_rule():
    assert ema_decay(0, 0.999999) == pytest.approx(0.1)
    assert ema_decay(1, 0.999999) == pytest.approx(2 / 11)
    assert ema_decay(50_000, 0.999999) == pytest.approx(50_001 / 50_010)  # ~0.99982, method.md §9.3
    assert ema_decay(50_000, 0.999999) == pytest.approx(0.99982, abs=1e-5)
    assert ema_decay(10**6, 0.9999) == 0.9999  # the nominal value takes over after ~90k updates
    assert ema_decay(89_000, 0.9999) < 0.9999 < ema_decay(91_000, 1.0)
    assert ema_decay(3, 0.2) == 0.2


def test_step_seeds_differ_by_rank_and_step_and_are_stable():
    seeds = {step_seed(0, r, s) for r in range(4) for s in range(100)}
    assert len(seeds) == 400
    assert step_seed(7, 1, 42) == step_seed(7, 1, 42) and step_seed(7, 1, 42) != step_seed(8, 1, 42)
    assert all(0 <= s < 2**63 for s in seeds)
