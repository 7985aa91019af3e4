"""Why does LZN lose to its baselines? One factor at a time from a preset, LZN and baseline at the same budget.

Each study trains its LZN recipe(s) and its baseline on a preset (digits by default, ``--preset fashion``
for the confirmation), once per (variant, recipe, seed), and prints a table: mean +- sample sd over
seeds, the difference to the baseline, the change against the preset row (an effect counts when it
exceeds twice the larger seed sd), and the zone diagnostics of the LZN model (round trip at the flow's
20 steps, fraction of test latents in their label zone, anchor norm and nearest-anchor distance).

Studies (hypotheses H1-H14; their findings: the README sections from "Why LZN lost on classification" on):
  classification   joint (+ nogen on the preset and combination rows) vs classifier: test accuracy at
                   alpha 0 and 1, EMA and raw weights, evaluation anchor set = the training batch
  representation   representation vs simclr: kNN and linear probe of the encoder's features
  text             text vs clip (same encoders): recall@1 both ways and prompt classification

Every finished run is cached in its folder under ``--out`` (the trainer's own resume, plus
``ablate-eval.json`` for this script's measurements), so an interrupted study restarts where it was;
``--jobs 2`` runs two single-threaded trainings side by side (both cores of a small machine).

    python experiments/ablate.py --study classification --seeds 0 1 2 --jobs 2
    python experiments/ablate.py --study classification --variants preset dropout --seeds 0   # a quick look
    python experiments/ablate.py --study classification --preset fashion --variants preset best --best simplex log
    python experiments/ablate.py --study classification --preset fashion --variants simplex+log simplex+log+centre \
        --recipes nogen --seeds 0   # two combinations, screened on the cheaper no-gen recipe

The best row of each combination has its own runs (``best-simplex+log``), so rows of other combinations sit beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from lzn import LatentZoningNetwork
from lzn.atomic import atomic_write_text
from lzn.data import load_split
from lzn.eval import accuracy, zone_diagnostics
from lzn.recipes.runner import resolve_config, train
from lzn.training.checkpoint import live_weights

from common import budget_folder

ALPHAS = (0.0, 0.5, 1.0, 1.2)  # the paper's sweep reaches 1.2 (method.md §8.2)


@dataclass(frozen=True)
class Variant:
    """One row: ``both`` applies to LZN and baseline alike (the same networks and budget), ``lzn`` to the
    LZN recipes only (a setting the baseline does not have)."""

    hypothesis: str
    what: str
    both: tuple[str, ...] = ()
    lzn: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study:
    lzn: tuple[str, ...]  # LZN recipes trained on every row
    baseline: str
    extra: tuple[str, ...]  # LZN recipes trained only on the rows in ``extra_rows``
    extra_rows: tuple[str, ...]
    metrics: dict[str, str]  # metric key -> label, measured for LZN and baseline alike
    variants: dict[str, Variant] = field(default_factory=dict)
    base: tuple[str, ...] = ()  # LZN settings of the study's starting point, applied before every row's own


# rows that mean the same in every study (settings for LZN and baseline alike)
PRESET = Variant("-", "the preset as it is")
LATENT = Variant("H2", "latent dimension x4", both=("latent_dim=64",))
DROPOUT = Variant("H4", "encoder dropout 0.15", both=("encoder.kwargs.dropout=0.15",))
HEAD_NORM = Variant("H5", "anchor head ends in GroupNorm (anchors of norm ~sqrt(q))",
                    both=("encoder.kwargs.head_norm=true",))
STEPS = Variant("H6", "2x the steps", both=("train.steps={steps2}",))
COSINE = Variant("H12", "LR decays along a half cosine to 0 (train.lr_decay=cosine)", both=("train.lr_decay=cosine",))


def _batch(size: int) -> Variant:
    return Variant("H1", f"anchor set x2: batch {size} (same steps)", both=(f"batch_size={size}",))


CLASSIFICATION = Study(
    lzn=("joint",), baseline="classifier", extra=("nogen",), extra_rows=("preset", "best"),
    metrics={"acc_a0": "accuracy (alpha 0)", "acc_a1": "accuracy (alpha 1)"},
    # the presets before this study: the paper's probability-form loss and N(0, I) label anchors (the presets
    # now take log + simplex, the study's best row), pinned so that every row keeps its meaning and its cache
    # (and the training latents at alpha 1 for both losses, as the fashion preset had them before it took the
    # study's zone centres)
    base=("align_form=prob", "label_init=normal", "noise_scale=1.0", "align_noise_scale=null"),
    variants={
        "preset": Variant("-", "the preset before the study (prob-form loss, N(0, I) label anchors)"),
        "batch": _batch(512),
        "latent": LATENT,
        "paper_lr": Variant("H3", "paper's LR ratios 1:40:2 (encoder 5e-5, decoder 2e-3, label anchors 1e-4)",
                            lzn=("train.lr.encoder=5e-5", "train.lr.label_anchors=1e-4")),
        "label_lr": Variant("H3", "label-anchor LR = encoder LR (2e-3, not 1e-2)", lzn=("train.lr.label_anchors=2e-3",)),
        "freeze": Variant("H3", "decoder frozen after 30 % of the steps", lzn=("train.budgets.decoder={freeze}",)),
        "dropout": DROPOUT,
        "head_norm": HEAD_NORM,
        "steps": STEPS,
        "cosine": COSINE,
        "simplex": Variant("H8", "label anchors on a regular simplex", lzn=("label_init=simplex",)),
        "log": Variant("H9", "log-form alignment loss", lzn=("align_form=log",)),
        "train_alpha": Variant("H10", "training latents at alpha 0.5 (not 1)", lzn=("noise_scale=0.5",)),
        "centre": Variant("H10", "training latents at the zone centres (alpha 0, not 1)", lzn=("noise_scale=0.0",)),
        "align_centre": Variant("H10", "alignment latents at the zone centres, the decoder's at alpha 1",
                                lzn=("align_noise_scale=0.0",)),
        "balanced": Variant("H13", "class-balanced batches (every class in proportion in each batch)",
                            both=("data.balanced=true",)),
        "logsnr": Variant("H14", "image latents by DPM-Solver++ 3M on a log-SNR grid (flow.solver=dpm3_logsnr)",
                          lzn=("flow.solver=dpm3_logsnr",)),
    },
)

REPRESENTATION = Study(
    lzn=("representation",), baseline="simclr", extra=(), extra_rows=(),
    metrics={"knn_accuracy": "kNN accuracy", "probe_accuracy": "linear probe"},
    base=("encoder.kwargs.head_norm=false",),  # the digits preset before this study (it now takes the head)
    variants={
        "preset": Variant("-", "the preset before the study (no head normalisation)"),
        "batch": _batch(512),
        "latent": LATENT,
        "dropout": DROPOUT,
        "head_norm": HEAD_NORM,
        "steps": STEPS,
        "cosine": COSINE,
        "prob": Variant("H9", "probability-form alignment loss (preset: log)", lzn=("align_form=prob",)),
        "train_alpha": Variant("H10", "training latents at alpha 0 (preset 0.45)", lzn=("noise_scale=0.0",)),
        "logsnr": Variant("H14", "view-1 latents by DPM-Solver++ 3M on a log-SNR grid (preset: Euler)",
                          lzn=("flow.solver=dpm3_logsnr",)),
    },
)

TEXT = Study(
    lzn=("text",), baseline="clip", extra=(), extra_rows=(),
    metrics={"test_i2t_recall@1": "image->text R@1", "test_t2i_recall@1": "text->image R@1",
             "test_prompt_accuracy": "prompt accuracy"},
    # the digits preset before this study (training latents at alpha 0.45, no head normalisation; it now takes
    # the best row), pinned so that every row keeps its meaning and its cache
    base=("noise_scale=0.45", "encoder.kwargs.head_norm=false"),
    variants={
        "preset": Variant("-", "the preset before the study (alpha 0.45, no head normalisation)"),
        "batch": _batch(256),
        "latent": LATENT,
        "dropout": DROPOUT,
        "head_norm": HEAD_NORM,
        "steps": STEPS,
        "cosine": COSINE,
        "prob": Variant("H9", "probability-form alignment loss (preset: log)", lzn=("align_form=prob",)),
        "train_alpha": Variant("H10", "training latents at alpha 0 (before: 0.45)", lzn=("noise_scale=0.0",)),
        "no_decoder": Variant("H11", "alignment only: no image decoder sharing the encoder", lzn=("rf_weight=0",)),
        "logsnr": Variant("H14", "latents by DPM-Solver++ 3M on a log-SNR grid (flow.solver=dpm3_logsnr)",
                          lzn=("flow.solver=dpm3_logsnr",)),
    },
)

STUDIES = {"classification": CLASSIFICATION, "representation": REPRESENTATION, "text": TEXT}


def _fill(items: tuple[str, ...], steps: int) -> list[str]:
    """Settings with the budget-relative values filled in for a run of ``steps`` steps."""
    return [s.format(freeze=max(1, round(0.3 * steps)), steps2=2 * steps) for s in items]


def parts(variant: str, best: list[str]) -> list[str]:
    """The one-factor rows a row combines: 'best' is ``--best``; 'simplex+log' is simplex and log."""
    return list(best) if variant == "best" else variant.split("+")


def folder_name(variant: str, best: list[str]) -> str:
    """A combination's runs sit in ``best-a+b`` (whether named by --best or by 'a+b'), a one-factor row's in its name."""
    names = parts(variant, best)
    return f"best-{'+'.join(names)}" if variant == "best" or len(names) > 1 else variant


def run_sets(study: Study, variant: str, recipe: str, seed: int, preset: str, steps: int | None,
             best: list[str]) -> list[str]:
    """The --set items of one run: seed, budget, then the variant's settings for this recipe."""
    base = resolve_config(study.baseline, preset, sets=[f"train.steps={steps}"] if steps else None)
    budget = base.train.steps or 0
    sets = [f"train.seed={seed}", "train.progress=false"] + ([f"train.steps={steps}"] if steps else [])
    names = parts(variant, best)
    is_lzn = recipe != study.baseline
    if is_lzn:
        sets += list(study.base)
    for name in names:
        v = study.variants[name]
        sets += _fill(v.both, budget)
        if is_lzn:
            if recipe == "nogen":  # no decoder: its settings do not apply
                sets += [s for s in _fill(v.lzn, budget) if "decoder" not in s]
            else:
                sets += _fill(v.lzn, budget)
    return sets


