"""``lzn reconstruct``: images through latent, inverted flow and regeneration, as a grid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from lzn.cli.common import CONTEXTS, data, data_args, load, model_command, positive_int
from lzn.cli.output import say
from lzn.run_folder import RECONSTRUCTIONS_FILE, RunFolder


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = model_command(sub, "reconstruct", "reconstruct images (latent, invert, regenerate)", run)
    data_args(p, split="train")
    p.add_argument("--out", default=None, required=False,
                   help="folder for reconstructions.png (default: RUN_DIR/samples)")
    p.add_argument("--num", type=positive_int, default=64, help="images to reconstruct (default: 64)")
    p.add_argument("--sampler", default=None, choices=["euler", "heun", "dopri5"],
                   help="default: the run's sampler")
    p.add_argument("--steps", type=positive_int, default=None, help="euler / heun steps (default: the run's)")
    p.add_argument("--context", choices=CONTEXTS, default=None,
                   help="anchor set of the latents (default: batch, the paper's metric)")


def run(args: argparse.Namespace) -> int:
    from lzn.eval import reconstruction_error
    from lzn.viz import save_image_grid

    out = Path(args.out) if args.out else RunFolder(args.run_dir).samples_dir
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out} is an existing file; expected a folder for reconstructions.png")
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    if model.decoder is None:
        raise ValueError(f"the model at {loaded.path} has no decoder to reconstruct with")
    if loaded.meta is None and not args.out:
        out = Path(".")
    model_dir = (RunFolder(loaded.path).model if loaded.meta else loaded.path).resolve()
    if loaded.meta is not None and out.resolve() == loaded.path.resolve():
        raise ValueError(f"--out {args.out} would write over the run's own reconstructions.png (made at the end of "
                         "training, shown in its report); choose another folder (default: RUN_DIR/samples)")
    if out.resolve() == model_dir or model_dir in out.resolve().parents:
        raise ValueError(f"--out {args.out} lies inside the model folder {model_dir}; choose another folder")
    ds = data(args, loaded)
    n = min(args.num, len(ds))
    labels = ds.labels[:n] if ds.labels is not None else None
    sampler = args.sampler or loaded.setting("sampler", "euler")
    steps = args.steps or loaded.setting("sampler_steps", 20)
    originals = ds.batch(torch.arange(n))[0]  # (n, C, H, W); a sharded set reads only these
    err, rec = reconstruction_error(model, originals, labels, sampler=sampler, steps=steps,
                                    context=args.context or "batch")
    m = min(n, 32)
    pairs = torch.stack([originals[:m], rec[:m]], dim=1).flatten(0, 1)  # (2m, C, H, W): original, reconstruction
    path = save_image_grid(pairs, out / RECONSTRUCTIONS_FILE, nrow=8)
    say(f"reconstruction L2 per image: {err:.4f} ({n} {args.split} images, {sampler})")
    say(f"reconstructions (each original followed by its reconstruction, left to right): {path.resolve()}")
    return 0
