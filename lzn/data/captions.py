"""Paired images and captions: captions composed from pixel attributes, and user (image, caption) pairs.

For grayscale data sets (digits, Fashion-MNIST) a caption names the class and attributes measured from
the pixels, so that the text carries more than the label and the attributes of a generated image can
be checked against its caption. With w = (x + 1) / 2 in [0, 1] the ink of an image x in [-1, 1]
(background -1 -> 0), and (r, c) pixel row and column, every attribute is an ink-weighted statistic:

* ``size``: sqrt(var_r + var_c) / sqrt(H W), the RMS distance of the ink from its centroid in units of
  the image side. A filled s x s square gives sqrt((s^2 - 1) / 6) / H: it grows with s.
* ``thickness``: 2 sum(w) / TV(w), with TV the total variation (sum of |differences| of horizontally and
  vertically adjacent pixels, the image padded with background). For a bar of constant ink, width b and
  length L it is b L / (b + L), which tends to b for long bars: a stroke width in pixels.
* ``brightness``: sum(w^2) / sum(w), the ink-weighted mean intensity: c for ink of constant value c.
* ``slant``: -cov(c, r) / var_r, the horizontal shift of the ink per row going up (the shear MNIST
  deskewing removes): > 0 leans right ("/"), < 0 leans left ("\\"), 0 upright.

Each is mapped to one of three words by thresholds fixed on a data set (:func:`attribute_thresholds`),
per class when labels are given: tertiles for size, thickness and brightness; for slant, +-t with t the
lower tertile of |slant|, so a third is "upright" and the rest split by the sign. A caption uses one of
several templates, chosen by a hash of (seed, item index), so an item and a seed always get the same
caption, whatever the batch.

:func:`load_caption_pairs` reads user pairs: an image folder with NAME.txt beside each NAME.png|jpg, or a
JSONL file of {"path": ..., "caption": ...} lines; :func:`load_caption_dataset` gives them as an unlabelled
:class:`ImageDataset` with ``captions`` (the data set ``data.name=captions``).
"""

from __future__ import annotations

import json
import re
import string
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lzn.data.dataset import DataNotFoundError, ImageDataset, hwc_to_signed
from lzn.data.folder import IMAGE_SUFFIXES, decode_image

ATTRIBUTES = ("size", "thickness", "brightness", "slant")
ATTRIBUTE_WORDS = {
    "size": ("small", "medium", "large"),
    "thickness": ("thin", "regular", "thick"),
    "brightness": ("faint", "mid-tone", "bright"),
    "slant": ("slanted left", "upright", "slanted right"),
}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_WORDS = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")
# {cls}: the class word, {kind}: "digit" or "item"; the other fields are attribute words
TEMPLATES = (
    "a {size}, {thickness} {cls}",
    "the {kind} {cls}, drawn {thickness} and {slant}",
    "{cls}: {size}, {brightness} and {slant}",
    "a {brightness} {cls} with {thickness} strokes, {slant}",
    "a {size} {cls}, {slant}, in {brightness} ink",
    "{cls}, {thickness}, {size} and {brightness}",
    "an image of a {cls}, {slant} and {size}",
    "{cls} ({size}, {thickness}, {brightness}, {slant})",
)
MAX_CAPTION_CHARS = 1000
_EPS = 1e-6


def class_words(class_names: Sequence[str] | None, num_classes: int) -> tuple[tuple[str, ...], str]:
    """The words captions use for the classes and the kind of thing they are ("digit" / "item"):
    ``DIGIT_WORDS`` for classes named "0".."9" (or unnamed, ten of them), else the names in lower case."""
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(num_classes))
    if names == tuple(str(i) for i in range(10)):
        return DIGIT_WORDS, "digit"
    return tuple(n.lower() for n in names), "item"


# ----------------------------------------------------------------------------------------------
# Pixel attributes
# ----------------------------------------------------------------------------------------------


