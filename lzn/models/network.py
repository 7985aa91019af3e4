"""``LatentZoningNetwork``: named data types sharing one latent space, composed through the latent-zone
core (method.md §1, §5-§7, §12). Built in: ``image`` (an image encoder and / or a rectified-flow image
decoder) and ``label`` (label anchors: encoder and decoder in one). Further types (``text``) are
in the table of ``lzn.models.datatypes`` and given as ``types={"text": TypeParts(encoder, decoder)}``. Value
types are in ``outputs.py``, argument checks in ``inputs.py``, the reference bank in ``reference_bank.py``
and the files in ``pretrained.py``.
Tasks are compositions of two operations, spelled by type:

* ``latents(type, samples)``, ``decode(type, latents, ...)``, ``embed(type, samples)``;
* ``generate(given=("text", captions))``: latents from the captions' zones, decoded as images;
* ``retrieve(query_type, queries, candidate_type, candidates)``: the best candidates of each query;
* ``classify(images)`` (label decoder) or ``classify(images, prompts=[...])`` (text candidates).

Images also have shorthands, aliases of the typed spelling (``latents(images)`` is ``latents("image", images)``):

* ``latents(images)``: image encoder + latent flow over the model's reference bank of anchors plus each
  image's own (§2.9; the same for an image alone or in any batch), or over the batch's anchors
  (``context="batch"``, the paper's protocol, §2);
* ``embed(images)``: the encoder's backbone features, or the anchors with ``head=True`` (§8.3);
* ``generate(...)``: latent from N(0, I) or from a label's zone, then the decoder's rectified flow (§5.9, §7.5);
* ``classify(images)``: latents of a test batch flowed back over the label anchors (§8.2);
* ``reconstruct(images)``: latent from the batch, invert the image flow, regenerate (§8.1).

Networks follow two small protocols. Encoders: ``forward(x) -> (B, q)`` anchors, ``features(x)``, and
attributes ``image_channels``, ``image_size``, ``latent_dim``. Decoders: ``forward(x_s, s, latent, labels)``
-> velocity, attributes ``image_channels``, ``image_size``, ``latent_dim``, ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lzn import checks, distributed
from lzn.core import rectified_flow, zones
from lzn.models import inputs, pretrained, reference_bank
from lzn.models.candidates import CandidateDecoder
from lzn.models.datatypes import BUILT_IN, data_type
from lzn.models.label_anchors import LabelAnchors
from lzn.models.outputs import Choices, Context, FlowConfig, GenerationOutput, Labels, TypeParts
from lzn.models.reference_bank import reference_indices

__all__ = ["Choices", "Context", "FlowConfig", "GenerationOutput", "LatentZoningNetwork", "Labels", "TypeParts",
           "reference_indices"]

_CHOOSER = CandidateDecoder()  # the choice among candidates of a type without a decoder of its own (images)


class LatentZoningNetwork(nn.Module):
    """``class_names`` (optional): one unique string per class of the label anchors or of the
    class-conditional decoder, saved with the model; see ``label_names`` and ``class_index``."""

    def __init__(
        self,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        label_anchors: LabelAnchors | None = None,
        flow: FlowConfig | None = None,
        *,
        class_names: Sequence[str] | None = None,
        types: Mapping[str, TypeParts] | None = None,
    ) -> None:
        super().__init__()
        types = dict(types or {})
        if encoder is None and decoder is None and label_anchors is None and not types:
            raise ValueError("LatentZoningNetwork needs at least one of encoder, decoder, label_anchors, types")
        for name, parts in types.items():
            if name in BUILT_IN:
                raise ValueError(f"types: {name!r} is built in; pass its networks as encoder / decoder / label_anchors")
            data_type(name)  # registered (lzn.models.datatypes)
            if not isinstance(parts, TypeParts) or not isinstance(parts.encoder, nn.Module):
                raise TypeError(f"types[{name!r}] must be TypeParts(encoder, decoder=None) with an nn.Module encoder, "
                                f"got {parts!r}")
        dims = {name: m.latent_dim for name, m in (("encoder", encoder), ("decoder", decoder),
                                                   ("label_anchors", label_anchors)) if m is not None}
        dims.update({f"{name}_encoder": parts.encoder.latent_dim for name, parts in types.items()})
        used = {k: v for k, v in dims.items() if v}  # a plain RF decoder has latent_dim 0
        if len(set(used.values())) > 1:
            raise ValueError(f"all parts must share one latent dimension, got {used}")
        self.encoder = encoder
        self.decoder = decoder
        self.label_anchors = label_anchors
        self.flow = flow or FlowConfig()
        self.latent_dim = next(iter(used.values()), 0)
        self.class_names = self._check_class_names(class_names)
        self.reference: Tensor | None
        self.register_buffer("reference", None)  # (R, q) anchors: see build_reference / set_reference
        self.type_names: tuple[str, ...] = tuple(types)  # the registered types, beside image and label
        for name, parts in types.items():
            self.add_module(f"{name}_encoder", parts.encoder)
            self.add_module(f"{name}_decoder", parts.decoder)
            self.register_buffer(f"{name}_reference", None)  # (R, q) anchors of the type's reference set

    def _check_class_names(self, names: Sequence[str] | None) -> tuple[str, ...] | None:
        return inputs.check_class_names(names, self._num_classes())

    # ------------------------------------------------------------------------------------------
    # input checks (once, at this boundary)

    def _spec(self) -> nn.Module:
        net = self.encoder if self.encoder is not None else self.decoder
        if net is None:
            raise ValueError("this model has no image encoder or decoder")
        return net

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the weights (float32 unless the model was converted)."""
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)

    def check_images(self, images: Tensor) -> None:
        """(B, C, S, S) in [-1, 1] with the weights' dtype, B >= 1, finite; one host sync."""
        net = self._spec()
        inputs.check_images(images, net.image_channels, net.image_size, self.dtype)

    def _as_labels(self, labels: Labels, batch: int | None = None) -> Tensor:
        """1-D class indices in [0, K) as a long tensor (same device as a given tensor, else CPU)."""
        return inputs.as_labels(labels, self._num_classes(), batch)

    @property
    def num_classes(self) -> int:
        """Classes the model knows: its label anchors', else its class-conditional decoder's; 0 for none."""
        return self._num_classes()

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
    # class names

    def label_names(self, labels: Labels) -> list[str]:
        """Names of class indices (B,): ``class_names`` where known, else the index as a string."""
        idx = self._as_labels(labels).tolist()
        return [self.class_names[i] if self.class_names else str(i) for i in idx]

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class name ("cat"), an index as text ("3") or an index (3) to an index in [0, K)."""
        return inputs.class_index(name_or_index, self.class_names, self._num_classes())

    # ------------------------------------------------------------------------------------------
    # encoder side

    def anchors(self, type_or_images: str | Tensor, samples: Any = None) -> Tensor:
        """A type's encoder: ``anchors("text", texts)`` -> (B, q); ``anchors(images)`` is the image encoder."""
        name, samples = self._typed("anchors", type_or_images, samples)
        return self._type_encoder(name)(self._samples(name, samples, f"anchors({name!r}, ...)"))

    def latents_from_anchors(self, anchors: Tensor, noise: Tensor | None = None, noise_scale: float = 1.0,
                             generator: torch.Generator | None = None, *, allow_nonfinite: bool = False,
                             compile: bool = False) -> Tensor:
        """Latents of local anchors (B, q) over the anchors of every process (method.md §4.1): (B, q).

        Non-finite anchors raise (after the gather, so every process raises alike); training passes
        ``allow_nonfinite=True`` so that a diverged step gives a NaN loss the loop skips everywhere, and
        ``compile=train.compile`` (the flow through ``torch.compile``, method.md §2.11)."""
        gathered = distributed.gather_with_grad(anchors)  # (world * B, q), rank-major
        b = anchors.shape[0]
        index = torch.arange(b, device=anchors.device) + distributed.global_offset(b)
        if noise is None:
            noise = torch.randn(anchors.shape, generator=generator, device=anchors.device, dtype=anchors.dtype)
        return zones.latents(gathered, noise, index=index, steps=self.flow.steps, solver=self.flow.solver,
                             eps=self.flow.eps, noise_scale=noise_scale, allow_nonfinite=allow_nonfinite,
                             compile=compile)

    def latents(self, type_or_images: str | Tensor, samples: Any = None, *, noise: Tensor | None = None,
                noise_scale: float = 1.0, generator: torch.Generator | None = None,
                context: Context | None = None) -> Tensor:
        """Latents (B, q) of samples of a type: ``latents("text", captions)``, ``latents("label", [3, 4])``;
        ``latents(images)`` is ``latents("image", images)``. ``context`` picks the anchor set (method.md
        §2.9): "reference" (the default when the model has a reference set of that type) flows each sample
        over the reference anchors plus its own, so its latent does not depend on the rest of the batch;
        "batch" (the default without one, and the paper's protocol) flows it over the anchors of the whole
        batch, across processes. Labels always flow over every class's anchor (method.md §7.5)."""
        name, samples = self._typed("latents", type_or_images, samples)
        zones.check_noise_scale(noise_scale)
        if name == "label":
            labels = self._as_labels(samples).to(self.device)
            if noise is None:
                dev = generator.device if generator is not None else self.device
                noise = torch.randn(labels.shape[0], self.latent_dim, generator=generator, device=dev)
            return self._need("label_anchors").conditional_latents(
                labels.to(noise.device), noise, steps=self.flow.label_steps, eps=self.flow.label_eps,
                noise_scale=noise_scale)
        anchors = self.anchors(name, samples)
        return self._latents(anchors, noise, noise_scale, generator, self._context(context, name), name)

    # ---- the reference bank: inference that does not depend on the batch ----------------------

    def set_reference(self, anchors: Tensor | None, type: str = "image") -> None:
        """Use ``anchors`` (R, q) as the reference set of ``type``'s inference latents; None removes it."""
        buffer = reference_bank.buffer_name(self._check_type(type))
        value = None if anchors is None else reference_bank.checked_anchors(anchors, self.latent_dim)
        setattr(self, buffer, None if value is None else value.to(device=self.device, dtype=self.dtype).clone())

    def reference_of(self, type: str = "image") -> Tensor | None:
        """The reference anchors (R, q) of ``type``, or None."""
        return getattr(self, reference_bank.buffer_name(self._check_type(type)))

    @torch.no_grad()
    def build_reference(self, images: Tensor, labels: Labels | None = None, size: int = 2000,
                        batch_size: int = 2000, seed: int = 0) -> Tensor:
        """Set the reference bank to the anchors of ``size`` of ``images`` (training images), drawn
        class-balanced when ``labels`` are given (round-robin over classes, seeded); returns it (R, q)."""
        self.check_images(images)
        self._need("encoder")
        index = reference_indices(images.shape[0], labels, size, seed)
        return self.build_reference_from(images[index.to(images.device)], batch_size)

    @torch.no_grad()
    def build_reference_from(self, picked: Any, batch_size: int = 2000, type: str = "image") -> Tensor:
        """Set the reference set of ``type`` to the anchors of exactly the samples ``picked``: images (R, C,
        H, W), e.g. those :func:`reference_indices` chose from a data set too large to hold in memory, or
        texts (``type="text"``); returns it (R, q)."""
        name = self._check_type(type)
        reference_bank.buffer_name(name)  # labels have none
        anchors = self._encode_chunked(name, picked, checks.positive_int("batch_size", batch_size))  # (R, q)
        self.set_reference(anchors, name)
        out = self.reference_of(name)
        assert out is not None
        return out

    def _context(self, context: Context | None, name: str = "image") -> Context:
        return reference_bank.pick_context(context, self.reference_of(name), name)

    def _latents(self, anchors: Tensor, noise: Tensor | None, noise_scale: float,
                 generator: torch.Generator | None, context: Context, name: str = "image") -> Tensor:
        if context == "batch":
            return self.latents_from_anchors(anchors, noise, noise_scale, generator)
        reference = self.reference_of(name)
        assert reference is not None
        return reference_bank.latents_over(anchors, reference, noise, noise_scale, generator, self.flow)

    def embed(self, type_or_images: str | Tensor, samples: Any = None, head: bool = False) -> Tensor:
        """Representation: of images, the encoder's backbone features (default) or anchors (``head=True``);
        of any other type (``embed("text", texts)``), its anchors (B, q)."""
        name, samples = self._typed("embed", type_or_images, samples)
        if name != "image" or head:
            return self.anchors(name, samples)
        self.check_images(samples)
        return self._need("encoder").features(samples)

    # ------------------------------------------------------------------------------------------
    # decoder side

    def _velocity(self, latent: Tensor | None, labels: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
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
        labels: Labels | None = None,
        sampler: str = "dopri5",
        steps: int | None = None,
        generator: torch.Generator | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        *,
        given: tuple[str, Any] | None = None,
        noise_scale: float | None = None,
    ) -> GenerationOutput:
        """Sample images (method.md §5.9, §7.5). With ``labels`` (B,): class-conditional latents from the
        label zones; with ``given=(type, samples)``, e.g. ``("text", ["a fat zero"])``, one latent from
        each sample's zone (``latents(type, samples)``); otherwise ``num`` latents from N(0, I). A
        class-conditional decoder gets the given labels, else those the label decoder predicts. ``labels``
        may be a tensor, a list / tuple or a numpy array of class indices. ``noise_scale``: alpha of latents
        drawn from a zone (default ``flow.noise_scale``)."""
        decoder = self._need("decoder")
        alpha = self.flow.noise_scale if noise_scale is None else noise_scale
        zones.check_noise_scale(alpha)
        if given is not None:
            if not isinstance(given, tuple) or len(given) != 2 or not isinstance(given[0], str):
                raise TypeError(f"given must be a (type, samples) pair such as ('text', ['a fat zero']), got {given!r}")
            if labels is not None:
                raise ValueError("pass labels or given, not both")
            if given[0] == "label":
                labels = given[1]
            else:
                return self._generate_given(given[0], given[1], num, sampler, steps, generator, rtol, atol, alpha)
        if labels is not None:
            labels = self._as_labels(labels)
            if num is not None and num != labels.shape[0]:
                raise ValueError(f"num={num} disagrees with {labels.shape[0]} labels; pass one of them")
            num = labels.shape[0]
        if num is None:
            raise ValueError("generate needs num >= 1 or labels")
        num = checks.positive_int("num", num)
        dev = generator.device if generator is not None else self.device
        q = self.latent_dim
        if labels is not None:
            labels = labels.to(dev)
            if q and self.label_anchors is not None:
                noise = torch.randn(num, q, generator=generator, device=dev)
                latent = self.label_anchors.conditional_latents(labels, noise, steps=self.flow.label_steps,
                                                                eps=self.flow.label_eps, noise_scale=alpha)
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

    def _generate_given(self, name: str, samples: Any, num: int | None, sampler: str, steps: int | None,
                        generator: torch.Generator | None, rtol: float, atol: float, alpha: float) -> GenerationOutput:
        name = self._check_type(name)
        count = self._count(name, self._samples(name, samples, f"generate(given=({name!r}, ...))"))
        if num is not None and num != count:
            raise ValueError(f"num={num} disagrees with {count} given samples; pass one of them")
        latent = self.latents(name, samples, noise_scale=alpha, generator=generator)  # (B, q)
        labels = None
        if self._need("decoder").num_classes:
            if self.label_anchors is None:
                raise ValueError("this decoder is class-conditional and the model has no label decoder to name "
                                 "the classes of the given samples; pass labels instead")
            labels = self.label_anchors.decode(latent, steps=self.flow.label_steps)
        images = self._decode_images(latent, labels, sampler, steps, generator, rtol, atol)
        return GenerationOutput(images, labels, latent)

    def _decode_images(self, latent: Tensor, labels: Tensor | None, sampler: str, steps: int | None,
                       generator: torch.Generator | None, rtol: float, atol: float) -> Tensor:
        noise = self._image_noise(latent.shape[0], generator)
        return rectified_flow.sample(self._velocity(latent.to(noise.device), labels), noise, method=sampler,
                                     steps=steps, rtol=rtol, atol=atol)

    @torch.no_grad()
    def classify(self, images: Tensor, noise_scale: float | None = None, batch_size: int = 2000,
                 generator: torch.Generator | None = None, context: Context | None = None, *,
                 prompts: Sequence[str] | None = None) -> Tensor:
        """Classes of images (B,): latents flow back over the label anchors with uniform weights
        (method.md §8.2). With ``context="batch"`` (the paper's protocol) each chunk of ``batch_size``
        images is its own anchor set; with "reference" (the default when the model has a bank) each
        image's latent is computed over the bank, and ``batch_size`` only bounds memory. ``noise_scale``:
        alpha of the image latents (default 1, the paper's metric).

        With ``prompts`` (one text per class, e.g. "the digit zero"): prompt classification, the best
        prompt of each image by ``retrieve("image", images, "text", prompts)`` (alpha default 0, the
        zone centres); no label anchors are involved."""
        if prompts is not None:
            alpha = 0.0 if noise_scale is None else noise_scale
            return self.retrieve("image", images, "text", prompts, k=1, noise_scale=alpha, batch_size=batch_size,
                                 generator=generator, context=context).indices[:, 0]
        noise_scale = 1.0 if noise_scale is None else noise_scale
        label_anchors, encoder = self._need("label_anchors"), self._need("encoder")
        zones.check_noise_scale(noise_scale)
        batch_size = checks.positive_int("batch_size", batch_size)
        context = self._context(context)
        self.check_images(images)
        out = []
        for chunk in images.split(batch_size):  # images were checked once above
            lat = self._latents(encoder(chunk), None, noise_scale, generator, context)
            out.append(label_anchors.decode(lat, steps=self.flow.label_steps))
        return torch.cat(out)

    @torch.no_grad()
    def reconstruct(self, images: Tensor, labels: Labels | None = None, sampler: str = "dopri5",
                    steps: int | None = None, generator: torch.Generator | None = None,
                    rtol: float = 1e-5, atol: float = 1e-5, context: Context | None = None) -> Tensor:
        """Latent of each image (``context`` as in ``latents``; the paper's metric uses "batch"), invert
        the image flow to noise, regenerate (method.md §8.1): (B, C, H, W)."""
        self.check_images(images)
        decoder = self._need("decoder")
        if decoder.num_classes:
            if labels is None:
                raise ValueError("this decoder is class-conditional: reconstruct needs the true labels")
            labels = self._as_labels(labels, images.shape[0]).to(images.device)
        latent = None
        if decoder.latent_dim:  # images were checked once above
            latent = self._latents(self._need("encoder")(images), None, 1.0, generator, self._context(context))
        fn = self._velocity(latent, labels)
        noise = rectified_flow.invert(fn, images, method=sampler, steps=steps, rtol=rtol, atol=atol)
        return rectified_flow.sample(fn, noise, method=sampler, steps=steps, rtol=rtol, atol=atol)

    # ------------------------------------------------------------------------------------------
    # data types by name (method.md §12)

    @property
    def data_types(self) -> tuple[str, ...]:
        """The model's data types: "image" (an image encoder or decoder), "label" (label anchors), then the
        registered types it was given."""
        out = ["image"] if (self.encoder is not None or self.decoder is not None) else []
        if self.label_anchors is not None:
            out.append("label")
        return (*out, *self.type_names)

    def parts(self) -> dict[str, nn.Module]:
        """The networks with weights, by the names checkpoints and ``train.lr`` use: ``encoder``, ``decoder``,
        ``label_anchors``, ``NAME_encoder``, ``NAME_decoder``. Networks without parameters (a candidate
        decoder) are left out; a frozen text backbone is not a parameter of its encoder, the head is."""
        return {name: m for name, m in self.named_children() if next(m.parameters(), None) is not None}

    def _check_type(self, name: str) -> str:
        return inputs.check_type_name(name, self.data_types)

    def _typed(self, method: str, type_or_images: str | Tensor, samples: Any) -> tuple[str, Any]:
        """(type, samples) of a call spelled ``method(type, samples)`` or, for images, ``method(images)``."""
        if isinstance(type_or_images, str):
            if samples is None:
                raise ValueError(f"{method}({type_or_images!r}, samples): pass the samples")
            return self._check_type(type_or_images), samples
        if samples is not None:
            raise TypeError(f"{method}(images, ...): the second argument is for {method}(type, samples); pass "
                            "noise, noise_scale, generator and context as keywords")
        return "image", type_or_images

    def _samples(self, name: str, samples: Any, who: str) -> Any:
        """A checked batch of ``name`` samples, in the form its encoder takes."""
        if name == "image":
            self.check_images(samples)
            return samples
        if name == "label":
            return self._as_labels(samples).to(self.device)
        return data_type(name).check(samples, who)

    def _count(self, name: str, samples: Any) -> int:
        if name in ("image", "label"):
            return int(samples.shape[0])
        return data_type(name).count(samples)

    def _take(self, name: str, samples: Any, start: int, stop: int) -> Any:
        if name in ("image", "label"):
            return samples[start:stop]
        return data_type(name).take(samples, start, stop)

    def _type_encoder(self, name: str) -> nn.Module:
        if name == "image":
            return self._need("encoder")
        if name == "label":
            return self._need("label_anchors")
        return getattr(self, f"{name}_encoder")

    def _encode_chunked(self, name: str, samples: Any, batch_size: int) -> Tensor:
        """Anchors (N, q) of N samples, ``batch_size`` at a time (the encoders act sample by sample)."""
        samples = self._samples(name, samples, f"{name} samples")
        n, encoder = self._count(name, samples), self._type_encoder(name)
        parts = []
        for start in range(0, n, batch_size):
            chunk = self._take(name, samples, start, start + batch_size)
            parts.append(encoder(chunk.to(self.device) if isinstance(chunk, Tensor) else chunk))
        return torch.cat(parts)

    def _chooser(self, name: str) -> CandidateDecoder:
        """The decoder that chooses among candidates of ``name``: the type's own, else the shared mechanism."""
        own = getattr(self, f"{name}_decoder", None) if name not in BUILT_IN else None
        return own if isinstance(own, CandidateDecoder) else _CHOOSER

    def _check_latents(self, latents: Tensor) -> None:
        inputs.check_latents(latents, self.latent_dim)

    def _choose(self, name: str, latents: Tensor, candidates: Any, k: int, batch_size: int) -> Choices:
        anchors = self._encode_chunked(name, candidates, batch_size)  # (M, q)
        chooser = self._chooser(name)
        scores = chooser(latents.to(anchors.dtype), anchors, steps=self.flow.candidate_steps,
                         cutoff=self.flow.candidate_cutoff)  # (B, M)
        probs, idx = scores.topk(min(checks.positive_int("k", k), scores.shape[1]), dim=1)
        return Choices(idx, probs)

    @torch.no_grad()
    def decode(self, type: str, latents: Tensor, candidates: Any = None, *, k: int = 1, labels: Labels | None = None,
               sampler: str = "dopri5", steps: int | None = None, generator: torch.Generator | None = None,
               rtol: float = 1e-5, atol: float = 1e-5, batch_size: int = 2000) -> Tensor | Choices:
        """Latents (B, q) back to a type. "image": the image decoder's rectified flow conditioned on each
        latent (method.md §5.9) -> images (B, C, H, W) (a class-conditional decoder takes ``labels``, else
        the label decoder's); "label": the label decoder (method.md §3.5) -> classes (B,); any other type
        chooses among ``candidates`` (samples of that type, method.md §12): :class:`Choices` of the ``k``
        best per latent."""
        name = self._check_type(type)
        self._check_latents(latents)
        if name == "image":
            decoder = self._need("decoder")
            lab = None
            if decoder.num_classes:
                if labels is not None:
                    lab = self._as_labels(labels, latents.shape[0]).to(latents.device)
                elif self.label_anchors is not None:
                    lab = self.label_anchors.decode(latents, steps=self.flow.label_steps)
                else:
                    raise ValueError("this image decoder is class-conditional: pass labels")
            return self._decode_images(latents, lab, sampler, steps, generator, rtol, atol)
        if name == "label":
            return self._need("label_anchors").decode(latents, steps=self.flow.label_steps)
        if candidates is None:
            raise ValueError(f"decode({name!r}, latents, candidates): {name} is decoded by choice among candidates "
                             f"({data_type(name).form}); open-ended generation is not supported")
        return self._choose(name, latents, candidates, k, checks.positive_int("batch_size", batch_size))

    @torch.no_grad()
    def retrieve(self, query_type: str, queries: Any, candidate_type: str, candidates: Any, *, k: int = 5,
                 noise_scale: float = 0.0, batch_size: int = 2000, generator: torch.Generator | None = None,
                 context: Context | None = None) -> Choices:
        """The ``k`` best candidates of each query, e.g. ``retrieve("image", images, "text", captions)`` or
        ``retrieve("text", captions, "image", images)``: each query's latent (``latents(query_type, ...)``;
        with ``context="batch"`` each chunk of ``batch_size`` queries is its own anchor set) flows back over
        the candidates' anchors (method.md §3.5, §12). ``noise_scale`` 0 (default) starts every latent at
        its zone's centre, so a query's candidates do not depend on random noise."""
        qname, cname = self._check_type(query_type), self._check_type(candidate_type)
        if qname == "label":
            raise ValueError("labels are not queries of retrieve: use generate(labels=...) or latents('label', ...)")
        queries = self._samples(qname, queries, f"retrieve({qname!r}, queries, ...)")
        batch_size = checks.positive_int("batch_size", batch_size)
        context = self._context(context, qname)
        anchors = self._encode_chunked(cname, candidates, batch_size)  # (M, q)
        chooser = self._chooser(cname)
        n, k = self._count(qname, queries), checks.positive_int("k", k)
        out_idx, out_p = [], []
        for start in range(0, n, batch_size):
            chunk = self._take(qname, queries, start, start + batch_size)
            own = self._type_encoder(qname)(chunk.to(self.device) if isinstance(chunk, Tensor) else chunk)
            lat = self._latents(own, None, noise_scale, generator, context, qname)  # (b, q)
            scores = chooser(lat, anchors, steps=self.flow.candidate_steps, cutoff=self.flow.candidate_cutoff)
            probs, idx = scores.topk(min(k, scores.shape[1]), dim=1)
            out_idx.append(idx)
            out_p.append(probs)
        return Choices(torch.cat(out_idx), torch.cat(out_p))

    @torch.no_grad()
    def retrieval_scores(self, query_type: str, queries: Any, candidate_type: str, candidates: Any, *,
                         noise_scale: float = 0.0, batch_size: int = 2000, generator: torch.Generator | None = None,
                         context: Context | None = None) -> Tensor:
        """What ``retrieve`` ranks: the probability of every candidate for every query, (N, M)."""
        m = self._count(candidate_type, self._samples(self._check_type(candidate_type), candidates, "candidates"))
        choices = self.retrieve(query_type, queries, candidate_type, candidates, k=m, noise_scale=noise_scale,
                                batch_size=batch_size, generator=generator, context=context)
        return torch.zeros_like(choices.probs).scatter_(1, choices.indices, choices.probs)

    # ------------------------------------------------------------------------------------------
    # persistence

    def save_pretrained(self, directory: str) -> None:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (atomically)."""
        pretrained.save(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str, map_location: str | torch.device = "cpu") -> LatentZoningNetwork:
        """Load a folder written by ``save_pretrained`` onto ``map_location`` (CPU or CUDA), in eval mode."""
        model: LatentZoningNetwork = pretrained.load(directory, map_location, cls)
        return model
