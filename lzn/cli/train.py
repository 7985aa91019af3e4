"""``lzn train RECIPE``: train a recipe in a run folder, then print its results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lzn.cli.common import data
from lzn.cli.output import say


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    t = sub.add_parser("train", help="train a recipe (generation, representation, joint, text; baselines rf, simclr, "
                                     "classifier, nogen, clip)")
    t.add_argument("recipe", help="generation | representation | joint | text | rf | simclr | classifier | nogen | clip")
    t.add_argument("--preset", default=None, help="digits | fashion | cifar10 | imagenet")
    t.add_argument("--config", default=None, help="YAML file of config overrides (merged into the preset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, merged into mappings (repeatable), e.g. train.lr.encoder=1e-4")
    t.add_argument("--out", required=True, help="run folder (resumed if it holds checkpoints)")
    t.add_argument("--allow-other-data", action="store_true",
                   help="resume a run on a training set other than the one it started on (refused otherwise)")
    t.set_defaults(func=run)


def _print_results(results: dict[str, Any]) -> None:
    for key, value in results.items():
        say(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


def run(args: argparse.Namespace) -> int:
    from lzn.recipes.runner import resolve_config, train

    cfg = resolve_config(args.recipe, args.preset, args.config, args.set)
    _print_results(train(args.recipe, cfg, args.out, allow_other_data=args.allow_other_data))
    say(f"run folder: {Path(args.out).resolve()}")
    return 0