def pixel_attributes(images: Tensor) -> Tensor:
    """Size, thickness, brightness and slant (see the module docstring) of (N, 1, H, W) images in [-1, 1]:
    (N, 4) float32, columns in the order of ``ATTRIBUTES``. An all-background image gives zeros."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 1 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"pixel_attributes expects grayscale float images (N, 1, H, W) in [-1, 1], got {shape}")
    w = ((images[:, 0].double().clamp(-1.0, 1.0) + 1.0) / 2.0)  # (N, H, W) ink in [0, 1]
    n, h, wd = w.shape
    rows = torch.arange(h, dtype=w.dtype, device=w.device)[None, :, None]  # (1, H, 1)
    cols = torch.arange(wd, dtype=w.dtype, device=w.device)[None, None, :]  # (1, 1, W)
    mass = w.sum((1, 2))  # (N,)
    m = mass.clamp_min(_EPS)
    mean_r = (w * rows).sum((1, 2)) / m  # (N,)
    mean_c = (w * cols).sum((1, 2)) / m
    dr = rows - mean_r[:, None, None]  # (N, H, 1)
    dc = cols - mean_c[:, None, None]  # (N, 1, W)
    var_r = (w * dr**2).sum((1, 2)) / m
    var_c = (w * dc**2).sum((1, 2)) / m
    cov = (w * dr * dc).sum((1, 2)) / m
    size = (var_r + var_c).clamp_min(0).sqrt() / (h * wd) ** 0.5
    padded = torch.nn.functional.pad(w, (1, 1, 1, 1))  # (N, H + 2, W + 2), background around
    tv = padded.diff(dim=1).abs().sum((1, 2)) + padded.diff(dim=2).abs().sum((1, 2))  # (N,)
    thickness = 2.0 * mass / tv.clamp_min(_EPS)
    brightness = (w**2).sum((1, 2)) / m
    slant = -cov / var_r.clamp_min(_EPS)
    return torch.stack([size, thickness, brightness, slant], dim=1).float()  # (N, 4)


def attribute_thresholds(values: Tensor, labels: Tensor | None = None, num_classes: int | None = None) -> Tensor:
    """Word thresholds fixed on a data set: (K, 4, 2), K = num_classes with labels, else 1.

    values: (N, 4) from :func:`pixel_attributes`; labels: (N,) int64 or None. Row k holds, per attribute,
    the two cut points between its three words for class k (tertiles; slant: -t, t with t the lower
    tertile of |slant|). A class without items gets the thresholds of the whole set.
    """
    if values.dim() != 2 or values.shape[1] != len(ATTRIBUTES) or values.shape[0] == 0:
        raise ValueError(f"values must be (N, {len(ATTRIBUTES)}) attributes with N >= 1, got {tuple(values.shape)}")

    def cuts(v: Tensor) -> Tensor:  # (n, 4) -> (4, 2)
        v = v.double()
        q = torch.quantile(v[:, :3], torch.tensor([1 / 3, 2 / 3], dtype=v.dtype), dim=0).T  # (2, 3) -> (3, 2)
        t = torch.quantile(v[:, 3].abs(), 1 / 3)
        return torch.cat([q, torch.stack([-t, t])[None]]).float()  # (4, 2)

    overall = cuts(values)
    if labels is None:
        return overall[None]  # (1, 4, 2)
    if labels.shape != (values.shape[0],):
        raise ValueError(f"labels must be (N,) = ({values.shape[0]},), got {tuple(labels.shape)}")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    return torch.stack([cuts(values[labels == c]) if bool((labels == c).any()) else overall for c in range(k)])


def attribute_levels(values: Tensor, thresholds: Tensor, labels: Tensor | None = None) -> Tensor:
    """Word index 0, 1 or 2 of each attribute: (N, 4) int64 from values (N, 4) and thresholds (K, 4, 2).

    With K > 1 each item uses its class's row (labels (N,) required); with K = 1 the one row.
    A value above the first cut gets 1, above the second 2 (slant: -t <= slant <= t is 1, upright).
    """
    if thresholds.dim() != 3 or thresholds.shape[1:] != (len(ATTRIBUTES), 2):
        raise ValueError(f"thresholds must be (K, {len(ATTRIBUTES)}, 2), got {tuple(thresholds.shape)}")
    if thresholds.shape[0] == 1:
        edges = thresholds.expand(values.shape[0], -1, -1)  # (N, 4, 2)
    elif labels is None:
        raise ValueError(f"per-class thresholds ({thresholds.shape[0]} classes) need labels (N,)")
    else:
        edges = thresholds[labels]  # (N, 4, 2)
    above = values[..., None] > edges  # (N, 4, 2)
    slant = ATTRIBUTES.index("slant")
    above[:, slant, 0] = values[:, slant] >= edges[:, slant, 0]  # |slant| <= t is upright, 0 included
    return above.sum(-1)  # (N, 4)


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------


def _template_fields(template: str) -> tuple[str, ...]:
    return tuple(f for _, f, _, _ in string.Formatter().parse(template) if f)


TEMPLATE_ATTRIBUTES = tuple(tuple(a for a in ATTRIBUTES if a in _template_fields(t)) for t in TEMPLATES)


def _mix(seed: int, index: np.ndarray) -> np.ndarray:
    """SplitMix64 of (seed, index): (N,) uint64, the same for a (seed, index) whatever the batch."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15) + index.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _articles(text: str) -> str:
    """'a' -> 'an' before a vowel sound ("an eight", "an upright", "an ankle boot", but "a one")."""
    return re.sub(r"\b([Aa]) (?=(?!one\b)[aeiou])", r"\1n ", text)


