"""Batches by global step, from memory or from shards, optionally decoded in DataLoader worker processes.

:class:`BatchLoader` is the one place a training run gets its batches: ``loader(step)`` is this rank's
local batch of global step ``step``, the indices given by :func:`lzn.data.order.batch_at` (a pure function
of (seed, step, rank), method.md §9.6), the images from an :class:`~lzn.data.ImageDataset` (in memory) or a
:class:`~lzn.data.shards.ShardedDataset` (read and decoded per batch). With ``workers > 0`` the batches of
the next steps are prepared ahead by torch DataLoader worker processes, worker ``w`` of ``W`` taking steps
``start + w``, ``start + w + W``, ...; the DataLoader hands them back in step order, so the batches are those
of ``workers=0``. Asking for a step other than the next one (a resume) restarts the workers there.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lzn.data.dataset import ImageDataset
from lzn.data.order import batch_at
from lzn.data.shards import ShardedDataset

Batch = tuple[Tensor, Tensor | None]


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _fixed_mmap_threshold(worker_id: int) -> None:
    """Worker start-up (and the training process of a loader that streams shards, ``worker_id`` -1): fix
    glibc's mmap threshold at 256 KiB. By default glibc raises the threshold
    after large blocks are freed, after which a worker's batch buffers (MBs each, freed every step) come
    from its heap and fragment it: its memory then grows by 100-200 MiB over the first few hundred steps
    (measured with benchmarks/stream.py) before it levels off. With the threshold fixed they are mapped
    and unmapped per batch, and a worker stays at its start-up size. Elsewhere than glibc: nothing to do."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc's, where it is the C library
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 256 * 1024)


class _Steps(IterableDataset):  # type: ignore[type-arg]
    """The batches of steps start, start + 1, ...; in a worker only the steps that are its turn."""

    def __init__(self, loader: BatchLoader, start: int) -> None:
        self.loader, self.start = loader, start

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        step, stride = (self.start, 1) if info is None else (self.start + info.id, info.num_workers)
        while True:
            yield self.loader.read(step)
            step += stride


class BatchLoader:
    """``loader(step) -> (images (B, C, H, W), labels (B,) or None)`` on the CPU, B = global_batch / world_size.

    ``workers``: DataLoader worker processes decoding ahead (0: in this process, on demand); ``prefetch``:
    batches each worker keeps ready. Memory beyond the data set object: (workers * prefetch + 1) batches.
    ``balanced``: class-balanced global batches (:mod:`lzn.data.order`; the data set's labels).
    """

    def __init__(self, data: ImageDataset | ShardedDataset, global_batch: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, workers: int = 0, prefetch: int = 2, pin_memory: bool = False,
                 balanced: bool = False) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (DataLoader worker processes), got {workers}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1 (batches ready per worker), got {prefetch}")
        if balanced and data.labels is None:
            raise ValueError("class-balanced batches (data.balanced: true) need labelled training data; this data "
                             "set has no labels: set data.balanced to false")
        self.labels = data.labels if balanced else None
        batch_at(0, len(data), global_batch, seed, rank, world_size, self.labels)  # the order's checks, up front
        self.data, self.global_batch, self.seed = data, global_batch, seed
        self.rank, self.world_size, self.workers, self.prefetch = rank, world_size, workers, prefetch
        self.pin_memory = pin_memory
        if isinstance(data, ShardedDataset):  # streamed batches are freed every step here too (README, stream.py)
            _fixed_mmap_threshold(-1)
        self._it: Iterator[Batch] | None = None
        self._next = -1

    def indices(self, step: int) -> Tensor:
        """This rank's sample indices (B,) for global step ``step``."""
        return batch_at(step, len(self.data), self.global_batch, self.seed, self.rank, self.world_size, self.labels)

    def read(self, step: int) -> Batch:
        """The batch of ``step`` read in this process."""
        return self.data.batch(self.indices(step))

    def __call__(self, step: int) -> Batch:
        if self.workers == 0:
            return self.read(step)
        if self._it is None or step != self._next:
            self.close()
            # a generator of its own: starting workers draws their base seed from it, never from the global
            # random state, which the trainer seeds per step for the step's own draws (augmentations, noise)
            seeds = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            self._it = iter(DataLoader(_Steps(self, step), batch_size=None, num_workers=self.workers,
                                       prefetch_factor=self.prefetch, pin_memory=self.pin_memory, generator=seeds,
                                       worker_init_fn=_fixed_mmap_threshold))
        self._next = step + 1
        return next(self._it)

    def close(self) -> None:
        """Stop the worker processes (they are started again on the next call)."""
        self._it = None  # the DataLoader's iterator stops its workers when it is freed

    def __getstate__(self) -> dict[str, object]:  # what a worker process receives: no iterator of its own
        return {**self.__dict__, "_it": None}
