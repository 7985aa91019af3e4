"""Fashion-MNIST from its IDX files (raw or gzipped), never downloaded.

IDX format (LeCun's MNIST): two zero bytes, a type byte (0x08 = unsigned byte, the only type these
files use), a byte with the number of dimensions d, then d big-endian uint32 sizes, then the data in
C order. Images are (N, 28, 28), labels (N,).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from lzn.data.dataset import DataNotFoundError, ImageDataset, uint8_to_signed

FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (gzipped when the name ends in .gz) into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes of the magic number must be zero)")
    if raw[2] != _UBYTE:
        raise ValueError(f"{path}: IDX data type 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX dims {dims} need {expected} data bytes, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(root: str | Path = FASHION_ROOT, split: str = "train") -> ImageDataset:
    """Fashion-MNIST ``split`` ("train": 60 000 images, "test": 10 000) as (N, 1, 28, 28) in [-1, 1].

    ``root`` holds the four IDX files, each raw or ``.gz`` (Debian's dataset-fashion-mnist installs
    them under /usr/share/datasets/fashion-mnist).
    """
    if split not in FASHION_FILES:
        raise ValueError(f"split must be one of {sorted(FASHION_FILES)}, got {split!r}")
    root = Path(root)
    image_name, label_name = FASHION_FILES[split]
    image_path, label_path = _find(root, image_name), _find(root, label_name)
    if image_path is None or label_path is None:
        expected = ", ".join(f"{n}[.gz]" for n in FASHION_FILES[split])
        where = "does not exist" if not root.is_dir() else "lacks them"
        raise DataNotFoundError(
            f"Fashion-MNIST {split} split: expected {expected} in {root}, which {where}; "
            f"install them with `apt-get install dataset-fashion-mnist` or pass root=<folder with the IDX files>"
        )
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split}: expected images (N, H, W) and labels (N,), got "
                         f"{images.shape} from {image_path} and {labels.shape} from {label_path}")
    if labels.size and int(labels.max()) >= len(FASHION_CLASSES):
        raise ValueError(f"{label_path}: labels must lie in 0..9, found {int(labels.max())}")
    return ImageDataset(
        images=uint8_to_signed(images)[:, None],  # (N, H, W) -> (N, 1, H, W)
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=len(FASHION_CLASSES),
        name=f"fashion-{split}",
        class_names=FASHION_CLASSES,
    )
