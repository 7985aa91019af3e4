"""The operations of ``lzn serve``, one function per endpoint: ``(service, JSON object) -> JSON-ready dict``.
Each reads its fields first (a :class:`RequestError` names the first bad one), then runs the model under the
service's lock. Images go in and out as base64 PNG strings (``images.py``)."""

from __future__ import annotations

from typing import Any

import torch

from lzn.models import CandidateDecoder
from lzn.serve import images as codec
from lzn.serve.requests import Body, RequestError
from lzn.serve.service import NO_LABEL, ModelService

QUERY = ("captions", "images")
MAX_PROMPTS = 1000  # texts of prompt classification: one per class


def classify(service: ModelService, data: dict[str, Any]) -> dict[str, Any]:
    """``{"images": [png, ...]}`` (+ ``prompts``: one text per class for a text model, ``nearest``: images of
    the gallery per image, ``seed``) -> each image's class, probabilities over the classes, place on the zone
    picture and nearest images. The class is the label decoder's (method.md §8.2) of the image's latent at
    the server's noise scale; the probabilities are the posteriors of the label anchors averaged over the
    late reverse steps (``CandidateDecoder``), largest for that class. With ``prompts``, the best prompt
    (alpha 0, as ``model.classify(images, prompts=...)``). The place and the nearest images come from the
    latent at noise scale 0 (the image's zone centre), as in ``/zones`` and ``/retrieve``."""
    body = Body(data, ("images", "prompts", "nearest", "seed"), "POST /classify")
    model, limits = service.model, service.limits
    prompts = service.captions(body, "prompts", MAX_PROMPTS, None) if body.has("prompts") else None
    service.need("classify_prompts" if prompts is not None else "classify")
    x = service.images(body)
    nearest = body.integer("nearest", 0, limits.samples, 0, flag="--max-samples")
    if nearest:
        service.need("retrieve")
    alpha = service.settings.noise_scale
    with service.running(service.seed(body)) as gen:
        latents = model.latents(x, noise_scale=alpha, generator=gen)  # (B, q)
        if prompts is not None:
            probs = model.retrieval_scores("image", x, "text", prompts, generator=gen)  # (B, P), alpha 0
            classes, names = probs.argmax(dim=1), prompts
        else:
            decoded = model.decode("label", latents)  # (B,)
            assert isinstance(decoded, torch.Tensor)
            classes, anchors = decoded, model.anchors("label", list(range(model.num_classes)))  # (B,), (K, q)
            probs = CandidateDecoder()(latents, anchors, steps=model.flow.label_steps,
                                       cutoff=model.flow.candidate_cutoff)  # (B, K), rows sum to 1
            names = service.names()
        centres = latents if alpha == 0 else model.latents(x, noise_scale=0.0, generator=gen)  # (B, q)
        near = service.pick(centres, nearest) if nearest else None
        places = service.place(centres)
    if not torch.isfinite(probs).all():
        raise RuntimeError("the model produced non-finite probabilities")
    out = []
    for i, (k, p) in enumerate(zip(classes.tolist(), probs.tolist())):
        out.append({"class": k, "name": names[k], "probabilities": [round(v, 6) for v in p],
                    "zone": None if places is None else places[i], "nearest": None if near is None else near[i]})
    return {"predictions": out, "names": names}


def generate(service: ModelService, data: dict[str, Any]) -> dict[str, Any]:
    """``{"labels": [k or name, ...]}`` | ``{"captions": [...]}`` | ``{"num": n}`` (+ ``seed``, ``steps``,
    ``sampler``) -> ``{"images": [png, ...], "labels": [...] | null}``: one image per label or caption from
    its zone, or ``num`` from N(0, I) (method.md §5.9, §7.5, §12)."""
    body = Body(data, ("labels", "captions", "num", "seed", "steps", "sampler"), "POST /generate")
    model, limits = service.model, service.limits
    which = body.one_of("labels", "captions", "num")
    if which == "labels":
        service.need("generate_labels")
        kwargs: dict[str, Any] = {"labels": service.classes(body, "labels", limits.samples, "--max-samples")}
    elif which == "captions":
        service.need("generate_captions")
        kwargs = {"given": ("text", service.captions(body, "captions", limits.samples, "--max-samples"))}
    else:
        service.need("generate")
        kwargs = {"num": body.integer("num", 1, limits.samples, flag="--max-samples")}
    sampling = service.sampling(body)
    with service.running(service.seed(body)) as gen:
        res = model.generate(**kwargs, **sampling, generator=gen)
    labels = None if res.labels is None else res.labels.tolist()
    names = service.names()
    return {"images": codec.encode_all(res.images), "labels": labels,
            "names": None if labels is None else [names[k] for k in labels]}


