import pytest
import torch
from PIL import Image

from lzn.viz import compute_zone_map, plot_zone_map


def test_zone_map_owns_anchor_neighbourhoods_and_latents(tmp_path):
    anchors = torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]])
    zmap = compute_zone_map(anchors, per_anchor=50, grid=61, extent=3.0, steps=60,
                            generator=torch.Generator().manual_seed(0))
    axis = zmap.grid_x
    for i, (ax, ay) in enumerate(anchors.tolist()):
        col, row = int((axis - ax).abs().argmin()), int((axis - ay).abs().argmin())
        # the point of the plane nearest to an anchor (scaled by 1 - t -> the origin side) is in its zone
        assert zmap.zone[row, col] == i
    assert zmap.latents.shape == (150, 2) and zmap.wrong_zone_rate < 0.1
    path = plot_zone_map(zmap, tmp_path / "z.png")
    with Image.open(path) as im:
        assert im.size[0] > 200 and im.size[1] > 200


def test_zone_map_rejects_non_2d_anchors():
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        compute_zone_map(torch.randn(3, 4))
