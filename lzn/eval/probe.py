"""Representation quality: k-nearest-neighbour and linear-probe accuracy on frozen features (method.md §8.3)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lzn.data import ImageDataset, ShardedDataset, iter_batches

ImageSource = ImageDataset | ShardedDataset


@torch.no_grad()
def extract_features(fn: Callable[[Tensor], Tensor], images: Tensor | ImageSource, batch_size: int = 512,
                     device: torch.device | str | None = None) -> Tensor:
    """``fn`` over ``images`` in chunks, on ``device``; returns CPU float32 features (N, D). ``images``: a
    tensor (N, C, H, W), or a data set read ``batch_size`` images at a time (a sharded set streams)."""
    if isinstance(images, Tensor):
        dev = torch.device(device) if device is not None else images.device
        return torch.cat([fn(chunk.to(dev)).float().cpu() for chunk in images.split(batch_size)])
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return torch.cat([fn(x.to(dev)).float().cpu() for x, _ in iter_batches(images, batch_size)])


def _check(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor) -> None:
    if train_f.dim() != 2 or test_f.dim() != 2 or train_f.shape[1] != test_f.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {tuple(train_f.shape)} and {tuple(test_f.shape)}")
    if train_y.shape != (train_f.shape[0],) or test_y.shape != (test_f.shape[0],):
        raise ValueError("labels must be (N,) matching the features")


@torch.no_grad()
def knn_accuracy(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor, k: int = 20,
                 temperature: float = 0.07) -> float:
    """Cosine-similarity kNN with exp(sim / T) weighted votes (the usual SSL monitor)."""
    _check(train_f, train_y, test_f, test_y)
    k = min(k, train_f.shape[0])
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    a, b = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    sim, idx = (b @ a.t()).topk(k, dim=1)  # (M, N) -> (M, k)
    votes = torch.zeros(test_f.shape[0], num_classes)
    votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
    return float((votes.argmax(1) == test_y).float().mean())


def linear_probe_accuracy(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor, epochs: int = 200,
                          lr: float = 1e-2, seed: int = 0) -> float:
    """Linear classifier (with bias) on standardised frozen features, full-batch Adam, cross-entropy."""
    _check(train_f, train_y, test_f, test_y)
    mean, std = train_f.mean(0), train_f.std(0).clamp_min(1e-6)
    xa, xb = (train_f - mean) / std, (test_f - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(xa.shape[1], num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen)
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    with torch.enable_grad():  # callers often evaluate under no_grad
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(head(xa), train_y).backward()
            opt.step()
    with torch.no_grad():
        return float((head(xb).argmax(1) == test_y).float().mean())
