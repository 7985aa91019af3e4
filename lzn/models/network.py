"""``LatentZoningNetwork``: named data types sharing one latent space, composed through the latent-zone
core (method.md §1, §5-§7, §12). Every type is an entry of the table in ``lzn.models.datatypes``: ``image``
(an image encoder and / or a rectified-flow image decoder) and ``label`` (label anchors: encoder and decoder
in one) are built in and given as ``encoder``, ``decoder``, ``label_anchors``; registered types (``text``)
are given as ``types={"text": TypeParts(encoder, decoder)}``. Each operation here is a short delegation: to
the type's entry, to the tasks in ``compose.py``, the argument checks in ``inputs.py``, the reference bank
in ``reference_bank.py`` and the files in ``pretrained.py``; value types are in ``outputs.py``.
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

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lzn import checks, distributed
from lzn.core import zones
from lzn.models import compose, datatypes, inputs, pretrained, reference_bank
from lzn.models.datatypes import DATA_TYPES, TypeEntry
from lzn.models.label_anchors import LabelAnchors
from lzn.models.outputs import Choices, Context, FlowConfig, GenerationOutput, Labels, Sampling, TypeParts
from lzn.models.reference_bank import reference_indices

__all__ = ["Choices", "Context", "FlowConfig", "GenerationOutput", "LatentZoningNetwork", "Labels", "TypeParts",
           "reference_indices"]


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
        datatypes.check_parts(types)
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
        self.class_names = inputs.check_class_names(class_names, self.num_classes)
        self.reference: Tensor | None
        self.register_buffer("reference", None)  # (R, q) anchors: see build_reference / set_reference
        self.type_names: tuple[str, ...] = tuple(types)  # the registered types, beside image and label
        for name, parts in types.items():
            self.add_module(f"{name}_encoder", parts.encoder)
            self.add_module(f"{name}_decoder", parts.decoder)
            self.register_buffer(f"{name}_reference", None)  # (R, q) anchors of the type's reference set

    # ------------------------------------------------------------------------------------------
    # what the model is

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the weights (float32 unless the model was converted)."""
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_classes(self) -> int:
        """Classes the model knows: its label anchors', else its class-conditional decoder's; 0 for none."""
        if self.label_anchors is not None:
            return self.label_anchors.num_classes
        return int(getattr(self.decoder, "num_classes", 0) or 0)

    @property
    def data_types(self) -> tuple[str, ...]:
        """The model's data types: "image" (an image encoder or decoder), "label" (label anchors), then the
        registered types it was given."""
        return datatypes.types_of(self)

    def parts(self) -> dict[str, nn.Module]:
        """The networks with weights, by the names checkpoints and ``train.lr`` use: ``encoder``, ``decoder``,
        ``label_anchors``, ``NAME_encoder``, ``NAME_decoder``. Networks without parameters (a candidate
        decoder) are left out; a frozen text backbone is not a parameter of its encoder, the head is."""
        return {name: m for name, m in self.named_children() if next(m.parameters(), None) is not None}

    def check_images(self, images: Tensor) -> None:
        """(B, C, S, S) in [-1, 1] with the weights' dtype, B >= 1, finite; one host sync."""
        net = self.encoder if self.encoder is not None else self.decoder
        if net is None:
            raise ValueError("this model has no image encoder or decoder")
        inputs.check_images(images, net.image_channels, net.image_size, self.dtype)

    def label_names(self, labels: Labels) -> list[str]:
        """Names of class indices (B,): ``class_names`` where known, else the index as a string."""
        idx = inputs.as_labels(labels, self.num_classes).tolist()
        return [self.class_names[i] if self.class_names else str(i) for i in idx]

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class name ("cat"), an index as text ("3") or an index (3) to an index in [0, K)."""
        return inputs.class_index(name_or_index, self.class_names, self.num_classes)

    def _need(self, part: str) -> nn.Module:
        """The part ``part`` (``encoder``, ``decoder``, ``label_anchors``), or a ValueError naming it."""
        return inputs.need(self, part)

    def _entry(self, type: str) -> TypeEntry:
        """The table's entry of ``type``, one of the model's data types."""
        return DATA_TYPES[inputs.check_type_name(type, self.data_types)]

    def _typed(self, method: str, type_or_images: str | Tensor, samples: Any) -> tuple[TypeEntry, Any]:
        """The entry and samples of ``method(type, samples)`` or its images' shorthand ``method(images)``."""
        name, samples = inputs.typed(method, type_or_images, samples, self.data_types)
        return DATA_TYPES[name], samples

    # ------------------------------------------------------------------------------------------
    # encoder side

    def anchors(self, type_or_images: str | Tensor, samples: Any = None) -> Tensor:
        """A type's encoder: ``anchors("text", texts)`` -> (B, q); ``anchors(images)`` is the image encoder."""
        entry, samples = self._typed("anchors", type_or_images, samples)
        return entry.anchors(self, samples)

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
        entry, samples = self._typed("latents", type_or_images, samples)
        zones.check_noise_scale(noise_scale)
        return entry.latents(self, samples, noise, noise_scale, generator, context)

    def embed(self, type_or_images: str | Tensor, samples: Any = None, head: bool = False) -> Tensor:
        """Representation: of images, the encoder's backbone features (default) or anchors (``head=True``);
        of any other type (``embed("text", texts)``), its anchors (B, q)."""
        entry, samples = self._typed("embed", type_or_images, samples)
        return entry.embed(self, samples, head)

    # ---- the reference bank: inference that does not depend on the batch ----------------------

    def _reference_buffer(self, type: str) -> str:
        entry = self._entry(type)
        return reference_bank.buffer_name(entry.name, entry.reference_buffer())

    def set_reference(self, anchors: Tensor | None, type: str = "image") -> None:
        """Use ``anchors`` (R, q) as the reference set of ``type``'s inference latents; None removes it."""
        buffer = self._reference_buffer(type)
        value = None if anchors is None else reference_bank.checked_anchors(anchors, self.latent_dim)
        setattr(self, buffer, None if value is None else value.to(device=self.device, dtype=self.dtype).clone())

    def reference_of(self, type: str = "image") -> Tensor | None:
        """The reference anchors (R, q) of ``type``, or None."""
        return getattr(self, self._reference_buffer(type))

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
        buffer = self._reference_buffer(type)  # labels have none
        anchors = self._entry(type).encode_all(self, picked, checks.positive_int("batch_size", batch_size))  # (R, q)
        self.set_reference(anchors, type)
        out: Tensor = getattr(self, buffer)
        return out

    # ------------------------------------------------------------------------------------------
    # decoder side and the tasks (compose.py)

    @torch.no_grad()
    def decode(self, type: str, latents: Tensor, candidates: Any = None, *, k: int = 1, labels: Labels | None = None,
               sampler: str = "dopri5", steps: int | None = None, generator: torch.Generator | None = None,
               rtol: float = 1e-5, atol: float = 1e-5, batch_size: int = 2000) -> Tensor | Choices:
        """Latents (B, q) back to a type. "image": the image decoder's rectified flow conditioned on each
        latent (method.md §5.9) -> images (B, C, H, W) (a class-conditional decoder takes ``labels``, else
        the label decoder's); "label": the label decoder (method.md §3.5) -> classes (B,); any other type
        chooses among ``candidates`` (samples of that type, method.md §12): :class:`Choices` of the ``k``
        best per latent."""
        entry = self._entry(type)
        inputs.check_latents(latents, self.latent_dim)
        return entry.decode(self, latents, candidates, k=k, labels=labels, batch_size=batch_size,
                            sampling=Sampling(sampler, steps, generator, rtol, atol))

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
        return compose.generate(self, num, labels, given, noise_scale, Sampling(sampler, steps, generator, rtol, atol))

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
        return compose.classify(self, images, noise_scale, batch_size, generator, context, prompts)

    @torch.no_grad()
    def reconstruct(self, images: Tensor, labels: Labels | None = None, sampler: str = "dopri5",
                    steps: int | None = None, generator: torch.Generator | None = None,
                    rtol: float = 1e-5, atol: float = 1e-5, context: Context | None = None) -> Tensor:
        """Latent of each image (``context`` as in ``latents``; the paper's metric uses "batch"), invert
        the image flow to noise, regenerate (method.md §8.1): (B, C, H, W)."""
        return compose.reconstruct(self, images, labels, Sampling(sampler, steps, generator, rtol, atol), context)

    @torch.no_grad()
    def retrieve(self, query_type: str, queries: Any, candidate_type: str, candidates: Any, *, k: int = 5,
                 noise_scale: float = 0.0, batch_size: int = 2000, generator: torch.Generator | None = None,
                 context: Context | None = None) -> Choices:
        """The ``k`` best candidates of each query, e.g. ``retrieve("image", images, "text", captions)`` or
        ``retrieve("text", captions, "image", images)``: each query's latent (``latents(query_type, ...)``;
        with ``context="batch"`` each chunk of ``batch_size`` queries is its own anchor set) flows back over
        the candidates' anchors (method.md §3.5, §12). ``noise_scale`` 0 (default) starts every latent at
        its zone's centre, so a query's candidates do not depend on random noise."""
        return compose.retrieve(self, self._entry(query_type), queries, self._entry(candidate_type), candidates,
                                k, noise_scale, batch_size, generator, context)

    @torch.no_grad()
    def retrieval_scores(self, query_type: str, queries: Any, candidate_type: str, candidates: Any, *,
                         noise_scale: float = 0.0, batch_size: int = 2000, generator: torch.Generator | None = None,
                         context: Context | None = None) -> Tensor:
        """What ``retrieve`` ranks: the probability of every candidate for every query, (N, M)."""
        candidate = self._entry(candidate_type)
        m = candidate.count(candidate.samples(self, candidates, "candidates"))
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
