"""Sample grids as functions of a model: what a run writes to ``samples.png`` and ``samples/step-*.png``,
and what anyone can draw from an exported model. Callers put the model in eval mode (e.g. the EMA weights)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lzn.eval.text import text_to_image
from lzn.models import LatentZoningNetwork
from lzn.viz import save_image_grid


@torch.no_grad()
def class_grid(model: LatentZoningNetwork, path: str | Path, *, num: int = 64, sampler: str = "euler",
               steps: int | None = 20, seed: int = 0) -> Path:
    """A PNG of ``num`` samples: for a model that knows classes (label anchors or a class-conditional
    decoder) one row per class, ``num // classes`` samples each, its name in the margin; else ``num``
    unconditional samples."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    k = model.num_classes
    per = max(1, num // k) if k else None
    labels = torch.arange(k, device=model.device).repeat_interleave(per) if per else None
    out = model.generate(num=None if labels is not None else num, labels=labels, sampler=sampler, steps=steps,
                         generator=gen)
    names = list(model.class_names) if (labels is not None and model.class_names) else None
    return save_image_grid(out.images, path, nrow=per, row_labels=names)


def showcase_captions(kind: str, words: Sequence[str]) -> list[str]:
    """Captions that show what a text model learnt from composed captions (``lzn.data.captions``): for
    digits typed ones, among them phrasings the caption templates never produce ("a fat zero", "seven,
    drawn thin and slanted"); for other classes three forms of each of the first four class ``words``."""
    w = list(words)
    if kind == "digit" and len(w) == 10:
        return [f"a fat {w[0]}", f"{w[7]}, drawn thin and slanted", f"the digit {w[3]}", f"a small, thin {w[1]}",
                f"a large, thick {w[8]}", f"a faint {w[2]}, slanted left", f"a bright {w[4]}", f"{w[9]} written upright"]
    forms = ["the {kind} {cls}", "a large, thick {cls}", "a small, faint {cls}"]
    return [f.format(kind=kind, cls=c) for c in w[:4] for f in forms]


@torch.no_grad()
def caption_grid(model: LatentZoningNetwork, captions: Sequence[str], path: str | Path, *, per_caption: int = 8,
                 sampler: str = "euler", steps: int | None = 20, seed: int = 0, label_chars: int | None = None) -> Path:
    """A PNG of text-to-image samples (``lzn.eval.text_to_image``, against the model's text reference set):
    one row of ``per_caption`` samples per caption, the caption left of its row (cut to ``label_chars``
    characters with "..." when given)."""
    captions = list(captions)
    repeated = [c for c in captions for _ in range(per_caption)]
    images = text_to_image(model, repeated, sampler=sampler, steps=steps,
                           generator=torch.Generator(device=model.device).manual_seed(seed))
    labels = captions if label_chars is None else \
        [c if len(c) <= label_chars else c[:label_chars - 3] + "..." for c in captions]
    return save_image_grid(images.clamp(-1, 1), path, nrow=per_caption, row_labels=labels)
