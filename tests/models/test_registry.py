"""lzn.models.registry: build by name, with arguments checked against the real constructors."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from lzn.models import registry
from lzn.models.ncsnpp import NCSNppConfig
from lzn.models.small import SmallEncoderConfig, SmallUNetConfig


def test_network_arguments_reflect_the_constructors():
    small = registry.network_arguments("small_encoder")
    assert "channels" in small and "hidden" in small
    assert set(small) == {f.name for f in dataclasses.fields(SmallEncoderConfig)}  # **overrides: config fields
    assert set(registry.network_arguments("small_unet")) == {f.name for f in dataclasses.fields(SmallUNetConfig)}
    from lzn.models.resnet import resnet18_encoder

    assert registry.network_arguments("resnet18_encoder") == list(inspect.signature(resnet18_encoder).parameters)
    ncsn = registry.network_arguments("ncsnpp_decoder")
    assert ncsn[:3] == ["setting", "latent_dim", "num_classes"]
    assert set(ncsn) == {"setting"} | {f.name for f in dataclasses.fields(NCSNppConfig)}
    assert "config" not in small  # a config object cannot be saved by name


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("small_encoder", {"hiden": 64},
         r"unknown argument 'hiden' for network 'small_encoder'; did you mean 'hidden'\? \(arguments: image_channels, "),
        ("resnet18_encoder", {"hidden": 64}, r"unknown argument 'hidden' for network 'resnet18_encoder' \(arguments"),
        ("resnet50_encoder", {"small_inputs": True}, r"did you mean 'small_input'\?"),
        ("ncsnpp_decoder", {"chmult": [1, 2]}, r"did you mean 'ch_mult'\?"),
        ("small_encod", {}, r"unknown network 'small_encod'; did you mean 'small_encoder'\?"),
        ("small_encoder", {"hidden": "64"}, r"argument 'hidden' of network 'small_encoder' must be int, got '64'"),
        ("small_unet", {"channel_mult": [1, 2.5]}, r"argument 'channel_mult' .* must be a list of int"),
        ("small_unet", {"attention": 1}, r"argument 'attention' of network 'small_unet' must be bool"),
        ("ncsnpp_encoder", {"embedding": "sine"}, r"must be 'positional' or 'fourier', got 'sine'"),
        ("ncsnpp_decoder", {"head_max_resolution": "64"}, r"must be int or None"),
        ("small_encoder", {"latent_dim": -2}, r"network 'small_encoder' cannot be built from \{'latent_dim': -2\}: "),
        ("ncsnpp_decoder", {"setting": "imagenet"}, r"network 'ncsnpp_decoder' cannot be built .*unknown NCSN\+\+ setting"),
    ],
)
def test_build_refuses_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        registry.build(name, **kwargs)


def test_build_accepts_json_like_values_and_records_them():
    enc = registry.build("small_encoder", channels=[8, 16], hidden=32, dropout=0)  # lists / ints from JSON
    assert enc.config.channels == (8, 16) and enc.config.dropout == 0.0
    assert registry.build_spec(enc, "encoder") == {"name": "small_encoder",
                                                   "kwargs": {"channels": [8, 16], "hidden": 32, "dropout": 0}}
    assert callable(registry.NETWORKS["small_unet"])
    assert registry.NETWORKS["small_unet"](channels=8, channel_mult=(1, 2)).config.channels == 8