# ---- measurements --------------------------------------------------------------------------------

def _raw_model(folder: Path) -> LatentZoningNetwork | None:
    """The exported model with the last checkpoint's live (not EMA) weights; None when they are the same."""
    live = live_weights(folder)
    if live is None:
        return None
    model = LatentZoningNetwork.from_pretrained(str(folder / "model"))
    for name, module in model.parts().items():
        module.load_state_dict(live[name])
    return model.eval()


@torch.no_grad()
def anchor_geometry(model: LatentZoningNetwork, images: torch.Tensor, batch: int) -> dict[str, float]:
    """Mean anchor norm and mean distance to the nearest other anchor over anchor sets of ``batch`` test
    images; the smallest distance between two label anchors (the narrowest class margin at t = 0)."""
    norms, nearest = [], []
    for chunk in images.split(batch):
        if chunk.shape[0] < 2:
            continue
        a = model.anchors(chunk.to(model.device)).double()  # (B, q)
        d = torch.cdist(a, a)
        d.fill_diagonal_(float("inf"))
        norms.append(a.norm(dim=1).mean().item())
        nearest.append(d.min(dim=1).values.mean().item())
    out = {"anchor_norm": statistics.fmean(norms), "anchor_nearest": statistics.fmean(nearest)}
    if model.label_anchors is not None:
        w = model.label_anchors.weight.double()
        d = torch.cdist(w, w)
        d.fill_diagonal_(float("inf"))
        out["label_anchor_min_dist"] = d.min().item()
    return out


