"""How much of LZN's classification readout is lost to the class mix of its anchor sets? A diagnosis of
finished ``joint`` / ``nogen`` runs.

LZN's zones have equal mass: in an anchor set of n images each image's zone holds 1/n of the Gaussian, and
each of the C label zones holds 1/C. A set that happens to hold more than n/C images of a class cannot fit
all their latents into that class's label zone, however good the encoder: the surplus must spill into
other label zones. In random sets of 256 from ten equally frequent classes the surplus is about 7.5 % of the
images (a binomial count varies by about +-4.8 around 25.6); it shrinks as the sets grow (docs/method.md
§9.6, ``data.balanced``).

This script measures it on held-out images, at alpha 0 (zone centres, the presets' headline): the label
decoder's accuracy in anchor sets of each size drawn at random (the evaluation protocol) beside the same
images in class-balanced sets of that size (the order of ``data.balanced``, composed *with the test
labels*: a diagnosis of the readout, not an accuracy anyone could report). ``surplus`` is the realised
fraction of images beyond each class's share in the random sets (0 for balanced sets, up to rounding).

Each run is measured through the model it exported (``RUN/model``) and the data of its ``run.yaml``.
Prints JSON (per run, then mean and sample sd over runs) and a one-line summary.

    python experiments/zone_capacity.py runs/ablate/fashion/classification/best-simplex+log+centre/nogen-s0 \\
        --sizes 64 256 1000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lzn.data import epoch_indices
from lzn.eval import accuracy

from common import diagnose_runs, labelled_test_split, run_model, seed_summary  # experiments/common.py, beside this script


def surplus(labels: torch.Tensor, size: int, classes: int) -> float:
    """Fraction of the images beyond their class's share, over consecutive sets of ``size`` of ``labels``."""
    share = torch.bincount(labels, minlength=classes).double() / labels.numel()  # (C,) the class frequencies
    counts = torch.stack([torch.bincount(s, minlength=classes) for s in labels.view(-1, size)]).double()  # (S, C)
    return float((counts - size * share).clamp(min=0).sum() / labels.numel())


def diagnose(run_dir: Path, sizes: list[int], num: int | None, seed: int) -> dict[str, float]:
    cfg, test = labelled_test_split(run_dir, "zone_capacity.py")
    lzn = run_model(run_dir)
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:num]  # (M,) the images used
    images, labels = test.batch(pick)
    assert labels is not None
    out: dict[str, float] = {}
    for size in sizes:
        if size > labels.numel():
            raise SystemExit(f"zone_capacity.py: a set of {size} needs at least that many test images, "
                             f"got {labels.numel()}")
        for kind, order_labels in (("random", None), ("balanced", labels)):
            order = epoch_indices(labels.numel(), size, 0, seed, labels=order_labels)  # whole sets, tail dropped
            out[f"{kind}_{size}"] = accuracy(lzn, images[order], labels[order], noise_scale=0.0, batch_size=size,
                                             context="batch", seed=seed)
            out[f"surplus_{kind}_{size}"] = surplus(labels[order], size, test.num_classes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished joint or nogen run folders")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1000], help="anchor set sizes")
    parser.add_argument("--num", type=int, default=None, help="test images used (default: the whole split)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image pick and the sets")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if any(s < 1 for s in args.sizes) or (args.num is not None and args.num < 1) or args.threads < 1:
        parser.error("--sizes, --num and --threads take whole numbers >= 1")
    torch.set_num_threads(args.threads)
    per_run = diagnose_runs(args.runs, "zone_capacity.py", "`lzn train nogen --out DIR` or experiments/ablate.py",
                            lambda run: diagnose(run, args.sizes, args.num, args.seed))
    summary = seed_summary({"capacity": list(per_run.values())})["capacity"]
    print(json.dumps({"runs": per_run, "summary": summary}, indent=2))
    cells = ", ".join(f"{s}: random {summary[f'random_{s}']['mean']:.3f} / balanced "
                      f"{summary[f'balanced_{s}']['mean']:.3f} (surplus {summary[f'surplus_random_{s}']['mean']:.3f})"
                      for s in args.sizes)
    print(f"zone_capacity ({len(per_run)} runs, alpha 0, test split): {cells}")


if __name__ == "__main__":
    main()
