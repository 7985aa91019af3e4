"""Data sets as [-1, 1] tensors, in memory or read from tar shards batch by batch; deterministic data
order; batched augmentations; the one loader a training run takes its batches from (``BatchLoader``).

Nothing here downloads: every loader reads files already on disk (or scikit-learn's bundled digits).
"""

from lzn.data.augment import color_jitter, gaussian_blur, random_flip, random_grayscale, random_resized_crop
from lzn.data.captions import (CaptionPairs, CaptionSet, caption_dataset, caption_thresholds, load_caption_dataset,
                               load_caption_pairs, pixel_attributes)
from lzn.data.cifar import load_cifar10
from lzn.data.config import DataConfig, check_labels, has_split, load_split
from lzn.data.dataset import DataNotFoundError, ImageDataset
from lzn.data.datasets import load_arrays, load_digits
from lzn.data.fashion import load_fashion_mnist, read_idx
from lzn.data.loader import BatchLoader
from lzn.data.folder import UnreadableImageError, load_image_folder
from lzn.data.held_out import DEFAULT_PAIRS, DEFAULT_PROMPT, class_prompts, composed_pairs, own_pairs, pick_pairs
from lzn.data.order import batch_at, epoch_indices, iterations_per_epoch
from lzn.data.shard_writer import detect_kind, shard_source, write_shards
from lzn.data.shards import ShardedDataset, iter_batches
from lzn.data.sources import LOADERS, SOURCES, load_dataset
from lzn.data.two_view import TwoViewAugment, TwoViewConfig

__all__ = [
    "BatchLoader",
    "CaptionPairs",
    "CaptionSet",
    "DEFAULT_PAIRS",
    "DEFAULT_PROMPT",
    "DataConfig",
    "DataNotFoundError",
    "ImageDataset",
    "LOADERS",
    "SOURCES",
    "ShardedDataset",
    "TwoViewAugment",
    "TwoViewConfig",
    "UnreadableImageError",
    "batch_at",
    "caption_dataset",
    "caption_thresholds",
    "check_labels",
    "class_prompts",
    "color_jitter",
    "composed_pairs",
    "detect_kind",
    "epoch_indices",
    "gaussian_blur",
    "has_split",
    "iter_batches",
    "iterations_per_epoch",
    "load_arrays",
    "load_caption_dataset",
    "load_caption_pairs",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_split",
    "own_pairs",
    "pick_pairs",
    "pixel_attributes",
    "random_flip",
    "random_grayscale",
    "random_resized_crop",
    "read_idx",
    "shard_source",
    "write_shards",
]
