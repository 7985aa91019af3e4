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
from lzn.data import ImageDataset, TwoViewAugment, TwoViewConfig
from lzn.eval import extract_features, knn_accuracy, linear_probe_accuracy
from lzn.models import FlowConfig, LatentZoningNetwork
from lzn.recipes.common import DataInfo, NetConfig, Recipe, RecipeConfig, build_net, check_flow, step_generator
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


class RepresentationRecipe(Recipe):
    name: ClassVar[str] = "representation"
    config_cls: ClassVar[type[RecipeConfig]] = RepresentationConfig
    cfg: RepresentationConfig

    def __init__(self, cfg: RepresentationConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.augment = TwoViewAugment(TwoViewConfig.for_size(info.size, **cfg.augment))
        self.modules = {"encoder": build_net(cfg.encoder, info, cfg.latent_dim)}
        self.lzn = LatentZoningNetwork(self.modules["encoder"], None, None, cfg.flow)

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.augment(x, step_generator(x.device))

    def step(self, batch: Any, step: int) -> StepOutput:
        x, _ = batch
        v1, v2 = self.views(x)
        encoder = self.modules["encoder"]
        latent = self.lzn.latents_from_anchors(encoder(v1), noise_scale=self.cfg.noise_scale,
                                               allow_nonfinite=True)  # (B, q); NaN steps are skipped
        anchors2 = distributed.gather_with_grad(encoder(v2))  # (n, q), rank-major
        b = x.shape[0]
        targets = torch.arange(b, device=x.device) + distributed.global_offset(b)
        _, probs = zones.flow_back(latent, anchors2, steps=self.cfg.flow.steps, targets=targets)  # (steps, B)
        loss = zones.alignment_loss(probs, cutoff=self.cfg.cutoff, form=self.cfg.align_form)
        return StepOutput(loss, {"assign": (probs[-1] > 0.5).float().mean()}, batch_size=b)

    def evaluate(self, data: ImageDataset, run_dir: Any, split: str = "test") -> dict[str, float]:
        """kNN and linear-probe accuracy of the backbone features on held-out data ("no head", method.md
        §8.3). Without a held-out split there is nothing honest to report (a kNN of the training set
        against itself finds each image), so nothing is."""
        test = data
        if split == self.cfg.data.train_split or test.labels is None or self.train_data is None \
                or self.train_data.labels is None:
            return {}
        fn = self.modules["encoder"].features
        train_f = extract_features(fn, self.train_data.images, device=self.device)
        test_f = extract_features(fn, test.images, device=self.device)
        ya, yb = self.train_data.labels, test.labels
        return {"knn_accuracy": knn_accuracy(train_f, ya, test_f, yb, k=self.cfg.knn_k),
                "probe_accuracy": linear_probe_accuracy(train_f, ya, test_f, yb, epochs=self.cfg.probe_epochs)}
