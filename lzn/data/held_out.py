"""The held-out (image, caption) pairs of image-text evaluation (method.md §12.3, §12.8): a seeded draw of
``pairs`` items of a split with their captions, the split's own (``data.name=captions``) or composed ones
whose attribute words are cut by the TRAINING set's thresholds (a word means the same in both splits), and
the class prompts of prompt classification. The recipes (at the end of training) and ``lzn evaluate`` (on
an exported model) draw the same pairs from here."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lzn.data.captions import CaptionSet, caption_dataset, class_words
from lzn.data.dataset import ImageDataset

DEFAULT_PROMPT = "the {kind} {cls}"
"""The class prompt of prompt classification: ``{cls}`` the class word, ``{kind}`` what it names (digit / item)."""

DEFAULT_PAIRS = 400
"""Held-out pairs drawn when nothing says otherwise (the image-text recipes' ``eval_pairs``)."""


def pick_pairs(n: int, pairs: int, seed: int) -> Tensor:
    """The seeded draw of ``min(pairs, n)`` of ``n`` items: (K,) int64 indices, the same for both caption
    sources and independent of what the items hold."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:min(pairs, n)]


def composed_pairs(data: ImageDataset, thresholds: Tensor, *, pairs: int, seed: int,
                   caption_seed: int) -> tuple[Tensor, Tensor, CaptionSet]:
    """Images (K, 1, H, W), labels (K,) and composed captions of the seeded draw of ``pairs`` items of
    ``data``. Captions are composed for the whole split (template by item index and ``caption_seed``,
    attributes cut by ``thresholds`` (C, 4, 2) of the training set), then drawn, so an image's caption does
    not depend on the draw."""
    if data.labels is None:
        raise ValueError(f"{data.name}: held-out (image, caption) pairs need labels (captions name the class)")
    full = caption_dataset(data, seed=caption_seed, thresholds=thresholds)
    pick = pick_pairs(len(data), pairs, seed)
    keep = pick.tolist()
    drawn = CaptionSet([full.captions[i] for i in keep], [full.attributes[i] for i in keep], full.levels[pick],
                       full.mentions[pick], full.templates[pick], full.thresholds)
    return data.images[pick], data.labels[pick], drawn


def own_pairs(data: ImageDataset, *, pairs: int, seed: int) -> tuple[Tensor, list[str]]:
    """Images (K, C, H, W) and the split's own captions (K) of the seeded draw of ``pairs`` items."""
    if data.captions is None:
        raise ValueError(f"{data.name}: this split has no captions of its own (data.name=captions gives them)")
    pick = pick_pairs(len(data), pairs, seed)
    return data.images[pick], data.captions_at(pick)


def class_prompts(template: str, class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """One prompt per class, ``template`` filled with the class words of composed captions and their kind."""
    words, kind = class_words(class_names, num_classes)
    return [template.format(cls=w, kind=kind) for w in words]
