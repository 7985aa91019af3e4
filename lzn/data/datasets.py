"""The two loaders without a file of their own: scikit-learn's digits and NumPy arrays. Neither downloads
anything; each returns an :class:`ImageDataset` with images (N, C, H, W) float32 in [-1, 1] (method.md
§9.6). The table of every data source by name is :mod:`lzn.data.sources`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lzn.data.dataset import DataNotFoundError, ImageDataset, resize_square, uint8_to_signed

DIGITS_TEST_FRACTION = 0.2  # digits test split: 359 of 1 797 images
DIGITS_SPLIT_SEED = 0


def load_digits(size: int | None = None, split: str = "all") -> ImageDataset:
    """scikit-learn's digits (pixel values 0..16) scaled to [-1, 1] as (N, 1, 8, 8), or (N, 1, size, size)
    after a bilinear resize.

    ``split``: "all" (1 797 images, the scikit-learn order), "train" (1 438) or "test" (359). The split
    is fixed: a permutation from ``torch.Generator().manual_seed(DIGITS_SPLIT_SEED)``, whose first
    ``round(0.2 * 1797)`` items are the test set (see ``ImageDataset.train_test_split``).
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    from sklearn.datasets import load_digits as sklearn_digits  # a base dependency; imported here for speed
    bunch = sklearn_digits()
    pixels = torch.as_tensor(np.asarray(bunch.images), dtype=torch.float32)  # (N, 8, 8), 0..16
    images = (pixels / 8.0 - 1.0)[:, None]  # (N, 8, 8) -> (N, 1, 8, 8) in [-1, 1]
    if size is not None:
        images = resize_square(images, size)
    data = ImageDataset(images=images, labels=torch.as_tensor(np.asarray(bunch.target), dtype=torch.int64),
                        num_classes=10, name="digits", class_names=tuple(str(i) for i in range(10)))
    if split == "all":
        return data
    train, test = data.train_test_split(DIGITS_TEST_FRACTION, seed=DIGITS_SPLIT_SEED)
    return train if split == "train" else test


def _to_nchw(images: np.ndarray, path: Path) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); (N, C, H, W) kept when C in {1, 3}; else (N, H, W, C) -> (N, C, H, W)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return images
    if images.ndim == 4 and images.shape[3] in (1, 3):
        return images.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    raise ValueError(f"{path}: images must be (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 or 3, "
                     f"got shape {images.shape}")


def load_arrays(path: str | Path, num_classes: int | None = None) -> ImageDataset:
    """Images (and labels) from a NumPy file.

    Accepted forms:
    * ``.npz`` with key ``images``, optional key ``labels`` (N,) of integers >= 0 and optional key
      ``class_names`` (K,) of strings (label = index; needs ``labels``);
    * ``.npy`` holding the images alone (unlabelled).
    Images: (N, C, H, W) or (N, H, W, C) with C = 1 or 3 (channels-first wins when both fit), or
    (N, H, W) for one channel; dtype uint8 (0..255, mapped to [-1, 1]) or floating, already in [-1, 1].
    ``num_classes`` defaults to len(class_names) when the file names its classes, else max(label) + 1
    (``lzn.data.check_labels`` reports classes without images). Files are read with ``allow_pickle=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"array file {path} does not exist; expected a .npz with 'images' "
                                "(and optional 'labels') or a .npy of images")
    labels: np.ndarray | None = None
    names: np.ndarray | None = None
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if "images" not in archive:
                raise ValueError(f"{path}: a .npz must hold an 'images' array, found keys {sorted(archive.files)}")
            images = archive["images"]
            labels = archive["labels"] if "labels" in archive else None
            names = archive["class_names"] if "class_names" in archive else None
    elif path.suffix == ".npy":
        images = np.load(path, allow_pickle=False)
    else:
        raise ValueError(f"{path}: expected a .npz (images, labels) or .npy (images) file")
    if images.shape[0] == 0:
        raise ValueError(f"{path}: holds no images (shape {images.shape})")
    images = _to_nchw(images, path)
    if images.dtype == np.uint8:
        x = uint8_to_signed(np.ascontiguousarray(images))
    elif np.issubdtype(images.dtype, np.floating):
        lo, hi = float(images.min()), float(images.max())
        if not (-1.0 - 1e-6 <= lo and hi <= 1.0 + 1e-6):  # also catches NaN
            raise ValueError(f"{path}: floating images must be finite and in [-1, 1], found [{lo:.4g}, {hi:.4g}]; "
                             "store uint8 0..255 to have them scaled")
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).clamp_(-1.0, 1.0)
    else:
        raise ValueError(f"{path}: images must be uint8 (0..255) or floating in [-1, 1], got {images.dtype}")
    if labels is None:
        if names is not None:
            raise ValueError(f"{path}: holds 'class_names' but no 'labels'; add labels (N,) or drop the names")
        return ImageDataset(images=x, labels=None, num_classes=0, name=path.stem)
    y, classes, class_names = _labels(labels, names, path, x.shape[0], num_classes)
    return ImageDataset(images=x, labels=y, num_classes=classes, name=path.stem, class_names=class_names)


def _labels(labels: np.ndarray, names: np.ndarray | None, path: Path, n: int,
            num_classes: int | None) -> tuple[torch.Tensor, int, tuple[str, ...] | None]:
    """Checked labels (n,) int64, the number of classes and the class names of a .npz."""
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers of shape ({n},), got {labels.dtype} {labels.shape}")
    if labels.size and int(labels.min()) < 0:
        negative = sorted(set(labels[labels < 0].tolist()))
        raise ValueError(f"{path}: labels must be integers >= 0, found {negative[:5]}")
    class_names = None
    if names is not None:
        if names.ndim != 1 or names.dtype.kind != "U":
            raise ValueError(f"{path}: class_names must be a 1-D array of strings (e.g. np.array(['cat', 'dog'])), "
                             f"got {names.dtype} {names.shape}")
        class_names = tuple(str(v) for v in names)
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"{path}: class_names must be distinct, got {list(class_names)}")
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"{path}: {len(class_names)} class_names, but num_classes={num_classes}")
    classes = (num_classes if num_classes is not None else len(class_names) if class_names is not None
               else int(labels.max()) + 1)
    if class_names is not None and labels.size and int(labels.max()) >= len(class_names):
        raise ValueError(f"{path}: labels go up to {int(labels.max())}, but class_names names only {len(class_names)} "
                         "classes; give one name per class (label = index into class_names)")
    if labels.size and int(labels.max()) >= classes:
        raise ValueError(f"{path}: labels must lie in [0, {classes}) for {classes} classes, found {int(labels.max())}")
    return torch.from_numpy(labels.astype(np.int64)), classes, class_names

