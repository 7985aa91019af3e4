"""The 2-D picture of the idea: anchors, their zones, and the latents each anchor produces (method.md §1.5).

Every point of a grid in latent space is flowed back to t = 0 over the anchors; the anchor it ends
nearest to names its zone. Latents computed from each anchor (forward flow from fresh noise) are
scattered on top in the anchor's colour: they land in their own zone, and together they look N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lzn.atomic import atomic_write
from lzn.core import zones


@dataclass
class ZoneMap:
    anchors: Tensor  # (n, 2)
    grid_x: Tensor  # (G,)
    grid_y: Tensor  # (G,)
    zone: Tensor  # (G, G) long, zone[i, j] = anchor owning (grid_x[j], grid_y[i])
    latents: Tensor  # (n * per_anchor, 2)
    owner: Tensor  # (n * per_anchor,) long, the anchor each latent was computed from
    wrong_zone_rate: float  # fraction of latents whose flow back ends at another anchor


def compute_zone_map(
    anchors: Tensor,
    *,
    per_anchor: int = 200,
    grid: int = 240,
    extent: float = 3.5,
    steps: int = 100,
    eps: float = 1e-4,
    generator: torch.Generator | None = None,
) -> ZoneMap:
    """Zones of ``anchors`` (n, 2) on a grid x grid raster of [-extent, extent]^2, plus their latents."""
    if anchors.dim() != 2 or anchors.shape[1] != 2:
        raise ValueError(f"the zone picture needs 2-D anchors of shape (n, 2), got {tuple(anchors.shape)}")
    n = anchors.shape[0]
    with torch.no_grad():
        axis = torch.linspace(-extent, extent, grid)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (G*G, 2)
        ends = zones.flow_back_end(points, anchors, steps=steps)
        zone = zones.nearest(ends, anchors).reshape(grid, grid)
        owner = torch.arange(n).repeat_interleave(per_anchor)
        noise = torch.randn(len(owner), 2, generator=generator)
        lat = zones.latents(anchors, noise, index=owner, steps=steps, eps=eps)
        back = zones.flow_back_end(lat, anchors, steps=steps)
        wrong = (zones.nearest(back, anchors) != owner).float().mean().item()
    return ZoneMap(anchors, axis, axis, zone, lat, owner, wrong)


def plot_zone_map(zmap: ZoneMap, path: str | Path, title: str | None = None) -> Path:
    """Render a ZoneMap to a PNG at ``path`` and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    n = zmap.anchors.shape[0]
    colours = plt.get_cmap("tab10" if n <= 10 else "tab20")(range(n))
    fig, ax = plt.subplots(figsize=(7, 7), dpi=120)
    ext = (float(zmap.grid_x[0]), float(zmap.grid_x[-1]), float(zmap.grid_y[0]), float(zmap.grid_y[-1]))
    ax.imshow(zmap.zone.numpy(), origin="lower", extent=ext, cmap=ListedColormap(colours), alpha=0.35,
              interpolation="nearest", vmin=-0.5, vmax=n - 0.5)
    ax.scatter(zmap.latents[:, 0], zmap.latents[:, 1], c=colours[zmap.owner.numpy()], s=6, alpha=0.8,
               linewidths=0, label="latents (forward flow from each anchor)")
    ax.scatter(zmap.anchors[:, 0], zmap.anchors[:, 1], c=colours, s=160, marker="*", edgecolors="black",
               linewidths=1.0, label="anchors")
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"{n} anchors, their zones and latents (wrong zone: {zmap.wrong_zone_rate:.1%})")
    path = atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
    plt.close(fig)
    return path