@dataclass(frozen=True, eq=False)
class CaptionSet:
    """Composed captions of N images.

    captions: N strings. attributes: per caption, the attribute words it names ({"size": "large", ...}).
    levels: (N, 4) int64 word index of every attribute (named or not), order ``ATTRIBUTES``.
    mentions: (N, 4) bool, which attributes each caption names. templates: (N,) int64 index into
    ``TEMPLATES``. thresholds: (K, 4, 2) the cut points used (reuse them for a test split or for
    generated images).
    """

    captions: list[str]
    attributes: list[dict[str, str]]
    levels: Tensor
    mentions: Tensor
    templates: Tensor
    thresholds: Tensor


def compose_captions(labels: Tensor, levels: Tensor, class_words: Sequence[str], *, seed: int = 0,
                     kind: str = "digit", indices: Tensor | None = None) -> tuple[list[str], Tensor]:
    """Captions for labels (N,) and attribute levels (N, 4): N strings and the template index of each (N,).

    ``indices`` (N,) (default 0..N-1) and ``seed`` pick the template by a hash, so item i under a seed
    always gets the same caption. ``kind`` names what the class word is ("digit", "item").
    """
    if labels.dim() != 1 or levels.shape != (labels.shape[0], len(ATTRIBUTES)):
        raise ValueError(f"labels must be (N,) and levels (N, {len(ATTRIBUTES)}), got {tuple(labels.shape)} "
                         f"and {tuple(levels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(class_words)):
        raise ValueError(f"labels must lie in [0, {len(class_words)}) (one class word each), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    idx = np.arange(labels.shape[0]) if indices is None else indices.cpu().numpy()
    templates = torch.from_numpy((_mix(seed, idx) % np.uint64(len(TEMPLATES))).astype(np.int64))  # (N,)
    texts = []
    for y, lev, t in zip(labels.tolist(), levels.tolist(), templates.tolist()):
        words = {a: ATTRIBUTE_WORDS[a][lv] for a, lv in zip(ATTRIBUTES, lev)}
        texts.append(_articles(TEMPLATES[t].format(cls=class_words[y], kind=kind, **words)))
    return texts, templates


def caption_images(images: Tensor, labels: Tensor, class_words: Sequence[str], *, seed: int = 0,
                   kind: str = "digit", thresholds: Tensor | None = None) -> CaptionSet:
    """Measure attributes of (N, 1, H, W) images in [-1, 1], cut them by ``thresholds`` (K, 4, 2) (default:
    fixed on these images, per class) and compose one caption per image with labels (N,)."""
    values = pixel_attributes(images)  # (N, 4)
    if thresholds is None:
        thresholds = attribute_thresholds(values, labels, len(class_words))
    levels = attribute_levels(values, thresholds, labels)  # (N, 4)
    texts, templates = compose_captions(labels, levels, class_words, seed=seed, kind=kind)
    mentions = torch.tensor([[a in TEMPLATE_ATTRIBUTES[t] for a in ATTRIBUTES] for t in templates.tolist()],
                            dtype=torch.bool).reshape(-1, len(ATTRIBUTES))
    named = [{a: ATTRIBUTE_WORDS[a][lv] for a, lv in zip(ATTRIBUTES, lev) if a in TEMPLATE_ATTRIBUTES[t]}
             for lev, t in zip(levels.tolist(), templates.tolist())]
    return CaptionSet(texts, named, levels, mentions, templates, thresholds)


def caption_thresholds(data: ImageDataset) -> Tensor:
    """The word thresholds (K, 4, 2) that ``caption_dataset(data)`` fixes on ``data`` (per class), without
    composing its captions: what held-out pairs are cut by."""
    if data.labels is None or data.image_shape[0] != 1:
        raise ValueError(f"{data.name}: caption thresholds need a labelled grayscale set (N, 1, H, W), got "
                         f"{data.image_shape} {'unlabelled' if data.labels is None else ''}".rstrip())
    return attribute_thresholds(pixel_attributes(data.images), data.labels, data.num_classes)


def caption_dataset(data: ImageDataset, *, seed: int = 0, thresholds: Tensor | None = None) -> CaptionSet:
    """Captions of a labelled grayscale :class:`ImageDataset` (digits, Fashion-MNIST): class words are
    ``DIGIT_WORDS`` for classes named "0".."9", else the class names in lower case."""
    if data.labels is None or data.class_names is None or data.image_shape[0] != 1:
        raise ValueError(f"{data.name}: composed captions need a labelled grayscale set with class names "
                         f"(N, 1, H, W), got {data.image_shape} {'unlabelled' if data.labels is None else ''}".rstrip())
    words, kind = class_words(data.class_names, data.num_classes)
    return caption_images(data.images, data.labels, words, seed=seed, kind=kind, thresholds=thresholds)


# ----------------------------------------------------------------------------------------------
# User pairs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CaptionPairs:
    """images: float32 (N, C, H, W) in [-1, 1]; captions: N strings; paths: the N image files."""

    images: Tensor
    captions: list[str]
    paths: list[Path]


def _caption_text(raw: bytes | str, source: str, max_chars: int, long: list[str]) -> str:
    """A checked caption: UTF-8, stripped, not empty; cut to ``max_chars`` (the source noted in ``long``)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{source}: caption is not UTF-8 text ({err}); save it as UTF-8") from None
    if not isinstance(raw, str):
        raise ValueError(f"{source}: caption must be a string, got {type(raw).__name__}")
    text = raw.lstrip("\ufeff").strip()
    if not text:
        raise ValueError(f"{source}: caption is empty; every image needs a non-empty caption")
    if len(text) > max_chars:
        long.append(source)
        text = text[:max_chars]
    return text


def _folder_pairs(root: Path, max_chars: int, long: list[str]) -> list[tuple[Path, str]]:
    images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    texts = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
    stems = {p.stem for p in images}
    orphans = [p.name for p in texts if p.stem not in stems]
    if orphans:
        raise DataNotFoundError(f"caption folder {root}: no image for the captions {orphans[:3]}; expected "
                                f"NAME{'|'.join(IMAGE_SUFFIXES)} beside each NAME.txt")
    if len(stems) != len(images):
        raise ValueError(f"caption folder {root}: two images share a name stem; NAME.txt must name one image")
    pairs = []
    for img in images:
        txt = img.with_suffix(".txt")
        if not txt.is_file():
            raise DataNotFoundError(f"caption folder {root}: image {img.name} has no caption file {txt.name} beside it")
        pairs.append((img, _caption_text(txt.read_bytes(), str(txt), max_chars, long)))
    return pairs


def _jsonl_pairs(path: Path, max_chars: int, long: list[str]) -> list[tuple[Path, str]]:
    pairs = []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}, line {n}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{where}: not UTF-8 text ({err}); save the file as UTF-8") from None
        if not text.strip():
            continue
        try:
            item = json.loads(text.lstrip("\ufeff"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not a JSON object ({err}); "
                             'expected {"path": ..., "caption": ...}') from None
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or "caption" not in item:
            raise ValueError(f"{where}: expected {{\"path\": \"image.png\", \"caption\": \"...\"}}, got {text[:80]!r}")
        image = Path(item["path"]) if Path(item["path"]).is_absolute() else path.parent / item["path"]
        if not image.is_file():
            raise DataNotFoundError(f"{where}: image {image} does not exist (relative paths are resolved "
                                    f"against {path.parent})")
        pairs.append((image, _caption_text(item["caption"], where, max_chars, long)))
    return pairs


def load_caption_pairs(path: str | Path, size: int, channels: int = 3, *,
                       max_chars: int = MAX_CAPTION_CHARS) -> CaptionPairs:
    """User (image, caption) pairs: images (N, channels, size, size) in [-1, 1] and N captions.

    ``path``: a folder of NAME.png|jpg|jpeg images each with NAME.txt beside it (sorted by name), or a
    ``.jsonl`` file of {"path": ..., "caption": ...} lines (relative paths resolved against its folder,
    blank lines skipped). Images are resized and centre-cropped like :func:`lzn.data.load_image_folder`.
    Captions must be non-empty UTF-8 (a ValueError names the file, or the JSONL line); captions longer
    than ``max_chars`` characters are cut, with one UserWarning for the whole load.
    """
    if channels not in (1, 3) or size < 1 or max_chars < 1:
        raise ValueError(f"load_caption_pairs needs channels 1 or 3, size >= 1 and max_chars >= 1, got "
                         f"{channels}, {size}, {max_chars}")
    path = Path(path)
    long: list[str] = []
    if path.is_dir():
        pairs = _folder_pairs(path, max_chars, long)
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        pairs = _jsonl_pairs(path, max_chars, long)
    else:
        raise DataNotFoundError(f"{path} is neither a folder of images with NAME.txt captions nor a .jsonl file "
                                'of {"path": ..., "caption": ...} lines')
    if not pairs:
        form = (f"NAME{'|'.join(IMAGE_SUFFIXES)} images each with NAME.txt beside it" if path.is_dir()
                else '{"path": ..., "caption": ...} lines')
        raise DataNotFoundError(f"{path} holds no (image, caption) pairs; expected {form}")
    if long:
        warnings.warn(f"{path}: cut {len(long)} caption(s) longer than {max_chars} characters to {max_chars} "
                      f"(first: {long[0]})", UserWarning, stacklevel=2)
    pixels = np.stack([decode_image(img, size, channels, str(img), "remove it and its caption")
                       for img, _ in pairs])  # (N, H, W, C) uint8
    images = hwc_to_signed(pixels)  # (N, H, W, C) -> (N, C, H, W)
    return CaptionPairs(images, [c for _, c in pairs], [img for img, _ in pairs])


def load_caption_dataset(root: str | Path, size: int, channels: int = 3, *,
                         max_chars: int = MAX_CAPTION_CHARS) -> ImageDataset:
    """User (image, caption) pairs (:func:`load_caption_pairs`) as an unlabelled :class:`ImageDataset`
    (labels None, num_classes 0) whose ``captions`` are indexed like its images: ``data.name=captions``."""
    pairs = load_caption_pairs(root, size, channels, max_chars=max_chars)
    path = Path(root)
    return ImageDataset(images=pairs.images, labels=None, num_classes=0, name=path.stem or path.name,
                        captions=tuple(pairs.captions))
