"""Writing image data sets as tar shards (``lzn data shard``): the layout :mod:`lzn.data.shards` reads.

A split is assembled in a temporary folder and moved into place; sources are the shardable entries of
the data-source table (:mod:`lzn.data.sources`) or an image folder, whose files are stored as they are.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lzn.atomic import atomic_write_text, default_dir_mode
from lzn.data.dataset import DataNotFoundError, ImageDataset, index_ranges
from lzn.data.datasets import load_arrays
from lzn.data.folder import FOLDER_ORDER_SEED, UnreadableImageError, _labels_by_name, decode_image, folder_groups
from lzn.data.shards import FORMAT, INDEX_FILE, ITEMS_FILE
from lzn.data.sources import SHARD_KINDS, SOURCES

DEFAULT_SHARD_SIZE = 5000  # samples per tar: about 4 MB of 32x32 PNGs, 500 MB of ImageNet JPEGs
KEY_DIGITS = 9


@dataclass(frozen=True)
class Sample:
    """One sample to store: encoded image bytes, their suffix ("png", "jpg", "jpeg"), the label (-1:
    unlabelled), the image's (width, height) and channels (1 or 3) as stored."""

    data: bytes
    suffix: str
    label: int
    size: tuple[int, int]
    channels: int


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, C) with C in {1, 3} -> PNG bytes (lossless)."""
    from PIL import Image

    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def to_uint8(images: Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), the inverse of ``uint8_to_signed`` (exact on
    its outputs, nearest level otherwise)."""
    x = ((images.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def samples_from_dataset(data: ImageDataset, chunk: int = 1024) -> Iterator[Sample]:
    """The samples of an in-memory set as PNGs, in its order."""
    c, h, w = data.image_shape
    for start in range(0, len(data), chunk):
        pixels = to_uint8(data.images[start:start + chunk])
        for i, img in enumerate(pixels):
            label = -1 if data.labels is None else int(data.labels[start + i])
            yield Sample(encode_png(img), "png", label, (w, h), c)


def folder_samples(root: str | Path, class_names: Sequence[str] | None = None,
                   skip_bad_files: bool = False) -> tuple[list[tuple[Path, int]], tuple[str, ...] | None]:
    """An image folder's (file, label) pairs in the order :func:`lzn.data.load_image_folder` gives them
    (classes by name, then its fixed shuffle), and its class names (None: unlabelled). Each file's
    header is read: an unreadable one is an error, or skipped with ``skip_bad_files``."""
    from PIL import Image

    root = Path(root)
    groups, labelled = folder_groups(root)
    if class_names is not None and not labelled:
        raise ValueError(f"image folder {root} has no class sub-folders, but the training set is labelled "
                         f"with classes {list(class_names)}; expected root/class_name/*.png|jpg")
    labels = (_labels_by_name(root, [name for name, _ in groups], class_names) if class_names is not None
              else list(range(len(groups))))
    pairs: list[tuple[Path, int]] = []
    for label, (_, files) in zip(labels, groups):
        for path in files:
            try:
                with Image.open(path) as img:
                    img.verify()  # structure only, no pixel decode: cheap enough for a million files
            except Exception as err:  # PIL raises many types for a bad file
                if not skip_bad_files:
                    raise UnreadableImageError(f"{path} is not a readable image ({err}); remove it, or pass "
                                               "--skip-bad-files") from None
                continue
            pairs.append((path, label if labelled else -1))
    if labelled:
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(FOLDER_ORDER_SEED))
        pairs = [pairs[i] for i in order.tolist()]
        names = tuple(class_names) if class_names is not None else tuple(name for name, _ in groups)
        return pairs, names
    return pairs, None


def read_folder_sample(path: Path, label: int) -> Sample:
    """A folder image's own bytes (no re-encoding) with its size and channels from the header."""
    from PIL import Image

    with Image.open(path) as img:
        size, channels = img.size, 1 if img.mode in ("1", "L", "I", "I;16", "F") else 3
    suffix = path.suffix.lower().lstrip(".")
    return Sample(path.read_bytes(), suffix, label, (int(size[0]), int(size[1])), channels)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary split folders of ``out`` left by a writer that was killed (its process is gone): the name
    ``.NAME.PID.XXXX.tmp`` says whose it is; a live writer's folder is left alone."""
    for tmp in out.parent.glob(f".{out.name}.*.tmp"):
        parts = tmp.name[len(out.name) + 2:].split(".")
        if not parts[0].isdigit() or int(parts[0]) == os.getpid():
            continue
        try:
            os.kill(int(parts[0]), 0)
            continue  # alive: another writer's
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            continue


def _check_every_class(labels: np.ndarray, num_classes: int, out: Path) -> None:
    """A training split holds every class 0..K-1 (training refuses gaps); refused here, where it is written."""
    missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
    if missing:
        raise ValueError(f"{out}: labels must be 0..K-1 with every class present in a training split (K="
                         f"{num_classes}); missing: {index_ranges(missing)}: renumber the labels (or write it with "
                         "--split test, where fewer classes are fine)")


def write_shards(samples: Iterable[Sample], out: str | Path, *, class_names: Sequence[str] | None = None,
                 shard_size: int = DEFAULT_SHARD_SIZE, source: str = "", total: int | None = None,
                 overwrite: bool = False, progress: bool = True, every_class: bool = False) -> Path:
    """Write ``samples`` as one split folder ``out`` (the layout of the module docstring); returns it.

    The split is assembled in a temporary folder beside ``out`` and moved into place at the end, so an
    interrupted run leaves no half-written split (and the next write removes a killed writer's temporary
    folder). ``out`` must not exist unless ``overwrite``, neither at the start nor at the end (a split written
    there meanwhile is not replaced). ``every_class``: refuse labels with gaps (a training split).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if shard_size < 1:
        raise ValueError(f"shard_size must be a positive number of samples per tar, got {shard_size}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, default_dir_mode())  # mkdtemp's folder is private; the split is an ordinary folder
    try:
        shards, labels, sizes, channels, suffixes = [], [], set(), set(), set()
        tar: tarfile.TarFile | None = None
        count = 0
        for i, sample in enumerate(tqdm(samples, total=total, desc=f"shard {out.name}", disable=not progress,
                                        unit="img")):
            if i % shard_size == 0:
                if tar is not None:
                    tar.close()
                shards.append({"name": f"shard-{len(shards):06d}.tar", "count": 0})
                tar = tarfile.open(tmp / shards[-1]["name"], "w", format=tarfile.USTAR_FORMAT)
            assert tar is not None
            key = f"{i:0{KEY_DIGITS}d}"
            _add(tar, f"{key}.{sample.suffix}", sample.data)
            if sample.label >= 0:
                _add(tar, f"{key}.cls", str(sample.label).encode())
            shards[-1]["count"] += 1
            labels.append(sample.label)
            sizes.add(sample.size)
            channels.add(sample.channels)
            suffixes.add(sample.suffix)
            count += 1
        if tar is not None:
            tar.close()
        if count == 0:
            raise ValueError(f"no images to write to {out}")
        label_array = np.asarray(labels, dtype=np.int64)
        labelled = bool((label_array >= 0).all())
        if not labelled and (label_array >= 0).any():
            raise ValueError(f"{out}: some samples have labels and some do not; a split is labelled or not")
        num_classes = len(class_names) if class_names is not None else (int(label_array.max()) + 1 if labelled else 0)
        if labelled and int(label_array.max()) >= num_classes:
            raise ValueError(f"{out}: labels go up to {int(label_array.max())}, but class_names names only "
                             f"{num_classes} classes; give one name per class")
        if labelled and every_class:
            _check_every_class(label_array, num_classes, out)
        shard_of, offsets, lengths = _member_table(tmp, shards)
        np.savez(tmp / ITEMS_FILE, shard=shard_of, offset=offsets, length=lengths, label=label_array)
        size = next(iter(sizes)) if len(sizes) == 1 else None
        index = {
            "format": FORMAT, "num_samples": count, "labelled": labelled, "num_classes": num_classes,
            "class_names": list(class_names) if class_names is not None else None,
            "class_counts": np.bincount(label_array, minlength=num_classes).tolist() if labelled else None,
            "image_size": list(size) if size is not None else None,  # [width, height] when every image shares it
            "channels": max(channels), "suffixes": sorted(suffixes), "source": source,
            "shards": shards,
        }
        atomic_write_text(tmp / INDEX_FILE, json.dumps(index, indent=1) + "\n")
        if out.exists() and overwrite:
            shutil.rmtree(out)
        try:
            os.rename(tmp, out)  # never over a split another writer put there meanwhile (an empty folder: fine)
        except OSError:
            raise FileExistsError(f"{out} was written by another process meanwhile; it is left as it is (pass "
                                  "--overwrite to replace it)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _member_table(folder: Path, shards: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image sample (in key order): its shard, the byte offset and length of its data in the tar."""
    shard_of, offsets, lengths = [], [], []
    for s, shard in enumerate(shards):
        with tarfile.open(folder / shard["name"]) as tar:
            for member in tar:
                if not member.name.endswith(".cls"):
                    shard_of.append(s)
                    offsets.append(member.offset_data)
                    lengths.append(member.size)
    return (np.asarray(shard_of, dtype=np.int32), np.asarray(offsets, dtype=np.int64),
            np.asarray(lengths, dtype=np.int64))


SOURCE_KINDS = ("auto", *SHARD_KINDS)


def detect_kind(source: str | Path) -> str:
    """What ``lzn data shard`` reads from ``source``: "digits" (the word), "arrays" (a .npz / .npy file),
    "cifar10" (a cifar-10-batches-py folder or its parent), "fashion" (a folder of Fashion-MNIST IDX
    files) or "folder" (an image folder)."""
    from lzn.data.fashion import FASHION_FILES

    if str(source) == "digits":
        return "digits"
    path = Path(source)
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist; expected an image folder, a cifar-10-batches-py folder, a "
                                "folder of Fashion-MNIST IDX files, a .npz / .npy file, or the word digits")
    if path.is_file():
        if path.suffix in (".npz", ".npy"):
            return "arrays"
        raise ValueError(f"{path} is a file but not a .npz / .npy; expected one of those, or a folder")
    if (path / "cifar-10-batches-py").is_dir() or (path / "data_batch_1").is_file():
        return "cifar10"
    idx_names = [n for names in FASHION_FILES.values() for n in names]
    if any((path / n).is_file() or (path / f"{n}.gz").is_file() for n in idx_names):
        return "fashion"
    return "folder"


