"""An image folder (root/class_name/*.png|jpg) loaded into memory with PIL.

Class names are the sub-folder names sorted, label = position in that order (the torchvision
ImageFolder convention). A root with image files and no sub-folders is an unlabelled set (e.g. the
30 000 CelebA-HQ images of spec §4.1.2). Every image is resized so that its shorter side is ``size``
(bicubic), then centre-cropped to size x size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lzn.data.dataset import DataNotFoundError, ImageDataset, uint8_to_signed

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 (size, size, channels): shorter side resized to ``size``, centre crop."""
    from PIL import Image  # optional dependency (lzn[viz]); only this loader needs it

    with Image.open(path) as raw:
        img = raw.convert("RGB" if channels == 3 else "L")
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).reshape(size, size, channels)  # (H, W) or (H, W, C) -> (H, W, C)


def load_image_folder(root: str | Path, size: int, channels: int = 3) -> ImageDataset:
    """All images under ``root`` as (N, channels, size, size) in [-1, 1].

    root/class_name/*.png|jpg|jpeg gives labels by sorted class name (hidden folders are
    skipped, an empty class folder is an error); root/*.png|jpg|jpeg with no sub-folders (or only empty
    ones) gives an unlabelled set. ``channels`` is 3 (RGB) or 1 (grayscale).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    root = Path(root)
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
    pixels, labels = [], []
    for label, (_, files) in enumerate(groups):
        for path in files:
            pixels.append(_load_image(path, size, channels))
            labels.append(label)
    images = uint8_to_signed(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    return ImageDataset(
        images=images,
        labels=torch.tensor(labels, dtype=torch.int64) if labelled else None,
        num_classes=len(groups) if labelled else 0,
        name=root.name or "folder",
        class_names=tuple(name for name, _ in groups) if labelled else None,
    )