def measure(study_name: str, recipe: str, folder: Path, preset: str, sets: list[str]) -> dict[str, Any]:
    """This script's figures of one finished run (cached in ``ablate-eval.json``)."""
    cache = folder / "ablate-eval.json"
    if cache.exists():
        return json.loads(cache.read_text())
    study = STUDIES[study_name]
    cfg = resolve_config(recipe, preset, sets=sets)
    results = json.loads((folder / "results.json").read_text())
    out: dict[str, Any] = {"results": results}
    if recipe == study.baseline:
        if study_name == "classification":
            out["acc_a0"] = out["acc_a1"] = results["test_accuracy"]  # a classifier has no alpha
        else:
            out.update({k: results[k] for k in study.metrics})
    else:
        test = load_split(cfg.data, cfg.data.test_split)
        model = LatentZoningNetwork.from_pretrained(str(folder / "model")).eval()
        batch = cfg.batch_size  # the evaluation anchor set = the training batch (the paper's protocol)
        if study_name == "classification":
            assert test.labels is not None
            for weights, m in (("ema", model), ("raw", _raw_model(folder))):
                if m is None:
                    continue
                for alpha in ALPHAS:
                    key = f"acc_a{alpha:g}" + ("" if weights == "ema" else "_raw")
                    out[key] = accuracy(m, test.images, test.labels, noise_scale=alpha, batch_size=batch,
                                        context="batch")
            out["acc_a0_reference"] = accuracy(model, test.images, test.labels, noise_scale=0.0, context="reference")
        else:
            out.update({k: results[k] for k in study.metrics})
        diag = zone_diagnostics(model, test.images, test.labels if model.label_anchors is not None else None,
                                batch_size=batch, step_factors=(1,))
        out["round_trip"] = diag["round_trip"]["x1"]
        out["round_trip_logsnr"] = diag["round_trip_logsnr"]["x1"]
        out["label_zone_fraction"] = diag["label_zone_fraction"]
        out.update(anchor_geometry(model, test.images, batch))
    atomic_write_text(cache, json.dumps(out, indent=2) + "\n")
    return out


