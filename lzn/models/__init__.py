"""Networks: image encoders, latent-conditioned flow decoders, label anchors, text encoders, LatentZoningNetwork."""

from lzn.models.label_anchors import LabelAnchors
from lzn.models.ncsnpp import ncsnpp_decoder, ncsnpp_encoder
from lzn.models.network import FlowConfig, GenerationOutput, LatentZoningNetwork
from lzn.models.registry import NETWORKS, build, network_arguments
from lzn.models.resnet import resnet18_encoder, resnet50_encoder
from lzn.models.small import SmallEncoder, SmallUNet
from lzn.models.text import SmallTextEncoder, TextEncoder, load_minilm

__all__ = [
    "NETWORKS",
    "FlowConfig",
    "GenerationOutput",
    "LabelAnchors",
    "LatentZoningNetwork",
    "SmallEncoder",
    "SmallTextEncoder",
    "SmallUNet",
    "TextEncoder",
    "build",
    "load_minilm",
    "ncsnpp_decoder",
    "ncsnpp_encoder",
    "network_arguments",
    "resnet18_encoder",
    "resnet50_encoder",
]
