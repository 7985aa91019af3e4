"""The paper's three claims, LZN beside its baseline with the same networks, data, budget and seeds,
evaluated the same way (docs/method.md §8):

1. generation: ``rf`` vs ``generation``: FID, KID, precision/recall (named extractor), reconstruction L2 with
   20 Euler steps and with dopri5 (the paper's main sampler, rtol = atol = 1e-5);
2. representation: ``representation`` vs ``simclr``: kNN and linear probe of the same encoder;
3. joint: ``joint`` vs ``classifier`` vs ``nogen``: accuracy at the paper's alpha = 1 and the best alpha of
   the sweep (said which), plus class-conditional ``rf`` vs ``joint``: FID and class consistency (the
   ``classifier`` run's accuracy on samples generated for each class: the network it exports to
   ``RUN/classifier``, ``lzn.eval.classifier_judge``).

Budgets:
  --budget quick   digits, one seed, 300 steps per recipe, fast extractor, 500 samples (minutes on 2 CPU cores)
  --budget full    digits and fashion at their presets' budgets (1,200 steps; 3,000 steps = 12.8 epochs),
                   seeds 0 1 2, 1,000 samples (digits about 35 minutes on 2 CPU cores as two single-threaded
                   processes, fashion about 6 hours more, `make claims`; minutes on a GPU, with --extractor
                   inception for the standard FID). Every finished (dataset, recipe, seed) run and its
                   measurements are cached in its run folder and skipped on a rerun, so the full budget can
                   run in pieces (--datasets, --seeds, --recipes).

Prints JSON, a Markdown table (mean +- sample sd over seeds) and a one-line summary; --json/--md write them.

    python experiments/paper_claims.py --budget quick
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lzn import LatentZoningNetwork
from lzn.atomic import atomic_write_text
from lzn.data import ImageDataset, load_split
from lzn.eval import class_consistency, classifier_judge, evaluate_model, fast_extractor, inception_extractor
from lzn.recipes.runner import resolve_config, train
from lzn.run_folder import RunFolder, read_results
from lzn.viz import save_image_grid

from common import budget_folder, device

# steps per data set (None: the preset's own budget, the same for every recipe, LZN and baseline alike, and said
# in every table). Fashion-MNIST's preset is 3,000 steps of batch 256 (12.8 epochs, the quality study's "at
# least 10"): about 4 CPU-hours per seed for the eight recipes, minutes on a GPU.
BUDGETS = {
    "quick": {"datasets": ["digits"], "seeds": [0], "steps": {"digits": 300}, "samples": 500},
    "full": {"datasets": ["digits", "fashion"], "seeds": [0, 1, 2], "steps": {"digits": None, "fashion": None},
             "samples": 1000},
}
RECIPES = ["rf", "generation", "representation", "simclr", "joint", "nogen", "classifier", "rf_cond"]


def run(dataset: str, recipe: str, seed: int, steps: int | None, out: Path, extra: list[str] | None = None) -> Path:
    name = "rf" if recipe == "rf_cond" else recipe
    sets = [f"train.seed={seed}", "train.progress=false"] + (["class_conditional=true"] if recipe == "rf_cond" else [])
    sets += extra or []
    if steps:
        sets.append(f"train.steps={steps}")
    cfg = resolve_config(name, dataset, sets=sets)
    # the preset's budget in the data set's folder, any other in its own (a cached run of another budget
    # could not be resumed with these settings)
    folder = out / budget_folder(dataset, steps) / f"{recipe}-s{seed}"
    before = _finished_steps(folder)
    start = time.time()
    train(name, cfg, folder)  # a finished run is left alone; one trained for fewer steps continues
    if before != cfg.train.steps:  # wall time of the training (and the recipe's own evaluation), summed over parts
        seconds = folder / "claims-train-seconds.txt"
        earlier = float(seconds.read_text()) if seconds.exists() and before is not None else 0.0
        atomic_write_text(seconds, f"{earlier + time.time() - start:.1f}\n")
    return folder


def _finished_steps(folder: Path) -> int | None:
    return int(read_results(folder)["steps"]) if RunFolder(folder).results.exists() else None


@functools.cache
def splits(dataset: str) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) of a data set, loaded once per process (every recipe of a preset shares them)."""
    data = resolve_config("rf", dataset).data
    return load_split(data, "train"), load_split(data, "test")


Judge = Callable[[torch.Tensor], torch.Tensor]  # images (B, C, H, W) -> class indices (B,)
JUDGED = ("rf_cond", "joint")  # the recipes whose samples the classifier judges (class consistency)


