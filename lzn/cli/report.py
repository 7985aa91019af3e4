"""``lzn report RUN_DIR``: one self-contained HTML page of a run."""

from __future__ import annotations

import argparse
from typing import Any

from lzn.cli.common import positive_int
from lzn.cli.output import say


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    r = sub.add_parser("report", help="write one self-contained HTML page of a run (config, curves, metrics, images)")
    r.add_argument("run_dir")
    r.add_argument("--out", default=None, help="HTML path (default: RUN_DIR/report.html)")
    r.add_argument("--device", default=None, help="where the zone picture's latents are computed (default: cpu)")
    r.add_argument("--max-points", type=positive_int, default=2000, help="test images in the zone picture")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lzn.eval import write_report

    path = write_report(args.run_dir, args.out, device=args.device or "cpu", max_points=args.max_points)
    say(f"report: {path.resolve()}")
    return 0
