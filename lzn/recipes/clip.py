"""Baseline for the text recipe: a CLIP-style image-text model with the same image and text encoders,
the symmetric InfoNCE loss with a learnable temperature over the global batch, and the same retrieval
and prompt-classification evaluation, ranking by cosine similarity (method.md §12.5)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn import checks, distributed
from lzn.recipes.captioned import CaptionedConfig, CaptionedRecipe, same_caption
from lzn.recipes.common import DataInfo, RecipeConfig
from lzn.training import StepOutput


@dataclass
class CLIPConfig(CaptionedConfig):
    temperature: float = 0.07  # initial; learnt as log(1 / temperature)
    max_logit_scale: float = 100.0  # 1 / temperature is clamped here, as CLIP does

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.positive("temperature", self.temperature)
        checks.positive("max_logit_scale", self.max_logit_scale)
        if 1.0 / self.temperature > self.max_logit_scale:
            raise ValueError(f"temperature must be >= 1 / max_logit_scale = {1.0 / self.max_logit_scale:g}, "
                             f"got {self.temperature}")


class LogitScale(nn.Module):
    """The learnable inverse temperature, stored as its log: a module of its own, so the trainer gives it
    a learning rate, an EMA and a checkpoint entry like any other."""

    def __init__(self, temperature: float, max_scale: float) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.max_scale = max_scale

    def forward(self) -> Tensor:
        return self.log_scale.exp().clamp_max(self.max_scale)


def symmetric_info_nce(img: Tensor, txt: Tensor, scale: Tensor, match: Tensor) -> Tensor:
    """CLIP's loss with negatives from every process: local normalised embeddings (B, q) against the
    gathered ones (n, q) in both directions. ``match`` (B, n) marks the correct partners of each local
    sample (every copy of a repeated caption); the target distribution is uniform over them."""
    all_img, all_txt = distributed.gather_with_grad(img), distributed.gather_with_grad(txt)  # (n, q)
    target = match.to(img.dtype) / match.sum(dim=1, keepdim=True)  # (B, n)
    i2t = scale * img @ all_txt.t()  # (B, n)
    t2i = scale * txt @ all_img.t()  # (B, n)
    return 0.5 * (F.cross_entropy(i2t, target) + F.cross_entropy(t2i, target))


class CLIPRecipe(CaptionedRecipe):
    name = "clip"
    config_cls: ClassVar[type[RecipeConfig]] = CLIPConfig
    cfg: CLIPConfig

    def __init__(self, cfg: CLIPConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.modules["logit_scale"] = LogitScale(cfg.temperature, cfg.max_logit_scale)

    def embed_images(self, images: Tensor) -> Tensor:
        return F.normalize(self.modules["encoder"](images), dim=1)  # (B, q)

    def embed_texts(self, texts: Sequence[str]) -> Tensor:
        return F.normalize(self.modules["text_encoder"](list(texts)), dim=1)  # (B, q)

    def step(self, batch: Any, step: int) -> StepOutput:
        x, _, captions = batch
        img, txt = self.embed_images(x), self.embed_texts(captions)
        scale = self.modules["logit_scale"]()
        loss = symmetric_info_nce(img, txt, scale, same_caption(captions, x.device))
        return StepOutput(loss, {"logit_scale": scale.detach()}, batch_size=x.shape[0])

    def _embed_all(self, images: Tensor) -> Tensor:
        b = self.cfg.eval_batch_size
        return torch.cat([self.embed_images(images[i:i + b].to(self.device)) for i in range(0, images.shape[0], b)])

    @torch.no_grad()
    def text_scores(self, images: Tensor, texts: Sequence[str]) -> Tensor:
        """Softmax over the candidate texts of the scaled cosine similarities: (N, M)."""
        sim = self._embed_all(images) @ self.embed_texts(texts).t()  # (N, M)
        return torch.softmax(self.modules["logit_scale"]() * sim, dim=1)

    @torch.no_grad()
    def image_scores(self, texts: Sequence[str], images: Tensor) -> Tensor:
        """Softmax over the candidate images of the scaled cosine similarities: (M, N)."""
        sim = self.embed_texts(texts) @ self._embed_all(images).t()  # (M, N)
        return torch.softmax(self.modules["logit_scale"]() * sim, dim=1)
