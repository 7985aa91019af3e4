"""Baselines with a loss of their own, under the same loop, data and budgets (method.md §6, §7): SimCLR
(NT-Xent, same encoder and views) and a supervised classifier (same encoder). The other two baselines are
settings of the LZN recipes, named in ``lzn.recipes.runner.RECIPES``: ``rf`` is generation without an
encoder (method.md §5.8), ``nogen`` is joint with ``rf_weight: 0`` (method.md §7.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn import checks, distributed
from lzn.data import ImageDataset
from lzn.eval import save_classifier
from lzn.eval.results import accuracy_row, classification_section
from lzn.recipes.common import DataInfo, NetConfig, Recipe, RecipeConfig, build_net
from lzn.recipes.representation import RepresentationConfig, RepresentationRecipe
from lzn.run_folder import RunFolder
from lzn.training import StepOutput


@dataclass
class SimCLRConfig(RepresentationConfig):
    temperature: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.positive("temperature", self.temperature)


class SimCLRRecipe(RepresentationRecipe):
    """NT-Xent over the gathered batch of both views' projections (the anchors), same encoder and views."""

    name = "simclr"
    config_cls: ClassVar[type[RecipeConfig]] = SimCLRConfig
    chunkable: ClassVar[bool] = False  # its own step has no chunked form
    cfg: SimCLRConfig

    def step(self, batch: Any, step: int) -> StepOutput:
        x, _ = batch
        v1, v2 = self.views(x)
        encoder = self.modules["encoder"]
        z1, z2 = F.normalize(encoder(v1), dim=1), F.normalize(encoder(v2), dim=1)  # (B, q) each
        loss = nt_xent(z1, z2, self.cfg.temperature)
        return StepOutput(loss, batch_size=x.shape[0])


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's loss with negatives from every process: local rows against the gathered batch."""
    b = z1.shape[0]
    all1, all2 = distributed.gather_with_grad(z1), distributed.gather_with_grad(z2)  # (n, q)
    keys = torch.cat([all1, all2])  # (2n, q)
    n = all1.shape[0]
    offset = distributed.global_offset(b)
    own = torch.arange(b, device=z1.device) + offset
    logits1 = z1 @ keys.t() / temperature  # (B, 2n)
    logits2 = z2 @ keys.t() / temperature
    mask = torch.zeros_like(logits1, dtype=torch.bool)
    mask[torch.arange(b), own] = True  # z1 against itself
    logits1 = logits1.masked_fill(mask, float("-inf"))
    mask2 = torch.zeros_like(mask)
    mask2[torch.arange(b), own + n] = True
    logits2 = logits2.masked_fill(mask2, float("-inf"))
    return 0.5 * (F.cross_entropy(logits1, own + n) + F.cross_entropy(logits2, own))


@dataclass
class ClassifierConfig(RecipeConfig):
    encoder: NetConfig = field(default_factory=lambda: NetConfig("small_encoder"))


class ClassifierRecipe(Recipe):
    """Supervised cross-entropy: the same encoder (anchor output) plus a linear head."""

    name = "classifier"
    config_cls: ClassVar[type[RecipeConfig]] = ClassifierConfig
    needs_labels: ClassVar[bool] = True
    cfg: ClassifierConfig

    def __init__(self, cfg: ClassifierConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        encoder = build_net(cfg.encoder, info, cfg.latent_dim)
        self.modules = {"encoder": encoder, "head": nn.Linear(cfg.latent_dim, info.num_classes)}

    def logits(self, x: Tensor) -> Tensor:
        return self.modules["head"](self.modules["encoder"](x))

    def step(self, batch: Any, step: int) -> StepOutput:
        x, y = batch
        logits = self.logits(x)
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss, {"train_acc": (logits.argmax(1) == y).float().mean()}, batch_size=x.shape[0])

    def classify(self, images: Tensor, batch_size: int = 2000) -> Tensor:
        return torch.cat([self.logits(c.to(self.device)).argmax(1).cpu() for c in images.split(batch_size)])

    def export(self, run_dir: Path) -> None:
        """The classifier's network, ``RUN/classifier`` (``lzn.eval.classifier_judge`` loads it: a judge of the
        class consistency of conditional samples, as in ``experiments/paper_claims.py``)."""
        save_classifier(self.modules["encoder"], self.modules["head"], RunFolder(run_dir).classifier)

    def evaluate(self, data: ImageDataset, run_dir: Any, split: str = "test") -> dict[str, float]:
        if data.labels is None:
            return {}
        acc = float((self.classify(data.images) == data.labels).float().mean())
        return {"classification": classification_section([accuracy_row(None, None, "logits", acc, headline=True)],
                                                         split, data.labels)}
