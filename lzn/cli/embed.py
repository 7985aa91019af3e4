"""``lzn embed``: backbone features or anchors of a data split, to .npy."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from lzn.cli.common import data, data_args, load, model_command, npy_path
from lzn.cli.output import say
from lzn.data import ImageDataset


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = model_command(sub, "embed", "write embeddings of a data set to .npy", run)
    data_args(p, split="test")
    p.add_argument("--out", default=None, required=True, help="output .npy file")
    p.add_argument("--head", action="store_true", help="anchors instead of backbone features")


def run(args: argparse.Namespace) -> int:
    from lzn.atomic import atomic_save_npy
    from lzn.eval import extract_features

    out = npy_path(args.out)
    loaded = load(args.run_dir, args.device)
    model = loaded.model
    if model.encoder is None:
        raise ValueError(f"the model at {loaded.path} has no image encoder to embed with")
    ds = data(args, loaded)
    encoder = model.encoder
    fn = encoder if args.head else encoder.features
    with torch.no_grad():
        feats = extract_features(fn, ds.images if isinstance(ds, ImageDataset) else ds, device=model.device)
    atomic_save_npy(out, feats.numpy())
    say(f"embeddings {tuple(feats.shape)}: {out.resolve()}")
    return 0
