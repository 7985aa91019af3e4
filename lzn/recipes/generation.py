"""Case study 1: rectified flow + LZN (method.md §5), and the shared pieces of case study 3.

The decoder is an RF velocity network that also sees the LZN latent of the target image; encoder and
decoder train jointly on the unchanged RF loss (§5.7). At sampling time the latent is N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from lzn import checks
from lzn.core import rectified_flow
from lzn.core.budget import flow_memory
from lzn.core.compiled import check_compile
from lzn.data import ImageDataset, ShardedDataset
from lzn.eval import median_l2, reconstruction_error
from lzn.eval.grids import class_grid
from lzn.models import FlowConfig, LabelAnchors, LatentZoningNetwork
from lzn.recipes.common import (DataInfo, NetConfig, Recipe, RecipeConfig, backward, build_net, cached_anchors,
                                check_chunkable, check_flow)
from lzn.run_folder import RunFolder
from lzn.training import StepOutput


@dataclass
class GenerationConfig(RecipeConfig):
    encoder: NetConfig | None = field(default_factory=lambda: NetConfig("small_encoder"))  # null: plain RF (rf)
    decoder: NetConfig = field(default_factory=lambda: NetConfig("small_unet"))
    flow: FlowConfig = field(default_factory=FlowConfig)  # DPM-Solver++ 3M, 20 steps (method.md §2.7)
    noise_scale: float = 1.0  # alpha of the start point (method.md §2.4)
    class_conditional: bool = False  # decoder also sees the one-hot label (RF baseline / CS3)
    sampler: Literal["euler", "heun", "dopri5"] = "euler"  # evaluation sampler (paper: dopri5)
    sampler_steps: int = 20  # euler / heun steps
    recon_images: int = 64  # images in the reconstruction metric (method.md §8.1 uses the eval batch)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_flow(self.flow)
        checks.non_negative("noise_scale", self.noise_scale)
        checks.at_least("sampler_steps", self.sampler_steps, 1)
        checks.at_least("recon_images", self.recon_images, 1)


def build_model(cfg: GenerationConfig, info: DataInfo, *, decoder: bool = True,
                label_anchors: bool = False, label_init: str = "normal") -> LatentZoningNetwork:
    """The model of a generation-style run (method.md §5.3, §7.2): an image encoder (none when ``cfg.encoder``
    is null: the plain RF baseline, whose decoder then sees no latent), an image decoder (class-conditional
    with ``cfg.class_conditional``), optional label anchors. Networks are built in that order, so a seed
    gives the same initial weights as before."""
    classes = info.num_classes if cfg.class_conditional else 0
    if cfg.class_conditional and info.num_classes < 2:
        raise ValueError("class_conditional needs a labelled data set")
    if cfg.encoder is None and not decoder:
        raise ValueError("encoder: null leaves nothing to train without a decoder")
    enc = None if cfg.encoder is None else build_net(cfg.encoder, info, cfg.latent_dim)
    q = cfg.latent_dim if enc is not None else 0  # a decoder without an encoder gets no latent
    dec = build_net(cfg.decoder, info, q, classes, key="decoder") if decoder else None
    anchors = LabelAnchors(info.num_classes, cfg.latent_dim, init=label_init) if label_anchors else None
    named = info.class_names and (anchors is not None or (classes and dec is not None))
    return LatentZoningNetwork(enc, dec, anchors, cfg.flow, class_names=tuple(info.class_names) if named else None)


class GenerationRecipe(Recipe):
    """Case study 1 (``generation``) and, with ``encoder: null``, the rectified-flow baseline (``rf``)."""

    name = "generation"
    config_cls: ClassVar[type[RecipeConfig]] = GenerationConfig
    chunkable: ClassVar[bool] = True
    cfg: GenerationConfig
    lzn: LatentZoningNetwork  # the model holds the networks (``modules`` are its parts)

    def __init__(self, cfg: GenerationConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.classes = info.num_classes if cfg.class_conditional else 0
        self.lzn = self.build_model()
        if cfg.train.chunk_size is not None:
            if self.lzn.encoder is None:
                raise ValueError("train.chunk_size: recipe rf (generation with encoder: null) has no chunked step; set "
                                 "train.chunk_size=null")
            check_chunkable(self.modules)
        if cfg.train.compile and self.lzn.encoder is not None:
            check_compile(cfg.train.device or "cpu")  # fail at build time, not at the first step

    def build_model(self) -> LatentZoningNetwork:
        return build_model(self.cfg, self.info)

    def rf_loss(self, x: Tensor, latent: Tensor | None, labels: Tensor | None) -> Tensor:
        decoder = self.lzn.decoder
        lab = labels if self.classes else None
        return rectified_flow.rf_loss(lambda xs, s: decoder(xs, s, latent, lab), x)

    def chunked_rf(self, x: Tensor, latent: Tensor, labels: Tensor | None, chunk: int,
                   scale: float) -> tuple[Tensor, Tensor]:
        """The RF loss of the whole batch, chunk by chunk (method.md §9.7 step 3): backpropagates ``scale``
        times each chunk's share into the decoder at once and returns the detached loss and d(scale *
        loss) / d latent (B, q). Times s, then image noise, are drawn for the whole batch first, in the
        order of ``rf_loss``, so the draws equal the plain step's."""
        decoder, b = self.lzn.decoder, x.shape[0]
        s = rectified_flow.sample_s(b, device=x.device, dtype=x.dtype)  # (B,)
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype)  # (B, C, H, W)
        lat = latent.detach().requires_grad_(True)  # (B, q); its .grad collects every chunk's share
        total = x.new_zeros(())
        for start in range(0, b, chunk):
            sl = slice(start, start + chunk)
            lab = labels[sl] if (self.classes and labels is not None) else None
            lat_c = lat[sl]  # (n_c, q)
            part = rectified_flow.rf_loss(lambda xs, t: decoder(xs, t, lat_c, lab), x[sl], s=s[sl], noise=noise[sl])
            part = part * (x[sl].shape[0] / b)  # chunk means weighted to the batch mean
            backward(part * scale)
            total = total + part.detach()
        assert lat.grad is not None
        return total, lat.grad

    def step(self, batch: Any, step: int) -> StepOutput:
        x, y = batch
        if self.lzn.encoder is None:  # the RF baseline (method.md §5.8)
            loss = self.rf_loss(x, None, y)
            return StepOutput(loss, {"rf": loss.detach()}, batch_size=x.shape[0])
        chunk = self.chunk(x.shape[0])
        if chunk is not None:
            return self.chunked_step(x, y, chunk)
        with flow_memory(self.cfg.train.flow_memory):
            latent = self.lzn.latents_from_anchors(self.lzn.encoder(x), noise_scale=self.cfg.noise_scale,
                                                   allow_nonfinite=True,  # a diverged step: NaN loss, skipped
                                                   compile=self.cfg.train.compile)
        loss = self.rf_loss(x, latent, y)
        return StepOutput(loss, {"rf": loss.detach()}, batch_size=x.shape[0])

    def chunked_step(self, x: Tensor, y: Tensor | None, chunk: int) -> StepOutput:
        """The plain step's gradients with the encoder and decoder run ``chunk`` samples at a time
        (gradient caching, method.md §9.7); the loop calls the returned closure."""
        metrics: dict[str, float | Tensor] = {}

        def run(scale: float) -> Tensor:
            anchors, replay = cached_anchors(self.lzn.encoder, x, chunk)  # (B, q) leaf
            with flow_memory(self.cfg.train.flow_memory):
                latent = self.lzn.latents_from_anchors(anchors, noise_scale=self.cfg.noise_scale, allow_nonfinite=True,
                                                       compile=self.cfg.train.compile)
            loss, grad = self.chunked_rf(x, latent, y, chunk, scale)  # grad: (B, q)
            backward(latent, grad)  # -> anchors.grad
            replay()  # -> encoder
            metrics["rf"] = loss
            return loss

        return StepOutput(None, metrics, batch_size=x.shape[0], backward=run)

    # ---- evaluation (callers put the modules in eval mode, e.g. inside Trainer.ema_weights()) ---------

    def sample_grid(self, path: Path, num: int = 64, seed: int = 0) -> Path:
        """``lzn.eval.class_grid`` with this run's sampler: a row per class when the decoder knows classes."""
        return class_grid(self.lzn, path, num=num, sampler=self.cfg.sampler, steps=self.cfg.sampler_steps, seed=seed)

    def reconstruction(self, data: ImageDataset | ShardedDataset, run_dir: Path | None) -> dict[str, Any]:
        """The ``reconstruction`` section: per-image L2 reconstruction error in [-1, 1] units (method.md §8.1),
        one repeat, over the first ``recon_images`` training images."""
        n = min(self.cfg.recon_images, len(data))
        x, labels = data.batch(torch.arange(n))  # the first n images (a sharded set reads only those)
        y = labels if self.classes else None
        err, rec = reconstruction_error(self.lzn, x, y, sampler=self.cfg.sampler, steps=self.cfg.sampler_steps,
                                        context="batch")  # the paper's metric: latents over the batch
        if run_dir is not None:
            from lzn.viz import save_image_grid

            pairs = torch.stack([x[:32], rec[:32]], dim=1).flatten(0, 1)  # (2n, C, H, W): original, reconstruction
            save_image_grid(pairs, RunFolder(run_dir).reconstructions, nrow=8)
        return {"l2_per_image": err, "l2_median": median_l2(x, rec), "num_images": n, "split": "train",
                "sampler": self.cfg.sampler, "sampler_steps": self.cfg.sampler_steps, "context": "batch"}

    def evaluate(self, data: ImageDataset, run_dir: Any, split: str = "test") -> dict[str, Any]:
        out = {}
        if self.train_data is not None:  # method.md §8.1: against the training set
            out["reconstruction"] = self.reconstruction(self.train_data, run_dir)
        if run_dir is not None:
            self.sample_grid(RunFolder(run_dir).samples)
        return out
