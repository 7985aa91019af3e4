"""The checks of :class:`~lzn.models.LatentZoningNetwork`'s public arguments, done once at that boundary:
the spelling of a typed call, images, labels, latents, class names, the parts an operation needs. Each
raises ``TypeError`` / ``ValueError`` saying what is expected."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lzn.models.outputs import Labels

NO_CLASSES = "this model has no classes (no label anchors and no class-conditional decoder)"


def typed(method: str, type_or_images: str | Tensor, samples: Any, known: tuple[str, ...]) -> tuple[str, Any]:
    """(type, samples) of a call spelled ``method(type, samples)``, ``type`` one of the model's types
    ``known``, or, the images' shorthand, ``method(images)``."""
    if isinstance(type_or_images, str):
        if samples is None:
            raise ValueError(f"{method}({type_or_images!r}, samples): pass the samples")
        return check_type_name(type_or_images, known), samples
    if samples is not None:
        raise TypeError(f"{method}(images, ...): the second argument is for {method}(type, samples); pass "
                        "noise, noise_scale, generator and context as keywords")
    return "image", type_or_images


def given(given: tuple[str, Any] | None, labels: Labels | None) -> tuple[str, Any] | None:
    """The (type, samples) whose zones ``generate`` draws latents from: ``given``, or ``("label", labels)``
    for its shorthand ``labels=``; None for latents from N(0, I)."""
    if given is None:
        return None if labels is None else ("label", labels)
    if not isinstance(given, tuple) or len(given) != 2 or not isinstance(given[0], str):
        raise TypeError(f"given must be a (type, samples) pair such as ('text', ['a fat zero']), got {given!r}")
    if labels is not None:
        raise ValueError("pass labels or given, not both")
    return given


def need(model: nn.Module, part: str) -> Any:
    """The part ``part`` of ``model`` (``encoder``, ``decoder``, ``label_anchors``); missing, a ValueError."""
    module = getattr(model, part)
    if module is None:
        raise ValueError(f"this operation needs a {part.replace('_', ' ')}, and the model has none")
    return module


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_images(images: Tensor, channels: int, size: int, want: torch.dtype) -> None:
    """(B, C, S, S) in [-1, 1] with the weights' dtype ``want``, B >= 1, finite; one host sync."""
    c = channels
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a (B, {c}, {size}, {size}) torch.Tensor in [-1, 1], "
                        f"got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be a (B, {c}, {size}, {size}) tensor, got {tuple(images.shape)}")
    if images.shape[1] != c or images.shape[2] != size or images.shape[3] != size:
        raise ValueError(f"images must have shape (B, {c}, {size}, {size}), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be {dtype_name(want)} scaled to [-1, 1], got {images.dtype}; "
                        "for 0..255 pixels (uint8) use images.float() / 127.5 - 1")
    if images.dtype != want:
        convert = "images.float()" if want == torch.float32 else f"images.to({want})"
        mixed = ("; for mixed precision keep the images and weights in float32 and run under torch.autocast"
                 if images.dtype.itemsize < want.itemsize else "")
        raise TypeError(f"images must be {dtype_name(want)} like the model's weights, got {images.dtype}; "
                        f"convert with {convert}{mixed}")
    if images.shape[0] == 0:
        raise ValueError(f"images is an empty batch {tuple(images.shape)}; pass at least one image")
    lo, hi = torch.stack(torch.aminmax(images.detach())).tolist()  # NaN propagates to both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("images contain NaN or infinite pixels")
    if lo < -1.5 or hi > 1.5:  # generated samples overshoot [-1, 1] a little: only clear mistakes
        hint = "for 0..255 pixels use images / 127.5 - 1" if lo >= 0.0 and hi <= 255.0 else "rescale them"
        raise ValueError(f"images must be scaled to [-1, 1], got values in [{lo:g}, {hi:g}]; {hint}")


def as_labels(labels: Labels, k: int, batch: int | None = None) -> Tensor:
    """1-D class indices in [0, k) as a long tensor (same device as a given tensor, else CPU)."""
    if k == 0:
        raise ValueError(NO_CLASSES)
    want = f"labels must be a 1-D sequence or tensor of class indices in [0, {k})"
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels) if labels.dtype.kind in "iu" else labels
    if isinstance(labels, (list, tuple)):
        bad = [v for v in labels if not isinstance(v, numbers.Integral) or isinstance(v, bool)]
        if bad:
            names = "; map class names with model.class_index(name)" if isinstance(bad[0], str) else ""
            raise TypeError(f"{want}, got an element {bad[0]!r}{names}")
        labels = torch.tensor([int(v) for v in labels], dtype=torch.long)
    if not isinstance(labels, Tensor):
        got = f"a {labels.dtype} array" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise TypeError(f"{want}, got {got}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{want}, got a {labels.dtype} tensor; use labels.long() for whole numbers")
    if labels.dim() != 1:
        raise ValueError(f"{want}, got shape {tuple(labels.shape)}")
    if batch is not None and labels.shape[0] != batch:
        raise ValueError(f"labels must have shape ({batch},) to match the images, got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def check_class_names(names: Sequence[str] | None, k: int) -> tuple[str, ...] | None:
    """One unique non-empty string per class of the model's ``k``, as a tuple (None stays None)."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"class_names must be a tuple of strings (one per class), got {type(names).__name__}")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"class_names must be non-empty strings, got {bad[0]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"class_names must be unique, got {dupes} more than once")
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names but the model has {k} classes "
                         "(label anchors or class-conditional decoder); pass one name per class")
    return tuple(names)


def class_index(name_or_index: str | int, names: tuple[str, ...] | None, k: int) -> int:
    """A class name ("cat"), an index as text ("3") or an index (3) as an index in [0, k)."""
    if k == 0:
        raise ValueError(NO_CLASSES)
    valid = (f"classes: {', '.join(f'{i} {n!r}' for i, n in enumerate(names))}" if names
             else f"indices 0..{k - 1} (the model has no class names)")
    value = name_or_index
    if isinstance(value, str):
        if names and value in names:
            return names.index(value)
        text = value.strip()
        if not text.isdigit():
            close = difflib.get_close_matches(value, names or (), n=1)
            also = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown class {value!r}{also} ({valid})")
        value = int(text)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"a class is a name or an int index, got {type(value).__name__} ({valid})")
    if not 0 <= int(value) < k:
        raise ValueError(f"class index {int(value)} is outside [0, {k}) ({valid})")
    return int(value)


def check_rows(x: Tensor, q: int, what: str = "latents", rows: str = "B") -> None:
    """``x`` is a finite ({rows} >= 1, q) tensor; messages name it ``what``."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != q or x.shape[0] < 1:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a ({rows} >= 1, {q}) tensor, got {got}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contain NaN or inf values")


def check_latents(latents: Tensor, q: int) -> None:
    """(B >= 1, q) and finite."""
    check_rows(latents, q)


def check_type_name(name: object, known: tuple[str, ...]) -> str:
    """``name`` if it is one of the model's data types ``known``; else the closest one in the error."""
    if not isinstance(name, str):
        raise TypeError(f"a data type is a name ({', '.join(known)}), got {type(name).__name__}")
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        also = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"this model has no data type {name!r}{also} (it has {', '.join(known)})")
    return name
