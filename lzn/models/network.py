"""``LatentZoningNetwork``: an image encoder, an image decoder and optional label anchors composed
through the latent-zone core (spec §0, §4). Every task is a method:

* ``latents(images)``: image encoder + latent flow over the batch's anchors (§2; batch-relative);
* ``embed(images)``: the encoder's backbone features, or the anchors with ``head=True`` (§4.2.6);
* ``generate(...)``: latent from N(0, I) or from a label's zone, then the decoder's rectified flow (§4.1.7, §4.3.5);
* ``classify(images)``: latents of a test batch flowed back over the label anchors (§4.3.6);
* ``reconstruct(images)``: latent from the batch, invert the image flow, regenerate (§4.1.8).

Networks follow two small protocols. Encoders: ``forward(x) -> (B, q)`` anchors, ``features(x)``, and
attributes ``image_channels``, ``image_size``, ``latent_dim``. Decoders: ``forward(x_s, s, latent, labels)``
-> velocity, attributes ``image_channels``, ``image_size``, ``latent_dim``, ``num_classes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from lzn import distributed
from lzn.core import rectified_flow, zones
from lzn.models.label_anchors import LabelAnchors


@dataclass
class FlowConfig:
    """How latents are computed (spec §2.10). Defaults: case studies 1 and 3."""

    solver: Literal["euler", "dpm3"] = "dpm3"
    steps: int = 20
    eps: float | None = None  # None: the solver's default (1e-4 Euler, 1e-3 DPM)
    label_steps: int = 100  # reverse / forward Euler steps of label flows
    label_eps: float = 1e-4


class GenerationOutput(NamedTuple):
    images: Tensor  # (B, C, H, W) in [-1, 1] up to sampler error (not clipped)
    labels: Tensor | None  # (B,) the given or predicted classes, None without label anchors
    latents: Tensor  # (B, q) the LZN latents the decoder was conditioned on


class LatentZoningNetwork(nn.Module):
    def __init__(
        self,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        label_anchors: LabelAnchors | None = None,
        flow: FlowConfig | None = None,
    ) -> None:
        super().__init__()
        if encoder is None and decoder is None and label_anchors is None:
            raise ValueError("LatentZoningNetwork needs at least one of encoder, decoder, label_anchors")
        dims = {name: m.latent_dim for name, m in (("encoder", encoder), ("decoder", decoder),
                                                   ("label_anchors", label_anchors)) if m is not None}
        used = {k: v for k, v in dims.items() if v}  # a plain RF decoder has latent_dim 0
        if len(set(used.values())) > 1:
            raise ValueError(f"all parts must share one latent dimension, got {used}")
        self.encoder = encoder
        self.decoder = decoder
        self.label_anchors = label_anchors
        self.flow = flow or FlowConfig()
        self.latent_dim = next(iter(used.values()), 0)

    # ------------------------------------------------------------------------------------------
    # input checks (once, at this boundary)

    def _spec(self) -> nn.Module:
        net = self.encoder if self.encoder is not None else self.decoder
        if net is None:
            raise ValueError("this model has no image encoder or decoder")
        return net

    def check_images(self, images: Tensor) -> None:
        net = self._spec()
        c, size = net.image_channels, net.image_size
        if not isinstance(images, Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B, {c}, {size}, {size}) tensor, got {got}")
        if images.shape[1] != c or images.shape[2] != size or images.shape[3] != size:
            raise ValueError(f"images must have shape (B, {c}, {size}, {size}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point scaled to [-1, 1], got dtype {images.dtype}")
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images contain NaN or infinite pixels")

    def _check_labels(self, labels: Tensor, batch: int | None = None) -> None:
        k = self._num_classes()
        if k == 0:
            raise ValueError("this model has no classes (no label anchors and no class-conditional decoder)")
        if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be a 1-D integer tensor, got {tuple(labels.shape)} {labels.dtype}")
        if batch is not None and labels.shape[0] != batch:
            raise ValueError(f"labels must have shape ({batch},) to match the images, got {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise ValueError(f"labels must lie in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")

    def _num_classes(self) -> int:
        if self.label_anchors is not None:
            return self.label_anchors.num_classes
        return int(getattr(self.decoder, "num_classes", 0) or 0)

    def _need(self, part: str) -> nn.Module:
        module = getattr(self, part)
        if module is None:
            raise ValueError(f"this operation needs a {part.replace('_', ' ')}, and the model has none")
        return module

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------------------------------
    # encoder side

    def anchors(self, images: Tensor) -> Tensor:
        """Image encoder: (B, C, H, W) -> (B, q) anchors."""
        self.check_images(images)
        return self._need("encoder")(images)

    def latents_from_anchors(self, anchors: Tensor, noise: Tensor | None = None, noise_scale: float = 1.0,
                             generator: torch.Generator | None = None) -> Tensor:
        """Latents of local anchors (B, q) over the anchors of every process (spec §2.7): (B, q)."""
        gathered = distributed.gather_with_grad(anchors)  # (world * B, q), rank-major
        b = anchors.shape[0]
        index = torch.arange(b, device=anchors.device) + distributed.global_offset(b)
        if noise is None:
            noise = torch.randn(anchors.shape, generator=generator, device=anchors.device, dtype=anchors.dtype)
        return zones.latents(gathered, noise, index=index, steps=self.flow.steps, solver=self.flow.solver,
                             eps=self.flow.eps, noise_scale=noise_scale)

    def latents(self, images: Tensor, noise: Tensor | None = None, noise_scale: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
        """Latents of a batch of images; the batch (across processes) is the anchor set: (B, q)."""
        return self.latents_from_anchors(self.anchors(images), noise, noise_scale, generator)

    def embed(self, images: Tensor, head: bool = False) -> Tensor:
        """Representation: backbone features (default) or anchors (``head=True``)."""
        self.check_images(images)
        encoder = self._need("encoder")
        return encoder(images) if head else encoder.features(images)

    # ------------------------------------------------------------------------------------------
    # decoder side

    def _velocity(self, latent: Tensor | None, labels: Tensor | None):  # type: ignore[no-untyped-def]
        decoder = self._need("decoder")
        lat = latent if decoder.latent_dim else None
        lab = labels if decoder.num_classes else None

        def fn(x: Tensor, s: Tensor) -> Tensor:
            return decoder(x, s, lat, lab)

        return fn

    def _image_noise(self, num: int, generator: torch.Generator | None) -> Tensor:
        dec = self._need("decoder")
        shape = (num, dec.image_channels, dec.image_size, dec.image_size)
        return torch.randn(shape, generator=generator, device=generator.device if generator else self.device)

    @torch.no_grad()
    def generate(
        self,
        num: int | None = None,
        labels: Tensor | None = None,
        sampler: str = "dopri5",
        steps: int | None = None,
        generator: torch.Generator | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
    ) -> GenerationOutput:
        """Sample images (spec §4.1.7, §4.3.5). With ``labels`` (B,): class-conditional latents from the
        label zones; otherwise ``num`` latents from N(0, I), whose classes the label decoder predicts."""
        decoder = self._need("decoder")
        if labels is not None:
            self._check_labels(labels)
            if num is not None and num != labels.shape[0]:
                raise ValueError(f"num={num} disagrees with {labels.shape[0]} labels; pass one of them")
            num = labels.shape[0]
        if num is None or num < 1:
            raise ValueError(f"generate needs num >= 1 or a labels tensor, got num={num}")
        dev = generator.device if generator is not None else self.device
        q = self.latent_dim
        if labels is not None:
            labels = labels.to(dev)
            if q and self.label_anchors is not None:
                noise = torch.randn(num, q, generator=generator, device=dev)
                latent = self.label_anchors.conditional_latents(labels, noise, steps=self.flow.label_steps,
                                                                eps=self.flow.label_eps)
            elif q:
                raise ValueError("class-conditional latents need label anchors; this model has none")
            else:
                latent = torch.zeros(num, 0, device=dev)
        else:
            latent = torch.randn(num, q, generator=generator, device=dev)
            if self.label_anchors is not None:
                labels = self.label_anchors.decode(latent, steps=self.flow.label_steps)
            elif decoder.num_classes:
                raise ValueError("this decoder is class-conditional: pass labels (the model has no label decoder)")
        noise = self._image_noise(num, generator)
        images = rectified_flow.sample(self._velocity(latent, labels), noise, method=sampler, steps=steps,
                                       rtol=rtol, atol=atol)
        return GenerationOutput(images, labels, latent)

    @torch.no_grad()
    def classify(self, images: Tensor, noise_scale: float = 1.0, batch_size: int = 2000,
                 generator: torch.Generator | None = None) -> Tensor:
        """Classes of images by the paper's protocol (spec §4.3.6): each chunk of ``batch_size`` images is
        its own anchor set; latents flow back over the label anchors with uniform weights: (B,)."""
        self.check_images(images)
        label_anchors, encoder = self._need("label_anchors"), self._need("encoder")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        out = []
        for chunk in images.split(batch_size):  # images were checked once above
            lat = self.latents_from_anchors(encoder(chunk), noise_scale=noise_scale, generator=generator)
            out.append(label_anchors.decode(lat, steps=self.flow.label_steps))
        return torch.cat(out)

    @torch.no_grad()
    def reconstruct(self, images: Tensor, labels: Tensor | None = None, sampler: str = "dopri5",
                    steps: int | None = None, generator: torch.Generator | None = None,
                    rtol: float = 1e-5, atol: float = 1e-5) -> Tensor:
        """Latent from the batch, invert the image flow to noise, regenerate (spec §4.1.8): (B, C, H, W)."""
        self.check_images(images)
        decoder = self._need("decoder")
        if decoder.num_classes:
            if labels is None:
                raise ValueError("this decoder is class-conditional: reconstruct needs the true labels")
            self._check_labels(labels, images.shape[0])
        latent = None
        if decoder.latent_dim:  # images were checked once above
            latent = self.latents_from_anchors(self._need("encoder")(images), generator=generator)
        fn = self._velocity(latent, labels)
        noise = rectified_flow.invert(fn, images, method=sampler, steps=steps, rtol=rtol, atol=atol)
        return rectified_flow.sample(fn, noise, method=sampler, steps=steps, rtol=rtol, atol=atol)

    # ------------------------------------------------------------------------------------------
    # persistence

    def save_pretrained(self, directory: str) -> None:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (atomically)."""
        from lzn.models.pretrained import save_pretrained

        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str, map_location: str | torch.device = "cpu") -> LatentZoningNetwork:
        """Load a folder written by ``save_pretrained`` onto ``map_location`` (CPU or CUDA)."""
        from lzn.models.pretrained import from_pretrained

        return from_pretrained(directory, map_location)
