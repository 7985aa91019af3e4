"""Data types by name: the one table of what a :class:`~lzn.models.LatentZoningNetwork` does with each kind
of data (docs/data-types.md, method.md §12.1).

A model is a set of named data types sharing one latent space. Each has an encoder (samples -> anchors
(B, q)) and a decoder (latents -> samples, or latents -> a choice among candidates). Every type is an entry
of the table below (:class:`~lzn.models.type_entry.TypeEntry`). ``image`` and ``label`` are built in
(``lzn.models.builtin_types``: the model's ``encoder`` / ``decoder`` and ``label_anchors``). ``text`` and the
types users add with ``register_data_type`` are :class:`DataType` entries, decoded by choice among candidates
(§12.6), with a function that checks a batch of their samples; their networks go in the network table
(``lzn.models.registry``) so saved models name them. Nothing in ``lzn.core`` or the training loop knows the
types.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from lzn.models.builtin_types import ImageType, LabelType
from lzn.models.candidates import CandidateDecoder
from lzn.models.outputs import TypeParts
from lzn.models.text import check_texts
from lzn.models.type_entry import CHOOSER, TypeEntry, sliced

BUILT_IN = ("image", "label")


@dataclass(frozen=True)
class DataType(TypeEntry):
    """A registered data type, decoded by choice among candidates. ``name``: a lowercase identifier (the
    model's parts are ``NAME_encoder`` / ``NAME_decoder``); ``form``: what one batch of samples is, for
    messages ("a list of strings"); ``check(samples, who)``: the batch validated (raising TypeError /
    ValueError that names ``form``) in the form the encoder takes; ``count``: its number of samples;
    ``take(samples, start, stop)``: a slice of it."""

    name: str
    form: str
    check: Callable[[Any, str], Any]
    count: Callable[[Any], int] = len
    take: Callable[[Any, int, int], Any] = sliced

    def present(self, model: Any) -> bool:
        return self.name in model.type_names

    def encoder(self, model: Any) -> nn.Module:
        return getattr(model, f"{self.name}_encoder")

    def samples(self, model: Any, samples: Any, who: str) -> Any:
        return self.check(samples, who)

    def chooser(self, model: Any) -> CandidateDecoder:
        """The type's own decoder when it is a candidate decoder, else the shared mechanism."""
        own = getattr(model, f"{self.name}_decoder", None)
        return own if isinstance(own, CandidateDecoder) else CHOOSER



IMAGE, LABEL = ImageType(), LabelType()

DATA_TYPES: dict[str, TypeEntry] = {
    "image": IMAGE,
    "label": LABEL,
    "text": DataType("text", "a non-empty list of strings", check_texts),
}


def register_data_type(dtype: DataType) -> DataType:
    """Add a data type to the table (once per name); returns it."""
    if not dtype.name.isidentifier() or dtype.name != dtype.name.lower() or dtype.name in BUILT_IN:
        raise ValueError(f"a data type name is a new lowercase identifier other than {BUILT_IN}, got {dtype.name!r}")
    if dtype.name in DATA_TYPES and DATA_TYPES[dtype.name] != dtype:
        raise ValueError(f"data type {dtype.name!r} is already registered")
    DATA_TYPES[dtype.name] = dtype
    return dtype


def data_type(name: str) -> TypeEntry:
    """The entry of ``name`` (built in or registered); an unknown name is a ValueError with the closest
    registered one."""
    if name not in DATA_TYPES:
        known = sorted(n for n in DATA_TYPES if n not in BUILT_IN)
        close = difflib.get_close_matches(str(name), known, n=1)
        also = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown data type {name!r}{also} (registered: {', '.join(known) or 'none'}; built in: "
                         f"{', '.join(BUILT_IN)})")
    return DATA_TYPES[name]


def types_of(model: Any) -> tuple[str, ...]:
    """``model``'s data types: the built-in ones it has networks for, then its registered ones in the order
    it was given them."""
    return tuple(name for name in (*BUILT_IN, *model.type_names) if DATA_TYPES[name].present(model))


def check_parts(types: Mapping[str, TypeParts]) -> None:
    """The networks of registered types handed to a model: ``TypeParts`` with an ``nn.Module`` encoder, by
    the name of a registered type."""
    for name, parts in types.items():
        if name in BUILT_IN:
            raise ValueError(f"types: {name!r} is built in; pass its networks as encoder / decoder / label_anchors")
        data_type(name)
        if not isinstance(parts, TypeParts) or not isinstance(parts.encoder, nn.Module):
            raise TypeError(f"types[{name!r}] must be TypeParts(encoder, decoder=None) with an nn.Module encoder, "
                            f"got {parts!r}")
