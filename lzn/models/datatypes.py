"""Data types by name: what a :class:`~lzn.models.LatentZoningNetwork` needs to know of a kind of data
besides its networks (docs/data-types.md).

A model is a set of named data types sharing one latent space. Each has an encoder (samples -> anchors
(B, q)) and a decoder (latents -> samples, or latents -> a choice among candidates). ``image`` and
``label`` are built in (the model's ``encoder`` / ``decoder`` and ``label_anchors``). Every other type is
an entry of the table below (``text``; users add theirs with ``register_data_type``), with a function that
checks a batch of its samples; its networks go in the network table (``lzn.models.registry``) so saved
models name them. Nothing in ``lzn.core`` or the training loop knows the types.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lzn.models.text import check_texts

BUILT_IN = ("image", "label")


@dataclass(frozen=True)
class DataType:
    """``name``: a lowercase identifier (the model's parts are ``NAME_encoder`` / ``NAME_decoder``);
    ``form``: what one batch of samples is, for messages ("a list of strings"); ``check(samples, who)``:
    the batch validated (raising TypeError / ValueError that names ``form``) in the form the encoder takes;
    ``count``: its number of samples; ``take(samples, start, stop)``: a slice of it."""

    name: str
    form: str
    check: Callable[[Any, str], Any]
    count: Callable[[Any], int] = len
    take: Callable[[Any, int, int], Any] = lambda samples, start, stop: samples[start:stop]


DATA_TYPES: dict[str, DataType] = {
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


def data_type(name: str) -> DataType:
    """The registered type ``name``; an unknown name is a ValueError with the closest known one."""
    if name not in DATA_TYPES:
        known = sorted(DATA_TYPES)
        close = difflib.get_close_matches(str(name), known, n=1)
        also = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown data type {name!r}{also} (registered: {', '.join(known) or 'none'}; built in: "
                         f"{', '.join(BUILT_IN)})")
    return DATA_TYPES[name]
