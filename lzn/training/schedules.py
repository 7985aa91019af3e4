"""Schedules as pure functions of a step count (method.md §9): easy to plot, test and resume.

Nothing here holds state; the trainer stores only the counters these functions are evaluated at.
"""

from __future__ import annotations

import hashlib
import math

LR_DECAYS = ("cosine", "linear")  # the values of TrainConfig.lr_decay besides null (constant after warm-up)


def warmup_factor(opt_steps: int, warmup_steps: int = 5000, start: float = 1 / 5000) -> float:
    """LR multiplier for the optimizer step that follows ``opt_steps`` successful ones (method.md §9.1).

    Linear from ``start`` (the first step) to 1 (step number ``warmup_steps``, i.e. after
    ``warmup_steps - 1`` successful steps), then constant. With the defaults this is
    ``min(1, (opt_steps + 1) / 5000)``: 1/5000 x LR on the first step, the full LR from the 5000th.
    """
    if opt_steps < 0:
        raise ValueError(f"opt_steps must be >= 0, got {opt_steps}")
    if not 0.0 < start <= 1.0:
        raise ValueError(f"warm-up start factor must be in (0, 1], got {start}")
    if warmup_steps <= 1 or opt_steps >= warmup_steps - 1:
        return 1.0
    return start + (1.0 - start) * opt_steps / (warmup_steps - 1)


def decay_factor(step: int, budget: int, warmup_steps: int, kind: str | None) -> float:
    """LR multiplier of iteration ``step`` (0-based) of a module trained on iterations 0..budget-1.

    ``None``: 1 (the paper's constant LR after warm-up, method.md §9.1). ``"cosine"`` (a half cosine) and
    ``"linear"`` fall from 1 at iteration ``warmup_steps - 1``, the first at full LR, towards 0 at
    iteration ``budget`` (the last trained iteration keeps a small positive factor). A budget no longer
    than the warm-up leaves no room to decay: 1. Multiplies :func:`warmup_factor`.
    """
    if step < 0 or budget < 0:
        raise ValueError(f"step and budget must be >= 0, got {step} and {budget}")
    if kind is None:
        return 1.0
    if kind not in LR_DECAYS:
        raise ValueError(f"lr decay must be null or one of {LR_DECAYS}, got {kind!r}")
    start = max(warmup_steps - 1, 0)
    if budget <= start + 1:
        return 1.0
    progress = min(max((step - start) / (budget - start), 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress


def ema_decay(num_updates: int, decay: float) -> float:
    """EMA decay for the update that follows ``num_updates`` earlier ones: min(d, (1 + k)/(10 + k)).

    method.md §9.3: the warm-up term dominates nominal decays close to 1 for the whole run
    (k = 0 gives 0.1, so the first update moves the shadow 90% of the way to the weights).
    """
    if num_updates < 0:
        raise ValueError(f"num_updates must be >= 0, got {num_updates}")
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


def step_seed(seed: int, rank: int, step: int) -> int:
    """A 63-bit seed for iteration ``step`` on process ``rank``, decorrelated from its neighbours.

    The trainer reseeds every global RNG from this at the start of each iteration, so the randomness
    of an iteration depends only on (seed, rank, step): a resumed run replays the uninterrupted one
    exactly, on every rank, whatever hooks or evaluations consumed random numbers in between.
    """
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
