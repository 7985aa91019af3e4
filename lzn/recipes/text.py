"""Text as a third data type: images and captions aligned zone to zone, text-conditioned generation
(method.md §12; §1.3 anchors, §2 latents, §3 alignment).

Step: image anchors E_img(x) and caption anchors E_txt(c), each gathered over the global batch (§4.1).
Image latents (over the image anchors) flow back over the caption anchors and must land on their own
caption (image -> text); caption latents (over the caption anchors) flow back over the image anchors and
must land on their own image (text -> image); both by the alignment loss (§3.3). Composed captions
repeat within a batch, so every copy of a sample's caption (and every image of such a copy) counts as
its target: the recorded probability is summed over them. The image decoder's rectified-flow loss is
conditioned on the image latent (§5.7); optional label anchors are aligned as in case study 3 (§7.3).

Text-conditioned generation: a caption's latent is drawn from its zone against a reference set of
caption anchors, then decoded. The reference is the text anchors of ``batch_size - 1`` training captions
(a seeded draw, fixed at attach time) plus the caption itself (``lzn.core.reference``, method.md §2.9):
training computed every caption latent over a global batch of ``batch_size`` training captions, so a
reference of that size and distribution gives each zone the same mass (1 / batch_size) and the same
neighbours the text -> image alignment shaped; and a fixed reference makes a caption's samples
independent of which other captions are generated with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from lzn import checks, distributed
from lzn.core import rectified_flow, zones
from lzn.core.budget import flow_memory
from lzn.data import ImageDataset, ShardedDataset
from lzn.eval import RetrievalSettings, accuracy
from lzn.eval.grids import caption_grid, showcase_captions
from lzn.eval.results import accuracy_row, classification_section
from lzn.eval.text import ImageScores, TextScores, lzn_scores, t2i_consistency
from lzn.models import FlowConfig, LabelAnchors, LatentZoningNetwork, TypeParts, build
from lzn.recipes.captioned import CaptionedConfig, CaptionedRecipe, same_caption
from lzn.recipes.common import DataInfo, NetConfig, RecipeConfig, build_net, check_flow
from lzn.run_folder import RunFolder
from lzn.training import StepOutput


@dataclass
class TextImageConfig(CaptionedConfig):
    decoder: NetConfig = field(default_factory=lambda: NetConfig("small_unet"))
    flow: FlowConfig = field(default_factory=FlowConfig)  # latents: DPM-Solver++ 3M, 20 steps (method.md §2.7)
    align_steps: int = 20  # reverse Euler steps of the alignment and of retrieval (method.md §3.2)
    noise_scale: float = 0.0  # alpha of training and generation latents: the zone centres, better than case study
    # 2's 0.45 on every figure on digits and Fashion-MNIST (method.md §12.4; alpha = 1 aligned several times slower)
    eval_noise_scale: float = 0.0  # alpha of retrieval latents (zone centres, as the digits joint preset)
    cutoff: float = 0.2
    align_form: Literal["prob", "log"] = "log"
    align_weight: float = 1.0  # each direction
    rf_weight: float = 1.0  # 0: no decoder (alignment only)
    label_weight: float = 0.0  # > 0: label anchors aligned too (method.md §7.3)
    sampler: Literal["euler", "heun", "dopri5"] = "euler"
    sampler_steps: int = 20
    gen_samples: int = 200  # text-to-image samples judged for class and attribute consistency

    def __post_init__(self) -> None:
        super().__post_init__()
        check_flow(self.flow)
        checks.at_least("align_steps", self.align_steps, 1)
        checks.non_negative("noise_scale", self.noise_scale)
        checks.non_negative("eval_noise_scale", self.eval_noise_scale)
        checks.in_range("cutoff", self.cutoff, 0.0, 1.0)
        if self.align_form not in ("prob", "log"):
            raise ValueError(f"align_form must be 'prob' or 'log', got {self.align_form!r}")
        for key in ("align_weight", "rf_weight", "label_weight"):
            checks.non_negative(key, getattr(self, key))
        if self.align_weight == 0 and self.rf_weight == 0 and self.label_weight == 0:
            raise ValueError("align_weight, rf_weight and label_weight are all 0: nothing to train")
        if self.sample_every and self.rf_weight == 0:
            raise ValueError("sample_every: sample grids need the image decoder, which rf_weight = 0 leaves out")
        checks.at_least("sampler_steps", self.sampler_steps, 1)
        checks.at_least("gen_samples", self.gen_samples, 0)


def build_model(cfg: TextImageConfig, info: DataInfo, encoder: nn.Module, text_encoder: nn.Module) -> LatentZoningNetwork:
    """One model of three types (method.md §12): image (``encoder``, and the latent-conditioned decoder unless
    ``rf_weight`` is 0), text (``text_encoder`` and the candidate decoder) and, with ``label_weight`` > 0,
    label. Its flow carries the alignment's reverse steps and cut-off (the text decoder's choice) and alpha
    (text-to-image latents). ``encoder`` and ``text_encoder`` are built first, in that order, by the caller."""
    decoder = build_net(cfg.decoder, info, cfg.latent_dim, key="decoder") if cfg.rf_weight > 0 else None
    anchors = LabelAnchors(info.num_classes, cfg.latent_dim) if cfg.label_weight > 0 else None
    flow = dataclasses.replace(cfg.flow, candidate_steps=cfg.align_steps, candidate_cutoff=cfg.cutoff,
                               noise_scale=cfg.noise_scale)
    names = tuple(info.class_names) if (anchors is not None and info.class_names) else None
    return LatentZoningNetwork(encoder, decoder, anchors, flow, class_names=names,
                               types={"text": TypeParts(text_encoder, build("candidate_decoder"))})


class TextImageRecipe(CaptionedRecipe):
    name = "text"
    config_cls: ClassVar[type[RecipeConfig]] = TextImageConfig
    cfg: TextImageConfig
    lzn: LatentZoningNetwork  # the model holds the networks (``modules`` are its parts)

    def __init__(self, cfg: TextImageConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.lzn = build_model(cfg, info, self.modules.pop("encoder"), self.modules.pop("text_encoder"))
        self.reference_captions: list[str] | None = None

    def attach_data(self, data: ImageDataset | ShardedDataset) -> None:
        super().attach_data(data)
        assert self.train_captions is not None  # composed or the user's own, indexed like the images
        gen = torch.Generator().manual_seed(self.cfg.train.seed)
        pick = torch.randperm(len(data), generator=gen)[: self.cfg.batch_size - 1]
        self.reference_captions = [self.train_captions[i] for i in pick.tolist()]

    def build_references(self) -> None:
        """The model's text reference set: the anchors of the reference captions under the current weights
        (the runner calls this with the EMA weights before evaluating and exporting the model)."""
        if self.reference_captions:
            self.lzn.build_reference_from(self.reference_captions, type="text")

    # ---- training ----------------------------------------------------------------------------------

    def latents(self, anchors: Tensor, noise_scale: float) -> Tensor:
        """Latents of local anchors (B, q) over the gathered anchors of their type (method.md §2, §4.1)."""
        with flow_memory(self.cfg.train.flow_memory):
            return self.lzn.latents_from_anchors(anchors, noise_scale=noise_scale, allow_nonfinite=True,
                                                 compile=self.cfg.train.compile)

    def alignment(self, latent: Tensor, anchors: Tensor, match: Tensor) -> tuple[Tensor, Tensor]:
        """Latents (B, q) flowed back over the gathered ``anchors`` of the other type (method.md §3.2);
        ``match`` (B, n) marks each latent's correct anchors. -> (loss, fraction landing on one of them)."""
        gathered = distributed.gather_with_grad(anchors)  # (n, q), rank-major
        _, probs = zones.flow_back(latent, gathered, steps=self.cfg.align_steps,
                                   flow_memory=self.cfg.train.flow_memory)  # (steps, B, n)
        target = (probs * match.to(probs.dtype)).sum(dim=2).clamp_max(1.0)  # (steps, B)
        loss = zones.alignment_loss(target, cutoff=self.cfg.cutoff, form=self.cfg.align_form)
        return loss, (target[-1] > 0.5).float().mean()

    def step(self, batch: Any, step: int) -> StepOutput:
        x, y, captions = batch
        cfg = self.cfg
        img = self.lzn.encoder(x)  # (B, q)
        txt = self.lzn.text_encoder(captions)  # (B, q)
        match = same_caption(captions, x.device)  # (B, n), symmetric in the two directions
        lat_img = self.latents(img, cfg.noise_scale)  # (B, q)
        metrics: dict[str, float | Tensor] = {}
        loss = x.new_zeros(())
        if cfg.align_weight > 0:
            lat_txt = self.latents(txt, cfg.noise_scale)  # (B, q)
            i2t, metrics["assign_i2t"] = self.alignment(lat_img, txt, match)
            t2i, metrics["assign_t2i"] = self.alignment(lat_txt, img, match)
            metrics["align_i2t"], metrics["align_t2i"] = i2t.detach(), t2i.detach()
            loss = loss + cfg.align_weight * (i2t + t2i)
        if cfg.rf_weight > 0:
            decoder = self.lzn.decoder
            rf = rectified_flow.rf_loss(lambda xs, s: decoder(xs, s, lat_img, None), x)
            metrics["rf"] = rf.detach()
            loss = loss + cfg.rf_weight * rf
        if cfg.label_weight > 0:
            la = self.lzn.label_anchors
            assert isinstance(la, LabelAnchors)
            counts = distributed.all_reduce_sum(torch.bincount(y, minlength=la.num_classes).to(lat_img.dtype))
            probs = la.alignment_probs(lat_img, y, steps=cfg.flow.label_steps,
                                       log_weights=torch.log(counts / counts.sum()))  # (steps, B), method.md §3.4
            label = zones.alignment_loss(probs, cutoff=cfg.cutoff, form="prob")
            metrics["align_label"] = label.detach()
            loss = loss + cfg.label_weight * label
        return StepOutput(loss, metrics, batch_size=x.shape[0])

    # ---- decoders: texts from a candidate set, images from a caption ---------------------------------

    def _scores(self) -> tuple[TextScores, ImageScores]:
        """``lzn.eval.lzn_scores`` with this run's protocol: each chunk of ``eval_batch_size`` queries is its
        own anchor set (the paper's, method.md §8.2), alpha ``eval_noise_scale``, seeded noise; the same
        functions ``lzn evaluate --metrics retrieval`` scores an exported model with."""
        return lzn_scores(self.lzn, noise_scale=self.cfg.eval_noise_scale, batch_size=self.cfg.eval_batch_size)

    @torch.no_grad()
    def text_scores(self, images: Tensor, texts: Sequence[str]) -> Tensor:
        """Image latents flowed back over the candidate texts' anchors (the text decoder): (N, M)."""
        return self._scores()[0](images, texts)

    @torch.no_grad()
    def image_scores(self, texts: Sequence[str], images: Tensor) -> Tensor:
        """Caption latents flowed back over the candidate images' anchors: (M, N)."""
        return self._scores()[1](texts, images)

    def sample_grid(self, path: Path, seed: int = 0, per_caption: int = 8,
                    captions: Sequence[str] | None = None) -> Path:
        """``lzn.eval.caption_grid``, one row per caption, under the current weights: for composed captions
        ``lzn.eval.grids.showcase_captions``; given ``captions`` (e.g. held-out ones), or else for user
        captions the training captions, the first 8 distinct of them, each cut to 48 characters in the margin."""
        if self.lzn.decoder is None:
            raise ValueError("this run has no image decoder (rf_weight = 0); text-to-image needs one")
        label_chars = None
        if captions is not None or self.user_captions:
            if captions is None:
                assert self.train_captions is not None, "attach_data() first"
                captions = self.train_captions
            captions, label_chars = list(dict.fromkeys(captions))[:8], 48  # distinct, in order
        else:
            captions = showcase_captions(self.kind, self.words)
        self.build_references()  # the text reference set under the current weights
        return caption_grid(self.lzn, captions, path, per_caption=per_caption, sampler=self.cfg.sampler,
                            steps=self.cfg.sampler_steps, seed=seed, label_chars=label_chars)

    # ---- evaluation -----------------------------------------------------------------------------------

    def consistency(self, data: ImageDataset, split: str) -> dict[str, Any]:
        """The ``text_to_image`` section: ``lzn.eval.t2i_consistency`` of held-out captions of ``data`` under
        this run's settings (class and attribute consistency of text-to-image samples, class consistency of
        class-prompt samples). Empty with user captions (``data.name=captions``): they have no classes or
        measured attributes to check."""
        if self.user_captions:
            return {}
        train = self.train_data
        assert isinstance(train, ImageDataset) and self.captions is not None, "attach_data() first"
        cfg = self.cfg
        settings = RetrievalSettings(eval_pairs=cfg.eval_pairs, seed=cfg.train.seed, caption_seed=cfg.caption_seed,
                                     prompt=cfg.prompt, noise_scale=cfg.eval_noise_scale, origin="the run's")
        self.build_references()  # the text reference set under the current weights
        figures = t2i_consistency(self.lzn, train, data, settings, num_samples=cfg.gen_samples, sampler=cfg.sampler,
                                  steps=cfg.sampler_steps, thresholds=self.captions.thresholds)
        return {**figures, "split": split}

    def retrieval_metrics(self, data: ImageDataset, split: str) -> dict[str, Any]:
        return {**super().retrieval_metrics(data, split), "noise_scale": self.cfg.eval_noise_scale}

    def evaluate(self, data: ImageDataset, run_dir: Any, split: str = "test") -> dict[str, Any]:
        out = super().evaluate(data, run_dir, split)
        if self.lzn.label_anchors is not None and data.labels is not None:  # the label decoder, for comparison
            acc = accuracy(self.lzn, data.images, data.labels, noise_scale=self.cfg.eval_noise_scale,
                           batch_size=self.cfg.eval_batch_size, context="batch")
            row = accuracy_row(self.cfg.eval_noise_scale, self.cfg.eval_batch_size, "batch", acc, headline=True)
            out["classification"] = classification_section([row], split, data.labels)
        if self.lzn.decoder is not None and self.train_data is not None and self.cfg.gen_samples:
            if consistency := self.consistency(data, split):
                out["text_to_image"] = consistency
            if run_dir is not None:  # user captions: rows of held-out captions
                rows = self.held_out_captions(data)[1] if self.user_captions else None
                self.sample_grid(RunFolder(run_dir).samples, captions=rows)
        return out
