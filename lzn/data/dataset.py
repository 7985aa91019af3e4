"""In-memory image data set (method.md §9.6: pixels scaled to [-1, 1]) and the pixel conversions loaders share.

Every loader in :mod:`lzn.data.datasets` returns an :class:`ImageDataset`: the whole split as one float32
tensor ``images`` (N, C, H, W) in [-1, 1] and int64 ``labels`` (N,) or ``None`` when unlabelled (and, for user
(image, caption) pairs, one caption per image in ``captions``). The data
sets this library trains on at CPU scale (digits, Fashion-MNIST, CIFAR-10) fit in memory many times over;
batches are gathered with :meth:`ImageDataset.batch` from indices given by :mod:`lzn.data.order`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F


class DataNotFoundError(FileNotFoundError, ValueError):
    """A data folder or file is missing or empty; catchable as FileNotFoundError or ValueError."""


def uint8_to_signed(pixels: np.ndarray | Tensor) -> Tensor:
    """Map uint8 pixels 0..255 to float32 in [-1, 1] (0 -> -1, 255 -> 1); shape unchanged."""
    if isinstance(pixels, np.ndarray):
        x = torch.from_numpy(pixels if pixels.flags.writeable else pixels.copy())
    else:
        x = pixels
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 pixels 0..255, got dtype {x.dtype}")
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def hwc_to_signed(pixels: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1] with the standard strides of a new tensor, also
    for C = 1 (a permuted view's would differ there, and convolutions may round differently on it)."""
    n, h, w, c = pixels.shape
    chw = torch.empty((n, c, h, w), dtype=torch.uint8).copy_(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    return uint8_to_signed(chw)


def resize_square(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of (N, C, H, W) images to (N, C, size, size), anti-aliased when shrinking.

    Values stay in the convex hull of the input pixels, hence in [-1, 1] for signed images.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if tuple(images.shape[-2:]) == (size, size):
        return images
    shrink = size < min(images.shape[-2], images.shape[-1])
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(-1.0, 1.0)


@dataclass(frozen=True, eq=False)  # eq on tensors would be ambiguous: compare fields explicitly
class ImageDataset:
    """A labelled or unlabelled image set held in memory.

    images: float32 (N, C, H, W) in [-1, 1].
    labels: int64 (N,) in [0, num_classes), or None for an unlabelled set (then num_classes = 0).
    class_names: optional names of the classes, index = label.
    captions: optional caption of each image, index = image (user (image, caption) pairs); a list is
    stored as a tuple.
    """

    images: Tensor
    labels: Tensor | None
    num_classes: int
    name: str
    class_names: tuple[str, ...] | None = None
    captions: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if not isinstance(x, Tensor) or x.dim() != 4 or x.dtype != torch.float32:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: images must be a float32 (N, C, H, W) tensor, got {shape}")
        if self.captions is not None:
            if isinstance(self.captions, str) or not all(isinstance(c, str) for c in self.captions):
                raise ValueError(f"{self.name}: captions must be a sequence of strings, one per image")
            object.__setattr__(self, "captions", tuple(self.captions))  # frozen: a list becomes a tuple
            if len(self.captions) != x.shape[0]:
                raise ValueError(f"{self.name}: {len(self.captions)} captions for {x.shape[0]} images; "
                                 "give exactly one caption per image")
        if y is None:
            if self.num_classes != 0:
                raise ValueError(f"{self.name}: an unlabelled set has num_classes = 0, got {self.num_classes}")
            return
        if y.dim() != 1 or y.dtype != torch.int64 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{self.name}: labels must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}"
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"{self.name}: labels must lie in [0, {self.num_classes}), got "
                             f"[{int(y.min())}, {int(y.max())}]")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """One item: image (C, H, W) and its label (-1 when the set is unlabelled)."""
        label = -1 if self.labels is None else int(self.labels[index])
        return self.images[index], label

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor | None]:
        """Images (B, C, H, W) and labels (B,) (or None) at ``indices`` (B,), e.g. from ``batch_at``; the
        captions of the same items are :meth:`captions_at` ``(indices)``."""
        idx = indices.to(device=self.images.device, dtype=torch.long)
        return self.images[idx], None if self.labels is None else self.labels[idx]

    def captions_at(self, indices: Tensor | list[int]) -> list[str]:
        """The captions (B,) of the items at ``indices`` (B,), in that order."""
        if self.captions is None:
            raise ValueError(f"{self.name}: this data set has no captions (data.name=captions gives them)")
        return [self.captions[i] for i in torch.as_tensor(indices, dtype=torch.long).tolist()]

    def subset(self, indices: Tensor | list[int], name: str | None = None) -> ImageDataset:
        """The items at ``indices`` (K,), in that order, as a new data set (tensors are copied)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return ImageDataset(
            images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            num_classes=self.num_classes,
            name=self.name if name is None else name,
            class_names=self.class_names,
            captions=None if self.captions is None else tuple(self.captions[i] for i in idx.tolist()),
        )

    def train_test_split(self, test_fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Deterministic split: a permutation from ``torch.Generator().manual_seed(seed)``; its first
        ``round(test_fraction * N)`` items form the test set, the rest the training set (both keep the
        permutation order)."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_test = int(round(test_fraction * len(self)))
        return self.subset(perm[n_test:], f"{self.name}-train"), self.subset(perm[:n_test], f"{self.name}-test")

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same set with its tensors on ``device``."""
        return ImageDataset(
            images=self.images.to(device),
            labels=None if self.labels is None else self.labels.to(device),
            num_classes=self.num_classes,
            name=self.name,
            class_names=self.class_names,
            captions=self.captions,
        )


def index_ranges(values: Sequence[int], limit: int = 6) -> str:
    """Sorted integers compressed to ranges: [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8" (at most ``limit`` parts)."""
    parts: list[str] = []
    vals = sorted(set(values))
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (f", ... ({more} more ranges)" if more > 0 else "")
