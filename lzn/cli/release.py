"""``lzn import-release CKPT --out MODEL_DIR``: the authors' trained networks as an lzn model folder.

    lzn import-release 000008000-000200000.pt --out models/cs3            # EMA weights, case study inferred
    lzn import-release CKPT --out DIR --weights live --case-study 3       # live weights; refuse other files
    lzn import-release CKPT --out DIR --data cifar10 --root PATH          # also the reference bank (method.md §2.9)

The folder is what ``save_pretrained`` writes, so ``lzn evaluate / sample / classify / embed`` take it as
MODEL_DIR. Reading, mapping and checking are ``lzn.models.release``; nothing is written when they fail.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from lzn.cli.output import say

if TYPE_CHECKING:  # annotations only: the command imports the library when it runs
    from lzn.data import ImageDataset, ShardedDataset
    from lzn.models import LatentZoningNetwork

DATA = {"cifar10": (1, 3), "shards": (2,)}  # --data choices and the case studies they are the training set of


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("import-release", help="convert a checkpoint of the authors' release (case study 1, 2 or 3) "
                                              "into an lzn model folder")
    p.add_argument("ckpt", metavar="CKPT", help="a release checkpoint, e.g. 000008000-000200000.pt (case study 3)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="new model folder (must not exist or be empty)")
    p.add_argument("--weights", choices=["ema", "live"], default="ema",
                   help="ema (default: the weights behind the release's published ema- results) or live")
    p.add_argument("--case-study", type=int, choices=[1, 2, 3], default=None,
                   help="refuse a file that holds another case study's networks (default: inferred from the keys)")
    p.add_argument("--data", choices=sorted(DATA), default=None,
                   help="also build the reference bank from the training set: cifar10 (case studies 1, 3) or "
                        "shards (ImageNet as `lzn data shard` wrote it, case study 2)")
    p.add_argument("--root", default=None, help="data path for --data (cifar-10-batches-py folder, shard folder)")
    p.add_argument("--reference-size", type=int, default=2000, help="anchors in the reference bank (default: 2000)")
    p.add_argument("--batch-size", type=int, default=200, help="images per encoder batch for the bank (default: 200)")
    p.add_argument("--device", default=None, help="where the bank's anchors are computed (default: cuda if available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lzn.models.release import check_out_dir, release_model, save_model_folder

    start = time.time()
    if args.data is None and args.root is not None:
        raise ValueError("--root needs --data (cifar10 or shards)")
    if args.data is not None and args.root is None:
        raise ValueError(f"--data {args.data} needs --root (where the data set is)")
    if args.data is not None and args.case_study is not None and args.case_study not in DATA[args.data]:
        raise ValueError(f"--data {args.data} is the training set of case study "
                         f"{' or '.join(map(str, DATA[args.data]))}, not of --case-study {args.case_study}")
    if args.reference_size < 1 or args.batch_size < 1:
        raise ValueError("--reference-size and --batch-size must be positive")
    check_out_dir(args.out)
    train = _training_set(args) if args.data is not None else None  # a data error before reading gigabytes
    model, plan = release_model(args.ckpt, args.weights, args.case_study)
    say(f"{args.ckpt}: {plan.describe()}; {args.weights} weights")
    if train is not None:
        if plan.case_study not in DATA[args.data]:
            raise ValueError(f"--data {args.data} is the training set of case study "
                             f"{' or '.join(map(str, DATA[args.data]))}, and this file is case study {plan.case_study}")
        _reference_bank(model, train, args)
    out = save_model_folder(model, args.out)
    say(f"model folder: {out.resolve()} ({time.time() - start:.0f} s)")
    say(f"  try: lzn evaluate {args.out} --data {args.data or 'cifar10'} --root PATH" if plan.case_study != 2 else
        f"  try: lzn evaluate {args.out} --data shards --root IMAGENET_SHARDS --metrics probe,knn")
    return 0


def _training_set(args: argparse.Namespace) -> ImageDataset | ShardedDataset:
    """The --data training split: CIFAR-10, or ImageNet shards at the case-study-2 ResNet's 224 x 224 input
    (shorter side resized to 224, then centre crop: the release evaluates at Resize 256, CenterCrop 224)."""
    from lzn.data import DataConfig, load_split

    size = 224 if args.data == "shards" else None
    return load_split(DataConfig(name=args.data, root=args.root, size=size), "train")


def _reference_bank(model: LatentZoningNetwork, train: ImageDataset | ShardedDataset, args: argparse.Namespace) -> None:
    """The training set's class-balanced reference bank of anchors (method.md §2.9), as ``lzn train`` exports."""
    from lzn.distributed import pick_device
    from lzn.models.reference_bank import reference_indices

    picked = reference_indices(len(train), train.labels, min(args.reference_size, len(train)), seed=0)
    device = pick_device(args.device)
    say(f"reference bank: anchors of {len(picked)} of {len(train)} training images on {device}")
    model.to(device)
    model.build_reference_from(train.batch(picked)[0].to(device), batch_size=args.batch_size)
    model.to("cpu")  # the folder is written after this: a data error leaves nothing
