"""The three case studies against their baselines on digits, several seeds each (CPU, tens of minutes).

Each (recipe, seed) trains with the digits preset into ``--out/RECIPE-sSEED`` (resumed if present), and
the script prints JSON with every run's results plus mean and sample standard deviation per metric,
then a one-line summary:

* classification (case study 3): ``joint`` vs ``nogen`` vs ``classifier``, test accuracy;
* generation (case study 1): ``generation`` vs ``rf``, reconstruction L2 on training images;
* representation (case study 2): ``representation`` vs ``simclr``, kNN and linear-probe accuracy.

    python experiments/compare_digits.py --seeds 0 1 2
    python experiments/compare_digits.py --recipes joint classifier --seeds 0 --steps 200   # quick look
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lzn.recipes.runner import resolve_config, train

from common import seed_summary  # experiments/common.py, beside this script

GROUPS = {
    "classification": (["joint", "nogen", "classifier"], ["test_accuracy", "test_accuracy_alpha_1"]),
    "generation": (["generation", "rf"], ["recon_l2"]),
    "representation": (["representation", "simclr"], ["knn_accuracy", "probe_accuracy"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=[r for rs, _ in GROUPS.values() for r in rs])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="override train.steps (default: the preset's)")
    parser.add_argument("--out", default="runs/compare_digits")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {}
    for recipe in args.recipes:
        for seed in args.seeds:
            sets = [f"train.seed={seed}", "train.progress=false"]
            if args.steps:
                sets.append(f"train.steps={args.steps}")
            cfg = resolve_config(recipe, "digits", sets=sets)
            runs.setdefault(recipe, []).append(train(recipe, cfg, Path(args.out) / f"{recipe}-s{seed}"))
    summary = seed_summary(runs)
    print(json.dumps({"seeds": args.seeds, "runs": runs, "summary": summary}, indent=2))
    parts = []
    for recipes, metrics in GROUPS.values():
        for recipe in recipes:
            for metric in metrics:
                s = summary.get(recipe, {}).get(metric)
                if s:
                    parts.append(f"{recipe} {metric} {s['mean']:.3f}+-{s['sd']:.3f}")
    print(f"compare_digits ({len(args.seeds)} seeds): " + "; ".join(parts))


if __name__ == "__main__":
    main()
