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

Class-balanced batches (``labels`` given, ``data.balanced``): the same seeded permutation orders each
class's items; item j of class c (of n_c) gets the key (j + u_c) / n_c, u_c a seeded uniform phase per class,
and the epoch is the items sorted by key. Each class is then spread evenly over the epoch, so every global
batch holds each class in proportion to the data set, within 1 + C * n_c / N items (two when the C classes
are equally frequent), and every item still comes once an epoch (method.md §9.6). The same order composes
class-balanced test sets in ``experiments/zone_capacity.py``.

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


def _check_labels(labels: Tensor, num_items: int) -> None:
    if labels.shape != (num_items,) or labels.dtype != torch.int64:
        raise ValueError(f"labels for class-balanced batches must be int64 of shape ({num_items},), got "
                         f"{labels.dtype} of shape {tuple(labels.shape)}")
    if num_items and int(labels.min()) < 0:
        raise ValueError(f"labels for class-balanced batches must be class indices >= 0, got {int(labels.min())}")


def _balanced(perm: Tensor, labels: Tensor, gen: torch.Generator) -> Tensor:
    """``perm`` reordered so that each class is spread evenly: sorted by (j + u_c) / n_c (module docstring)."""
    y = labels[perm]  # (N,) class of each item in permutation order
    counts = torch.bincount(y)  # (C,)
    phase = torch.rand(counts.numel(), generator=gen, dtype=torch.float64)  # (C,) u_c
    by_class = torch.argsort(y, stable=True)  # positions grouped by class, permutation order kept
    starts = torch.cumsum(counts, 0) - counts  # (C,) first position of each class in by_class
    j = torch.empty_like(y)
    j[by_class] = torch.arange(y.numel()) - starts[y[by_class]]  # rank of each item within its class
    key = (j.double() + phase[y]) / counts[y].double()  # (N,) in [0, 1)
    return perm[torch.argsort(key, stable=True)]


def epoch_indices(num_items: int, global_batch: int, epoch: int, seed: int = 0, rank: int = 0,
                  world_size: int = 1, labels: Tensor | None = None) -> Tensor:
    """This rank's item indices for ``epoch``, int64 (I * G / W,): its local batches one after another.

    Local batch s is ``result[s * G/W : (s+1) * G/W]``, equal to ``batch_at(epoch * I + s, ...)``.
    ``labels`` (int64 (N,)): class-balanced global batches (module docstring).
    """
    _check(num_items, global_batch, rank, world_size)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    iters = num_items // global_batch
    gen = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(num_items, generator=gen)
    if labels is not None:
        _check_labels(labels, num_items)
        perm = _balanced(perm, labels, gen)
    steps = perm[: iters * global_batch].view(iters, global_batch)  # (I*G,) -> (I, G): one row per step
    return steps[:, rank::world_size].reshape(-1)  # (I, G/W) -> (I*G/W,)


def batch_at(step: int, num_items: int, global_batch: int, seed: int = 0, rank: int = 0,
             world_size: int = 1, labels: Tensor | None = None) -> Tensor:
    """This rank's local batch for global optimizer step ``step`` (counted from 0 across epochs),
    int64 (G / W,): epoch ``step // I``, step ``step % I`` within it."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    iters = iterations_per_epoch(num_items, global_batch)
    epoch, s = divmod(step, iters)
    local = global_batch // world_size
    return epoch_indices(num_items, global_batch, epoch, seed, rank, world_size, labels)[s * local:(s + 1) * local]
