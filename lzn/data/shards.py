"""Image data sets as tar shards, read by random access: data larger than memory (method.md §9.8).

Layout of one split (``DIR/train``, ``DIR/test``), written by :func:`lzn.data.shard_writer.write_shards`
(``lzn data shard``):

* ``shard-000000.tar``, ``shard-000001.tar``, ...: the WebDataset layout, one sample per key, members
  ``KEY.png`` (or the original ``.jpg`` / ``.jpeg`` bytes of an image folder) and ``KEY.cls`` (the
  class index as text, absent for unlabelled sets); KEY is the sample's index in the split, 9 digits.
  Any WebDataset reader can stream these files.
* ``index.json``: format, number of samples, class names and per-class counts, the shards with their
  sample counts, the stored image size (when every image has the same size) and channels.
* ``items.npz``: per sample, its shard, the byte offset and length of its image inside the tar, and its
  label (about 28 bytes a sample: 36 MB for ImageNet's 1.28 M images).

Reading (:class:`ShardedDataset`) seeks to a sample's bytes and decodes them with the image folder's
decoder (:func:`lzn.data.folder.decode_image`), so a batch is any list of indices: the data order stays
the in-memory path's pure function of (seed, step, rank) (:mod:`lzn.data.order`), resume is exact, and
every rank gets the same number of samples per step. Memory holds the per-sample table and the batches
in flight, whatever the data set's size. Samples are stored in the order the in-memory loaders give
(an image folder's fixed shuffle included), so for uint8 sources (image folders, Fashion-MNIST,
CIFAR-10, uint8 arrays) both paths give the same batches, pixel for pixel; float sources (digits, float
arrays) are stored as 8-bit PNG and come back within 1/255. Random access needs a seekable file
system (local disk, NFS, a mounted bucket); the shards themselves are plain sequential tars.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lzn.data.dataset import DataNotFoundError, ImageDataset, hwc_to_signed
from lzn.data.folder import decode_image

FORMAT = "lzn-shards/1"
INDEX_FILE = "index.json"
ITEMS_FILE = "items.npz"


def is_split_folder(path: str | Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()


def read_index(path: str | Path) -> dict[str, Any]:
    """The ``index.json`` of a split folder, checked for its format."""
    path = Path(path)
    if not is_split_folder(path):
        raise DataNotFoundError(f"{path} holds no {INDEX_FILE}: expected a folder written by `lzn data shard "
                                "SOURCE --out DIR` (DIR/train or DIR/test, or DIR with train/ and test/)")
    try:
        index = json.loads((path / INDEX_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path / INDEX_FILE} is not valid JSON ({err}); write the split again") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ValueError(f"{path / INDEX_FILE}: format {found!r}, expected {FORMAT!r}; write the split again")
    return index


def split_problems(path: str | Path) -> list[str]:
    """What is wrong with the files of a split folder (empty when it is whole): a missing or truncated shard
    (shorter than its last sample's bytes), a per-sample table that does not match the index."""
    path = Path(path)
    index = read_index(path)
    try:
        with np.load(path / ITEMS_FILE, allow_pickle=False) as items:
            shard, end = items["shard"], items["offset"] + items["length"]
    except (OSError, KeyError, ValueError) as err:
        return [f"{path / ITEMS_FILE} is missing or unreadable ({' '.join(str(err).split())})"]
    problems = []
    if len(shard) != index["num_samples"]:
        problems.append(f"{ITEMS_FILE} lists {len(shard)} samples, {INDEX_FILE} {index['num_samples']}")
    for i, entry in enumerate(index["shards"]):
        f = path / entry["name"]
        need = int(end[shard == i].max()) if (shard == i).any() else 0
        if not f.is_file():
            problems.append(f"{entry['name']} is missing")
        elif f.stat().st_size < need:
            problems.append(f"{entry['name']} is truncated ({f.stat().st_size} bytes, its samples need {need})")
    return problems


class ShardedDataset:
    """A split written by :func:`~lzn.data.shard_writer.write_shards`, read by random access; the interface of
    :class:`~lzn.data.ImageDataset` minus ``images``: ``len``, ``labels`` (int64 (N,) or None),
    ``num_classes``, ``class_names``, ``name``, ``image_shape``, ``batch(indices)`` and ``subset``.

    ``size``: decode to size x size (shorter side resized, centre crop, as the image folder loader);
    default the stored size, which every image must share. ``channels``: 1 or 3 (default: stored).
    Open tar files are per process (re-opened after a fork), so DataLoader workers can share the object.
    """

    def __init__(self, root: str | Path, size: int | None = None, channels: int | None = None,
                 name: str | None = None, class_names: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.index = index = read_index(self.root)
        with np.load(self.root / ITEMS_FILE, allow_pickle=False) as items:
            self._shard, self._offset = items["shard"], items["offset"]
            self._length, label = items["length"], items["label"]
        if len(self._shard) != index["num_samples"]:
            raise ValueError(f"{self.root}: {ITEMS_FILE} lists {len(self._shard)} samples, {INDEX_FILE} "
                             f"{index['num_samples']}; write the split again")
        stored = index.get("image_size")
        if size is None:
            if stored is None or stored[0] != stored[1]:
                what = "images of different sizes" if stored is None else f"{stored[0]}x{stored[1]} images"
                raise ValueError(f"{self.root} holds {what}: set data.size to resize and centre-crop them")
            size = int(stored[0])
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        self.size, self.channels = size, int(channels if channels is not None else index["channels"])
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        self.name = name or f"{self.root.parent.name}-{self.root.name}"
        own = tuple(index["class_names"]) if index.get("class_names") else None
        self.labels: Tensor | None = torch.from_numpy(label) if index["labelled"] else None
        self.num_classes = int(index["num_classes"]) if index["labelled"] else 0
        self.class_names = own
        if class_names is not None and self.labels is not None and own is not None and tuple(class_names) != own:
            lookup = {n: i for i, n in enumerate(class_names)}
            unknown = [n for n in own if n not in lookup]
            if unknown:
                raise ValueError(f"{self.root}: classes {unknown} are not among the training classes {list(class_names)}")
            self.labels = torch.tensor([lookup[n] for n in own], dtype=torch.int64)[self.labels]
            self.num_classes, self.class_names = len(class_names), tuple(class_names)
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.index["num_samples"])

    def __repr__(self) -> str:
        return (f"ShardedDataset({str(self.root)!r}, {len(self)} images, {len(self.index['shards'])} shards, "
                f"{self.channels}x{self.size}x{self.size}, {self.num_classes} classes)")

    def __getstate__(self) -> dict[str, Any]:  # open files do not travel to worker processes
        return {**self.__dict__, "_files": {}}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.size, self.size

    def _file(self, shard: int) -> Any:
        if os.getpid() != self._pid:  # a forked worker: the parent's file offsets are shared, open anew
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open(self.root / self.index["shards"][shard]["name"], "rb")
        return f

    def read(self, i: int) -> bytes:
        """The stored bytes of sample ``i``."""
        f = self._file(int(self._shard[i]))
        f.seek(int(self._offset[i]))
        data = f.read(int(self._length[i]))
        if len(data) != int(self._length[i]):
            raise ValueError(f"{self.root / self.index['shards'][int(self._shard[i])]['name']} is truncated at sample "
                             f"{i}; write the split again")
        return data

    def image(self, i: int) -> np.ndarray:
        """Sample ``i`` decoded: uint8 (size, size, channels)."""
        shard = self.index["shards"][int(self._shard[i])]["name"]
        return decode_image(io.BytesIO(self.read(i)), self.size, self.channels, f"sample {i} of {self.root / shard}",
                            "write the split again from its source")

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor | None]:
        """Images (B, C, size, size) float32 in [-1, 1] and labels (B,) (or None) at ``indices`` (B,)."""
        idx = indices.to("cpu", torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}), got [{int(idx.min())}, {int(idx.max())}]")
        pixels = np.stack([self.image(i) for i in idx.tolist()]) if idx.numel() else \
            np.zeros((0, self.size, self.size, self.channels), np.uint8)
        images = hwc_to_signed(pixels)  # (B, H, W, C) -> (B, C, H, W)
        return images, None if self.labels is None else self.labels[idx]

    def subset(self, indices: Tensor | list[int], name: str | None = None) -> ImageDataset:
        """The samples at ``indices``, decoded into memory, as an :class:`ImageDataset`."""
        images, labels = self.batch(torch.as_tensor(indices, dtype=torch.long))
        return ImageDataset(images=images, labels=labels, num_classes=self.num_classes,
                            name=self.name if name is None else name, class_names=self.class_names)

    def load(self) -> ImageDataset:
        """The whole split in memory (for evaluations that need every image at once)."""
        return self.subset(torch.arange(len(self)))


def iter_batches(data: ImageDataset | ShardedDataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor | None]]:
    """(images, labels) of consecutive index ranges of ``data``, in order."""
    for start in range(0, len(data), batch_size):
        yield data.batch(torch.arange(start, min(start + batch_size, len(data))))
