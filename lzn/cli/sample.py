"""``lzn sample``: a grid of samples from a model: unconditional, by class, or for captions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from lzn.cli.common import caption_args, load, margin_label, model_command, need_text, parse_labels, positive_int, read_captions
from lzn.cli.output import say
from lzn.run_folder import RunFolder


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    s = model_command(sub, "sample", "sample a grid of images from a trained model", run)
    s.add_argument("--num", type=positive_int, default=None, help="unconditional samples (default: 64)")
    s.add_argument("--labels", default=None, help="comma-separated classes, by index or name: 0,1,2 or cat,dog")
    s.add_argument("--sampler", default="euler", choices=["euler", "heun", "dopri5"])
    s.add_argument("--steps", type=positive_int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples/lzn-sample.png)")
    caption_args(s)
    s.add_argument("--per-caption", type=positive_int, default=None,
                   help="samples per caption, one grid row each (default: 8)")


def run(args: argparse.Namespace) -> int:
    from lzn.viz import save_image_grid

    default = RunFolder(args.run_dir).samples_dir / "lzn-sample.png"
    out = Path(args.out) if args.out else default
    if out.is_dir() or out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out} is {'a directory' if out.is_dir() else 'not a .png'}; "
                         "expected a .png file path")
    captions = read_captions(args)
    if captions is not None and (args.labels is not None or args.num is not None):
        raise ValueError(f"give --caption / --captions-file (text-to-image) or "
                         f"{'--labels' if args.labels is not None else '--num'}, not both")
    if captions is None and args.per_caption is not None:
        raise ValueError('--per-caption applies to captions; add --caption "a fat zero" (or --captions-file)')
    if args.labels is not None and args.num is not None:
        raise ValueError("give --num (unconditional samples) or --labels (one sample per listed class), not both")
    if args.labels is not None and not args.labels.strip():
        raise ValueError("--labels is empty; expected comma-separated classes such as 0,1,2 or cat,dog")
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    if model.decoder is None:
        raise ValueError(f"the model at {loaded.path} has no image decoder to sample from "
                         "(representation / nogen runs only encode)")
    if loaded.meta is None and not args.out:
        out = Path("lzn-sample.png")  # never write into a model folder
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    if captions is not None:
        need_text(loaded, "--caption")
        per = args.per_caption or 8
        res = model.generate(given=("text", [c for c in captions for _ in range(per)]), sampler=args.sampler,
                             steps=args.steps, generator=gen)
        path = save_image_grid(res.images, out, nrow=per, row_labels=[margin_label(c) for c in captions])
        say(f"samples ({per} per caption, one row each): {Path(path).resolve()}")
        return 0
    labels = None
    if args.labels:
        if model.num_classes == 0:
            raise ValueError(f"--labels needs a model with classes; the model at {loaded.path} has none")
        labels = parse_labels(args.labels, model)
    res = model.generate(num=None if labels is not None else (args.num or 64), labels=labels, sampler=args.sampler,
                         steps=args.steps, generator=gen)
    path = save_image_grid(res.images, out)
    if res.labels is not None:
        names = model.class_names
        shown = [f"{int(v)} ({names[int(v)]})" if names and names[int(v)] != str(int(v)) else str(int(v))
                 for v in res.labels]
        say(f"labels: {','.join(shown)}")
    say(f"samples: {Path(path).resolve()}")
    return 0
