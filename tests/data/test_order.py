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


def naive_balanced_epoch(labels: list[int], g: int, epoch: int, seed: int) -> list[int]:
    """Loop transcription of the class-balanced order: the seeded permutation, then item j of class c (of
    n_c, in permutation order) keyed (j + u_c) / n_c with u_c drawn after the permutation, sorted, tail dropped."""
    gen = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(len(labels), generator=gen).tolist()
    classes = max(labels) + 1
    phase = torch.rand(classes, generator=gen, dtype=torch.float64).tolist()
    n = [labels.count(c) for c in range(classes)]
    seen = [0] * classes
    keyed = []
    for i in perm:
        c = labels[i]
        keyed.append(((seen[c] + phase[c]) / n[c], len(keyed), i))
        seen[c] += 1
    order = [i for _, _, i in sorted(keyed)]
    return order[: (len(labels) // g) * g]


@pytest.mark.parametrize("weights", [[1.0] * 10, [5.0, 1.0, 1.0, 3.0]])
def test_balanced_batches_match_the_reference_and_hold_each_class_in_proportion(weights):
    gen = torch.Generator().manual_seed(0)
    labels = torch.multinomial(torch.tensor(weights), 1003, replacement=True, generator=gen)  # (N,) int64
    n, g, world, classes = labels.numel(), 64, 2, len(weights)
    share = torch.bincount(labels, minlength=classes).double() / n  # n_c / N
    for epoch in range(3):
        single = epoch_indices(n, g, epoch, seed=4, labels=labels)
        assert single.tolist() == naive_balanced_epoch(labels.tolist(), g, epoch, 4)
        assert len(set(single.tolist())) == single.numel() == (n // g) * g  # no item twice in an epoch
        per_rank = [epoch_indices(n, g, epoch, 4, r, world, labels).view(n // g, -1) for r in range(world)]
        for s, batch in enumerate(single.view(n // g, g)):
            assert sorted(torch.cat([idx[s] for idx in per_rank]).tolist()) == sorted(batch.tolist())
            counts = torch.bincount(labels[batch], minlength=classes).double()
            assert ((counts - g * share).abs() <= 1 + classes * share + 1e-9).all(), (epoch, s, counts)
    if weights == [1.0] * 10:  # equally frequent classes: within two items, where random batches stray further
        spread = lambda idx: (torch.stack([torch.bincount(labels[b], minlength=10) for b in idx.view(-1, g)])  # noqa: E731
                              .double() - g / 10).abs().max()
        assert spread(epoch_indices(n, g, 0, 4, labels=labels)) <= 2.6
        assert spread(epoch_indices(n, g, 0, 4)) > 4


def test_balanced_batches_resume_exactly_and_reject_bad_labels():
    labels = torch.arange(40) % 3
    walked = torch.cat([epoch_indices(40, 8, e, 2, labels=labels) for e in range(2)])
    assert torch.equal(walked, torch.cat([batch_at(s, 40, 8, 2, labels=labels) for s in range(10)]))
    with pytest.raises(ValueError, match="shape \\(40,\\)"):
        epoch_indices(40, 8, 0, labels=labels[:39])
    with pytest.raises(ValueError, match="int64"):
        epoch_indices(40, 8, 0, labels=labels.float())
    with pytest.raises(ValueError, match=">= 0"):
        epoch_indices(40, 8, 0, labels=labels - 1)