def _as_before(cfg: Any) -> Any:
    """``cfg`` with ``head_norm: false`` dropped from the encoder's arguments: false is the network's default,
    so a run pinned to a preset from before the key existed resolves to the config it was trained with."""
    kwargs = getattr(getattr(cfg, "encoder", None), "kwargs", None)
    if isinstance(kwargs, dict) and kwargs.get("head_norm") is False:
        del kwargs["head_norm"]
    return cfg


def job(args: tuple[str, str, str, int, str, int | None, list[str], str]) -> tuple[str, str, int, dict[str, Any], float]:
    """Train (or resume, or skip when finished) one run and measure it; one thread per job."""
    study_name, variant, recipe, seed, preset, steps, best, out = args
    torch.set_num_threads(int(os.environ.get("ABLATE_THREADS", "1")))
    study = STUDIES[study_name]
    sets = run_sets(study, variant, recipe, seed, preset, steps, best)
    folder = Path(out) / budget_folder(preset, steps) / study_name / folder_name(variant, best) / f"{recipe}-s{seed}"
    start = time.time()
    cfg = _as_before(resolve_config(recipe, preset, sets=sets))
    train(recipe, cfg, folder)
    figures = {**measure(study_name, recipe, folder, preset, sets), **training_fit(folder)}
    return variant, recipe, seed, figures, time.time() - start


