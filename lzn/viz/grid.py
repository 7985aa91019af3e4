"""Image grids as PNG (PIL only): samples, reconstructions, class rows."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from lzn.atomic import atomic_write


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 1, min_cell: int = 32) -> Tensor:
    """(B, C, H, W) in [-1, 1] -> uint8 (H', W', 3) grid; cells upscaled (nearest) to at least ``min_cell``."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1 or 3, H, W), got {tuple(images.shape)}")
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    scale = max(1, math.ceil(min_cell / x.shape[-1]))
    x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)  # nearest upscale
    b, c, h, w = x.shape
    ncol = nrow or max(1, math.ceil(math.sqrt(b)))
    rows = math.ceil(b / ncol)
    grid = torch.full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), 255, dtype=torch.uint8)
    for i in range(b):
        r, col = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid.permute(1, 2, 0)  # (C, H', W') -> (H', W', C)


def save_image_grid(images: Tensor, path: str | Path, nrow: int | None = None,
                    row_labels: list[str] | None = None) -> Path:
    """Write ``image_grid(images, nrow)`` to ``path`` as PNG; returns the path. ``nrow`` = images per
    row; ``row_labels`` (one per row, e.g. class names) are written in a margin left of the rows."""
    from PIL import Image, ImageDraw, ImageFont

    grid = image_grid(images, nrow)
    picture = Image.fromarray(grid.numpy())
    if row_labels:
        ncol = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
        rows = math.ceil(images.shape[0] / ncol)
        if len(row_labels) != rows:
            raise ValueError(f"row_labels has {len(row_labels)} entries for {rows} rows")
        font = ImageFont.load_default()
        draw = ImageDraw.Draw(picture)
        width = max(int(draw.textlength(t, font=font)) for t in row_labels) + 8
        labelled = Image.new("RGB", (picture.width + width, picture.height), "white")
        labelled.paste(picture, (width, 0))
        draw = ImageDraw.Draw(labelled)
        row_h = (picture.height - 1) / rows
        for r, text in enumerate(row_labels):
            draw.text((4, int((r + 0.5) * row_h)), text, fill="black", font=font, anchor="lm")
        picture = labelled
    return atomic_write(path, lambda f: picture.save(f, format="PNG"))
