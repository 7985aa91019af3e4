"""Pictures: zone maps and image grids (needs the ``viz`` extra: matplotlib, pillow)."""

from lzn.viz.zones_plot import ZoneMap, compute_zone_map, plot_zone_map

__all__ = ["ZoneMap", "compute_zone_map", "plot_zone_map"]
