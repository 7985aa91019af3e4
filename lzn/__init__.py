"""lzn: Latent Zoning Networks (arXiv 2509.15591) as a library."""

from lzn.models import FlowConfig, LabelAnchors, LatentZoningNetwork, import_release

__version__ = "0.1.0"

__all__ = ["FlowConfig", "LabelAnchors", "LatentZoningNetwork", "__version__", "import_release"]
