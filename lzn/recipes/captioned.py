"""What the image-text recipes share (LZN ``text`` and the ``clip`` baseline): the captions of the
training set, batches of (images, labels, captions), the text encoder, and the retrieval and
prompt-classification evaluation: ``lzn.eval.retrieval_figures`` over a recipe's score functions, on the
held-out pairs of ``lzn.data.held_out`` (what ``lzn evaluate --metrics retrieval`` measures on an export).

Captions are indexed like the images, so the captions of a batch are those of ``loader.indices(step)``.
They come from one of two sources:

* composed (digits, Fashion-MNIST): once from the labelled grayscale training images
  (``lzn.data.captions``: class word + measured attributes, template by a hash of the item index);
  held-out pairs use the training set's attribute thresholds;
* the user's own (``data.name=captions``): the ``captions`` of the :class:`ImageDataset`, any channel
  count, no labels; held-out pairs take the held-out split's own captions. Evaluation is then retrieval
  alone: prompt classification and everything that needs labels or caption attributes is skipped.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from lzn import checks, distributed
from lzn.data import (DEFAULT_PAIRS, DEFAULT_PROMPT, ImageDataset, ShardedDataset, caption_dataset, composed_pairs,
                      own_pairs, pick_pairs)
from lzn.data.captions import CaptionSet, class_words  # class_words: re-exported for old imports
from lzn.eval.text import RUN_SETTINGS, held_out_info, retrieval_figures, trivial_recall_note
from lzn.models import build
from lzn.recipes.common import DataInfo, NetConfig, Recipe, RecipeConfig, build_net


@dataclass
class CaptionedConfig(RecipeConfig):
    encoder: NetConfig = field(default_factory=lambda: NetConfig("small_encoder"))
    text_encoder: Literal["minilm", "small"] = "minilm"  # frozen all-MiniLM-L6-v2 + head, or bytes from scratch
    text_head_hidden: int = 512  # minilm: width of the head's hidden layer (0: one Linear layer)
    text_width: int = 128  # small: transformer width
    text_layers: int = 2  # small: transformer layers
    caption_seed: int = 0  # template choice of every composed caption
    prompt: str = DEFAULT_PROMPT  # "the {kind} {cls}": class prompt of prompt classification ({kind}: digit / item)
    eval_pairs: int = DEFAULT_PAIRS  # 400 held-out (image, caption) pairs of the retrieval metrics

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.text_encoder not in ("minilm", "small"):
            raise ValueError(f"text_encoder must be 'minilm' or 'small', got {self.text_encoder!r}")
        checks.at_least("text_head_hidden", self.text_head_hidden, 0)
        checks.at_least("text_width", self.text_width, 4)
        if self.text_width % 4:
            raise ValueError(f"text_width must be a multiple of 4 (attention heads), got {self.text_width}")
        checks.at_least("text_layers", self.text_layers, 1)
        checks.at_least("caption_seed", self.caption_seed, 0)
        if not isinstance(self.prompt, str) or "{cls}" not in self.prompt:
            raise ValueError(f"prompt must be a string holding {{cls}} (and optionally {{kind}}), got {self.prompt!r}")
        checks.at_least("eval_pairs", self.eval_pairs, 2)


def build_text_encoder(cfg: CaptionedConfig) -> nn.Module:
    """The text encoder of ``cfg.text_encoder``, built by name (``lzn.models.build``) so that an exported
    model names it: ``minilm_text_encoder`` or ``small_text_encoder``."""
    if cfg.text_encoder == "minilm":
        try:
            return build("minilm_text_encoder", latent_dim=cfg.latent_dim, head_hidden=cfg.text_head_hidden or None)
        except (ModuleNotFoundError, FileNotFoundError) as err:  # the config key is what a user can change
            raise type(err)(f"text_encoder=minilm: {err}; or set text_encoder=small (trained from scratch, no "
                            "package needed)") from None
    return build("small_text_encoder", latent_dim=cfg.latent_dim, width=cfg.text_width, layers=cfg.text_layers)


def caption_ids(captions: Sequence[str], device: torch.device) -> Tensor:
    """A stable 63-bit id per string (equal strings, equal ids, on every process): (B,) int64."""
    ids = [int.from_bytes(hashlib.blake2b(c.encode("utf-8"), digest_size=8).digest(), "little") >> 1
           for c in captions]
    return torch.tensor(ids, dtype=torch.int64, device=device)


def same_caption(captions: Sequence[str], device: torch.device) -> Tensor:
    """(B, n) bool: local caption i equals caption j of the gathered global batch (rank-major). Composed
    captions repeat within a batch, so every copy is a correct partner in the alignment."""
    ids = caption_ids(captions, device)  # (B,)
    return ids[:, None] == distributed.gather(ids)[None, :]  # (B, 1) == (1, n) -> (B, n)


class CaptionedRecipe(Recipe):
    """Base of the image-text recipes: subclasses give ``text_scores`` and ``image_scores``.

    Labels are needed only for composed captions (checked in ``__init__``), not for the user's own
    (``data.name=captions``), hence ``needs_labels`` is False here."""

    needs_labels: ClassVar[bool] = False
    cfg: CaptionedConfig

    def __init__(self, cfg: CaptionedConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.user_captions = cfg.data.name == "captions"  # the data's own captions, else composed ones
        self.words: tuple[str, ...]  # class words of composed captions (none for user captions)
        self.kind: str  # what the class words name: "digit" / "item" ("" for user captions)
        if self.user_captions:
            if getattr(cfg, "label_weight", 0.0) > 0:
                raise ValueError("label_weight: label anchors need labels, and data.name=captions has none; "
                                 "set label_weight=0")
            if cfg.data.flip:
                raise ValueError("data.flip: a horizontal flip mirrors what a caption says about left and right; "
                                 "set data.flip=false")
            self.words, self.kind = (), ""
        else:
            if info.num_classes < 2:
                raise ValueError(f"recipe {self.name!r} needs a labelled data set with at least 2 classes to compose "
                                 "captions; or train on your own (image, caption) pairs with data.name=captions")
            if info.channels != 1:
                raise ValueError(f"recipe {self.name!r} composes captions from grayscale pixels (digits, "
                                 f"Fashion-MNIST); got {info.channels} channels; or train on your own (image, "
                                 "caption) pairs with data.name=captions")
            if cfg.data.flip:
                raise ValueError("data.flip: a horizontal flip mirrors the slant a caption names; set data.flip=false")
            self.words, self.kind = class_words(info.class_names, info.num_classes)
        self.modules = {"encoder": build_net(cfg.encoder, info, cfg.latent_dim),
                        "text_encoder": build_text_encoder(cfg)}
        self.captions: CaptionSet | None = None  # composed captions of the training set (None for user captions)
        self.train_captions: list[str] | None = None  # the training captions, indexed like the images

    def attach_data(self, data: ImageDataset | ShardedDataset) -> None:
        """The training split and its captions (the data's own, or composed), indexed like its images."""
        if not isinstance(data, ImageDataset):
            raise ValueError(f"recipe {self.name!r} reads captions with images in memory; sharded data is not "
                             "supported")
        if self.user_captions and data.captions is None:
            raise ValueError(f"{data.name}: data.name=captions, but the training set has no captions")
        super().attach_data(data)
        if self.user_captions:
            assert data.captions is not None
            self.train_captions = list(data.captions)
        else:
            self.captions = caption_dataset(data, seed=self.cfg.caption_seed)
            self.train_captions = self.captions.captions

    def batches(self, step: int) -> tuple[Tensor, Tensor | None, list[str]]:  # type: ignore[override]
        """(images, labels, captions) of this process's local batch of global step ``step``."""
        x, y = super().batches(step)
        assert self.loader is not None and self.train_captions is not None
        texts = self.train_captions
        return x, y, [texts[i] for i in self.loader.indices(step).tolist()]

    def class_prompts(self) -> list[str]:
        """One prompt per class; none with user captions (no classes)."""
        return [self.cfg.prompt.format(cls=w, kind=self.kind) for w in self.words]

    def _eval_pick(self, n: int) -> Tensor:
        """The seeded draw of ``min(eval_pairs, n)`` held-out items (K,), the same for both caption sources."""
        return pick_pairs(n, self.cfg.eval_pairs, self.cfg.train.seed)

    def held_out_pairs(self, data: ImageDataset) -> tuple[Tensor, Tensor, CaptionSet]:
        """A seeded draw of ``eval_pairs`` images of ``data``, labels and composed captions
        (``lzn.data.composed_pairs``: composed for the whole set with the training thresholds, then drawn, so
        an image's caption does not depend on the draw). User captions: :meth:`held_out_captions`."""
        if self.user_captions:
            raise ValueError(f"{data.name}: data.name=captions has no composed captions (attributes, labels); "
                             "use held_out_captions")
        assert self.captions is not None, "attach_data() first"
        return composed_pairs(data, self.captions.thresholds, pairs=self.cfg.eval_pairs, seed=self.cfg.train.seed,
                              caption_seed=self.cfg.caption_seed)

    def held_out_captions(self, data: ImageDataset) -> tuple[Tensor, list[str]]:
        """The images (K, C, H, W) and captions (K) of the seeded draw of ``eval_pairs`` held-out pairs: the
        split's own captions with ``data.name=captions``, else the composed ones of :meth:`held_out_pairs`."""
        if not self.user_captions:
            images, _, pairs = self.held_out_pairs(data)
            return images, pairs.captions
        if data.captions is None:
            raise ValueError(f"{data.name}: data.name=captions, but the held-out split has no captions")
        return own_pairs(data, pairs=self.cfg.eval_pairs, seed=self.cfg.train.seed)

    # ---- scores: subclasses --------------------------------------------------------------------

    @abstractmethod
    def text_scores(self, images: Tensor, texts: Sequence[str]) -> Tensor:
        """(N, M): for each image, a probability over the M candidate texts (rows sum to 1)."""

    @abstractmethod
    def image_scores(self, texts: Sequence[str], images: Tensor) -> Tensor:
        """(M, N): for each text, a probability over the N candidate images (rows sum to 1)."""

    def retrieval_metrics(self, data: ImageDataset, split: str) -> dict[str, Any]:
        """The ``retrieval`` section (``lzn.eval.retrieval_figures`` of the held-out pairs, with the settings
        they were measured with, as ``lzn evaluate`` writes it): recall@1/5 image -> text over the distinct
        held-out captions and text -> image over the held-out images (every image with an identical caption
        counts as correct), prompt-classification accuracy over every image of ``data`` (composed captions
        only: user captions have no classes to prompt), and a note naming a recall@k that is 1.0 whatever the
        model."""
        images, captions = self.held_out_captions(data)
        prompted = not self.user_captions and data.labels is not None
        figures = retrieval_figures(self.text_scores, self.image_scores, images, captions,
                                    prompts=self.class_prompts() if prompted else None,
                                    labels=data.labels if prompted else None, prompt_images=data.images,
                                    eval_batch_size=self.cfg.eval_batch_size)
        cfg = self.cfg
        info = held_out_info(cfg.eval_pairs, cfg.train.seed, cfg.eval_batch_size, RUN_SETTINGS,
                             own_captions=self.user_captions, caption_seed=cfg.caption_seed, prompt=cfg.prompt,
                             prompt_images=len(data) if prompted else None, split=split)
        return {**figures, **info, **trivial_recall_note(captions)}

    def evaluate(self, data: ImageDataset, run_dir: Any, split: str = "test") -> dict[str, Any]:
        return {"retrieval": self.retrieval_metrics(data, split)}
