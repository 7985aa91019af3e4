"""Task metrics of a trained ``LatentZoningNetwork`` on data (method.md §8.1, §8.2): classification
accuracy through the label decoder (with sweeps over the test latents' alpha, the evaluation batch and
the anchor context), reconstruction error and the class consistency of conditional samples. Functions of (model, tensors) -> numbers; no recipe."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from lzn.models import GenerationOutput, LatentZoningNetwork
from lzn.models.outputs import Context


@torch.no_grad()
def accuracy(model: LatentZoningNetwork, images: Tensor, labels: Tensor, *, noise_scale: float = 1.0,
             batch_size: int = 2000, context: Context | None = None, seed: int = 0) -> float:
    """Fraction of ``images`` (N, C, H, W) whose label-decoder class equals ``labels`` (N,) (method.md
    §8.2). ``context``: "batch" (the paper's protocol: chunks of ``batch_size`` are anchor sets),
    "reference" (the model's bank), None (the model's default)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},) to match the images, got {tuple(labels.shape)}")
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    pred = model.classify(images.to(dev), noise_scale=noise_scale, batch_size=batch_size, generator=gen,
                          context=context)
    return float((pred.cpu() == labels.cpu()).float().mean())


def partition_accuracy(model: LatentZoningNetwork, images: Tensor, labels: Tensor, *, noise_scale: float = 1.0,
                       batch_size: int = 2000, partitions: int = 10, seed: int = 0) -> dict[str, float]:
    """The batch protocol's accuracy (``accuracy``, context "batch") over ``partitions`` random partitions of
    ``images`` into anchor sets of ``batch_size``: {"mean", "sd" (sample sd, 0 for one), "partitions"}.

    A test latent depends on the other images of its set, so on a split of few sets the figure in the
    split's order is one draw (method.md §8.2). Partition k permutes the images with a generator seeded
    ``seed + 1 + k`` and draws the flow noise with the same seed."""
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},) to match the images, got {tuple(labels.shape)}")
    values = []
    for k in range(partitions):
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed + 1 + k))  # (N,)
        values.append(accuracy(model, images[order.to(images.device)], labels[order.to(labels.device)],
                               noise_scale=noise_scale, batch_size=batch_size, context="batch", seed=seed + 1 + k))
    sd = statistics.stdev(values) if partitions > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "partitions": partitions}


def accuracy_sweep(model: LatentZoningNetwork, images: Tensor, labels: Tensor, *,
                   alphas: Sequence[float] = (0.0, 0.5, 1.0), batch_sizes: Sequence[int] = (2000,),
                   contexts: Sequence[Context] = ("batch",), seed: int = 0, partitions: int = 0) -> list[dict[str, Any]]:
    """Accuracy over a grid of alpha x evaluation batch x context (the paper's Fig. 25 protocol plus the
    reference bank): one row per combination ({"alpha", "batch_size", "context", "accuracy"}); the
    batch size only matters in the "batch" context, so "reference" rows use the first one. With
    ``partitions`` > 0 a "batch" row whose images fill more than one set also holds ``partition_accuracy``
    as "partitions" (the images in that many random partitions, beside their order here)."""
    rows = []
    for context in contexts:
        sizes = batch_sizes if context == "batch" else batch_sizes[:1]
        for batch in sizes:
            for alpha in alphas:
                acc = accuracy(model, images, labels, noise_scale=alpha, batch_size=batch, context=context, seed=seed)
                row: dict[str, Any] = {"alpha": float(alpha), "batch_size": int(batch), "context": context,
                                       "accuracy": acc}
                if partitions and context == "batch" and images.shape[0] > batch:
                    row["partitions"] = partition_accuracy(model, images, labels, noise_scale=alpha, batch_size=batch,
                                                           partitions=partitions, seed=seed)
                rows.append(row)
    return rows


