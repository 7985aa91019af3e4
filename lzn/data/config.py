"""The data config and the one place where it becomes data sets: ``load_split(cfg, "train" | "test")``.

digits, fashion and cifar10 have fixed train and test splits. ``folder``, ``arrays`` and ``captions`` read
``data.root``; their test split comes from exactly one of

* ``data.test_root``: a separate image folder (folder), .npz / .npy (arrays), or pairs folder / .jsonl
  (captions);
* ``data.holdout``: a seeded fraction of ``root`` (``ImageDataset.train_test_split``), the rest trains;
* a folder ``root`` with both ``train/`` and ``test/`` sub-folders: "train" reads root/train and "test"
  reads root/test (each with its own class sub-folders, or flat images).

``shards`` reads folders written by ``lzn data shard``: ``root`` is a folder with ``train/`` (and ``test/``)
split folders, or one split folder (then the test split is ``data.test_root``, another split folder).
Its samples are read from disk batch by batch (:class:`lzn.data.shards.ShardedDataset`), never all at once.

``captions`` reads user (image, caption) pairs (:func:`lzn.data.captions.load_caption_dataset`): ``root`` is
a folder of NAME.png|jpg|jpeg images each with NAME.txt beside it, or a .jsonl file of {"path": ...,
"caption": ...} lines; images are resized and centre-cropped to ``data.size`` like an image folder's. It
gives an unlabelled :class:`ImageDataset` with ``captions``.

Without any of them a folder / arrays / captions set has no test split, and asking for it is a
:class:`DataNotFoundError` that says how to add one; it is never the training set in disguise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lzn.data.captions import load_caption_dataset
from lzn.data.dataset import DataNotFoundError, ImageDataset, index_ranges
from lzn.data.datasets import load_arrays
from lzn.data.folder import load_image_folder
from lzn.data.shards import ShardedDataset, is_split_folder
from lzn.data.sources import FIXED_SPLITS, LOADERS, SOURCES

SPLITS = ("train", "test")


@dataclass
class DataConfig:
    """Which data set (``lzn.data.sources.SOURCES``) and how to read it; validated on construction."""

    name: str = "digits"  # digits | fashion | cifar10 | folder | arrays | shards | captions
    root: str | None = None  # folder or file for fashion / cifar10 / folder / arrays / shards / captions
    size: int | None = None  # resize to size x size (digits, folder, captions)
    channels: int | None = None  # image folders and caption pairs: 1 or 3
    train_split: str = "train"
    test_split: str | None = "test"  # None: no held-out evaluation
    test_root: str | None = None  # folder / arrays / captions: a separate test source (an image folder, a second
    # .npz/.npy, or a second pairs folder / .jsonl)
    holdout: float = 0.0  # folder / arrays / captions: seeded fraction of `root` held out as the test split
    holdout_seed: int = 0
    skip_bad_files: bool = False  # folder: skip unreadable image files (one warning with the count) instead of failing
    flip: bool = False  # random horizontal flip of training images (CIFAR-10: true, method.md §5.2)
    workers: int = 0  # DataLoader worker processes reading batches ahead (0: in the training process)
    balanced: bool = False  # class-balanced batches: each class in proportion in every global batch (labels needed)

    def __post_init__(self) -> None:
        if self.name not in LOADERS:
            raise ValueError(f"name must be one of {sorted(LOADERS)}, got {self.name!r}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be a positive number of pixels (or null), got {self.size}")
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB) (or null), got {self.channels}")
        if self.train_split not in SPLITS:
            raise ValueError(f"train_split must be one of {list(SPLITS)}, got {self.train_split!r}")
        if self.test_split is not None and self.test_split not in SPLITS:
            raise ValueError(f"test_split must be one of {list(SPLITS)} or null, got {self.test_split!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0 (DataLoader worker processes), got {self.workers!r}")
        if not isinstance(self.balanced, bool):
            raise ValueError(f"balanced must be true or false (class-balanced batches), got {self.balanced!r}")
        if not 0.0 <= self.holdout < 1.0:  # also rejects NaN
            raise ValueError(f"holdout must lie in [0, 1), got {self.holdout}")
        if self.holdout > 0 and self.test_root is not None:
            raise ValueError(f"holdout ({self.holdout}) and test_root ({self.test_root!r}) are mutually exclusive: "
                             "give one source of test images")
        if self.name == "digits" and self.root is not None:
            raise ValueError(f"root does not apply to digits (it ships with scikit-learn), got {self.root!r}; "
                             "unset data.root, or choose data.name=folder or arrays for your own files")
        if self.name == "captions" and self.skip_bad_files:
            raise ValueError("skip_bad_files applies to data.name=folder; for captions, remove an unreadable image "
                             "together with its caption (or its .jsonl line)")
        if self.name == "shards" and self.holdout > 0:
            raise ValueError("holdout applies to folder and arrays data sets and to captions; for shards, write the "
                             "test split with `lzn data shard TEST_SOURCE --out DIR --split test` (or give "
                             "data.test_root)")
        if self.name in FIXED_SPLITS:
            for key, unset in (("test_root", self.test_root is None), ("holdout", self.holdout == 0)):
                if not unset:
                    raise ValueError(f"{key} applies to folder and arrays data sets and to captions only; "
                                     f"{self.name!r} has a fixed test split (as do {', '.join(FIXED_SPLITS)})")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def _split_folders(cfg: DataConfig) -> bool:
    """Whether ``cfg.root`` is an image folder with both train/ and test/ sub-folders."""
    if cfg.name != "folder" or cfg.root is None:
        return False
    root = Path(cfg.root)
    return (root / "train").is_dir() and (root / "test").is_dir()


def has_split(cfg: DataConfig, split: str) -> bool:
    """Whether ``split`` ("train" or "test") exists, without loading any data (see the module docstring)."""
    _check_split(split)
    if cfg.name in FIXED_SPLITS or split == "train":
        return True
    if cfg.name == "shards":
        return cfg.test_root is not None or (cfg.root is not None and is_split_folder(Path(cfg.root) / split))
    return cfg.test_root is not None or cfg.holdout > 0 or _split_folders(cfg)


def _source(cfg: DataConfig, split: str) -> tuple[Path, str | None] | None:
    """Where a folder / arrays / captions split is read: (path, holdout part "train" | "test" | None), or None
    when the split does not exist."""
    assert cfg.root is not None
    root = Path(cfg.root)
    if _split_folders(cfg):
        if cfg.test_root is not None or cfg.holdout > 0:
            key = "test_root" if cfg.test_root is not None else "holdout"
            raise ValueError(f"data.{key} is set, but data.root {root} already has train/ and test/ sub-folders; "
                             f"unset data.{key} to test on {root / 'test'}, or point data.root at the training images")
        return root / split, None
    if cfg.holdout > 0:
        return root, split
    if split == "train":
        return root, None
    return (Path(cfg.test_root), None) if cfg.test_root is not None else None


def _missing_split(cfg: DataConfig, split: str) -> DataNotFoundError:
    if cfg.root is not None and not Path(cfg.root).exists():  # the first thing to fix, before any split
        return DataNotFoundError(f"data set {cfg.name!r}: data.root {cfg.root} does not exist; expected an existing "
                                 "path to the training data (and a test source beside it)")
    if cfg.name == "folder":
        how = ("data.test_root (an image folder), data.holdout (a fraction of root, e.g. 0.1), or a root with "
               "train/ and test/ sub-folders")
    elif cfg.name == "captions":
        how = ("data.test_root (a second folder of NAME.png + NAME.txt pairs, or .jsonl) or data.holdout (a fraction "
               "of root, e.g. 0.1)")
    else:
        how = "data.test_root (a second .npz or .npy) or data.holdout (a fraction of root, e.g. 0.1)"
    return DataNotFoundError(f"data set {cfg.name!r} (root {cfg.root}) has no {split!r} split: give {how}; "
                             "or set data.test_split=null for no held-out evaluation")


def _name_labels(data: ImageDataset, class_names: Sequence[str]) -> ImageDataset:
    """``data`` with labels re-indexed into the training ``class_names`` when it names its own classes."""
    if data.labels is None or data.class_names is None or tuple(data.class_names) == tuple(class_names):
        return data
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in data.class_names if name not in index]
    if unknown:
        raise ValueError(f"{data.name}: classes {unknown} are not among the training classes {list(class_names)}")
    lut = torch.tensor([index[name] for name in data.class_names], dtype=torch.int64)  # (K_test,)
    return ImageDataset(images=data.images, labels=lut[data.labels], num_classes=len(class_names), name=data.name,
                        class_names=tuple(class_names), captions=data.captions)


def _read(cfg: DataConfig, path: Path, class_names: Sequence[str] | None) -> ImageDataset:
    """One folder / arrays / captions source; ``class_names`` (training's) label a separate test source."""
    if cfg.name == "captions":  # unlabelled: class_names do not apply
        assert cfg.size is not None
        key = "data.test_root" if cfg.test_root is not None and path == Path(cfg.test_root) else "data.root"
        try:
            return load_caption_dataset(path, cfg.size, 3 if cfg.channels is None else cfg.channels)
        except DataNotFoundError as err:  # name the config key that points at the missing or malformed pairs
            raise DataNotFoundError(f"{key}: {err}") from None
    if cfg.name == "folder":
        assert cfg.size is not None
        return load_image_folder(path, cfg.size, 3 if cfg.channels is None else cfg.channels,
                                 skip_bad_files=cfg.skip_bad_files, class_names=class_names)
    data = load_arrays(path)
    return data if class_names is None else _name_labels(data, class_names)


def _shard_split(cfg: DataConfig, split: str, class_names: tuple[str, ...] | None) -> ShardedDataset:
    if cfg.root is None:
        raise ValueError("data.name=shards needs data.root (a folder written by `lzn data shard SOURCE --out DIR`)")
    root = Path(cfg.root)
    if is_split_folder(root / split):
        path = root / split
    elif split == "test" and cfg.test_root is not None:
        path = Path(cfg.test_root)
    elif split == "train" and is_split_folder(root):
        path = root
    else:
        if split == "test":
            raise DataNotFoundError(f"shards {root} have no test split: expected {root / 'test'} (write it with `lzn "
                                    "data shard TEST_SOURCE --out DIR --split test`), or data.test_root; or set "
                                    "data.test_split=null for no held-out evaluation")
        if is_split_folder(root / "test"):
            raise DataNotFoundError(f"shards {root} hold only a test split ({root / 'test'}): write the training split "
                                    f"with `lzn data shard SOURCE --out {root} --split train`")
        path = root  # ShardedDataset names what is missing
    return ShardedDataset(path, size=cfg.size, channels=cfg.channels, class_names=class_names if split == "test"
                          else None)


def load_split(cfg: DataConfig, split: str,
               class_names: tuple[str, ...] | None = None) -> ImageDataset | ShardedDataset:
    """The ``split`` ("train" or "test") of the data set ``cfg`` describes, by the rules of the module docstring.

    ``class_names``: the training set's class names. A test split read from its own folder (or a .npz that
    names its classes) then labels each class by its index there; a class unknown to training is an error.
    Raises DataNotFoundError for a split that does not exist, ValueError for an empty one. ``shards``
    gives a :class:`ShardedDataset` (read on demand), every other name an :class:`ImageDataset`.
    """
    _check_split(split)
    if cfg.name == "shards":
        return _shard_split(cfg, split, class_names)
    fixed_split = SOURCES[cfg.name].fixed_split
    if fixed_split is not None:
        data = fixed_split(cfg.root, split, cfg.size)
    else:
        if cfg.name == "folder" and (cfg.root is None or cfg.size is None):
            raise ValueError("data.name=folder needs data.root (a folder of class subfolders) and data.size")
        if cfg.name == "arrays" and cfg.root is None:
            raise ValueError("data.name=arrays needs data.root (a .npz with images and labels, or a .npy)")
        if cfg.name == "captions" and (cfg.root is None or cfg.size is None):
            raise ValueError("data.name=captions needs data.root (a folder of NAME.png|jpg images each with NAME.txt "
                             'beside it, or a .jsonl of {"path": ..., "caption": ...} lines) and data.size (pixels)')
        source = _source(cfg, split)
        if source is None:
            raise _missing_split(cfg, split)
        path, part = source
        data = _read(cfg, path, class_names if split == "test" and part is None else None)
        if part is not None:
            train, test = data.train_test_split(cfg.holdout, seed=cfg.holdout_seed)
            data = train if part == "train" else test
    if len(data) == 0:
        raise ValueError(f"data set {cfg.name!r} ({split} split) is empty"
                         + (f"; data.holdout={cfg.holdout} of {cfg.root} rounds to nothing" if cfg.holdout else ""))
    return data


def check_labels(train: ImageDataset | ShardedDataset, test: ImageDataset | ShardedDataset | None = None) -> None:
    """Labels a classifier can train and be scored on; unlabelled sets pass.

    Training labels must be exactly 0..K-1 with every class present (K = train.num_classes); test labels
    must lie in [0, K) and the test set may not declare more than K classes. Raises ValueError naming the
    missing or offending labels, e.g. "missing: 10-98 (found 0-9, 99)".
    """
    if train.labels is None:
        return
    k = train.num_classes
    found = torch.unique(train.labels).tolist()
    missing = sorted(set(range(k)) - set(found))
    if missing:
        raise ValueError(f"{train.name}: labels must be 0..K-1 with every class present in training (K={k}); "
                         f"missing: {index_ranges(missing)} (found {index_ranges(found)})")
    if test is None or test.labels is None:
        return
    outside = [v for v in torch.unique(test.labels).tolist() if not 0 <= v < k]
    if outside:
        raise ValueError(f"{test.name}: test labels must lie in [0, {k}) of the {k} training classes; "
                         f"found {index_ranges(outside)}")
    if test.num_classes > k:
        raise ValueError(f"{test.name}: the test set declares {test.num_classes} classes, training has {k}; "
                         "a test set may hold fewer classes, not more")
