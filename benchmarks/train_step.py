"""Training-step cost: LZN generation step vs plain RF step (same decoder, same batch), and images/s of
every recipe on the digits preset. Prints JSON, then a one-line summary.

    python benchmarks/train_step.py            # batch 256, 30 timed steps per recipe
    python benchmarks/train_step.py --quick    # batch 64, 3 timed steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lzn.data import load_split
from lzn.recipes.common import data_info
from lzn.recipes.runner import RECIPES, resolve_config

LRS = {"generation": "{encoder: 1.0e-3, decoder: 1.0e-3}", "joint": "{encoder: 1.0e-3, decoder: 1.0e-3, "
       "label_anchors: 1.0e-2}", "nogen": "{encoder: 1.0e-3, label_anchors: 1.0e-2}"}


def build(name: str, batch: int):  # type: ignore[no-untyped-def]
    sets = [f"batch_size={batch}", f"train.lr={LRS.get(name, '1.0e-3')}"]
    cfg = resolve_config(name, "digits", sets=sets)
    data = load_split(cfg.data, "train")
    torch.manual_seed(0)
    rec = RECIPES[name](cfg, data_info(data))
    rec.attach_data(data)
    opt = torch.optim.Adam([p for m in rec.modules.values() for p in m.parameters()], lr=1e-4)

    def step(i: int) -> float:
        batch_data = rec.batches(i)
        start = time.perf_counter()
        out = rec.step(batch_data, i)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def time_recipe(name: str, batch: int, steps: int, warmup: int = 3) -> dict[str, float]:
    step = build(name, batch)
    times = [step(i) for i in range(warmup + steps)][warmup:]
    med = statistics.median(times)
    return {"step_seconds": med, "images_per_s": batch / med}


def lzn_vs_rf(batch: int, steps: int, warmup: int = 3) -> tuple[float, float]:
    """Median step times of generation (RF + LZN) and rf, alternating step by step so that machine
    noise hits both alike."""
    lzn, rf = build("generation", batch), build("rf", batch)
    pairs = [(lzn(i), rf(i)) for i in range(warmup + steps)][warmup:]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    batch, steps = (64, 3) if args.quick else (args.batch, args.steps)
    lzn_s, rf_s = lzn_vs_rf(batch, 2 * steps)
    recipes = {name: time_recipe(name, batch, steps) for name in sorted(RECIPES)}
    report = {"batch": batch, "threads": torch.get_num_threads(), "lzn_step_s": lzn_s, "rf_step_s": rf_s,
              "lzn_over_rf": lzn_s / rf_s, "recipes": recipes}
    print(json.dumps(report, indent=2))
    ips = ", ".join(f"{k} {v['images_per_s']:.0f}" for k, v in recipes.items())
    print(f"train_step: LZN generation step {lzn_s * 1e3:.1f} ms vs RF {rf_s * 1e3:.1f} ms = "
          f"{lzn_s / rf_s:.2f}x (target <= 1.25x) at batch {batch}; images/s: {ips}")


if __name__ == "__main__":
    main()
