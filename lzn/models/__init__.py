"""Networks: image encoders, latent-conditioned flow decoders, label anchors, text encoders, LatentZoningNetwork."""

from lzn.models.label_anchors import LabelAnchors
from lzn.models.ncsnpp import ncsnpp_decoder, ncsnpp_encoder
from lzn.models.candidates import CandidateDecoder
from lzn.models.datatypes import DATA_TYPES, DataType, data_type, register_data_type
from lzn.models.network import LatentZoningNetwork
from lzn.models.outputs import Choices, FlowConfig, GenerationOutput, TypeParts
from lzn.models.registry import NETWORKS, build, network_arguments, register_network
from lzn.models.release import ReleaseFormatError, import_release, release_model
from lzn.models.resnet import resnet18_encoder, resnet50_encoder
from lzn.models.small import SmallEncoder, SmallUNet
from lzn.models.text import SmallTextEncoder, TextEncoder, load_minilm

__all__ = [
    "DATA_TYPES",
    "NETWORKS",
    "CandidateDecoder",
    "Choices",
    "DataType",
    "TypeParts",
    "data_type",
    "register_data_type",
    "FlowConfig",
    "GenerationOutput",
    "LabelAnchors",
    "LatentZoningNetwork",
    "ReleaseFormatError",
    "SmallEncoder",
    "SmallTextEncoder",
    "SmallUNet",
    "TextEncoder",
    "build",
    "import_release",
    "load_minilm",
    "ncsnpp_decoder",
    "ncsnpp_encoder",
    "network_arguments",
    "register_network",
    "release_model",
    "resnet18_encoder",
    "resnet50_encoder",
]
