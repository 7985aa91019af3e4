"""What each endpoint of ``lzn serve`` does with the model: a checked JSON object in, a JSON-ready dict out.
The HTTP side (``app.py``) only reads bodies, checks tokens and turns :class:`RequestError` into responses.

One :class:`ModelService` holds the model, the server's image set (``Gallery``: the candidates of retrieval
and the nearest images of a query) with its anchors computed once, the zone picture, and one lock: every
model call runs under it, so concurrent requests are served one at a time. Each request seeds its own
generator (``seed``, default 0), so the same request gives the same answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lzn.models import DATA_TYPES, LatentZoningNetwork
from lzn.serve import images as codec
from lzn.serve.requests import Body, Limits, RequestError
from lzn.serve.zone_map import ZoneMap, build_zone_map

NO_LABEL = ("this model has no label side (label anchors), so it has no classes of its own: classes come from a "
            "joint or nogen model (lzn train joint)")
NO_TEXT = "this model has no text type, so it takes no captions: train a text model (lzn train text)"
NO_DECODER = "this model has no image decoder, so it cannot make images: train a joint, generation or text model"
NO_ENCODER = "this model has no image encoder, so it cannot read images"
NO_GALLERY = ("this server holds no image set to pick images from: start lzn serve on a run folder, or give a model "
              "folder --data NAME")
SEED_MAX = 2**63 - 1
OPERATIONS = ("classify", "classify_prompts", "generate", "generate_labels", "generate_captions", "embed",
              "embed_captions", "retrieve", "retrieve_captions", "reconstruct", "zones")


@dataclass(frozen=True)
class Gallery:
    """The server's image set: ``images`` (N, C, H, W) in [-1, 1], ``labels`` (N,) or None, a ``name``, and
    the names of its classes (default: the model's)."""

    images: Tensor
    labels: Tensor | None
    name: str
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Settings:
    """Defaults of the requests: ``noise_scale`` of classification latents (alpha, method.md §8.2), the
    sampler and its ``steps`` for images, the most points of the zone picture, the reference bank's size when
    the server builds one from its image set."""

    noise_scale: float = 1.0
    sampler: str = "euler"
    steps: int = 20
    zone_points: int = 1000
    reference_size: int = 2000


class ModelService:
    def __init__(self, model: LatentZoningNetwork, gallery: Gallery | None = None, limits: Limits | None = None,
                 settings: Settings | None = None) -> None:
        self.model = model.eval()
        self.gallery = gallery
        self.limits = limits or Limits()
        self.settings = settings or Settings()
        if self.settings.steps > self.limits.steps:
            raise ValueError(f"the default sampler steps ({self.settings.steps}) exceed the limit of a request "
                             f"({self.limits.steps}): lower --steps or raise --max-steps")
        self.lock = threading.Lock()
        self.reference_source = "model" if model.reference is not None else None
        with torch.no_grad():
            if model.reference is None and gallery is not None and model.encoder is not None:
                model.build_reference(gallery.images.to(model.device, model.dtype), gallery.labels,
                                      size=self.settings.reference_size)
                size = int(model.reference.shape[0]) if model.reference is not None else 0
                self.reference_source = f"built at start from {size} images of {gallery.name}"
            self.gallery_anchors = None
            if gallery is not None and model.encoder is not None:
                self.gallery_anchors = torch.cat([model.anchors(chunk.to(model.device, model.dtype))
                                                  for chunk in gallery.images.split(500)])  # (N, q)
            self.zones: ZoneMap | None = None
            if model.reference is not None:
                self.zones = build_zone_map(model, model.reference, self.settings.zone_points)

    # ------------------------------------------------------------------------------------------
    # what the model can do

    def cannot(self) -> dict[str, str]:
        """The operations this model or server cannot do, each with the reason."""
        m = self.model
        text, labels = "text" in m.data_types, m.label_anchors is not None
        dec, enc, gallery = m.decoder is not None, m.encoder is not None, self.gallery_anchors is not None
        latent_decoder = bool(getattr(m.decoder, "latent_dim", 0))  # a decoder conditioned on latents needs the encoder
        out = {
            "classify": NO_ENCODER if not enc else None if labels else (
                NO_LABEL + ("; this text model classifies by class prompts: pass \"prompts\"" if text else "")),
            "classify_prompts": NO_ENCODER if not enc else None if text else NO_TEXT,
            "generate": NO_DECODER if not dec else None if labels or not m.num_classes else (
                "this decoder is class-conditional and the model has no label decoder: pass \"labels\""),
            "generate_labels": NO_DECODER if not dec else None if m.num_classes else NO_LABEL,
            "generate_captions": NO_DECODER if not dec else None if text else NO_TEXT,
            "embed": NO_ENCODER if not enc else None,
            "embed_captions": None if text else NO_TEXT,
            "retrieve": NO_ENCODER if not enc else None if gallery else NO_GALLERY,
            "retrieve_captions": (None if text else NO_TEXT) if gallery else NO_GALLERY,
            "reconstruct": NO_DECODER if not dec else NO_ENCODER if not enc and latent_decoder else None,
            "zones": NO_ENCODER if not enc else None if self.zones is not None else (
                "this model has no reference bank and the server no image set to build one from"),
        }
        return {k: v for k, v in out.items() if v is not None}

    def need(self, operation: str) -> None:
        why = self.cannot().get(operation)
        if why is not None:
            raise RequestError(400, why)

    def info(self) -> dict[str, Any]:
        m, net = self.model, self.model.encoder if self.model.encoder is not None else self.model.decoder
        cannot = self.cannot()
        return {
            "data_types": list(m.data_types),
            "num_classes": m.num_classes,
            "class_names": self.names(),
            "image": None if net is None else {"channels": net.image_channels, "size": net.image_size},
            "latent_dim": m.latent_dim,
            "operations": {op: op not in cannot for op in OPERATIONS},
            "cannot": cannot,
            "gallery": None if self.gallery is None else {"name": self.gallery.name, "size": len(self.gallery.images)},
            "reference": None if m.reference is None else {"size": m.reference.shape[0],
                                                           "source": self.reference_source},
            "defaults": {"noise_scale": self.settings.noise_scale, "sampler": self.settings.sampler,
                         "steps": self.settings.steps, "seed": 0},
            "limits": self.limits.as_dict(),
        }

    def names(self) -> list[str]:
        k = self.model.num_classes
        return list(self.model.class_names) if self.model.class_names else [str(i) for i in range(k)]

    # ------------------------------------------------------------------------------------------
    # reading requests

    @contextmanager
    def running(self, seed: int) -> Iterator[torch.Generator]:
        """The model, one request at a time, without autograd, and a generator seeded with ``seed``."""
        with self.lock, torch.no_grad():
            yield torch.Generator(device=self.model.device).manual_seed(seed)

    def images(self, body: Body, field: str = "images") -> Tensor:
        net = self.model.encoder if self.model.encoder is not None else self.model.decoder
        if net is None:
            raise RequestError(400, NO_ENCODER)
        items = body.array(field, self.limits.batch, "base64 PNG strings")
        channels, size = int(getattr(net, "image_channels")), int(getattr(net, "image_size"))
        x = codec.decode_all(items, field, channels, size, self.limits.image_side)
        return x.to(self.model.device, self.model.dtype)

    def classes(self, body: Body, field: str, limit: int, flag: str) -> list[int]:
        out = []
        for i, item in enumerate(body.array(field, limit, "classes", flag)):
            try:
                if isinstance(item, bool) or not isinstance(item, (int, str)):
                    raise TypeError
                out.append(self.model.class_index(item))
            except (TypeError, ValueError):
                k = self.model.num_classes
                raise RequestError(400, f'"{field}"[{i}]: unknown class {item!r}; expected an index 0..{k - 1} or '
                                        f"one of the names {', '.join(self.names())}") from None
        return out

    def captions(self, body: Body, field: str, limit: int, flag: str | None = "--max-batch") -> list[str]:
        return body.texts(field, limit, self.limits.caption_chars, flag)

    def seed(self, body: Body) -> int:
        return body.integer("seed", 0, SEED_MAX, 0)

    def sampling(self, body: Body) -> dict[str, Any]:
        return {"sampler": body.choice("sampler", ("euler", "heun"), self.settings.sampler),
                "steps": body.integer("steps", 1, self.limits.steps, self.settings.steps, flag="--max-steps")}

    def pick(self, latents: Tensor, k: int) -> list[list[dict[str, Any]]]:
        """The ``k`` best images of the gallery for each latent (B, q), best first (method.md §3.5)."""
        assert self.gallery is not None and self.gallery_anchors is not None
        choices = DATA_TYPES["image"].choose(self.model, latents, self.gallery_anchors, k)
        labels, names = self.gallery.labels, list(self.gallery.class_names or self.names())
        return [[{"index": i, "probability": round(p, 6),
                  "class": None if labels is None else int(labels[i]),
                  "name": None if labels is None or int(labels[i]) >= len(names) else names[int(labels[i])],
                  "image": codec.encode(self.gallery.images[i])}
                 for i, p in zip(idx, prob)] for idx, prob in zip(choices.indices.tolist(), choices.probs.tolist())]

    def place(self, latents: Tensor) -> list[list[float]] | None:
        return None if self.zones is None else [[round(x, 4), round(y, 4)] for x, y in
                                                self.zones.project(latents).tolist()]
