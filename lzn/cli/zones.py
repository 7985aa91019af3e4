"""``lzn zones``: the 2-D picture of random anchors, their zones and their latents."""

from __future__ import annotations

import argparse
from typing import Any

from lzn.cli.common import positive, positive_int
from lzn.cli.output import say


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    z = sub.add_parser("zones", help="draw random 2-D anchors, their zones and their latents to a PNG")
    z.add_argument("--out", default="runs/zones", help="output folder (default: runs/zones)")
    z.add_argument("--anchors", type=positive_int, default=6, help="number of anchors (default: 6)")
    z.add_argument("--spread", type=positive, default=1.0, help="std of the random anchors (default: 1.0)")
    z.add_argument("--per-anchor", type=positive_int, default=200, help="latents drawn per anchor (default: 200)")
    z.add_argument("--grid", type=positive_int, default=240, help="raster size of the zone map (default: 240)")
    z.add_argument("--steps", type=positive_int, default=100, help="Euler steps of each flow (default: 100)")
    z.add_argument("--seed", type=int, default=0)
    z.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lzn.viz import compute_zone_map, plot_zone_map

    gen = torch.Generator().manual_seed(args.seed)
    anchors = torch.randn(args.anchors, 2, generator=gen) * args.spread
    zmap = compute_zone_map(anchors, per_anchor=args.per_anchor, grid=args.grid, steps=args.steps, generator=gen)
    path = plot_zone_map(zmap, f"{args.out}/zones.png")
    lat = zmap.latents
    say(f"anchors: {args.anchors} in 2-D (seed {args.seed}); latents per anchor: {args.per_anchor}")
    say(f"pooled latents: mean ({lat[:, 0].mean():+.3f}, {lat[:, 1].mean():+.3f}), "
         f"var ({lat[:, 0].var():.3f}, {lat[:, 1].var():.3f})  [N(0, I) expected]")
    say(f"latents that flow back to another anchor: {zmap.wrong_zone_rate:.2%}")
    say(f"zone picture: {path.resolve()}")
    return 0