def judge_of(folder: Path) -> Judge:
    """The class-consistency judge: the network a finished ``classifier`` run exported (``RUN/classifier``)."""
    if not (RunFolder(folder).classifier / "config.json").is_file():
        raise SystemExit(f"{folder} has no exported classifier (classifier/: a classifier run trained before runs "
                         "exported it has none); remove the folder to train it again")
    return classifier_judge(RunFolder(folder).classifier, device())


def measure(dataset: str, recipe: str, folder: Path, extractor: Any, samples: int, judge: Judge | None) -> dict[str, Any]:
    """The claim's figures of one finished run, cached beside it (per extractor and sample count)."""
    cache = folder / f"claims-{extractor.name.replace('/', '_')}-{samples}.json"
    key: dict[str, Any] = {"train_steps": _finished_steps(folder)}
    if recipe in JUDGED:  # only these read the judge: a judge added or not changes nothing else's figures
        key["judged"] = judge is not None
    if cache.exists():
        cached = json.loads(cache.read_text())
        if all(cached.get(k) == v for k, v in key.items()):  # a run trained further, or a judge added: measure again
            return cached
    start = time.time()
    out = _measure(dataset, recipe, folder, extractor, samples, judge)
    out.update(key, eval_seconds=time.time() - start)
    atomic_write_text(cache, json.dumps(out, indent=2) + "\n")
    return out


def measure_recon_dopri5(dataset: str, folder: Path) -> dict[str, float]:
    """Claim 1's reconstruction L2 with the paper's main sampler (adaptive dopri5, rtol = atol = 1e-5; the
    claims' other figures use 20 Euler steps) on the same 64 training images: the mean (the paper's figure) and
    the median image (dopri5 shares one step size over the batch, as scipy on the flattened array, so a few
    images whose inversion goes astray can carry the mean). Cached beside the run in its own file, so that adding
    it re-measures nothing else."""
    cache = folder / "claims-recon-dopri5.json"
    steps, keys = _finished_steps(folder), ("recon_l2_dopri5", "recon_l2_dopri5_median")
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("train_steps") == steps and all(k in cached for k in keys):
            return {k: float(cached[k]) for k in keys}
    start = time.time()
    model = LatentZoningNetwork.from_pretrained(str(RunFolder(folder).model)).eval()
    rec = evaluate_model(model, splits(dataset)[0], None, metrics=("recon",), sampler="dopri5", sampler_steps=None,
                         progress=False)["reconstruction"]
    out = dict(zip(keys, (rec["l2_per_image"], rec["l2_median"])))
    atomic_write_text(cache, json.dumps({**out, "num_images": rec["num_images"], "train_steps": steps,
                                         "eval_seconds": time.time() - start}, indent=2) + "\n")
    return out


def _measure(dataset: str, recipe: str, folder: Path, extractor: Any, samples: int, judge: Judge | None) -> dict[str, Any]:
    results = read_results(folder)
    seconds = folder / "claims-train-seconds.txt"
    timing = {"train_seconds": float(seconds.read_text())} if seconds.exists() else {}
    if recipe == "classifier":
        return {"accuracy_alpha_1": results["test_accuracy"], "accuracy_best": results["test_accuracy"], **timing}
    model = LatentZoningNetwork.from_pretrained(str(RunFolder(folder).model)).eval()
    cfg = resolve_config("rf" if recipe == "rf_cond" else recipe, dataset)
    train_set, test = splits(dataset)
    ev = evaluate_model(model, train_set, test, extractor=extractor if model.decoder is not None else None,
                        num_samples=samples, sampler="euler", sampler_steps=20, eval_batch_size=cfg.eval_batch_size,
                        progress=False)
    out: dict[str, Any] = dict(timing)
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
    if "classification" in ev:  # the whole sweep (alpha x context), for the diagnostics where LZN trails
        out["sweep"] = ev["classification"]["sweep"]
    if "zones" in ev:
        out["zones"] = ev["zones"]
    if recipe in JUDGED and judge is not None:  # judged by the classifier baseline's run
        out["class_consistency"] = class_consistency(model, judge, samples, sampler="euler", steps=20,
                                                     seed=0)["class_consistency"]
    return out