def shard_source(source: str | Path, out: str | Path, *, kind: str = "auto", split: str | None = None,
                 shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False, skip_bad_files: bool = False,
                 progress: bool = True) -> dict[str, Path]:
    """Write the splits of ``source`` under ``out`` (``out/train``, ``out/test``); returns them by split.

    Data sets with fixed splits (digits, Fashion-MNIST, CIFAR-10) and image folders with train/ and test/
    sub-folders write both; any other source is one split, ``split`` ("train" by default). ``split``
    restricts a two-split source to one. Image folder files are stored as they are (no re-encoding);
    arrays are stored as PNG.
    """
    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind must be one of {list(SOURCE_KINDS)}, got {kind!r}")
    if split is not None and split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' (or None for every split the source has), got {split!r}")
    kind = detect_kind(source) if kind == "auto" else kind
    path, out = Path(source), Path(out)
    fixed_split = SOURCES[kind].fixed_split
    two = fixed_split is not None or (kind == "folder" and (path / "train").is_dir()
                                                        and (path / "test").is_dir())
    splits = ([split] if split else ["train", "test"]) if two else [split or "train"]
    if kind != "digits" and (out.resolve() == path.resolve() or path.resolve() in out.resolve().parents):
        raise ValueError(f"--out {out} lies inside the source {path}; the shards would be read as part of it: "
                         "choose an --out outside the source")
    done = [s for s in splits if (out / s).exists()]
    if done and not overwrite:
        rest = [s for s in splits if s not in done]
        also = (f" ({', '.join(rest)} missing: write it alone with --split {rest[0]}, or pass --overwrite to "
                "write every split again)" if rest else "; choose another --out or pass --overwrite")
        raise FileExistsError(f"{out / done[0]} already exists{also}")
    written: dict[str, Path] = {}
    train_names: tuple[str, ...] | None = None
    for s in splits:  # train first: a folder's test split takes the training class names
        label = f"{kind} {path}" + (f" ({s})" if two else "")
        if kind == "folder":
            root = path / s if two else path
            names = train_names if (two and s == "test") else None
            pairs, names = folder_samples(root, class_names=names, skip_bad_files=skip_bad_files)
            train_names = names if s == "train" else train_names
            samples: Iterable[Sample] = (read_folder_sample(p, y) for p, y in pairs)
            total = len(pairs)
        else:
            data = fixed_split(path, s, None) if fixed_split is not None else load_arrays(path)
            if s == "train" and data.labels is not None:  # before any image is written
                _check_every_class(data.labels.numpy(), data.num_classes, out / s)
            names, samples, total = data.class_names, samples_from_dataset(data), len(data)
        written[s] = write_shards(samples, out / s, class_names=names, shard_size=shard_size, source=label,
                                  total=total, overwrite=overwrite, progress=progress, every_class=s == "train")
    return written
