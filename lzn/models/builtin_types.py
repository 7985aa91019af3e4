"""The built-in data types, entries of the data-type table (``lzn.models.datatypes``): ``image``, the
model's image ``encoder`` and its rectified-flow ``decoder`` (method.md §5.9), and ``label``, its
``label_anchors``, encoder and decoder in one (§3.5, §7.5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lzn import checks
from lzn.core import rectified_flow
from lzn.models import inputs
from lzn.models.outputs import Context, Labels, Sampling
from lzn.models.type_entry import TypeEntry, num_rows, sliced


@dataclass(frozen=True)
class ImageType(TypeEntry):
    """Images: the model's ``encoder`` and its rectified-flow ``decoder`` conditioned on a latent (and on
    classes when class-conditional), method.md §5.9."""

    name: str = "image"
    form: str = "a (B, C, H, W) float tensor in [-1, 1] with the weights' dtype"
    count: Callable[[Any], int] = num_rows
    take: Callable[[Any, int, int], Any] = sliced

    def present(self, model: Any) -> bool:
        return model.encoder is not None or model.decoder is not None

    def encoder(self, model: Any) -> nn.Module:
        return inputs.need(model, "encoder")

    def samples(self, model: Any, samples: Any, who: str) -> Any:
        model.check_images(samples)
        return samples

    def embed(self, model: Any, samples: Any, head: bool) -> Tensor:
        """The encoder's backbone features (B, d), or its anchors with ``head`` (method.md §8.3)."""
        if head:
            return model.anchors(self.name, samples)
        model.check_images(samples)
        return inputs.need(model, "encoder").features(samples)

    def reference_buffer(self) -> str:
        return "reference"

    def reference_help(self) -> tuple[str, str]:
        return "reference bank", "model.build_reference(train_images, labels)"

    def decode(self, model: Any, latents: Tensor, candidates: Any, *, k: int, labels: Labels | None,
               sampling: Sampling, batch_size: int) -> Tensor:
        """Images (B, C, H, W) by the decoder's rectified flow conditioned on each latent (method.md §5.9); a
        class-conditional decoder takes ``labels``, else the label decoder's classes."""
        decoder = inputs.need(model, "decoder")
        classes = None
        if decoder.num_classes:
            if labels is not None:
                classes = inputs.as_labels(labels, model.num_classes, latents.shape[0]).to(latents.device)
            elif model.label_anchors is not None:
                classes = model.label_anchors.decode(latents, steps=model.flow.label_steps)
            else:
                raise ValueError("this image decoder is class-conditional: pass labels")
        return self.sample(model, latents, classes, sampling)

    def velocity(self, model: Any, latent: Tensor | None,
                 labels: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
        """The decoder's velocity field (x_s, s) -> v, conditioned on what the decoder takes of ``latent``
        (B, q) and ``labels`` (B,)."""
        decoder = inputs.need(model, "decoder")
        lat = latent if decoder.latent_dim else None
        lab = labels if decoder.num_classes else None

        def fn(x: Tensor, s: Tensor) -> Tensor:
            return decoder(x, s, lat, lab)

        return fn

    def sample(self, model: Any, latent: Tensor, labels: Tensor | None, sampling: Sampling) -> Tensor:
        """Images (B, C, H, W): the rectified flow from noise drawn with ``sampling.generator``."""
        dec = inputs.need(model, "decoder")
        generator = sampling.generator
        shape = (latent.shape[0], dec.image_channels, dec.image_size, dec.image_size)
        noise = torch.randn(shape, generator=generator, device=generator.device if generator else model.device)
        return rectified_flow.sample(self.velocity(model, latent.to(noise.device), labels), noise,
                                     method=sampling.sampler, steps=sampling.steps, rtol=sampling.rtol,
                                     atol=sampling.atol)


@dataclass(frozen=True)
class LabelType(TypeEntry):
    """Labels: the model's ``label_anchors``, one learnable anchor per class; a label's latent flows from its
    class's anchor over every class's anchor (method.md §7.5), and latents decode to the class whose anchor
    the reverse flow reaches (§3.5)."""

    name: str = "label"
    form: str = "class indices (a list, array or 1-D integer tensor) in [0, num_classes)"
    count: Callable[[Any], int] = num_rows
    take: Callable[[Any, int, int], Any] = sliced

    def present(self, model: Any) -> bool:
        return model.label_anchors is not None

    def encoder(self, model: Any) -> nn.Module:
        return inputs.need(model, "label_anchors")

    def samples(self, model: Any, samples: Any, who: str) -> Any:
        return inputs.as_labels(samples, model.num_classes).to(model.device)

    def latents(self, model: Any, samples: Any, noise: Tensor | None, noise_scale: float,
                generator: torch.Generator | None, context: Context | None) -> Tensor:
        """Class-conditional latents (B, q): a forward Euler flow from each label's anchor (method.md §7.5)."""
        labels = self.samples(model, samples, "labels")
        if noise is None:
            dev = generator.device if generator is not None else model.device
            noise = torch.randn(labels.shape[0], model.latent_dim, generator=generator, device=dev)
        return inputs.need(model, "label_anchors").conditional_latents(
            labels.to(noise.device), noise, steps=model.flow.label_steps, eps=model.flow.label_eps,
            noise_scale=noise_scale)

    def reference_buffer(self) -> None:
        return None

    def check_query(self) -> None:
        raise ValueError("labels are not queries of retrieve: use generate(labels=...) or latents('label', ...)")

    def given(self, model: Any, samples: Any, num: int | None, alpha: float,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """Class-conditional generation (method.md §7.5): latents from the label zones, or none (B, 0) for a
        plain class-conditional decoder; the labels themselves for the decoder. The classes are the label
        anchors' or the class-conditional decoder's."""
        labels = inputs.as_labels(samples, model.num_classes)
        if num is not None and num != labels.shape[0]:
            raise ValueError(f"num={num} disagrees with {labels.shape[0]} labels; pass one of them")
        num = checks.positive_int("num", labels.shape[0])
        dev = generator.device if generator is not None else model.device
        labels = labels.to(dev)
        q = model.latent_dim
        if q and model.label_anchors is not None:
            noise = torch.randn(num, q, generator=generator, device=dev)
            latent = model.label_anchors.conditional_latents(labels, noise, steps=model.flow.label_steps,
                                                             eps=model.flow.label_eps, noise_scale=alpha)
        elif q:
            raise ValueError("class-conditional latents need label anchors; this model has none")
        else:
            latent = torch.zeros(num, 0, device=dev)
        return latent, labels

    def decode(self, model: Any, latents: Tensor, candidates: Any, *, k: int, labels: Labels | None,
               sampling: Sampling, batch_size: int) -> Tensor:
        """Classes (B,): each latent flows back over the label anchors, nearest anchor's class (method.md §3.5)."""
        return inputs.need(model, "label_anchors").decode(latents, steps=model.flow.label_steps)
