"""CIFAR-10 from the standard python-pickle folder (cifar-10-batches-py), never downloaded.

The folder holds data_batch_1 .. data_batch_5 (train, 10 000 images each), test_batch (10 000) and
batches.meta. Each batch is a pickled dict with b"data": uint8 (N, 3072), every row the R, G and B
planes of a 32x32 image in turn, and b"labels": N ints in 0..9. Pickles can run code when loaded, so
they are read with an unpickler that only rebuilds numpy arrays and plain Python containers.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lzn.data.dataset import DataNotFoundError, ImageDataset, uint8_to_signed

CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals an array pickle needs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")
        if module == "numpy.core.multiarray":  # pickles written by numpy 1.x; numpy 2 moved the module
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        try:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise ValueError(f"{path}: not a CIFAR-10 python batch ({err})") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict with b'data' and b'labels', got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: expected keys b'data' (N, 3072) uint8 and b'labels' (N,), got {sorted(batch)}")
    data, labels = np.asarray(data), np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise ValueError(f"{path}: expected b'data' uint8 (N, 3072) and b'labels' (N,), got "
                         f"{data.dtype} {data.shape} and {labels.shape}")
    return data, labels


def load_cifar10(root: str | Path, split: str = "train") -> ImageDataset:
    """CIFAR-10 ``split`` ("train": 50 000, "test": 10 000) as (N, 3, 32, 32) in [-1, 1], labels 0..9.

    ``root`` is the cifar-10-batches-py folder itself or a folder that contains it.
    """
    if split not in CIFAR10_FILES:
        raise ValueError(f"split must be one of {sorted(CIFAR10_FILES)}, got {split!r}")
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = CIFAR10_FILES[split]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataNotFoundError(f"CIFAR-10 {split} split: {root} lacks {', '.join(missing)}; expected the python "
                                f"pickle folder cifar-10-batches-py with {', '.join(names)}")
    batches = [_read_batch(root / n) for n in names]
    data = np.concatenate([b[0] for b in batches])  # (N, 3072)
    labels = np.concatenate([b[1] for b in batches]).astype(np.int64)  # (N,)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise ValueError(f"CIFAR-10 {split}: labels must lie in 0..9, found [{labels.min()}, {labels.max()}]")
    images = uint8_to_signed(data.reshape(-1, 3, 32, 32))  # (N, 3072) -> (N, 3, 32, 32): R, G, B planes
    return ImageDataset(images=images, labels=torch.from_numpy(labels), num_classes=len(CIFAR10_CLASSES),
                        name=f"cifar10-{split}", class_names=CIFAR10_CLASSES)
