"""Case study 2: unsupervised representation learning by aligning two views' zones (method.md §6).

View-1 latents (Euler, alpha = 0.45) are flowed back over the view-2 anchors of the whole (gathered)
batch; local sample j on rank r must land on anchor r * B + j (§4.1); log-form alignment loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from lzn import checks, distributed
from lzn.core import zones
from lzn.core.budget import flow_memory
from lzn.core.compiled import check_compile
from lzn.data import ImageDataset, ShardedDataset, TwoViewAugment, TwoViewConfig
from lzn.eval import extract_features, knn_accuracy, linear_probe_accuracy
from lzn.models import FlowConfig, LatentZoningNetwork
from lzn.recipes.common import (DataInfo, NetConfig, Recipe, RecipeConfig, backward, build_net, cached_anchors,
                                check_chunkable, check_flow, step_generator)
from lzn.training import StepOutput


@dataclass
class RepresentationConfig(RecipeConfig):
    encoder: NetConfig = field(default_factory=lambda: NetConfig("small_encoder"))
    flow: FlowConfig = field(default_factory=lambda: FlowConfig(solver="euler", steps=20))  # method.md §2.7
    noise_scale: float = 0.45  # alpha (method.md §6.4)
    cutoff: float = 0.2
    align_form: Literal["prob", "log"] = "log"
    augment: dict[str, Any] = field(default_factory=dict)  # TwoViewConfig overrides; crop = image size
    knn_k: int = 20
    probe_epochs: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        check_flow(self.flow)
        checks.non_negative("noise_scale", self.noise_scale)
        checks.in_range("cutoff", self.cutoff, 0.0, 1.0)
        checks.at_least("knn_k", self.knn_k, 1)
        checks.at_least("probe_epochs", self.probe_epochs, 1)


def build_model(cfg: RepresentationConfig, info: DataInfo) -> LatentZoningNetwork:
    """An image encoder alone (method.md §6.3); its latents use ``cfg.flow`` (Euler, method.md §2.7)."""
    return LatentZoningNetwork(build_net(cfg.encoder, info, cfg.latent_dim), None, None, cfg.flow)


class RepresentationRecipe(Recipe):
    name = "representation"
    config_cls: ClassVar[type[RecipeConfig]] = RepresentationConfig
    chunkable: ClassVar[bool] = True
    streams_eval: ClassVar[bool] = True
    cfg: RepresentationConfig
    lzn: LatentZoningNetwork  # the model holds the networks (``modules`` are its parts)

    def __init__(self, cfg: RepresentationConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.augment = TwoViewAugment(TwoViewConfig.for_size(info.size, **cfg.augment))
        self.lzn = build_model(cfg, info)
        if cfg.train.chunk_size is not None:
            check_chunkable(self.modules)
        if cfg.train.compile:
            check_compile(cfg.train.device or "cpu")  # fail at build time, not at the first step

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.augment(x, step_generator(x.device))

    def alignment(self, latent: Tensor, anchors2: Tensor) -> tuple[Tensor, Tensor]:
        """View-1 latents (B, q) flowed back over the gathered view-2 anchors (method.md §6.4): the
        alignment loss and the fraction landing on their own anchor."""
        b = latent.shape[0]
        gathered = distributed.gather_with_grad(anchors2)  # (n, q), rank-major
        targets = torch.arange(b, device=latent.device) + distributed.global_offset(b)
        _, probs = zones.flow_back(latent, gathered, steps=self.cfg.flow.steps, targets=targets,
                                   flow_memory=self.cfg.train.flow_memory)  # (steps, B)
        loss = zones.alignment_loss(probs, cutoff=self.cfg.cutoff, form=self.cfg.align_form)
        return loss, (probs[-1] > 0.5).float().mean()

    def step(self, batch: Any, step: int) -> StepOutput:
        x, _ = batch
        v1, v2 = self.views(x)
        b, chunk = x.shape[0], self.chunk(x.shape[0])
        if chunk is not None:
            return self.chunked_step(v1, v2, chunk)
        encoder = self.lzn.encoder
        with flow_memory(self.cfg.train.flow_memory):
            latent = self.lzn.latents_from_anchors(encoder(v1), noise_scale=self.cfg.noise_scale,
                                                   allow_nonfinite=True, compile=self.cfg.train.compile)  # (B, q); NaN steps are skipped
        loss, assign = self.alignment(latent, encoder(v2))
        return StepOutput(loss, {"assign": assign}, batch_size=b)

    def chunked_step(self, v1: Tensor, v2: Tensor, chunk: int) -> StepOutput:
        """The plain step's gradients with the encoder run ``chunk`` views at a time (gradient caching,
        method.md §9.7): anchors of both views without graph, the loss on them, then the encoder again."""
        metrics: dict[str, float | Tensor] = {}
        encoder = self.lzn.encoder

        def run(scale: float) -> Tensor:
            anchors1, replay1 = cached_anchors(encoder, v1, chunk)  # (B, q) leaves
            with flow_memory(self.cfg.train.flow_memory):
                latent = self.lzn.latents_from_anchors(anchors1, noise_scale=self.cfg.noise_scale,
                                                       allow_nonfinite=True, compile=self.cfg.train.compile)
            anchors2, replay2 = cached_anchors(encoder, v2, chunk)  # after the latent noise, as in the plain step
            loss, metrics["assign"] = self.alignment(latent, anchors2)
            backward(scale * loss)  # -> anchors1.grad, anchors2.grad
            replay1()
            replay2()
            return loss.detach()

        return StepOutput(None, metrics, batch_size=v1.shape[0], backward=run)

    def evaluate(self, data: ImageDataset | ShardedDataset, run_dir: Any, split: str = "test") -> dict[str, Any]:
        """The ``representation`` section: kNN and linear-probe accuracy of the backbone features on held-out data ("no head", method.md
        §8.3). Without a held-out split there is nothing honest to report (a kNN of the training set
        against itself finds each image), so nothing is."""
        test = data
        if split == self.cfg.data.train_split or test.labels is None or self.train_data is None \
                or self.train_data.labels is None:
            return {}
        fn = self.lzn.encoder.features
        train_f = extract_features(fn, self.train_data, device=self.device)  # sharded sets stream, batch by batch
        test_f = extract_features(fn, test, device=self.device)
        ya, yb = self.train_data.labels, test.labels
        return {"representation": {
            "features": "backbone", "split": split, "knn_k": self.cfg.knn_k, "probe_epochs": self.cfg.probe_epochs,
            "knn_accuracy": knn_accuracy(train_f, ya, test_f, yb, k=self.cfg.knn_k),
            "probe_accuracy": linear_probe_accuracy(train_f, ya, test_f, yb, epochs=self.cfg.probe_epochs)}}
