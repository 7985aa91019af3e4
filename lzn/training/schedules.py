"""Schedules as pure functions of a step count (method.md §9): easy to plot, test and resume.

Nothing here holds state; the trainer stores only the counters these functions are evaluated at.
"""

from __future__ import annotations

import hashlib


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
