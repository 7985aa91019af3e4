"""Deterministic data order, a pure function of (step, seed, rank) (method.md §9.6).

Epoch e uses ``perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed + e))``, cut
(drop_last) to ``I * G`` items, with ``G`` the global batch and ``I = N // G`` iterations per epoch.
Step s of the epoch has the global batch ``perm[s*G : (s+1)*G]``.

Strided slice: with ``W`` ranks, rank r takes every W-th item of the global batch starting at r,
``perm[s*G + r : (s+1)*G : W]`` (G / W items). Over the whole epoch that is ``perm[:I*G][r::W]`` cut
into consecutive local batches, exactly what torch's DistributedSampler hands each rank. The
rank-major concatenation of the W local batches of a step is a reordering of that step's global batch
(the same items for any W; the same order too when W = 1), so a run's batches do not depend on the
number of workers as sets.

Everything is recomputed from the arguments (one ``randperm`` of N per call, about 20 ms on one CPU
core for N = 1.3 M), so a resumed run continues exactly where it stopped given only its global step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(num_items: int, global_batch: int, rank: int, world_size: int) -> None:
    if global_batch < 1 or world_size < 1 or global_batch % world_size:
        raise ValueError(f"global_batch ({global_batch}) must be a positive multiple of world_size ({world_size})")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    if num_items < global_batch:
        raise ValueError(f"{num_items} items cannot fill one global batch of {global_batch} (drop_last)")


def iterations_per_epoch(num_items: int, global_batch: int) -> int:
    """Optimizer steps per epoch: floor(num_items / global_batch)."""
    _check(num_items, global_batch, 0, 1)
    return num_items // global_batch


def epoch_indices(num_items: int, global_batch: int, epoch: int, seed: int = 0, rank: int = 0,
                  world_size: int = 1) -> Tensor:
    """This rank's item indices for ``epoch``, int64 (I * G / W,): its local batches one after another.

    Local batch s is ``result[s * G/W : (s+1) * G/W]``, equal to ``batch_at(epoch * I + s, ...)``.
    """
    _check(num_items, global_batch, rank, world_size)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    iters = num_items // global_batch
    perm = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed + epoch))
    steps = perm[: iters * global_batch].view(iters, global_batch)  # (I*G,) -> (I, G): one row per step
    return steps[:, rank::world_size].reshape(-1)  # (I, G/W) -> (I*G/W,)


def batch_at(step: int, num_items: int, global_batch: int, seed: int = 0, rank: int = 0,
             world_size: int = 1) -> Tensor:
    """This rank's local batch for global optimizer step ``step`` (counted from 0 across epochs),
    int64 (G / W,): epoch ``step // I``, step ``step % I`` within it."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    iters = iterations_per_epoch(num_items, global_batch)
    epoch, s = divmod(step, iters)
    local = global_batch // world_size
    return epoch_indices(num_items, global_batch, epoch, seed, rank, world_size)[s * local:(s + 1) * local]