def figure(dataset: str, folders: dict[str, Path], path: Path, per_row: int = 20) -> Path | None:
    """Samples of LZN beside its baseline, trained with the same seed and sampled with the same noise seed:
    unconditional ``rf`` / ``generation`` rows, then class-conditional ``rf_cond`` / ``joint`` rows whose
    columns run through the classes. Euler, 50 steps."""
    pairs = [(r, n) for r, n in (("rf", "rf (baseline)"), ("generation", "generation (LZN)"),
                                 ("rf_cond", "class-cond. rf (baseline)"), ("joint", "joint (LZN)")) if r in folders]
    if not pairs:
        return None
    rows, labels = [], []
    for recipe, name in pairs:
        model = LatentZoningNetwork.from_pretrained(str(RunFolder(folders[recipe]).model)).eval()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            if recipe in ("rf_cond", "joint"):
                lab = (torch.arange(2 * per_row) % model.num_classes).tolist()
                images = model.generate(labels=lab, sampler="euler", steps=50, generator=gen).images
            else:
                images = model.generate(num=2 * per_row, sampler="euler", steps=50, generator=gen).images
        rows.append(images.cpu())
        labels += [f"{dataset} {name}", ""]
    return save_image_grid(torch.cat(rows), path, nrow=per_row, row_labels=labels)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {"round_trip": {"x1": v}} -> {"round_trip.x1": v}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    per_seed = [{**r, **flatten(r.get("zones", {}), "zones.")} for r in per_seed]
    keys = sorted({k for r in per_seed for k, v in r.items() if isinstance(v, float) and k != "best_alpha"})
    out = {}
    for k in keys:
        vals = [r[k] for r in per_seed if k in r]
        out[k] = {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}
    return out


def table(summary: dict[str, dict[str, dict[str, dict[str, float]]]], extractor: str, samples: int,
          steps: dict[str, int | None], best_alphas: dict[str, dict[str, list[float]]] | None = None) -> str:
    best_alphas = best_alphas or {}

    def cell(ds: str, recipe: str, key: str, fmt: str = ".3f") -> str:
        s = summary.get(ds, {}).get(recipe, {}).get(key)
        return "n/a" if s is None else f"{s['mean']:{fmt}} +- {s['sd']:{fmt}}"

    def won(ds: str, recipe: str, key: str) -> str:  # which alpha was best, per seed
        alphas = best_alphas.get(ds, {}).get(recipe, [])
        return f" (best alpha per seed: {', '.join(f'{a:g}' for a in alphas)})" if key == "accuracy_best" and alphas else ""

    lines = ["| data | claim | metric | LZN | baseline(s) |", "|---|---|---|---|---|"]
    for ds in summary:
        label = f"{ds} ({steps.get(ds) or resolve_config('rf', ds).train.steps} steps)"
        real = min(samples, len(splits(ds)[1]))

        def add(recipes: tuple[str, ...], line: str) -> None:  # a claim's row only where one of its recipes ran
            if any(r in summary[ds] for r in recipes):
                lines.append(line)

        for key, name, fmt in (("fid", f"FID ({extractor}, {samples} samples vs {real} test images)", ".2f"),
                               ("kid_mean", f"KID ({extractor})", ".4f"), ("precision", "precision", ".3f"),
                               ("recall", "recall", ".3f"),
                               ("recon_l2", "reconstruction L2, 20 Euler steps (lower is better)", ".3f"),
                               ("recon_l2_dopri5", "reconstruction L2, dopri5 (the paper's main sampler)", ".3f"),
                               ("recon_l2_dopri5_median", "reconstruction L2, dopri5, median image", ".3f")):
            add(("generation", "rf"), f"| {label} | 1 generation | {name} | generation {cell(ds, 'generation', key, fmt)} | "
                                      f"rf {cell(ds, 'rf', key, fmt)} |")
        for key, name in (("probe", "linear probe"), ("knn", "kNN")):
            add(("representation", "simclr"),
                f"| {label} | 2 representation | {name} | representation {cell(ds, 'representation', key)} | "
                f"simclr {cell(ds, 'simclr', key)} |")
        for key, name in (("accuracy_alpha_1", "accuracy, alpha = 1"), ("accuracy_best", "accuracy, best alpha of {0, 0.5, 1}")):
            add(("joint", "classifier", "nogen"),
                f"| {label} | 3 joint | {name} | joint {cell(ds, 'joint', key)}{won(ds, 'joint', key)} | "
                f"classifier {cell(ds, 'classifier', key)}; nogen {cell(ds, 'nogen', key)}{won(ds, 'nogen', key)} |")
        add(("joint", "rf_cond"), f"| {label} | 3 joint | conditional FID ({extractor}) | joint {cell(ds, 'joint', 'fid', '.2f')} | "
                                  f"class-conditional rf {cell(ds, 'rf_cond', 'fid', '.2f')} |")
        add(("joint", "rf_cond"), f"| {label} | 3 joint | class consistency | joint {cell(ds, 'joint', 'class_consistency')} | "
                                  f"class-conditional rf {cell(ds, 'rf_cond', 'class_consistency')} |")
    return "\n".join(lines)


