"""The tasks of a :class:`~lzn.models.LatentZoningNetwork` as compositions of its two operations, latents of
one type and decoding to another (docs/data-types.md, "Tasks as compositions"; method.md §5.9, §7.5, §8,
§12): generation, classification, reconstruction and retrieval. Each takes the model (typed ``Any``:
this module sits below network.py), whose methods check the public arguments first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lzn import checks
from lzn.core import rectified_flow, zones
from lzn.models import inputs
from lzn.models.datatypes import DATA_TYPES, IMAGE, TypeEntry
from lzn.models.outputs import Choices, Context, GenerationOutput, Labels, Sampling


def generate(model: Any, num: int | None, labels: Labels | None, given: tuple[str, Any] | None,
             noise_scale: float | None, sampling: Sampling) -> GenerationOutput:
    """Images decoded from latents drawn from N(0, I), or from the zones of given samples (``labels`` is
    ``given=("label", labels)``) with alpha ``noise_scale`` (default ``flow.noise_scale``)."""
    decoder = inputs.need(model, "decoder")
    alpha = model.flow.noise_scale if noise_scale is None else noise_scale
    zones.check_noise_scale(alpha)
    source = inputs.given(given, labels)
    if source is None:
        latent, classes = _unconditional(model, decoder.num_classes, num, sampling.generator)
    else:
        name, samples = source
        if name not in DATA_TYPES:  # no model has it: the model's message, naming the closest of its types
            inputs.check_type_name(name, model.data_types)
        latent, classes = DATA_TYPES[name].given(model, samples, num, alpha, sampling.generator)
    return GenerationOutput(IMAGE.sample(model, latent, classes, sampling), classes, latent)


def _unconditional(model: Any, num_classes: int, num: int | None,
                   generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    """``num`` latents (num, q) from N(0, I) and the label decoder's classes of them (method.md §5.9, §7.5)."""
    if num is None:
        raise ValueError("generate needs num >= 1 or labels")
    num = checks.positive_int("num", num)
    dev = generator.device if generator is not None else model.device
    latent = torch.randn(num, model.latent_dim, generator=generator, device=dev)
    classes = None
    if model.label_anchors is not None:
        classes = model.label_anchors.decode(latent, steps=model.flow.label_steps)
    elif num_classes:
        raise ValueError("this decoder is class-conditional: pass labels (the model has no label decoder)")
    return latent, classes


def classify(model: Any, images: Tensor, noise_scale: float | None, batch_size: int,
             generator: torch.Generator | None, context: Context | None, prompts: Sequence[str] | None) -> Tensor:
    """Classes (B,): image latents, ``batch_size`` at a time, decoded by the label decoder (method.md §8.2)
    with alpha ``noise_scale`` (default 1); with ``prompts``, the best prompt of each image (alpha default 0)."""
    if prompts is not None:
        alpha = 0.0 if noise_scale is None else noise_scale
        return model.retrieve("image", images, "text", prompts, k=1, noise_scale=alpha,
                              batch_size=batch_size, generator=generator, context=context).indices[:, 0]
    noise_scale = 1.0 if noise_scale is None else noise_scale
    label_anchors = inputs.need(model, "label_anchors")
    inputs.need(model, "encoder")  # both parts are named before any argument is checked
    zones.check_noise_scale(noise_scale)
    batch_size = checks.positive_int("batch_size", batch_size)
    context = IMAGE.context(model, context)
    model.check_images(images)
    chunks = IMAGE.chunk_latents(model, images, batch_size, noise_scale, generator, context)
    return torch.cat([label_anchors.decode(lat, steps=model.flow.label_steps) for lat in chunks])


def reconstruct(model: Any, images: Tensor, labels: Labels | None, sampling: Sampling,
                context: Context | None) -> Tensor:
    """Each image's latent, its noise by the inverted image flow, regenerated (method.md §8.1): (B, C, H, W)."""
    model.check_images(images)
    decoder = inputs.need(model, "decoder")
    classes = None
    if decoder.num_classes:
        if labels is None:
            raise ValueError("this decoder is class-conditional: reconstruct needs the true labels")
        classes = inputs.as_labels(labels, model.num_classes, images.shape[0]).to(images.device)
    latent = None
    if decoder.latent_dim:  # images were checked once above
        anchors = inputs.need(model, "encoder")(images)  # (B, q)
        latent = IMAGE.flow(model, anchors, IMAGE.context(model, context), None, 1.0, sampling.generator)
    fn = IMAGE.velocity(model, latent, classes)
    method, steps, rtol, atol = sampling.sampler, sampling.steps, sampling.rtol, sampling.atol
    noise = rectified_flow.invert(fn, images, method=method, steps=steps, rtol=rtol, atol=atol)
    return rectified_flow.sample(fn, noise, method=method, steps=steps, rtol=rtol, atol=atol)


def retrieve(model: Any, query: TypeEntry, queries: Any, candidate: TypeEntry, candidates: Any, k: int,
             noise_scale: float, batch_size: int, generator: torch.Generator | None,
             context: Context | None) -> Choices:
    """The ``k`` best candidates of each query: its latent, ``batch_size`` queries at a time, flowed back
    over the candidates' anchors (method.md §3.5, §12)."""
    query.check_query()
    queries = query.samples(model, queries, f"retrieve({query.name!r}, queries, ...)")
    batch_size = checks.positive_int("batch_size", batch_size)
    context = query.context(model, context)
    anchors = candidate.encode_all(model, candidates, batch_size)  # (M, q)
    k = checks.positive_int("k", k)
    found = [candidate.choose(model, lat, anchors, k)
             for lat in query.chunk_latents(model, queries, batch_size, noise_scale, generator, context)]
    return Choices(torch.cat([c.indices for c in found]), torch.cat([c.probs for c in found]))
