"""lzn.data.order against a loop transcription of the data order of method.md §9.6."""

from __future__ import annotations

import pytest
import torch

from lzn.data import batch_at, epoch_indices, iterations_per_epoch


def naive_rank_batches(n: int, g: int, epoch: int, seed: int, rank: int, world: int) -> list[list[int]]:
    """DistributedSampler-style reference: permute, drop the tail, rank takes items rank, rank+W, ...,
    then cuts its share into consecutive local batches of g / world."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    kept = perm[: (n // g) * g]
    mine = [kept[i] for i in range(rank, len(kept), world)]
    local = g // world
    return [mine[i:i + local] for i in range(0, len(mine), local)]


@pytest.mark.parametrize("world", [1, 2, 4])
def test_epoch_indices_match_the_reference_and_tile_global_batches(world):
    n, g, seed, epoch = 37, 8, 5, 3
    iters = iterations_per_epoch(n, g)
    assert iters == 4
    per_rank = [epoch_indices(n, g, epoch, seed, r, world) for r in range(world)]
    single = epoch_indices(n, g, epoch, seed)  # the one-worker order: global batches back to back
    for r, idx in enumerate(per_rank):
        assert idx.dtype == torch.int64 and idx.shape == (iters * g // world,)
        assert idx.view(iters, -1).tolist() == naive_rank_batches(n, g, epoch, seed, r, world)
    for s in range(iters):
        global_batch = single[s * g:(s + 1) * g]
        step = torch.cat([idx.view(iters, -1)[s] for idx in per_rank])  # rank-major concatenation
        assert sorted(step.tolist()) == sorted(global_batch.tolist())  # union over ranks = global batch
        assert len(set(step.tolist())) == g
    assert len(set(torch.cat(per_rank).tolist())) == iters * g  # no item twice in an epoch


def test_epochs_differ_and_seed_plus_epoch_is_the_key():
    a, b = epoch_indices(50, 10, 0), epoch_indices(50, 10, 1)
    assert not torch.equal(a, b)
    assert torch.equal(epoch_indices(50, 10, 1, seed=0), epoch_indices(50, 10, 0, seed=1))
    assert torch.equal(epoch_indices(50, 10, 2), epoch_indices(50, 10, 2))


def test_batch_at_walks_epochs_and_resumes_exactly():
    n, g, world = 23, 6, 3
    iters = iterations_per_epoch(n, g)
    for rank in range(world):
        walked = torch.cat([epoch_indices(n, g, e, 7, rank, world) for e in range(3)])  # (3 * I * g / W,)
        steps = torch.cat([batch_at(s, n, g, 7, rank, world) for s in range(3 * iters)])
        assert torch.equal(walked, steps)
    resumed = batch_at(2 * iters + 1, n, g, seed=7)  # a run restarted at global step 2I + 1
    assert torch.equal(resumed, epoch_indices(n, g, 2, 7)[g:2 * g])


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_items=10, global_batch=6, epoch=0, world_size=4), "multiple of world_size"),
    (dict(num_items=10, global_batch=4, epoch=0, rank=2, world_size=2), "rank"),
    (dict(num_items=3, global_batch=4, epoch=0), "cannot fill"),
    (dict(num_items=10, global_batch=4, epoch=-1), "epoch"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        epoch_indices(**kwargs)
    with pytest.raises(ValueError, match="step"):
        batch_at(-1, 10, 2)
