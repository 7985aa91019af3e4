"""Data sets held in memory as [-1, 1] tensors, deterministic data order, batched augmentations.

Nothing here downloads: every loader reads files already on disk (or scikit-learn's bundled digits).
"""

from lzn.data.augment import color_jitter, gaussian_blur, random_flip, random_grayscale, random_resized_crop
from lzn.data.cifar import load_cifar10
from lzn.data.config import DataConfig, check_labels, has_split, load_split
from lzn.data.dataset import DataNotFoundError, ImageDataset
from lzn.data.datasets import LOADERS, load_arrays, load_dataset, load_digits
from lzn.data.fashion import load_fashion_mnist, read_idx
from lzn.data.folder import UnreadableImageError, load_image_folder
from lzn.data.order import batch_at, epoch_indices, iterations_per_epoch
from lzn.data.two_view import TwoViewAugment, TwoViewConfig

__all__ = [
    "DataConfig",
    "DataNotFoundError",
    "ImageDataset",
    "LOADERS",
    "TwoViewAugment",
    "TwoViewConfig",
    "UnreadableImageError",
    "batch_at",
    "check_labels",
    "color_jitter",
    "epoch_indices",
    "gaussian_blur",
    "has_split",
    "iterations_per_epoch",
    "load_arrays",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_split",
    "random_flip",
    "random_grayscale",
    "random_resized_crop",
    "read_idx",
]