def training_fit(folder: Path, last: int = 5) -> dict[str, float]:
    """How well a run fits its training batches: the mean over its last ``last`` log lines of the fraction of
    training latents in their label zone (``assign``, LZN) or of the training accuracy (``train_acc``, the
    classifier); empty for a study whose recipes log neither. Low for LZN where the classifier is high: the
    alignment underfits, not overfits."""
    path = folder / "metrics.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    for key in ("assign", "train_acc"):
        values = [line[key] for line in lines if key in line][-last:]
        if values:
            return {"train_fit": statistics.fmean(values)}
    return {}


# ---- table -----------------------------------------------------------------------------------------

def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(study: Study, runs: dict[tuple[str, str], list[dict[str, Any]]], variants: list[str]) -> dict[str, Any]:
    """Per variant and recipe: mean and sd of each figure over seeds; the LZN - baseline difference; the
    change against the preset row and whether it counts (|change| > 2 x the larger sd)."""
    table: dict[str, Any] = {}
    for variant in variants:
        row: dict[str, Any] = {}
        for (v, recipe), results in runs.items():
            if v != variant:
                continue
            keys = sorted({k for r in results for k, x in r.items() if isinstance(x, (int, float))})
            row[recipe] = {k: dict(zip(("mean", "sd"), _stats([r[k] for r in results if k in r])), n=len(results))
                           for k in keys}
        table[variant] = row
    for variant, row in table.items():
        base = row.get(study.baseline, {})
        for recipe in (*study.lzn, *study.extra):
            if recipe not in row:
                continue
            for key in study.metrics:
                if key in row[recipe] and key in base:
                    row[recipe][key]["vs_baseline"] = row[recipe][key]["mean"] - base[key]["mean"]
                ref = table.get("preset", {}).get(recipe, {}).get(key)
                if variant != "preset" and ref and key in row[recipe]:
                    change = row[recipe][key]["mean"] - ref["mean"]
                    row[recipe][key]["vs_preset"] = change
                    row[recipe][key]["counts"] = abs(change) > 2 * max(ref["sd"], row[recipe][key]["sd"])
    return table


def describe(study: Study, variant: str, best: list[str]) -> tuple[str, str]:
    """(what, hypotheses) of a table row."""
    v = study.variants.get(variant)
    if v is not None:
        return v.what, v.hypothesis
    names = parts(variant, best)
    return (("best: " if variant == "best" else "") + " + ".join(names),
            "+".join(study.variants[b].hypothesis for b in names))


