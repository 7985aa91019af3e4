"""Image-text evaluation (method.md §12.8) as a function of two score functions and data: recall@1/5
image -> text over the distinct held-out captions and text -> image over the held-out images (every image
whose caption equals the query is correct), and prompt classification (one prompt per class, no label
anchors). One implementation for the recipes' end-of-training figures (``text``, and ``clip`` with its
cosine scores) and for ``lzn evaluate --metrics retrieval`` on an exported model (:func:`retrieval_section`).

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

from lzn.data import (DEFAULT_PAIRS, DEFAULT_PROMPT, ImageDataset, ShardedDataset, caption_dataset, class_prompts,
                      composed_pairs, own_pairs)
from lzn.eval.retrieval import recall_at_k, same_text, unique_texts
from lzn.models import LatentZoningNetwork

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
    info: dict[str, Any] = {"eval_pairs": settings.eval_pairs, "seed": settings.seed, "noise_scale": settings.noise_scale,
                            "batch_size": batch_size, "settings": settings.origin}
    if held.captions is not None:
        images, captions = own_pairs(held, pairs=settings.eval_pairs, seed=settings.seed)
        figures = retrieval_figures(text_scores, image_scores, images, captions, eval_batch_size=batch_size)
        info["captions"] = "the data's own"
    else:
        source = _in_memory(train)
        thresholds = caption_dataset(source, seed=settings.caption_seed).thresholds
        images, _, pairs = composed_pairs(held, thresholds, pairs=settings.eval_pairs, seed=settings.seed,
                                          caption_seed=settings.caption_seed)
        captions = pairs.captions
        prompts = class_prompts(settings.prompt, source.class_names, source.num_classes)
        figures = retrieval_figures(text_scores, image_scores, images, captions, prompts=prompts, labels=held.labels,
                                    prompt_images=held.images, eval_batch_size=batch_size)
        info.update({"captions": "composed", "caption_seed": settings.caption_seed, "prompt": settings.prompt,
                     "prompt_images": len(held)})
    return {**figures, **info, **trivial_recall_note(captions)}
