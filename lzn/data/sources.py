"""The one table of data sources: each by name (``data.name``, ``--data``, ``lzn data shard --kind``), with
its loader and how it gives one split. ``load_split`` (:mod:`lzn.data.config`), the shard writer
(:mod:`lzn.data.shard_writer`) and the CLI take their names from here; nothing else dispatches on them.

* ``digits``: scikit-learn's bundled handwritten digits (no file needed), 1 797 images 8x8, 10 classes.
* ``fashion``: Fashion-MNIST IDX files (:mod:`lzn.data.fashion`).
* ``cifar10``: the CIFAR-10 python-pickle folder (:mod:`lzn.data.cifar`).
* ``folder``: root/class_name/*.png|jpg (:mod:`lzn.data.folder`).
* ``arrays``: a .npz or .npy of images you prepared (:func:`lzn.data.datasets.load_arrays`).
* ``shards``: one split written by ``lzn data shard``, read from disk batch by batch
  (:class:`lzn.data.shards.ShardedDataset`, not in memory).
* ``captions``: images with a caption each (:mod:`lzn.data.captions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lzn.data.captions import load_caption_dataset
from lzn.data.cifar import load_cifar10
from lzn.data.dataset import ImageDataset
from lzn.data.datasets import load_arrays, load_digits
from lzn.data.fashion import load_fashion_mnist
from lzn.data.folder import load_image_folder
from lzn.data.shards import ShardedDataset

SplitReader = Callable[[str | Path | None, str, int | None], ImageDataset]  # (root, split, size) -> the split


@dataclass(frozen=True)
class Source:
    """``load``: the loader ``load_dataset(name, **kwargs)`` calls; ``fixed_split``: for a data set that
    ships its own test split, (root, split, size) -> that split; ``shardable``: ``lzn data shard`` reads it
    (with ``fixed_split``, or as one split with ``load``)."""

    name: str
    load: Callable[..., ImageDataset | ShardedDataset]
    fixed_split: SplitReader | None = None
    shardable: bool = False


def _digits(root: str | Path | None, split: str, size: int | None) -> ImageDataset:
    return load_digits(size=size, split=split)


def _fashion(root: str | Path | None, split: str, size: int | None) -> ImageDataset:
    return load_fashion_mnist(split=split) if root is None else load_fashion_mnist(root, split=split)


def _cifar10(root: str | Path | None, split: str, size: int | None) -> ImageDataset:
    if root is None:
        raise ValueError("data.name=cifar10 needs data.root (the cifar-10-batches-py folder or its parent)")
    return load_cifar10(root, split=split)


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("digits", load_digits, _digits, shardable=True),
    Source("fashion", load_fashion_mnist, _fashion, shardable=True),
    Source("cifar10", load_cifar10, _cifar10, shardable=True),
    Source("folder", load_image_folder, shardable=True),
    Source("arrays", load_arrays, shardable=True),
    Source("shards", ShardedDataset),
    Source("captions", load_caption_dataset),
)}

LOADERS: dict[str, Callable[..., ImageDataset | ShardedDataset]] = {name: s.load for name, s in SOURCES.items()}
FIXED_SPLITS = tuple(name for name, s in SOURCES.items() if s.fixed_split is not None)  # ship their own test split
SHARD_KINDS = tuple(name for name, s in SOURCES.items() if s.shardable)  # what `lzn data shard --kind` reads


def load_dataset(name: str, **kwargs: Any) -> ImageDataset | ShardedDataset:
    """``LOADERS[name](**kwargs)``, e.g. ``load_dataset("cifar10", root="data/cifar-10-batches-py")``."""
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[name](**kwargs)
