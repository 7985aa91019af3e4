"""lzn: Latent Zoning Networks (arXiv 2509.15591) as a library."""

__version__ = "0.1.0"

__all__ = ["__version__"]
