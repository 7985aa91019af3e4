"""lzn.eval.partition_accuracy: the batch protocol's accuracy over random partitions of the images (method.md
§8.2), against a naive loop over the seeded permutations; the sweep's rows and printed table."""

from __future__ import annotations

import statistics

import pytest
import torch

from lzn import FlowConfig
from lzn.eval import accuracy, accuracy_sweep, metric_rows, partition_accuracy
from tests.models.tiny import tiny_model


def _data(n: int = 60):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.arange(n) % 3


def test_matches_a_naive_loop_over_seeded_permutations():
    model = tiny_model(FlowConfig(steps=4, label_steps=8))
    images, labels = _data()
    got = partition_accuracy(model, images, labels, noise_scale=1.0, batch_size=25, partitions=3, seed=4)
    values = []
    for k in range(3):
        order = torch.randperm(60, generator=torch.Generator().manual_seed(5 + k))
        values.append(accuracy(model, images[order], labels[order], noise_scale=1.0, batch_size=25, context="batch",
                               seed=5 + k))
    assert got == {"mean": pytest.approx(statistics.fmean(values)), "sd": pytest.approx(statistics.stdev(values)),
                   "partitions": 3}
    one = partition_accuracy(model, images, labels, batch_size=25, partitions=1)
    assert one["sd"] == 0.0 and 0.0 <= one["mean"] <= 1.0
    # one set holding every image: the partition only reorders it, the figure cannot move
    whole = partition_accuracy(model, images, labels, noise_scale=0.0, batch_size=60, partitions=3)
    assert whole["sd"] == pytest.approx(0.0, abs=1e-12)
    assert whole["mean"] == pytest.approx(accuracy(model, images, labels, noise_scale=0.0, batch_size=60))


def test_bad_arguments():
    model = tiny_model(FlowConfig(steps=4, label_steps=8))
    images, labels = _data()
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="partitions must be an int >= 1"):
            partition_accuracy(model, images, labels, partitions=bad)
    with pytest.raises(ValueError, match=r"labels must have shape \(60,\)"):
        partition_accuracy(model, images, labels[:5])


def test_sweep_rows_and_table():
    model = tiny_model(FlowConfig(steps=4, label_steps=8))
    images, labels = _data()
    rows = accuracy_sweep(model, images, labels, alphas=(0.0,), batch_sizes=(25, 60), partitions=2)
    by_size = {r["batch_size"]: r for r in rows}
    assert by_size[25]["partitions"]["partitions"] == 2 and "partitions" not in by_size[60]  # 60 fill one set
    assert all("partitions" not in r for r in accuracy_sweep(model, images, labels, alphas=(0.0,), batch_sizes=(25,)))
    table = metric_rows({"evaluated_on": "test", "classification": {"split": "test", "num_images": 60, "sweep": rows}})
    p = by_size[25]["partitions"]
    assert any(f"{p['mean']:.4f} +- {p['sd']:.4f} over 2 random partitions" in detail for _, _, detail in table)
