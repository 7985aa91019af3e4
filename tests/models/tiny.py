"""A tiny three-class LatentZoningNetwork on 8x8 gray images, for tests of the model-level API."""

from __future__ import annotations

import torch

from lzn import FlowConfig, LabelAnchors, LatentZoningNetwork
from lzn.models import build


def tiny_model(flow: FlowConfig | None = None, seed: int = 0) -> LatentZoningNetwork:
    torch.manual_seed(seed)
    enc = build("small_encoder", image_channels=1, image_size=8, latent_dim=4, channels=[4, 8], hidden=16)
    dec = build("small_unet", image_channels=1, image_size=8, latent_dim=4, num_classes=3, channels=4,
                channel_mult=[1, 2], time_dim=8, cond_dim=8)
    return LatentZoningNetwork(enc, dec, LabelAnchors(3, 4), flow).eval()
