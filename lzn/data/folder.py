"""An image folder (root/class_name/*.png|jpg) loaded into memory with PIL.

Class names are the sub-folder names sorted, label = position in that order (the torchvision
ImageFolder convention), unless the training set's ``class_names`` are given: then each sub-folder
takes the label of its name among those (a test folder may hold fewer classes, never unknown ones). A
root with image files and no sub-folders is an unlabelled set (e.g. the 30 000 CelebA-HQ images of method.md
§5.2). Every image is resized so that its shorter side is ``size`` (bicubic), then centre-cropped to
size x size. A file PIL cannot decode fully is an :class:`UnreadableImageError` naming it, or, with
``skip_bad_files``, skipped with one warning for the whole folder.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from lzn.data.dataset import DataNotFoundError, ImageDataset, hwc_to_signed

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SHOWN_BAD_FILES = 3  # paths quoted in the skip warning
FOLDER_ORDER_SEED = 0  # the fixed shuffle of a labelled folder's images (also kept by lzn.data.shards)


class UnreadableImageError(ValueError):
    """An image file that PIL cannot open or decode (corrupt, truncated, not an image); names the file."""


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 (size, size, channels): shorter side resized to ``size``, centre crop."""
    return decode_image(path, size, channels, str(path), "remove it, or set data.skip_bad_files=true to skip "
                        "unreadable files")


def decode_image(source: Path | BinaryIO, size: int | None, channels: int, name: str,
                 fix: str = "remove or replace it") -> np.ndarray:
    """An encoded image (a path or an open binary file) as uint8 (size, size, channels): shorter side
    resized to ``size`` (bicubic), centre crop; ``size=None`` keeps a square image's own size. The image
    folder and the tar shards (:mod:`lzn.data.shards`) decode through this, so both give the same
    pixels. An undecodable image is an :class:`UnreadableImageError` naming ``name`` and ``fix``."""
    from PIL import Image  # imported where needed: only the file loaders decode images

    try:
        with Image.open(source) as raw:
            raw.load()  # PIL decodes lazily: force the whole file now so truncated data fails here
            img = raw.convert("RGB" if channels == 3 else "L")
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:  # UnidentifiedImageError is an OSError
        raise UnreadableImageError(f"{name} is not a readable image ({err}); {fix}") from None
    w, h = img.size
    if size is None:
        if w != h:
            raise ValueError(f"{name} is {w}x{h}, not square: set data.size to resize and centre-crop it")
        size = w
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).reshape(size, size, channels)  # (H, W) or (H, W, C) -> (H, W, C)


def folder_groups(root: Path) -> tuple[list[tuple[str, list[Path]]], bool]:
    """The image files of a folder by class: ([(class folder name, sorted files)], labelled), with one
    group named "" for an unlabelled folder (images directly under ``root``). Errors as in
    :func:`load_image_folder`."""
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist; expected root/class_name/*.png|jpg")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, _image_files(d)) for d in class_dirs]
    empty = [name for name, files in groups if not files]
    if empty and len(empty) < len(groups):
        raise ValueError(f"image folder {root}: class folders {empty} hold no {'/'.join(IMAGE_SUFFIXES)} "
                         "files; every class needs at least one image")
    labelled = bool(groups) and not empty
    if not labelled:
        groups = [("", _image_files(root))]
    if not groups[0][1]:
        raise DataNotFoundError(f"image folder {root} holds no {'/'.join(IMAGE_SUFFIXES)} files; "
                                "expected root/class_name/*.png|jpg or root/*.png|jpg")
    return groups, labelled


def _labels_by_name(root: Path, folders: list[str], class_names: Sequence[str]) -> list[int]:
    """The label of each class folder: its index in the training set's ``class_names``."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in folders if name not in index]
    if unknown:
        raise ValueError(f"image folder {root}: class folders {unknown} are not among the training classes "
                         f"{list(class_names)}; rename or remove them")
    return [index[name] for name in folders]


def load_image_folder(root: str | Path, size: int, channels: int = 3, *, skip_bad_files: bool = False,
                      class_names: Sequence[str] | None = None) -> ImageDataset:
    """All images under ``root`` as (N, channels, size, size) in [-1, 1].

    root/class_name/*.png|jpg|jpeg gives labels by sorted class name (hidden folders are
    skipped, an empty class folder is an error); root/*.png|jpg|jpeg with no sub-folders (or only empty
    ones) gives an unlabelled set. ``channels`` is 3 (RGB) or 1 (grayscale).
    ``class_names``: the training set's classes (e.g. when reading its test folder); labels are then
    indices into them and num_classes = len(class_names); an unknown class folder is an error.
    ``skip_bad_files``: skip unreadable files (one UserWarning with the count) instead of raising
    :class:`UnreadableImageError`; a class left with no readable image is still an error.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    root = Path(root)
    groups, labelled = folder_groups(root)
    if class_names is not None and not labelled:
        raise ValueError(f"image folder {root} has no class sub-folders, but the training set is labelled "
                         f"with classes {list(class_names)}; expected root/class_name/*.png|jpg")
    folder_labels = (_labels_by_name(root, [name for name, _ in groups], class_names) if class_names is not None
                     else list(range(len(groups))))
    pixels, labels, bad = [], [], []
    for label, (name, files) in zip(folder_labels, groups):
        readable = 0
        for path in files:
            try:
                pixels.append(_load_image(path, size, channels))
            except UnreadableImageError:
                if not skip_bad_files:
                    raise
                bad.append(path)
                continue
            labels.append(label)
            readable += 1
        if readable == 0:
            where = f"class folder {root / name}" if labelled else f"image folder {root}"
            raise ValueError(f"{where}: none of its {len(files)} image files is readable; every class needs "
                             "at least one readable image")
    if bad:
        shown = ", ".join(str(p) for p in bad[:SHOWN_BAD_FILES]) + (", ..." if len(bad) > SHOWN_BAD_FILES else "")
        warnings.warn(f"image folder {root}: skipped {len(bad)} unreadable image file(s): {shown}",
                      UserWarning, stacklevel=2)
    images = hwc_to_signed(np.stack(pixels))  # (N, H, W, C) -> (N, C, H, W)
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if labelled:  # a fixed shuffle, so that any prefix (an FID reference, an evaluation batch) mixes the classes
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(FOLDER_ORDER_SEED))
        images, label_tensor = images[order], label_tensor[order]
    names = tuple(class_names) if class_names is not None else tuple(name for name, _ in groups)
    return ImageDataset(
        images=images,
        labels=label_tensor if labelled else None,
        num_classes=len(names) if labelled else 0,
        name=root.name or "folder",
        class_names=names if labelled else None,
    )