@torch.no_grad()
def reconstruction_error(model: LatentZoningNetwork, images: Tensor, labels: Tensor | None = None, *,
                         sampler: str = "dopri5", steps: int | None = None, context: Context | None = "batch",
                         seed: int = 0) -> tuple[float, Tensor]:
    """The paper's reconstruction metric (method.md §8.1): latent of each image (over the batch by
    default), invert the image flow to noise, regenerate; per-image L2 over all pixels in [-1, 1]
    units, averaged. Returns (mean L2, reconstructions (N, C, H, W) on the CPU)."""
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    decoder = model.decoder
    lab = labels.to(dev) if (labels is not None and decoder is not None and decoder.num_classes) else None
    x = images.to(dev)
    rec = model.reconstruct(x, labels=lab, sampler=sampler, steps=steps, generator=gen,
                            context=context if model.encoder is not None else None)
    return float(per_image_l2(x, rec).mean()), rec.cpu()


def per_image_l2(images: Tensor, reconstructions: Tensor) -> Tensor:
    """(N,) L2 norm of each image's error over all its pixels, in [-1, 1] units (method.md §8.1)."""
    return (reconstructions - images).flatten(1).norm(dim=1)


def median_l2(images: Tensor, reconstructions: Tensor) -> float:
    """The median image's reconstruction error: per-image L2 over all pixels, as ``reconstruction_error``'s mean,
    the median taken with interpolation between the middle two. With an adaptive sampler a few images whose
    inversion goes astray can carry the mean (method.md §8.1); the median says what a typical image gets."""
    if images.shape != reconstructions.shape or images.shape[0] == 0:
        raise ValueError(f"images and reconstructions must have one shared, non-empty shape, got "
                         f"{tuple(images.shape)} and {tuple(reconstructions.shape)}")
    return float(torch.quantile(per_image_l2(images.detach().cpu().double(), reconstructions.detach().cpu().double()),
                                0.5))


class ClassGenerator(Protocol):
    """What ``class_consistency`` asks of a model: a LatentZoningNetwork, or a stand-in that generates class k
    its own way (``lzn.eval.text``: from class prompt k)."""

    @property
    def num_classes(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def generate(self, *, labels: list[int], sampler: str, steps: int | None,
                 generator: torch.Generator | None) -> GenerationOutput: ...


@torch.no_grad()
def class_consistency(model: ClassGenerator, judge: Callable[[Tensor], Tensor], num_samples: int = 1000, *,
                      sampler: str = "euler", steps: int | None = 20, batch_size: int = 250,
                      seed: int = 0) -> dict[str, Any]:
    """How often a classifier trained on real data (``judge``: images (B, C, H, W) in [-1, 1] -> class
    indices (B,)) agrees with the class a conditional sample was generated for (method.md §8.3).
    Classes cycle 0, 1, ..., K-1, so each is generated equally often; samples are clamped to [-1, 1].
    Returns {"class_consistency", "per_class" (K accuracies), "num_samples"}."""
    k = model.num_classes
    if not k:
        raise ValueError("class consistency needs a model that generates per class (label anchors or a "
                         "class-conditional decoder)")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    labels = torch.arange(num_samples) % k
    gen = torch.Generator(device=model.device).manual_seed(seed)
    preds = []
    for start in range(0, num_samples, batch_size):
        lab = labels[start:start + batch_size]
        images = model.generate(labels=lab.tolist(), sampler=sampler, steps=steps, generator=gen).images.clamp(-1, 1)
        pred = torch.as_tensor(judge(images)).reshape(-1).cpu()
        if pred.shape != lab.shape:
            raise ValueError(f"judge must return one class index per image, got shape {tuple(pred.shape)} for "
                             f"{lab.shape[0]} images")
        preds.append(pred)
    hit = (torch.cat(preds) == labels).float()
    per_class = [float(hit[labels == c].mean()) for c in range(k)]
    return {"class_consistency": float(hit.mean()), "per_class": per_class, "num_samples": num_samples}
