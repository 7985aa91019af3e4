"""Pictures: zone maps (matplotlib) and image grids (PIL)."""

from lzn.viz.grid import image_grid, save_image_grid
from lzn.viz.zones_plot import ZoneMap, compute_zone_map, plot_zone_map

__all__ = ["ZoneMap", "compute_zone_map", "image_grid", "plot_zone_map", "save_image_grid"]
