"""The paper's three claims, LZN beside its baseline with the same networks, data, budget and seeds,
evaluated the same way (docs/method.md §8):

1. generation: ``rf`` vs ``generation``: FID, KID, precision/recall (named extractor), reconstruction L2;
2. representation: ``representation`` vs ``simclr``: kNN and linear probe of the same encoder;
3. joint: ``joint`` vs ``classifier`` vs ``nogen``: accuracy at the paper's alpha = 1 and the best alpha of
   the sweep (said which), plus class-conditional ``rf`` vs ``joint``: FID and class consistency (the
   ``classifier`` run's accuracy on samples generated for each class).

Budgets:
  --budget quick   digits, one seed, 300 steps per recipe, fast extractor, 500 samples (minutes on 2 CPU cores)
  --budget full    digits at the preset's budget and fashion, seeds 0 1 2 (hours of CPU; a GPU with --extractor
                   inception). Every finished (dataset, recipe, seed) run is cached in its run folder and
                   skipped on a rerun, so the full budget can run in pieces.

Prints JSON, a Markdown table (mean +- sample sd over seeds) and a one-line summary; --json/--md write them.

    python benchmarks/paper_claims.py --budget quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from lzn import LatentZoningNetwork
from lzn.data import load_split
from lzn.eval import evaluate_model, fast_extractor, inception_extractor
from lzn.recipes.runner import load_run, resolve_config, train

BUDGETS = {
    "quick": {"datasets": ["digits"], "seeds": [0], "steps": 300, "samples": 500},
    "full": {"datasets": ["digits", "fashion"], "seeds": [0, 1, 2], "steps": None, "samples": 2000},
}
RECIPES = ["rf", "generation", "representation", "simclr", "joint", "nogen", "classifier", "rf_cond"]


def run(dataset: str, recipe: str, seed: int, steps: int | None, out: Path) -> Path:
    name = "rf" if recipe == "rf_cond" else recipe
    sets = [f"train.seed={seed}", "train.progress=false"] + (["class_conditional=true"] if recipe == "rf_cond" else [])
    if steps:
        sets.append(f"train.steps={steps}")
    cfg = resolve_config(name, dataset, sets=sets)
    folder = out / dataset / f"{recipe}-s{seed}"
    train(name, cfg, folder)  # a finished run is left alone and its results returned
    return folder


def measure(dataset: str, recipe: str, folder: Path, extractor: Any, samples: int, classifier) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    results = json.loads((folder / "results.json").read_text())
    if recipe == "classifier":
        return {"accuracy_alpha_1": results["test_accuracy"], "accuracy_best": results["test_accuracy"]}
    model = LatentZoningNetwork.from_pretrained(str(folder / "model")).eval()
    cfg = resolve_config("rf" if recipe == "rf_cond" else recipe, dataset)
    train_set, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    ev = evaluate_model(model, train_set, test, extractor=extractor if model.decoder is not None else None,
                        num_samples=samples, sampler="euler", sampler_steps=20, eval_batch_size=cfg.eval_batch_size,
                        progress=False)
    out: dict[str, Any] = {}
    if "generation" in ev:
        out.update({k: ev["generation"][k] for k in ("fid", "kid_mean", "precision", "recall")})
    if "reconstruction" in ev:
        out["recon_l2"] = ev["reconstruction"]["l2_per_image"]
    if "representation" in ev and recipe in ("representation", "simclr"):
        out.update({"knn": ev["representation"]["knn_accuracy"], "probe": ev["representation"]["probe_accuracy"]})
    if "classification" in ev:
        batch = [r for r in ev["classification"]["sweep"] if r["context"] == "batch"]
        out["accuracy_alpha_1"] = next(r["accuracy"] for r in batch if r["alpha"] == 1.0)
        best = max(batch, key=lambda r: r["accuracy"])
        out["accuracy_best"], out["best_alpha"] = best["accuracy"], best["alpha"]
    if recipe in ("rf_cond", "joint") and classifier is not None:  # class consistency of conditional samples
        lab = torch.arange(samples) % train_set.num_classes  # every class equally often
        gen = torch.Generator().manual_seed(0)
        images = torch.cat([model.generate(labels=lab[i:i + 250].tolist(), sampler="euler", steps=20,
                                           generator=gen).images.clamp(-1, 1) for i in range(0, samples, 250)])
        with torch.no_grad():
            pred = classifier.classify(images)
        out["class_consistency"] = float((pred == lab).float().mean())
    return out


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = sorted({k for r in per_seed for k, v in r.items() if isinstance(v, float)})
    out = {}
    for k in keys:
        vals = [r[k] for r in per_seed if k in r]
        out[k] = {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}
    return out


def table(summary: dict[str, dict[str, dict[str, dict[str, float]]]], extractor: str, samples: int) -> str:
    def cell(ds: str, recipe: str, key: str, fmt: str = ".3f") -> str:
        s = summary.get(ds, {}).get(recipe, {}).get(key)
        return "n/a" if s is None else f"{s['mean']:{fmt}} +- {s['sd']:{fmt}}"

    lines = [f"| data | claim | metric | LZN | baseline(s) |", "|---|---|---|---|---|"]
    for ds in summary:
        real = min(samples, len(load_split(resolve_config("rf", ds).data, "test")))
        for key, name, fmt in (("fid", f"FID ({extractor}, {samples} samples vs {real} test images)", ".2f"), ("precision", "precision", ".3f"),
                               ("recall", "recall", ".3f"), ("recon_l2", "reconstruction L2 (lower is better)", ".3f")):
            lines.append(f"| {ds} | 1 generation | {name} | generation {cell(ds, 'generation', key, fmt)} | "
                         f"rf {cell(ds, 'rf', key, fmt)} |")
        for key, name in (("probe", "linear probe"), ("knn", "kNN")):
            lines.append(f"| {ds} | 2 representation | {name} | representation {cell(ds, 'representation', key)} | "
                         f"simclr {cell(ds, 'simclr', key)} |")
        for key, name in (("accuracy_alpha_1", "accuracy, alpha = 1"), ("accuracy_best", "accuracy, best alpha of {0, 0.5, 1}")):
            lines.append(f"| {ds} | 3 joint | {name} | joint {cell(ds, 'joint', key)} | classifier "
                         f"{cell(ds, 'classifier', key)}; nogen {cell(ds, 'nogen', key)} |")
        lines.append(f"| {ds} | 3 joint | conditional FID ({extractor}) | joint {cell(ds, 'joint', 'fid', '.2f')} | "
                     f"class-conditional rf {cell(ds, 'rf_cond', 'fid', '.2f')} |")
        lines.append(f"| {ds} | 3 joint | class consistency | joint {cell(ds, 'joint', 'class_consistency')} | "
                     f"class-conditional rf {cell(ds, 'rf_cond', 'class_consistency')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    parser.add_argument("--extractor", choices=["fast", "inception"], default="fast")
    parser.add_argument("--out", default="runs/paper_claims")
    parser.add_argument("--recipes", nargs="*", default=RECIPES, choices=RECIPES)
    parser.add_argument("--steps", type=int, default=None, help="override the budget's train.steps (smoke tests)")
    parser.add_argument("--samples", type=int, default=None, help="override the budget's generated samples")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="override the budget's seeds")
    parser.add_argument("--json", default=None)
    parser.add_argument("--md", default=None)
    args = parser.parse_args()
    budget, start = dict(BUDGETS[args.budget]), time.time()
    for key in ("steps", "samples", "seeds"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    extractor = fast_extractor(progress=False) if args.extractor == "fast" else inception_extractor(progress=False)
    out = Path(args.out) / args.budget
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for ds in budget["datasets"]:
        for seed in budget["seeds"]:
            folders = {r: run(ds, r, seed, budget["steps"], out) for r in args.recipes}
            classifier = None
            if "classifier" in folders:
                classifier, _ = load_run(folders["classifier"])
            for recipe, folder in folders.items():
                raw.setdefault(ds, {}).setdefault(recipe, []).append(
                    measure(ds, recipe, folder, extractor, budget["samples"], classifier))
    summary = {ds: {r: summarise(v) for r, v in recipes.items()} for ds, recipes in raw.items()}
    md = table(summary, extractor.name, budget["samples"])
    report = {"budget": args.budget, "extractor": extractor.name, "samples": budget["samples"], "seeds": budget["seeds"],
              "steps": budget["steps"] or "preset", "seconds": time.time() - start, "runs": raw, "summary": summary}
    print(json.dumps(report, indent=2))
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(md + "\n")
    d = budget["datasets"][0]
    get = lambda r, k: summary[d].get(r, {}).get(k, {}).get("mean", float("nan"))  # noqa: E731
    print(f"paper_claims ({args.budget}, {time.time() - start:.0f} s): {d} FID generation {get('generation', 'fid'):.2f} vs "
          f"rf {get('rf', 'fid'):.2f}; probe representation {get('representation', 'probe'):.3f} vs simclr "
          f"{get('simclr', 'probe'):.3f}; accuracy joint {get('joint', 'accuracy_best'):.3f} vs classifier "
          f"{get('classifier', 'accuracy_best'):.3f}")


if __name__ == "__main__":
    main()
