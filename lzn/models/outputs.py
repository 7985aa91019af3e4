"""The value types of :class:`~lzn.models.LatentZoningNetwork`: its flow settings, the networks of a data
type, how images are sampled, and what its operations return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Union

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class FlowConfig:
    """How latents are computed (method.md §2.7). Defaults: case studies 1 and 3."""

    solver: Literal["euler", "dpm3", "dpm3_logsnr"] = "dpm3"  # dpm3_logsnr: the same solver on a log-SNR grid
    steps: int = 20
    eps: float | None = None  # None: the solver's default (1e-4 Euler, 1e-3 DPM)
    label_steps: int = 100  # reverse / forward Euler steps of label flows
    label_eps: float = 1e-4
    candidate_steps: int = 20  # reverse Euler steps of a choice among candidates (text decoder, retrieval)
    candidate_cutoff: float = 0.2  # fraction of those steps dropped before averaging (method.md §3.3)
    noise_scale: float = 1.0  # alpha of latents drawn from a zone for generation (label, text; method.md §2.4)


@dataclass
class TypeParts:
    """The networks of one registered data type: ``encoder`` (samples -> anchors (B, q)) and an optional
    ``decoder`` (a :class:`~lzn.models.candidates.CandidateDecoder` for types decoded by choice)."""

    encoder: nn.Module
    decoder: nn.Module | None = None


class Sampling(NamedTuple):
    """How images are drawn by the image decoder's rectified flow (method.md §5.9): the ODE method and its
    step count (``lzn.core.rectified_flow.sample``), the generator of the start noise, the tolerances of
    adaptive methods."""

    sampler: str = "dopri5"
    steps: int | None = None
    generator: torch.Generator | None = None
    rtol: float = 1e-5
    atol: float = 1e-5


class Choices(NamedTuple):
    indices: Tensor  # (B, k) int64: the best candidates of each query, best first
    probs: Tensor  # (B, k): their assignment probabilities


class GenerationOutput(NamedTuple):
    images: Tensor  # (B, C, H, W) in [-1, 1] up to sampler error (not clipped)
    labels: Tensor | None  # (B,) the given or predicted classes, None without label anchors
    latents: Tensor  # (B, q) the LZN latents the decoder was conditioned on


Labels = Union[Tensor, Sequence[int], np.ndarray]  # 1-D class indices: a tensor, list / tuple or array of ints
Context = Literal["reference", "batch"]  # the anchor set of an inference latent (method.md §2.9)
