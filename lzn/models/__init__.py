"""Networks: image encoders, latent-conditioned flow decoders, label anchors, LatentZoningNetwork."""

from lzn.models.label_anchors import LabelAnchors
from lzn.models.network import FlowConfig, GenerationOutput, LatentZoningNetwork
from lzn.models.registry import NETWORKS, build

__all__ = ["NETWORKS", "FlowConfig", "GenerationOutput", "LabelAnchors", "LatentZoningNetwork", "build"]
