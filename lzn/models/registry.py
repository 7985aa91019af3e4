"""Networks by name: an explicit table, so saved models name their parts without class paths.

``build(name, **kwargs)`` constructs a network and remembers (name, kwargs) on it, which is what
``LatentZoningNetwork.save_pretrained`` writes to ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


def _small_encoder(**kwargs: Any) -> nn.Module:
    from lzn.models.small import SmallEncoder

    return SmallEncoder(**kwargs)


def _small_unet(**kwargs: Any) -> nn.Module:
    from lzn.models.small import SmallUNet

    return SmallUNet(**kwargs)


def _resnet18(**kwargs: Any) -> nn.Module:
    from lzn.models.resnet import resnet18_encoder

    return resnet18_encoder(**kwargs)


def _resnet50(**kwargs: Any) -> nn.Module:
    from lzn.models.resnet import resnet50_encoder

    return resnet50_encoder(**kwargs)


def _ncsnpp_encoder(**kwargs: Any) -> nn.Module:
    from lzn.models.ncsnpp import ncsnpp_encoder

    return ncsnpp_encoder(**kwargs)


def _ncsnpp_decoder(**kwargs: Any) -> nn.Module:
    from lzn.models.ncsnpp import ncsnpp_decoder

    return ncsnpp_decoder(**kwargs)


NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "small_encoder": _small_encoder,
    "small_unet": _small_unet,
    "resnet18_encoder": _resnet18,
    "resnet50_encoder": _resnet50,
    "ncsnpp_encoder": _ncsnpp_encoder,
    "ncsnpp_decoder": _ncsnpp_decoder,
}

BUILD_ATTR = "lzn_build"


def build(name: str, **kwargs: Any) -> nn.Module:
    """Construct the network registered as ``name`` with keyword arguments ``kwargs``."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(sorted(NETWORKS))}")
    module = NETWORKS[name](**kwargs)
    setattr(module, BUILD_ATTR, {"name": name, "kwargs": dict(kwargs)})
    return module


def build_spec(module: nn.Module, part: str) -> dict[str, Any]:
    """The (name, kwargs) a module was built with; a clear error for modules made by hand."""
    spec = getattr(module, BUILD_ATTR, None)
    if spec is None:
        raise ValueError(
            f"the {part} ({type(module).__name__}) was not made with lzn.models.build(name, ...), so it cannot be "
            f"saved by name; build it with one of: {', '.join(sorted(NETWORKS))}"
        )
    return spec
