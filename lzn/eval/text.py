"""Image-text evaluation (method.md §12.8) as a function of two score functions and data: recall@1/5
image -> text over the distinct held-out captions and text -> image over the held-out images (every image
whose caption equals the query is correct), and prompt classification (one prompt per class, no label
anchors). One implementation for the recipes' end-of-training figures (``text``, and ``clip`` with its
cosine scores) and for ``lzn evaluate --metrics retrieval`` on an exported model (:func:`retrieval_section`).
Text-to-image of a model with a text type and an image decoder: :func:`text_to_image` and its class and
attribute consistency on held-out captions (:func:`t2i_consistency`).

Score functions: ``text_scores(images (N, C, H, W), texts (M)) -> (N, M)`` and
``image_scores(texts (M), images (N, C, H, W)) -> (M, N)``, higher is better (rows of probabilities).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lzn.data import (DEFAULT_PAIRS, DEFAULT_PROMPT, ImageDataset, ShardedDataset, caption_thresholds, class_prompts,
                      composed_pairs, own_pairs, pixel_attributes)
from lzn.data.captions import ATTRIBUTES, attribute_levels
from lzn.eval.judge import pixel_judge
from lzn.eval.retrieval import recall_at_k, same_text, unique_texts
from lzn.eval.tasks import class_consistency
from lzn.models import GenerationOutput, LatentZoningNetwork

TextScores = Callable[[Tensor, Sequence[str]], Tensor]
ImageScores = Callable[[Sequence[str], Tensor], Tensor]
KS = (1, 5)  # recall@k of every image-text figure


def prompt_predictions(text_scores: TextScores, images: Tensor, prompts: Sequence[str], batch_size: int) -> Tensor:
    """Class of each image (N,) on the CPU: its best prompt, scored chunk by chunk of ``batch_size`` images."""
    prompts = list(prompts)
    return torch.cat([text_scores(c, prompts).argmax(dim=1).cpu() for c in images.split(batch_size)])


def retrieval_figures(text_scores: TextScores, image_scores: ImageScores, images: Tensor, captions: Sequence[str],
                      *, prompts: Sequence[str] | None = None, labels: Tensor | None = None,
                      prompt_images: Tensor | None = None, eval_batch_size: int) -> dict[str, float]:
    """The figures of held-out pairs ``images`` (K, C, H, W) and ``captions`` (K):

    ``pairs``, ``distinct_captions``; ``i2t_recall@k``: each image ranks the distinct captions, its own is
    correct; ``t2i_recall@k``: each distinct caption ranks the K images, every image with that caption is
    correct (ties count against the query, ``lzn.eval.retrieval``); with ``prompts`` (one per class) and
    ``labels`` (N,) of ``prompt_images`` (N, C, H, W) (default: the pairs' images), ``prompt_accuracy``: the
    fraction of images whose best prompt is their class's, in chunks of ``eval_batch_size`` images."""
    if (prompts is None) != (labels is None):
        raise ValueError("prompt accuracy needs both prompts (one per class) and labels (one per image); got "
                         + ("prompts without labels" if labels is None else "labels without prompts"))
    if len(captions) != images.shape[0]:
        raise ValueError(f"{len(captions)} captions for {images.shape[0]} images; give one caption per image")
    distinct, which = unique_texts(captions)  # which: (K,) index of each image's caption among the distinct
    out: dict[str, float] = {"pairs": len(captions), "distinct_captions": len(distinct)}  # counts stay ints
    i2t = recall_at_k(text_scores(images, distinct).cpu(), which, KS)  # (K, D) scores
    t2i = recall_at_k(image_scores(distinct, images).cpu(), same_text(distinct, captions), KS)  # (D, K) scores
    out.update({f"i2t_{k}": v for k, v in i2t.items()})
    out.update({f"t2i_{k}": v for k, v in t2i.items()})
    if prompts is not None and labels is not None:
        judged = images if prompt_images is None else prompt_images
        if labels.shape != (judged.shape[0],):
            raise ValueError(f"labels must be ({judged.shape[0]},), one class per prompt image, got "
                             f"{tuple(labels.shape)}")
        pred = prompt_predictions(text_scores, judged, prompts, eval_batch_size)
        out["prompt_accuracy"] = float((pred == labels.cpu()).float().mean())
    return out


def trivial_recall_note(captions: Sequence[str], ks: Sequence[int] = KS) -> dict[str, str]:
    """A ``note`` naming each recall@k that is 1.0 whatever the model: a query with fewer than k wrong
    candidates always ranks a correct one among its first k. Image -> text: D distinct captions leave D - 1
    wrong ones (trivial when D <= k); text -> image: a caption held by c of the K images leaves K - c."""
    counts = Counter(captions)
    if not counts:
        return {}
    wrong_i2t, wrong_t2i = len(counts) - 1, len(captions) - min(counts.values())
    trivial = [f"image -> text recall@{k}" for k in ks if wrong_i2t < k]
    trivial += [f"text -> image recall@{k}" for k in ks if wrong_t2i < k]
    if not trivial:
        return {}
    return {"note": f"{len(counts)} distinct captions among {len(captions)} pairs, so {', '.join(trivial)} "
                    f"{'is' if len(trivial) == 1 else 'are'} 1.0 whatever the model (fewer than k wrong candidates): "
                    "the figure says nothing; draw more pairs (eval_pairs) or more varied captions"}


def lzn_scores(model: LatentZoningNetwork, *, noise_scale: float, batch_size: int) -> tuple[TextScores, ImageScores]:
    """The score functions of an LZN with a text type (method.md §12.6): ``retrieval_scores`` with query
    latents at alpha ``noise_scale``, each chunk of ``batch_size`` queries its own anchor set (context
    "batch", the paper's protocol, §8.2), the latent noise seeded 0 on every call."""

    def scores(query_type: str, queries: Any, candidate_type: str, candidates: Any) -> Tensor:
        return model.retrieval_scores(query_type, queries, candidate_type, candidates, noise_scale=noise_scale,
                                      batch_size=batch_size, context="batch",
                                      generator=torch.Generator(device=model.device).manual_seed(0))

    def text_scores(images: Tensor, texts: Sequence[str]) -> Tensor:  # (N, M)
        return scores("image", images.to(model.device), "text", list(texts))

    def image_scores(texts: Sequence[str], images: Tensor) -> Tensor:  # (M, N)
        return scores("text", list(texts), "image", images.to(model.device))

    return text_scores, image_scores


RUN_SETTINGS = "the run's (run.yaml)"
"""``RetrievalSettings.origin`` of figures measured with a training run's own settings."""


def held_out_info(eval_pairs: int, seed: int, batch_size: int, settings: str, *, own_captions: bool,
                  caption_seed: int | None = None, prompt: str | None = None, prompt_images: int | None = None,
                  **extra: Any) -> dict[str, Any]:
    """How a retrieval section's held-out pairs were drawn and scored, as ``metrics.json`` names it: pair
    count, seed, batch, where the settings came from, ``extra`` (the split, the latents' alpha), and the
    captions: the data's own, or composed with ``caption_seed`` and ``prompt`` (prompted over
    ``prompt_images`` images when given)."""
    info: dict[str, Any] = {"eval_pairs": eval_pairs, "seed": seed, "batch_size": batch_size, "settings": settings,
                            **extra}
    if own_captions:
        info["captions"] = "the data's own"
    else:
        info.update({"captions": "composed", "caption_seed": caption_seed, "prompt": prompt})
        if prompt_images is not None:
            info["prompt_images"] = prompt_images
    return info


@dataclass(frozen=True)
class RetrievalSettings:
    """How ``lzn evaluate --metrics retrieval`` draws and scores held-out pairs: a text run's own settings
    (its config key in brackets), or these defaults for a bare model folder."""

    eval_pairs: int = DEFAULT_PAIRS  # held-out pairs drawn (eval_pairs)
    seed: int = 0  # the draw of the pairs (train.seed)
    caption_seed: int = 0  # template choice of composed captions (caption_seed)
    prompt: str = DEFAULT_PROMPT  # class prompt of prompt classification (prompt)
    noise_scale: float = 0.0  # alpha of query latents (eval_noise_scale)
    origin: str = "defaults (a bare model folder has no run settings)"  # where these settings come from


Data = ImageDataset | ShardedDataset


def _in_memory(data: Data) -> ImageDataset:
    return data if isinstance(data, ImageDataset) else data.load()


@torch.no_grad()
def retrieval_section(model: LatentZoningNetwork, train: Data, data: Data, settings: RetrievalSettings, *,
                      batch_size: int) -> dict[str, Any]:
    """``retrieval_figures`` of ``model`` (:func:`lzn_scores`) on held-out pairs of ``data`` drawn by
    ``settings``, with the settings and a note on trivial figures: the split's own captions when it has
    them (recall only), else captions composed with ``train``'s thresholds and prompt classification over
    every image of ``data``, as the ``text`` recipe measures them at the end of training."""
    held = _in_memory(data)
    text_scores, image_scores = lzn_scores(model, noise_scale=settings.noise_scale, batch_size=batch_size)
    own = held.captions is not None
    info = held_out_info(settings.eval_pairs, settings.seed, batch_size, settings.origin, own_captions=own,
                         caption_seed=settings.caption_seed, prompt=settings.prompt,
                         prompt_images=None if own else len(held), noise_scale=settings.noise_scale)
    if own:
        images, captions = own_pairs(held, pairs=settings.eval_pairs, seed=settings.seed)
        figures = retrieval_figures(text_scores, image_scores, images, captions, eval_batch_size=batch_size)
    else:
        source = _in_memory(train)
        thresholds = caption_thresholds(source)
        images, _, pairs = composed_pairs(held, thresholds, pairs=settings.eval_pairs, seed=settings.seed,
                                          caption_seed=settings.caption_seed)
        captions = pairs.captions
        prompts = class_prompts(settings.prompt, source.class_names, source.num_classes)
        figures = retrieval_figures(text_scores, image_scores, images, captions, prompts=prompts, labels=held.labels,
                                    prompt_images=held.images, eval_batch_size=batch_size)
    return {**figures, **info, **trivial_recall_note(captions)}


@torch.no_grad()
def text_to_image(model: LatentZoningNetwork, captions: Sequence[str], *, sampler: str = "euler",
                  steps: int | None = 20, generator: torch.Generator | None = None, batch_size: int = 250) -> Tensor:
    """One image per caption (B, C, H, W), in [-1, 1] up to sampler error: ``model.generate(given=("text",
    ...))`` on chunks of ``batch_size`` captions drawing from one ``generator`` (default: seeded 0 on the
    model's device), each caption's latent drawn from its zone against the model's text reference set
    (method.md §12.7; the runner saves it with the model; ``build_reference_from(texts, type="text")`` sets
    another)."""
    if model.decoder is None:
        raise ValueError("this model has no image decoder (a text run with rf_weight = 0); text-to-image needs one")
    gen = generator or torch.Generator(device=model.device).manual_seed(0)
    captions = list(captions)
    return torch.cat([model.generate(given=("text", captions[i:i + batch_size]), sampler=sampler, steps=steps,
                                     generator=gen).images for i in range(0, len(captions), batch_size)])


class _PromptModel:
    """What ``class_consistency`` asks of a model, with class k generated from class prompt k."""

    def __init__(self, model: LatentZoningNetwork, prompts: Sequence[str], num_classes: int) -> None:
        self.model, self.prompts, self.num_classes, self.device = model, list(prompts), num_classes, model.device

    def generate(self, labels: list[int], sampler: str, steps: int | None,
                 generator: torch.Generator | None) -> GenerationOutput:
        images = text_to_image(self.model, [self.prompts[k] for k in labels], sampler=sampler, steps=steps,
                               generator=generator)
        return GenerationOutput(images, torch.tensor(labels), images.new_zeros(len(labels), 0))


@torch.no_grad()
def t2i_consistency(model: LatentZoningNetwork, train: ImageDataset, data: ImageDataset, settings: RetrievalSettings,
                    *, num_samples: int, sampler: str = "euler", steps: int | None = 20,
                    thresholds: Tensor | None = None) -> dict[str, float]:
    """Text-to-image samples (:func:`text_to_image`) of the first ``num_samples`` held-out pairs of ``data``
    (composed captions drawn by ``settings``, as :func:`retrieval_section` draws them), method.md §12.8:

    ``t2i_class_consistency``: a pixel classifier fitted on ``train`` (``pixel_judge``) judges each sample
    against its caption's class; ``t2i_attribute_consistency``: each attribute the caption names, measured
    on the sample with the training thresholds of its class (``thresholds`` (C, 4, 2), default: composed
    from ``train``), agrees; ``t2i_all_attributes``: every named attribute of a sample agrees;
    ``t2i_{attribute}_consistency`` per attribute some caption names; ``prompt_class_consistency``:
    ``class_consistency`` of samples of the class prompts (``settings.prompt``)."""
    if train.labels is None or data.labels is None:
        raise ValueError("text-to-image consistency needs labelled data (composed captions name the class)")
    if thresholds is None:
        thresholds = caption_thresholds(train)
    judge = pixel_judge(train.images, train.labels, train.num_classes)
    _, labels, pairs = composed_pairs(data, thresholds, pairs=settings.eval_pairs, seed=settings.seed,
                                      caption_seed=settings.caption_seed)
    n = min(num_samples, len(pairs.captions))
    fake = text_to_image(model, pairs.captions[:n], sampler=sampler, steps=steps).clamp(-1, 1).cpu()  # (n, C, H, W)
    y = labels[:n].cpu()
    levels = attribute_levels(pixel_attributes(fake), thresholds, y)  # (n, 4)
    named = pairs.mentions[:n]  # (n, 4) bool
    agree = (levels == pairs.levels[:n]) & named
    out = {"t2i_class_consistency": float((judge(fake) == y).float().mean()),
           "t2i_attribute_consistency": float(agree.sum() / named.sum()),
           "t2i_all_attributes": float((agree == named).all(dim=1).float().mean())}
    for j, a in enumerate(ATTRIBUTES):
        if bool(named[:, j].any()):
            out[f"t2i_{a}_consistency"] = float(agree[:, j].sum() / named[:, j].sum())
    prompts = _PromptModel(model, class_prompts(settings.prompt, train.class_names, train.num_classes),
                           train.num_classes)
    res = class_consistency(prompts, judge, num_samples=n, sampler=sampler, steps=steps)
    out["prompt_class_consistency"] = res["class_consistency"]
    return out
