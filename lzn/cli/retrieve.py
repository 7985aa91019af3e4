"""``lzn retrieve``: the best images of a split for each caption (a text model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from lzn.cli.common import caption_args, CONTEXTS, data, load, margin_label, model_command, need_text, positive_int, read_captions
from lzn.cli.output import say
from lzn.data import ImageDataset
from lzn.run_folder import RunFolder


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    rt = model_command(sub, "retrieve", "the best images of a data split for each caption (a text model), as a "
                                        "labelled grid", run)
    caption_args(rt)
    rt.add_argument("--k", type=positive_int, default=8, help="images per caption (default: 8)")
    rt.add_argument("--data", default=None, help="data set name (default: the run's)")
    rt.add_argument("--root", default=None, help="data path (default: the run's)")
    rt.add_argument("--split", default="test", choices=["train", "test"])
    rt.add_argument("--context", choices=CONTEXTS, default=None,
                    help="anchor set of the caption latents (default: the model's text reference set when it has one)")
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples/lzn-retrieve.png)")


def run(args: argparse.Namespace) -> int:
    """The ``--k`` best images of the split for each caption (text -> image retrieval), as a labelled grid."""
    from lzn.viz import save_image_grid

    captions = read_captions(args)
    if captions is None:
        raise ValueError('retrieve needs captions: --caption "a fat zero" (repeatable) or --captions-file FILE')
    default = RunFolder(args.run_dir).samples_dir / "lzn-retrieve.png"
    out = Path(args.out) if args.out else default
    if out.is_dir() or out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out} is {'a directory' if out.is_dir() else 'not a .png'}; "
                         "expected a .png file path")
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    need_text(loaded, "retrieve")
    if model.encoder is None:
        raise ValueError(f"the model at {loaded.path} has no image encoder to retrieve images with")
    if loaded.meta is None and not args.out:
        out = Path("lzn-retrieve.png")  # never write into a model folder
    ds = data(args, loaded)
    batch = int(loaded.setting("eval_batch_size", 2000))
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    images = ds.images if isinstance(ds, ImageDataset) else ds.load().images  # every image is a candidate
    choices = model.retrieve("text", captions, "image", images.to(model.device), k=args.k, batch_size=batch,
                             generator=gen, context=args.context)
    idx = choices.indices.cpu()  # (len(captions), k)
    for caption, row in zip(captions, idx.tolist()):
        shown = [f"{i} ({ds.class_names[int(ds.labels[i])] if ds.class_names else int(ds.labels[i])})"
                 if ds.labels is not None else str(i) for i in row]
        say(f"{caption!r}: {', '.join(shown)}")
    path = save_image_grid(images[idx.flatten()], out, nrow=idx.shape[1],
                           row_labels=[margin_label(c) for c in captions])
    say(f"best {idx.shape[1]} of {len(ds)} {args.split} images per caption (one row each): {Path(path).resolve()}")
    return 0
