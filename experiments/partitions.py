"""How much does LZN's batch-protocol accuracy depend on which test images share an anchor set? A diagnosis of
finished ``joint`` / ``nogen`` runs.

The paper's protocol classifies test images in anchor sets of the training batch, taken in the test split's
order (``lzn evaluate``, experiments/ablate.py). Each image's latent depends on the others in its set, so the
figure depends on the partition: on a small test split (digits: 359 images, one set of 256 and one of 103)
one partition is one draw. This script reads each run out in the split's order and in ``--partitions``
random partitions of the same images (seeded; ``lzn.eval.partition_accuracy``, also ``lzn evaluate
--partitions K``), and reports the data-order figure beside the mean and sample sd over partitions, at each
alpha of ``--alphas``.

Each run is measured through the model it exported (``RUN/model``) and the data of its ``run.yaml``.
Prints JSON (per run, then mean and sample sd over runs) and a one-line summary.

    python experiments/partitions.py runs/ablate/digits/classification/best-simplex+log/joint-s{0,1,2}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lzn.eval import accuracy, partition_accuracy

from common import diagnose_runs, labelled_test_split, run_model, seed_summary  # experiments/common.py, beside this script


def diagnose(run_dir: Path, set_size: int | None, partitions: int, alphas: list[float], seed: int) -> dict[str, float]:
    cfg, test = labelled_test_split(run_dir, "partitions.py")
    size = set_size or cfg.batch_size
    if size > len(test):
        raise SystemExit(f"partitions.py: --set must be at most the {len(test)} test images, got {size}")
    lzn = run_model(run_dir)
    out: dict[str, float] = {"set": float(size)}
    for alpha in alphas:
        key = f"a{alpha:g}"
        out[f"{key}_data_order"] = accuracy(lzn, test.images, test.labels, noise_scale=alpha, batch_size=size,
                                            context="batch", seed=seed)
        over = partition_accuracy(lzn, test.images, test.labels, noise_scale=alpha, batch_size=size,
                                  partitions=partitions, seed=seed)
        out[f"{key}_partitions_mean"], out[f"{key}_partitions_sd"] = over["mean"], over["sd"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished joint or nogen run folders")
    parser.add_argument("--set", type=int, default=None, help="anchor set size (default: each run's batch_size)")
    parser.add_argument("--partitions", type=int, default=10, help="random partitions (default: 10)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 1.0], help="noise scales (default: 0 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the partitions and the flow noise")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if (args.set is not None and args.set < 1) or args.partitions < 1 or args.threads < 1:
        parser.error("--set, --partitions and --threads take whole numbers >= 1")
    if any(not 0.0 <= a <= 2.0 for a in args.alphas):
        parser.error("--alphas take noise scales in [0, 2]")
    torch.set_num_threads(args.threads)
    per_run = diagnose_runs(args.runs, "partitions.py", "`lzn train nogen --out DIR` or experiments/ablate.py",
                            lambda run: diagnose(run, args.set, args.partitions, args.alphas, args.seed))
    summary = seed_summary({"partitions": list(per_run.values())})["partitions"]
    print(json.dumps({"runs": per_run, "summary": summary}, indent=2))
    cells = "; ".join(f"alpha {a:g}: data order {summary[f'a{a:g}_data_order']['mean']:.3f}, partitions "
                      f"{summary[f'a{a:g}_partitions_mean']['mean']:.3f} (sd over partitions "
                      f"{summary[f'a{a:g}_partitions_sd']['mean']:.3f})" for a in args.alphas)
    print(f"partitions ({len(per_run)} runs, {args.partitions} partitions, test split): {cells}")


if __name__ == "__main__":
    main()
