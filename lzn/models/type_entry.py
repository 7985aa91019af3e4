"""What a :class:`~lzn.models.LatentZoningNetwork` does with the samples of one data type: the protocol of
an entry of the data-type table (``lzn.models.datatypes``) and what every type shares: encoding in chunks,
latents over an anchor set (method.md §2.9, §4.1), generation from a sample's zone (§12) and the choice
among candidates of the type (§3.5, §12.6), the one top-k over its scores.

An entry holds no state: its methods are handed the model asking (``model``, a LatentZoningNetwork, typed
``Any`` because this module sits below network.py) and use its public attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from lzn import checks
from lzn.models import inputs, reference_bank
from lzn.models.candidates import CandidateDecoder
from lzn.models.outputs import Choices, Context, Labels, Sampling

CHOOSER = CandidateDecoder()  # the choice among candidates of a type without a decoder of its own


def num_rows(samples: Any) -> int:
    """The number of samples of a tensor batch: its first axis."""
    return int(samples.shape[0])


def sliced(samples: Any, start: int, stop: int) -> Any:
    """The samples [start, stop) of a batch that slices (a tensor, a list)."""
    return samples[start:stop]


class TypeEntry(ABC):
    """What a model does with the samples of one data type: check, count and slice a batch (``count``,
    ``take``), encode it (``encoder``), flow its anchors to latents, and decode latents back to it (by
    default a choice among candidates of the type, method.md §3.5)."""

    name: str  # a lowercase identifier
    form: str  # what one batch of samples is, for messages
    count: Callable[[Any], int]  # the number of samples in a batch
    take: Callable[[Any, int, int], Any]  # the samples [start, stop) of a batch

    @abstractmethod
    def present(self, model: Any) -> bool:
        """Whether ``model`` has the networks of this type."""

    @abstractmethod
    def encoder(self, model: Any) -> nn.Module:
        """The network of ``model`` that maps a batch of samples to anchors (B, q)."""

    @abstractmethod
    def samples(self, model: Any, samples: Any, who: str) -> Any:
        """The batch validated for ``model`` in the form its encoder takes; errors name ``who`` or the form."""

    # ---- encoding -----------------------------------------------------------------------------

    def anchors(self, model: Any, samples: Any) -> Tensor:
        """Anchors (B, q) of a batch."""
        encoder = self.encoder(model)
        return encoder(self.samples(model, samples, f"anchors({self.name!r}, ...)"))

    def encode(self, model: Any, chunk: Any) -> Tensor:
        """Anchors (b, q) of a checked chunk, moved to the model's device when a tensor."""
        return self.encoder(model)(chunk.to(model.device) if isinstance(chunk, Tensor) else chunk)

    def chunks(self, samples: Any, size: int) -> Iterator[Any]:
        """A checked batch, ``size`` samples at a time."""
        for start in range(0, self.count(samples), size):
            yield self.take(samples, start, start + size)

    def encode_all(self, model: Any, samples: Any, batch_size: int) -> Tensor:
        """Anchors (N, q) of N samples, ``batch_size`` at a time (the encoders act sample by sample)."""
        samples = self.samples(model, samples, f"{self.name} samples")
        return torch.cat([self.encode(model, chunk) for chunk in self.chunks(samples, batch_size)])

    def embed(self, model: Any, samples: Any, head: bool) -> Tensor:
        """A representation (B, d) of a batch: its anchors."""
        return model.anchors(self.name, samples)

    # ---- latents ------------------------------------------------------------------------------

    def latents(self, model: Any, samples: Any, noise: Tensor | None, noise_scale: float,
                generator: torch.Generator | None, context: Context | None) -> Tensor:
        """Latents (B, q) of a batch: its anchors flowed over ``context`` (method.md §2.9)."""
        anchors = model.anchors(self.name, samples)  # the typed spelling: the model must have the type
        return self.flow(model, anchors, self.context(model, context), noise, noise_scale, generator)

    def context(self, model: Any, context: Context | None) -> Context:
        """The anchor set of an inference latent: "reference" by default when ``model`` has the type's set."""
        return reference_bank.pick_context(context, model.reference_of(self.name), *self.reference_help())

    def flow(self, model: Any, anchors: Tensor, context: Context, noise: Tensor | None, noise_scale: float,
             generator: torch.Generator | None) -> Tensor:
        """Latents (B, q) of anchors (B, q): over the anchors of the whole batch across processes, or each over
        the type's reference anchors plus its own (method.md §2.9, §4.1)."""
        if context == "batch":
            return model.latents_from_anchors(anchors, noise, noise_scale, generator)
        reference = model.reference_of(self.name)
        assert reference is not None
        return reference_bank.latents_over(anchors, reference, noise, noise_scale, generator, model.flow)

    def chunk_latents(self, model: Any, samples: Any, batch_size: int, noise_scale: float,
                      generator: torch.Generator | None, context: Context) -> Iterator[Tensor]:
        """Latents (b, q) of a checked batch, ``batch_size`` samples at a time; with ``context="batch"``
        each chunk is its own anchor set."""
        for chunk in self.chunks(samples, batch_size):
            yield self.flow(model, self.encode(model, chunk), context, None, noise_scale, generator)

    def reference_buffer(self) -> str | None:
        """The model buffer holding the type's reference anchors (method.md §2.9); None for a type whose
        latents flow over every sample's anchor (labels)."""
        return f"{self.name}_reference"

    def reference_help(self) -> tuple[str, str]:
        """What the type's reference set is called and the call that builds it, for messages."""
        return f"{self.name} reference set", f"model.build_reference_from(training_samples, type={self.name!r})"

    def check_query(self) -> None:
        """Raise if samples of this type cannot be the queries of ``retrieve``."""

    def given(self, model: Any, samples: Any, num: int | None, alpha: float,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """What ``generate(given=(type, samples))`` decodes as images: one latent (B, q) from each sample's zone
        (alpha ``alpha``), and the classes a class-conditional decoder takes (the label decoder's), else None."""
        inputs.check_type_name(self.name, model.data_types)
        count = self.count(self.samples(model, samples, f"generate(given=({self.name!r}, ...))"))
        if num is not None and num != count:
            raise ValueError(f"num={num} disagrees with {count} given samples; pass one of them")
        latent = self.latents(model, samples, None, alpha, generator, None)  # (B, q)
        labels = None
        if inputs.need(model, "decoder").num_classes:
            if model.label_anchors is None:
                raise ValueError("this decoder is class-conditional and the model has no label decoder to name "
                                 "the classes of the given samples; pass labels instead")
            labels = model.label_anchors.decode(latent, steps=model.flow.label_steps)
        return latent, labels

    # ---- decoding -----------------------------------------------------------------------------

    def decode(self, model: Any, latents: Tensor, candidates: Any, *, k: int, labels: Labels | None,
               sampling: Sampling, batch_size: int) -> Tensor | Choices:
        """Latents (B, q) back to the type: :class:`Choices` of the ``k`` best of ``candidates`` (samples of
        the type) for each latent (method.md §12); ``labels`` and ``sampling`` are for images."""
        if candidates is None:
            raise ValueError(f"decode({self.name!r}, latents, candidates): {self.name} is decoded by choice among "
                             f"candidates ({self.form}); open-ended generation is not supported")
        anchors = self.encode_all(model, candidates, checks.positive_int("batch_size", batch_size))  # (M, q)
        return self.choose(model, latents.to(anchors.dtype), anchors, checks.positive_int("k", k))

    def chooser(self, model: Any) -> CandidateDecoder:
        """The decoder that chooses among candidates of this type."""
        return CHOOSER

    def choose(self, model: Any, latents: Tensor, anchors: Tensor, k: int) -> Choices:
        """The ``k`` best of M candidates of this type (anchors (M, q)) for each latent (B, q), best first."""
        scores = self.chooser(model)(latents, anchors, steps=model.flow.candidate_steps,
                                     cutoff=model.flow.candidate_cutoff)  # (B, M)
        probs, idx = scores.topk(min(k, scores.shape[1]), dim=1)  # (B, k), (B, k)
        return Choices(idx, probs)