def markdown(study: Study, table: dict[str, Any], best: list[str]) -> str:
    def cell(stat: dict[str, Any] | None, key: str) -> str:
        if not stat or key not in stat:
            return "-"
        s = stat[key]
        return f"{s['mean']:.3f} +- {s['sd']:.3f}"

    def delta(stat: dict[str, Any] | None, key: str, what: str) -> str:
        if not stat or key not in stat or what not in stat[key]:
            return "-"
        mark = " *" if what == "vs_preset" and stat[key].get("counts") else ""
        return f"{stat[key][what]:+.3f}{mark}"

    lzn_recipes = [*study.lzn, *study.extra]
    lines = []
    head = ["variant", "hyp.", "what"]
    for key, label in study.metrics.items():
        head += [f"{r} {label}" for r in lzn_recipes] + [f"{study.baseline} {label}",
                                                         f"{study.lzn[0]} - {study.baseline}", "vs preset"]
    extra = {"acc_a0_raw": "raw weights (alpha 0)", "acc_a0_reference": "bank (alpha 0)", "train_fit": "training fit",
             "round_trip": "round trip", "round_trip_logsnr": "round trip (log-SNR back)",
             "label_zone_fraction": "in label zone", "anchor_norm": "anchor norm", "anchor_nearest": "nearest anchor"}
    extra = {k: label for k, label in extra.items() if any(k in row.get(study.lzn[0], {}) for row in table.values())}
    head += list(extra.values())
    base_fit = any("train_fit" in row.get(study.baseline, {}) for row in table.values())
    if base_fit:
        head.append(f"{study.baseline} training fit")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for variant, row in table.items():
        what, hyp = describe(study, variant, best)
        cells = [variant, hyp, what]
        for key in study.metrics:
            cells += [cell(row.get(r), key) for r in lzn_recipes] + [cell(row.get(study.baseline), key)]
            main = row.get(study.lzn[0])
            cells += [delta(main, key, "vs_baseline"), delta(main, key, "vs_preset")]
        main = row.get(study.lzn[0])
        cells += [cell(main, k) for k in extra]
        if base_fit:
            cells.append(cell(row.get(study.baseline), "train_fit"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compact_markdown(study: Study, table: dict[str, Any], best: list[str]) -> str:
    """The README's table: one row per variant, the LZN recipe(s) on the first metric with its change against
    the preset row (* when it counts) and the baseline beside it, then the zone diagnostics."""
    key = next(iter(study.metrics))
    lzn_recipes = [*study.lzn, *study.extra]
    extra = {"acc_a0_reference": "bank", "round_trip": "round trip", "round_trip_logsnr": "round trip (log-SNR back)",
             "anchor_norm": "anchor norm",
             "anchor_nearest": "nearest anchor"}
    head = ["row", "hyp.", "what", *[f"{r}" for r in lzn_recipes], "vs preset", study.baseline,
            f"{study.lzn[0]} - {study.baseline}"]
    extra = {k: v for k, v in extra.items() if any(k in row.get(study.lzn[0], {}) for row in table.values())}
    head += [f"{study.lzn[0]} {v}" for v in extra.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(stat: dict[str, Any] | None, k: str) -> str:
        return f"{stat[k]['mean']:.3f} +- {stat[k]['sd']:.3f}" if stat and k in stat else "-"

    for variant, row in table.items():
        main = row.get(study.lzn[0], {})
        change = main.get(key, {}).get("vs_preset")
        mark = "" if change is None else f"{change:+.3f}" + (" *" if main[key].get("counts") else "")
        diff = main.get(key, {}).get("vs_baseline")
        what, hyp = describe(study, variant, best)
        cells = [variant, hyp, what, *[fmt(row.get(r), key) for r in lzn_recipes],
                 mark or "-", fmt(row.get(study.baseline), key), "-" if diff is None else f"{diff:+.3f}"]
        cells += [fmt(main, k) for k in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=sorted(STUDIES), default="classification")
    parser.add_argument("--preset", choices=["digits", "fashion"], default="digits")
    parser.add_argument("--variants", nargs="*", default=None,
                        help="rows to run (default: every one-factor row); 'best' is the combination of --best, "
                             "'a+b' the combination of rows a and b")
    parser.add_argument("--best", nargs="*", default=[], help="the variants combined in the 'best' row")
    parser.add_argument("--recipes", nargs="*", default=None,
                        help="train only these recipes of each row (default: the study's LZN recipe(s), its "
                             "baseline, and the extra ones on the preset and best rows); e.g. nogen to screen cheaply")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None,
                        help="train.steps of every run (default: the preset's); its runs are cached in their own "
                             "folder, OUT/PRESET-<steps>steps")
    parser.add_argument("--jobs", type=int, default=1, help="trainings side by side, one thread each")
    parser.add_argument("--out", default="runs/ablate")
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    parser.add_argument("--md", default=None, help="also write the Markdown table here")
    parser.add_argument("--compact", action="store_true",
                        help="the Markdown table with the first metric only (the README's form)")
    args = parser.parse_args(argv)
    study = STUDIES[args.study]
    variants = args.variants if args.variants is not None else list(study.variants)
    unknown = [p for v in [*variants, *args.best] if v != "best" for p in v.split("+") if p not in study.variants]
    if unknown:
        parser.error(f"unknown variant(s) {unknown} for --study {args.study}; choose from {list(study.variants)} or best")
    if "best" in variants and not args.best:
        parser.error("the 'best' row needs --best VARIANT [VARIANT ...]")
    if not args.seeds or min(args.seeds) < 0:
        parser.error("--seeds needs at least one seed >= 0")
    if args.jobs < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--jobs and --steps must be >= 1")
    known = [*study.lzn, study.baseline, *study.extra]
    if args.recipes is not None and (not args.recipes or set(args.recipes) - set(known)):
        parser.error(f"--recipes: choose one or more of {known} for --study {args.study}, got {args.recipes}")
    jobs = []
    for variant in variants:
        combined = variant in study.extra_rows or "+" in variant  # combinations also train the extra recipes
        recipes = [*study.lzn, study.baseline] + (list(study.extra) if combined else [])
        if args.recipes is not None:
            recipes = [r for r in known if r in args.recipes]
        for recipe in recipes:
            v = study.variants.get(variant)
            if recipe == study.baseline and v is not None and variant != "preset" and not v.both:
                continue  # the baseline is unchanged by an LZN-only setting: its preset row stands
            for seed in args.seeds:
                jobs.append((args.study, variant, recipe, seed, args.preset, args.steps, args.best, args.out))
    for v in [*variants, *args.best]:  # a wrong setting is one error line now, not a traceback hours later
        for recipe in [*study.lzn, study.baseline]:
            resolve_config(recipe, args.preset, sets=run_sets(study, v, recipe, 0, args.preset, args.steps, args.best))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for variant, recipe, seed, figures, took in pool.map(job, jobs):
            runs.setdefault((variant, recipe), []).append(figures)
            seconds[variant] = seconds.get(variant, 0.0) + took
            print(f"done {variant}/{recipe}-s{seed} ({took:.0f} s)", file=sys.stderr, flush=True)
    # an LZN-only row is compared with the preset's baseline (same settings)
    for variant in variants:
        if (variant, study.baseline) not in runs and ("preset", study.baseline) in runs:
            runs[(variant, study.baseline)] = runs[("preset", study.baseline)]
    trained = [r for r in (*study.lzn, *study.extra) if any(rec == r for _, rec in runs)]
    if trained and trained[0] not in study.lzn:  # e.g. --recipes nogen: its table is nogen's
        study = replace(study, lzn=(trained[0],), extra=tuple(trained[1:]))
    table = summarise(study, runs, variants)
    md = compact_markdown(study, table, args.best) if args.compact else markdown(study, table, args.best)
    report = {"study": args.study, "preset": args.preset, "seeds": args.seeds, "steps": args.steps,
              "best": args.best, "table": table, "seconds": seconds, "wall_seconds": time.time() - start}
    text = json.dumps(report, indent=2)
    print(text)
    print(md)
    if args.json:
        atomic_write_text(Path(args.json), text + "\n")
    if args.md:
        atomic_write_text(Path(args.md), md + "\n")
    main_recipe = study.lzn[0]
    key = next(iter(study.metrics))
    if not any(main_recipe in row for row in table.values()):  # e.g. --recipes classifier: the baseline alone
        figures = ", ".join(f"'{v}' {row[study.baseline][key]['mean']:.3f}" for v, row in table.items()
                            if study.baseline in row)
        print(f"summary: ablate {args.study} on {args.preset} ({len(args.seeds)} seeds): {study.baseline} only: "
              f"{figures} ({key})")
        return 0
    best_row = max(table, key=lambda v: table[v].get(main_recipe, {}).get(key, {}).get("mean", -1.0))
    print(f"summary: ablate {args.study} on {args.preset} ({len(args.seeds)} seeds): best {main_recipe} row "
          f"'{best_row}' {table[best_row][main_recipe][key]['mean']:.3f} vs {study.baseline} "
          f"{table[best_row].get(study.baseline, {}).get(key, {}).get('mean', float('nan')):.3f} ({key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