def diagnostics_table(summary: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    """Zone diagnostics of the LZN runs (docs/method.md §1.4): do the zones look as the method promises?"""
    cols = (("zones.latent_ks_mean", "KS of pooled latents vs N(0, 1)"), ("zones.latent_mean_norm", "abs(mean)"),
            ("zones.latent_cov_max_abs_dev", "max abs(Cov - I)"), ("zones.round_trip.x1", "round trip 1x"),
            ("zones.round_trip.x4", "round trip 4x"), ("zones.label_zone_fraction", "in label zone"))
    lines = ["| data | recipe | " + " | ".join(name for _, name in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for ds, recipes in summary.items():
        for recipe in ("generation", "representation", "joint", "nogen"):
            stats = recipes.get(recipe, {})
            if not any(k in stats for k, _ in cols):
                continue
            cells = [f"{stats[k]['mean']:.3f} +- {stats[k]['sd']:.3f}" if k in stats else "n/a" for k, _ in cols]
            lines.append(f"| {ds} | {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    parser.add_argument("--extractor", choices=["fast", "inception"], default="fast")
    parser.add_argument("--out", default="runs/paper_claims")
    parser.add_argument("--datasets", nargs="*", default=None, choices=["digits", "fashion"],
                        help="override the budget's data sets (run the full budget in pieces)")
    parser.add_argument("--recipes", nargs="*", default=RECIPES, choices=RECIPES)
    parser.add_argument("--steps", type=int, default=None, help="override the budget's train.steps (smoke tests)")
    parser.add_argument("--samples", type=int, default=None, help="override the budget's generated samples")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="override the budget's seeds")
    parser.add_argument("--figure", default=None,
                        help="write samples of LZN beside its baseline (seed of the first run) to FIGURE-<data>.png")
    parser.add_argument("--json", default=None)
    parser.add_argument("--md", default=None)
    args = parser.parse_args()
    budget, start = dict(BUDGETS[args.budget]), time.time()
    for key in ("samples", "seeds", "datasets"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    if args.steps is not None:
        budget["steps"] = {ds: args.steps for ds in budget["datasets"]}
    extractor = fast_extractor(progress=False) if args.extractor == "fast" else inception_extractor(progress=False)
    out = Path(args.out) / args.budget
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for ds in budget["datasets"]:
        for seed in budget["seeds"]:
            folders = {r: run(ds, r, seed, budget["steps"].get(ds), out, budget.get("sets", {}).get(ds)) for r in args.recipes}
            judge = judge_of(folders["classifier"]) if "classifier" in folders else None
            if args.figure and seed == budget["seeds"][0]:
                figure(ds, folders, Path(f"{args.figure}-{ds}.png"))
            for recipe, folder in folders.items():
                figures = measure(ds, recipe, folder, extractor, budget["samples"], judge)
                if recipe in ("generation", "rf"):
                    figures.update(measure_recon_dopri5(ds, folder))
                raw.setdefault(ds, {}).setdefault(recipe, []).append(figures)
    summary = {ds: {r: summarise(v) for r, v in recipes.items()} for ds, recipes in raw.items()}
    best = {ds: {r: [x["best_alpha"] for x in v if "best_alpha" in x] for r, v in recipes.items()}
            for ds, recipes in raw.items()}
    md = table(summary, extractor.name, budget["samples"], budget["steps"], best) + "\n\n" + diagnostics_table(summary)
    report = {"budget": args.budget, "extractor": extractor.name, "samples": budget["samples"], "seeds": budget["seeds"],
              "steps": {ds: budget["steps"].get(ds) or "preset" for ds in budget["datasets"]}, "seconds": time.time() - start, "runs": raw, "summary": summary}
    print(json.dumps(report, indent=2))
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(md + "\n")
    d = budget["datasets"][0]
    get = lambda r, k: summary[d].get(r, {}).get(k, {}).get("mean", float("nan"))  # noqa: E731
    parts = [(("generation", "rf"), f"FID generation {get('generation', 'fid'):.2f} vs rf {get('rf', 'fid'):.2f}"),
             (("representation", "simclr"), f"probe representation {get('representation', 'probe'):.3f} vs simclr "
                                             f"{get('simclr', 'probe'):.3f}"),
             (("joint", "classifier"), f"accuracy joint {get('joint', 'accuracy_best'):.3f} vs classifier "
                                       f"{get('classifier', 'accuracy_best'):.3f}")]
    said = [text for recipes, text in parts if any(r in summary[d] for r in recipes)]  # the claims that ran
    print(f"paper_claims ({args.budget}, {time.time() - start:.0f} s): {d} " + "; ".join(said))


if __name__ == "__main__":
    main()
