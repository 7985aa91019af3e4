"""Does the latent flow's time grid put latents outside their own zones? A diagnosis of finished LZN runs.

Which zone a latent ends in is decided at small t, where nearby anchors separate; the paper's DPM-Solver++ 3M
takes its 20 steps on a grid uniform in t, whose first step alone jumps from t = 0.001 to 0.051. The same
solver on a grid uniform in the log-SNR (``flow.solver: dpm3_logsnr``, docs/method.md §2.6.1) spends more
than a quarter of its steps there at the same cost.

For each run this script measures, on held-out images in anchor sets of ``--set`` (default: the run's
training batch, the paper's protocol), with the model's own flow and with the other grid swapped in at
inference (the weights unchanged):

* ``rt_euler``: the round trip of ``lzn.eval.zone_diagnostics`` (latents flowed back by reverse Euler with as
  many steps, then nearest anchor = own anchor);
* ``rt_logsnr``: the same with the flow back on the log-SNR grid, which errs far less, so that it shows where
  the latents are rather than the error of the flow back;
* with a label decoder, ``acc_a0`` / ``acc_a1``: the label readout at alpha 0 and 1 (context "batch").

Keys are prefixed ``time_`` / ``logsnr_`` by the grid used (the model's step count), and ``accurate_`` for the
log-SNR grid at ``--accurate`` steps (default 160), close to the exact flow: a figure of the 20-step flows
that differs from it is solver error, whichever way it moves the figure. Prints JSON (per run, then mean and sample sd over
runs) and a one-line summary.

    python experiments/solver_grid.py runs/ablate/fashion/classification/best-simplex+log+centre/nogen-s{0,1,2}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from lzn.data import load_split
from lzn.eval import accuracy, zone_diagnostics

from common import diagnose_runs, run_model, run_settings, seed_summary  # experiments/common.py, beside this script

GRIDS = {"time": "dpm3", "logsnr": "dpm3_logsnr"}


def diagnose(run_dir: Path, set_size: int | None, num: int, seed: int, accurate: int) -> dict[str, float]:
    recipe, cfg = run_settings(run_dir)
    lzn = run_model(run_dir)
    if lzn.encoder is None:
        raise SystemExit(f"solver_grid.py: {run_dir} is a run of the {recipe!r} recipe, which has no image encoder; "
                         "expected an LZN run (generation, representation, joint, nogen)")
    if lzn.flow.solver not in GRIDS.values():
        raise SystemExit(f"solver_grid.py: {run_dir} computes its latents with {lzn.flow.solver!r}; the grids "
                         f"compared here are those of DPM-Solver++ 3M ({', '.join(GRIDS.values())})")
    test = load_split(cfg.data, "test")
    size = set_size or cfg.batch_size
    if size < 2 or size > len(test):
        raise SystemExit(f"solver_grid.py: --set must lie in [2, {len(test)}] (the test images), got {size}")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:num]  # (M,) the images used
    images, labels = test.batch(pick)
    labelled = lzn.label_anchors is not None and labels is not None
    out: dict[str, float] = {"set": float(size)}
    trained = lzn.flow
    flows = [(name, solver, trained.steps) for name, solver in GRIDS.items()] + [("accurate", "dpm3_logsnr", accurate)]
    for name, solver, steps in flows:
        lzn.flow = dataclasses.replace(trained, solver=solver, steps=steps)
        diag = zone_diagnostics(lzn, images, batch_size=size, step_factors=(1,), seed=seed, max_images=len(images))
        out[f"{name}_rt_euler"] = diag["round_trip"]["x1"]
        out[f"{name}_rt_logsnr"] = diag["round_trip_logsnr"]["x1"]
        if labelled:
            for alpha in (0.0, 1.0):
                out[f"{name}_acc_a{alpha:g}"] = accuracy(lzn, images, labels, noise_scale=alpha, batch_size=size,
                                                         context="batch", seed=seed)
    lzn.flow = trained
    out["trained_on_logsnr"] = float(trained.solver == "dpm3_logsnr")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished LZN run folders")
    parser.add_argument("--set", type=int, default=None, help="anchor set size (default: each run's batch_size)")
    parser.add_argument("--num", type=int, default=2000, help="test images used (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image pick and the flow noise")
    parser.add_argument("--accurate", type=int, default=160, help="steps of the near-exact reference flow (log-SNR grid)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if (args.set is not None and args.set < 2) or args.num < 2 or args.threads < 1 or args.accurate < 1:
        parser.error("--set and --num take whole numbers >= 2, --threads and --accurate >= 1")
    torch.set_num_threads(args.threads)
    per_run = diagnose_runs(args.runs, "solver_grid.py", "`lzn train nogen --out DIR` or experiments/ablate.py",
                            lambda run: diagnose(run, args.set, args.num, args.seed, args.accurate))
    summary = seed_summary({"grid": list(per_run.values())})["grid"]
    print(json.dumps({"runs": per_run, "summary": summary}, indent=2))

    def cells(name: str) -> str:
        keys = [k for k in ("rt_euler", "rt_logsnr", "acc_a0", "acc_a1") if f"{name}_{k}" in summary]
        return ", ".join(f"{k} {summary[f'{name}_{k}']['mean']:.3f}" for k in keys)

    print(f"solver_grid ({len(per_run)} runs, test split): time grid {cells('time')}; log-SNR grid {cells('logsnr')}; "
          f"accurate ({args.accurate} steps) {cells('accurate')}")


if __name__ == "__main__":
    main()
