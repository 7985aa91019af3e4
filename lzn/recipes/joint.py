"""Case study 3: joint class-conditional generation and classification (method.md §7).

Image latents (§2) are aligned (§3, class-weighted, probability form) to learnable label anchors,
so each label's zone contains its images' zones; the RF decoder also sees the one-hot label. With
``rf_weight = 0`` and no decoder this is the paper's "RF+LZN (no gen)" ablation (§7.6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from lzn import checks, distributed
from lzn.core import zones
from lzn.core.budget import flow_memory
from lzn.data import ImageDataset
from lzn.eval import accuracy
from lzn.eval.results import accuracy_row, classification_section
from lzn.models import LatentZoningNetwork
from lzn.models.network import Context
from lzn.recipes.common import DataInfo, RecipeConfig, backward, cached_anchors
from lzn.recipes.config import ConfigError
from lzn.recipes import generation
from lzn.recipes.generation import GenerationConfig, GenerationRecipe
from lzn.training import StepOutput


@dataclass
class JointConfig(GenerationConfig):
    class_conditional: bool = True
    rf_weight: float = 1.0  # 0: the "no gen" ablation (no decoder is built)
    align_weight: float = 1.0
    cutoff: float = 0.2  # fraction of recorded reverse steps dropped (method.md §3.3)
    align_form: Literal["prob", "log"] = "prob"
    class_weights: bool = True  # label mixture weights = global batch class frequencies (method.md §3.4)
    # label anchors N(0, I), a regular simplex (method.md §7.2), or auto: the simplex where latent_dim >= classes - 1
    label_init: Literal["normal", "simplex", "auto"] = "normal"
    # alpha of the latents the alignment loss sees; null: noise_scale, the decoder's latents (the paper). 0 aligns the
    # zone centres while the decoder keeps learning from the whole zone (method.md §7.3; one more flow per step)
    align_noise_scale: float | None = None
    eval_noise_scale: float = 1.0  # alpha of test latents for `test_accuracy` (paper's plain metric: 1)
    eval_alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 1.2])  # also reported (method.md §8.2)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.non_negative("rf_weight", self.rf_weight)
        checks.non_negative("align_weight", self.align_weight)
        checks.in_range("cutoff", self.cutoff, 0.0, 1.0)
        checks.non_negative("eval_noise_scale", self.eval_noise_scale)
        if self.align_noise_scale is not None:
            checks.non_negative("align_noise_scale", self.align_noise_scale)
        for i, alpha in enumerate(self.eval_alphas):
            checks.non_negative(f"eval_alphas[{i}]", alpha)


def build_model(cfg: JointConfig, info: DataInfo) -> LatentZoningNetwork:
    """Image encoder, image decoder (none with ``rf_weight = 0``: the "no gen" ablation, method.md §7.6),
    label anchors (method.md §7.2)."""
    fits = info.num_classes - 1 <= cfg.latent_dim
    if cfg.label_init == "simplex" and not fits:
        raise ConfigError(f"label_init: a simplex of {info.num_classes} label anchors needs latent_dim >= "
                          f"{info.num_classes - 1}, got {cfg.latent_dim}; use label_init: auto or normal")
    init = "simplex" if cfg.label_init == "simplex" or (cfg.label_init == "auto" and fits) else "normal"
    return generation.build_model(cfg, info, decoder=cfg.rf_weight > 0, label_anchors=True, label_init=init)


class JointRecipe(GenerationRecipe):
    """Case study 3 (``joint``) and, with ``rf_weight: 0``, its "no gen" ablation (``nogen``)."""

    name = "joint"
    config_cls: ClassVar[type[RecipeConfig]] = JointConfig
    needs_labels: ClassVar[bool] = True
    chunkable: ClassVar[bool] = True
    cfg: JointConfig

    def __init__(self, cfg: JointConfig, info: DataInfo) -> None:
        if info.num_classes < 2:
            raise ValueError("the joint recipe needs a labelled data set with at least 2 classes")
        if cfg.encoder is None:
            raise ValueError("encoder: the joint recipe aligns image latents to label zones and needs an image encoder")
        super().__init__(cfg, info)

    def build_model(self) -> LatentZoningNetwork:
        return build_model(self.cfg, self.info)

    def alignment(self, latent: Tensor, y: Tensor, metrics: dict[str, float | Tensor]) -> Tensor:
        """Alignment loss of latents (B, q) to the label anchors (method.md §7.3 step 5); logs it."""
        cfg, la = self.cfg, self.lzn.label_anchors
        logw = None
        if cfg.class_weights:  # counts over the global batch, zero-count classes included (method.md §3.4)
            counts = distributed.all_reduce_sum(torch.bincount(y, minlength=la.num_classes).to(latent.dtype))
            logw = torch.log(counts / counts.sum())
        probs = la.alignment_probs(latent, y, steps=cfg.flow.label_steps, log_weights=logw)  # (steps, B)
        align = zones.alignment_loss(probs, cutoff=cfg.cutoff, form=cfg.align_form)
        metrics["align"] = align.detach()
        metrics["assign"] = (probs[-1] > 0.5).float().mean()  # correct class at the last recorded step
        return align

    def step(self, batch: Any, step: int) -> StepOutput:
        x, y = batch
        cfg = self.cfg
        chunk = self.chunk(x.shape[0])
        if chunk is not None:
            return self.chunked_step(x, y, chunk)
        latent, align_latent = self.latents(self.lzn.encoder(x))
        metrics: dict[str, float | Tensor] = {}
        loss = x.new_zeros(())
        if latent is not None:
            rf = self.rf_loss(x, latent, y)
            loss = loss + cfg.rf_weight * rf
            metrics["rf"] = rf.detach()
        loss = loss + cfg.align_weight * self.alignment(align_latent, y, metrics)
        return StepOutput(loss, metrics, batch_size=x.shape[0])

    def latents(self, anchors: Tensor) -> tuple[Tensor | None, Tensor]:
        """(the decoder's latents at ``noise_scale``, None without a decoder; the alignment's latents at
        ``align_noise_scale``, the same tensor when the two alphas agree): one flow, or two."""
        cfg = self.cfg
        align_alpha = cfg.noise_scale if cfg.align_noise_scale is None else cfg.align_noise_scale
        with flow_memory(cfg.train.flow_memory):
            def flow(alpha: float) -> Tensor:
                return self.lzn.latents_from_anchors(anchors, noise_scale=alpha, compile=cfg.train.compile,
                                                     allow_nonfinite=True)  # a diverged step: NaN loss, skipped
            latent = flow(cfg.noise_scale) if cfg.rf_weight > 0 else None
            if latent is not None and align_alpha == cfg.noise_scale:
                return latent, latent
            return latent, flow(align_alpha)

    def chunked_step(self, x: Tensor, y: Tensor | None, chunk: int) -> StepOutput:
        """The plain step's gradients, encoder and decoder run ``chunk`` samples at a time (method.md §9.7):
        the RF loss chunk by chunk, then one backward through the latents and the alignment loss (which
        also gives the label anchors their gradient), then the encoder chunk by chunk."""
        assert y is not None
        cfg = self.cfg
        metrics: dict[str, float | Tensor] = {}

        def run(scale: float) -> Tensor:
            anchors, replay = cached_anchors(self.lzn.encoder, x, chunk)  # (B, q) leaf
            latent, align_latent = self.latents(anchors)
            loss = x.new_zeros(())
            outputs, grads = [], []
            if latent is not None:
                rf, grad = self.chunked_rf(x, latent, y, chunk, scale * cfg.rf_weight)  # grad: (B, q)
                loss = loss + cfg.rf_weight * rf
                metrics["rf"] = rf
                outputs.append(latent)
                grads.append(grad)
            align = cfg.align_weight * self.alignment(align_latent, y, metrics)
            outputs.append(scale * align)
            grads.append(torch.ones_like(align))
            backward(outputs, grads)  # -> anchors.grad, label anchors
            replay()  # -> encoder
            return loss + align.detach()

        return StepOutput(None, metrics, batch_size=x.shape[0], backward=run)

    # ---- evaluation ------------------------------------------------------------------------------

    def accuracy(self, data: ImageDataset, noise_scale: float | None = None, context: Context = "batch") -> float:
        """``lzn.eval.accuracy`` with this run's evaluation batch (the paper's protocol, method.md §8.2);
        test latents at ``noise_scale`` (default: the config's eval_noise_scale)."""
        assert data.labels is not None
        alpha = self.cfg.eval_noise_scale if noise_scale is None else noise_scale
        return accuracy(self.lzn, data.images, data.labels, noise_scale=alpha, batch_size=self.cfg.eval_batch_size,
                        context=context)

    def evaluate(self, data: ImageDataset, run_dir: Any, split: str = "test") -> dict[str, Any]:
        """The sweep over ``eval_alphas`` in batches of ``eval_batch_size`` (the paper's protocol, method.md
        §8.2; the row at ``eval_noise_scale`` is the headline), the reference bank at ``eval_noise_scale`` and
        at alpha 1 (image by image, §2.9), and the decoder's reconstruction error."""
        out: dict[str, Any] = {}
        if data.labels is not None:
            a, batch = self.cfg.eval_noise_scale, self.cfg.eval_batch_size
            rows = [accuracy_row(a, batch, "batch", self.accuracy(data, a), headline=True)]
            rows += [accuracy_row(alpha, batch, "batch", self.accuracy(data, alpha))
                     for alpha in self.cfg.eval_alphas if alpha != a]
            if self.lzn.reference is not None:
                rows += [accuracy_row(alpha, batch, "reference", self.accuracy(data, alpha, "reference"))
                         for alpha in dict.fromkeys((a, 1.0))]
            out["classification"] = classification_section(rows, split, data.labels)
        if self.cfg.rf_weight > 0:
            out.update(super().evaluate(data, run_dir, split))
        return out

    def sample_grid(self, path: Path, num: int = 100, seed: int = 0) -> Path:
        return super().sample_grid(path, num=num, seed=seed)
