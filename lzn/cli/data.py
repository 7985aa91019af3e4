"""``lzn data shard`` / ``lzn data info``: tar shards for data sets larger than memory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lzn.cli.common import positive_int
from lzn.cli.output import say
from lzn.data.sources import SHARD_KINDS


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser("data", help="prepare data: tar shards for data sets larger than memory")
    data_sub = command.add_subparsers(dest="data_command", required=True, parser_class=type(command))
    sh = data_sub.add_parser("shard", help="write a data set as tar shards (WebDataset layout) with an index")
    sh.add_argument("source", help="an image folder (class sub-folders; train/ and test/ give both splits), a "
                                   "cifar-10-batches-py folder, a Fashion-MNIST IDX folder, a .npz / .npy, or digits")
    sh.add_argument("--out", required=True, help="output folder: OUT/train (and OUT/test)")
    sh.add_argument("--shard-size", type=positive_int, default=5000, help="images per tar file (default: 5000)")
    sh.add_argument("--split", choices=["train", "test"], default=None,
                    help="write the source as this split (default: every split it has, else train)")
    sh.add_argument("--kind", choices=["auto", *SHARD_KINDS], default="auto",
                    help="how to read SOURCE (default: detected)")
    sh.add_argument("--overwrite", action="store_true", help="replace existing OUT/train or OUT/test")
    sh.add_argument("--skip-bad-files", action="store_true", help="skip unreadable image files instead of failing")
    sh.set_defaults(func=shard)
    di = data_sub.add_parser("info", help="what a sharded data folder holds")
    di.add_argument("dir", help="a folder written by lzn data shard (or one of its splits)")
    di.set_defaults(func=info)


def shard(args: argparse.Namespace) -> int:
    import time

    from lzn.data.shard_writer import detect_kind, shard_source
    from lzn.data.shards import read_index

    start = time.time()
    kind = detect_kind(args.source) if args.kind == "auto" else args.kind
    say(f"lzn data shard: {args.source} ({kind}) -> {args.out}")
    written = shard_source(args.source, args.out, kind=kind, split=args.split, shard_size=args.shard_size,
                           overwrite=args.overwrite, skip_bad_files=args.skip_bad_files)
    for split, path in written.items():
        say(f"{split}: {describe(path, read_index(path))}")
    say(f"done in {time.time() - start:.0f} s; train on it with --set data.name=shards --set data.root={args.out}")
    return 0


def describe(path: Path, idx: dict[str, Any]) -> str:
    size = idx.get("image_size")
    shape = f"{size[0]}x{size[1]}" if size else "of varying sizes (set data.size)"
    classes = f"{idx['num_classes']} classes" if idx["labelled"] else "unlabelled"
    total = sum((path / s["name"]).stat().st_size for s in idx["shards"])
    return (f"{idx['num_samples']} images {shape}, {idx['channels']} channel(s), {classes}, {len(idx['shards'])} "
            f"shard(s), {total / 2**20:.1f} MiB ({', '.join(idx['suffixes'])}) in {path}")


def info(args: argparse.Namespace) -> int:
    from lzn.data.shards import is_split_folder, read_index, split_problems

    root = Path(args.dir)
    splits = [root] if is_split_folder(root) else [root / s for s in ("train", "test") if is_split_folder(root / s)]
    if not splits:
        raise FileNotFoundError(f"{root} holds no sharded split (index.json); expected a folder written by "
                                "`lzn data shard SOURCE --out DIR` (DIR, DIR/train or DIR/test)")
    broken = []
    for path in splits:
        idx = read_index(path)
        problems = split_problems(path)
        if problems:
            broken.append(f"{path}: {'; '.join(problems)}")
            continue
        say(f"{path.name}: {describe(path, idx)}")
        if idx.get("class_names"):
            pairs = list(zip(idx["class_names"], idx["class_counts"]))
            shown = ", ".join(f"{n} ({c})" for n, c in pairs[:10])
            say(f"  classes: {shown}{', ...' if len(pairs) > 10 else ''}")
    if broken:
        raise ValueError(f"{' | '.join(broken)}: write the split again with `lzn data shard SOURCE --out DIR "
                         "--overwrite`")
    return 0