def embed(service: ModelService, data: dict[str, Any]) -> dict[str, Any]:
    """``{"images": [...]}`` (+ ``head``: anchors instead of backbone features) or ``{"captions": [...]}`` (their
    anchors) -> ``{"embeddings": [[...], ...], "dim": d}`` (method.md §8.3)."""
    body = Body(data, ("images", "captions", "head"), "POST /embed")
    which = body.one_of(*QUERY)
    head = body.boolean("head", False)
    if which == "captions":
        service.need("embed_captions")
        captions = service.captions(body, "captions", service.limits.batch)
        with service.running(0):
            e = service.model.embed("text", captions)
    else:
        service.need("embed")
        x = service.images(body)
        with service.running(0):
            e = service.model.embed(x, head=head)
    if not torch.isfinite(e).all():
        raise RuntimeError("the model produced non-finite embeddings")
    return {"embeddings": e.float().cpu().tolist(), "dim": e.shape[1]}


def retrieve(service: ModelService, data: dict[str, Any]) -> dict[str, Any]:
    """``{"captions": [...]}`` or ``{"images": [...]}`` (+ ``k``, ``seed``) -> the ``k`` best images of the
    server's image set for each query, as ``model.retrieve(type, queries, "image", gallery, k=k)`` (alpha 0)."""
    body = Body(data, ("captions", "images", "k", "seed"), "POST /retrieve")
    which = body.one_of(*QUERY)
    service.need("retrieve_captions" if which == "captions" else "retrieve")
    assert service.gallery is not None
    k = body.integer("k", 1, service.limits.samples, min(8, service.limits.samples), flag="--max-samples")
    k = min(k, len(service.gallery.images))
    queries: Any = (service.captions(body, "captions", service.limits.batch) if which == "captions"
                    else service.images(body))
    with service.running(service.seed(body)) as gen:
        latents = (service.model.latents("text", queries, noise_scale=0.0, generator=gen) if which == "captions"
                   else service.model.latents(queries, noise_scale=0.0, generator=gen))  # (B, q)
        results = service.pick(latents, k)
    return {"results": results, "gallery": {"name": service.gallery.name, "size": len(service.gallery.images)}}


def reconstruct(service: ModelService, data: dict[str, Any]) -> dict[str, Any]:
    """``{"images": [...]}`` (+ ``labels`` for a class-conditional decoder, else the label decoder's classes;
    ``seed``, ``steps``, ``sampler``) -> ``{"images": [png, ...]}``: latent, inverted flow, regenerated (§8.1)."""
    body = Body(data, ("images", "labels", "seed", "steps", "sampler"), "POST /reconstruct")
    service.need("reconstruct")
    model = service.model
    x = service.images(body)
    labels = service.classes(body, "labels", service.limits.batch, "--max-batch") if body.has("labels") else None
    if labels is not None and len(labels) != x.shape[0]:
        raise RequestError(400, f'"labels" holds {len(labels)} classes for {x.shape[0]} images: give one per image')
    assert model.decoder is not None
    if labels is None and model.decoder.num_classes and model.label_anchors is None:
        raise RequestError(400, 'this decoder is class-conditional: give "labels", one class per image')
    sampling = service.sampling(body)
    with service.running(service.seed(body)) as gen:
        if labels is None and model.decoder.num_classes:  # the label decoder names each image's class
            found = model.decode("label", model.latents(x, noise_scale=service.settings.noise_scale, generator=gen))
            assert isinstance(found, torch.Tensor)
            labels = found.tolist()
        out = model.reconstruct(x, labels=labels, **sampling, generator=gen)
    return {"images": codec.encode_all(out), "labels": labels}


def zones(service: ModelService, data: dict[str, Any]) -> dict[str, Any]:
    """The zone picture (``zone_map.py``), and with ``images``, ``captions`` or ``labels`` the place of each
    query's latent at noise scale 0 (the centre of the query's zone) on it."""
    body = Body(data, ("images", "captions", "labels", "seed"), "GET or POST /zones")
    service.need("zones")
    assert service.zones is not None
    out = {**service.zones.as_json(), "names": service.names(), "queries": None}
    if not any(body.has(n) for n in ("images", "captions", "labels")):
        return out
    which = body.one_of("images", "captions", "labels")
    if which == "images":
        samples: Any = service.images(body)
    elif which == "captions":
        service.need("embed_captions")
        samples = service.captions(body, "captions", service.limits.batch)
    else:
        if service.model.label_anchors is None:
            raise RequestError(400, NO_LABEL)
        samples = service.classes(body, "labels", service.limits.batch, "--max-batch")
    with service.running(service.seed(body)) as gen:
        if which == "images":
            latents = service.model.latents(samples, noise_scale=0.0, generator=gen)
        else:
            latents = service.model.latents({"captions": "text", "labels": "label"}[which], samples, noise_scale=0.0,
                                            generator=gen)
        out["queries"] = service.place(latents)
    return out
