"""Every metric that applies to a trained model, in one call (``lzn evaluate``): sample quality
(FID, KID, precision/recall on a named extractor), classification sweeps (alpha x context), the
reconstruction error, representation probes and zone diagnostics. Each family runs only where the model has the parts
it needs. Functions of (model, data) -> a JSON-serialisable dict; no recipe (method.md §8)."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from lzn.data import ImageDataset, ShardedDataset
from lzn.eval.diagnostics import zone_diagnostics
from lzn.eval.fid import generation_metrics
from lzn.eval.probe import extract_features, knn_accuracy, linear_probe_accuracy
from lzn.eval.results import RETRIEVAL_FIGURES
from lzn.eval.tasks import accuracy_sweep, median_l2, reconstruction_error
from lzn.eval.text import RetrievalSettings, retrieval_section
from lzn.models import LatentZoningNetwork
from lzn.models.outputs import Context


@torch.no_grad()
def generate_like(model: LatentZoningNetwork, num: int, labels: torch.Tensor | None, *, sampler: str = "euler",
                  steps: int | None = 20, batch_size: int = 500, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """``num`` samples (CPU); class-conditional with classes drawn at the frequencies of ``labels`` when the
    decoder or label anchors know classes, else unconditional."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    k = model.num_classes
    cls = None
    if k and labels is not None:
        freq = torch.bincount(labels, minlength=k).double()
        cls = torch.multinomial(freq, num, replacement=True, generator=torch.Generator().manual_seed(seed))
    out = []
    for start in tqdm(range(0, num, batch_size), desc="generate", disable=not progress or num <= batch_size):
        n = min(batch_size, num - start)
        lab = None if cls is None else cls[start:start + n].tolist()
        res = model.generate(num=None if lab is not None else n, labels=lab, sampler=sampler, steps=steps,
                             generator=gen)
        out.append(res.images.clamp(-1, 1).cpu())
    return torch.cat(out)


ZONE_IMAGES = 2000  # images of the zone diagnostics (a seeded subset of larger sets)

METRICS = ("fid", "kid", "pr", "recon", "accuracy", "probe", "knn", "zones", "retrieval")
"""Metric names of ``evaluate_model(metrics=...)`` and ``lzn evaluate --metrics`` (pr = precision/recall;
retrieval = image-text recall@1/5 and prompt accuracy of a model with a text type)."""


def check_metrics(metrics: Any) -> tuple[str, ...]:
    """``metrics`` (a comma-separated string or a sequence of names) -> a tuple of known names."""
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    if not names or any(not isinstance(m, str) or not m for m in names):
        raise ValueError(f"metrics must be a non-empty list of names from {', '.join(METRICS)}, got {metrics!r}")
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; expected names from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


Data = ImageDataset | ShardedDataset


def first_images(data: Data, n: int) -> torch.Tensor:
    """The first ``n`` images (n, C, H, W) of an in-memory or sharded set (a sharded one reads only those)."""
    return data.batch(torch.arange(min(n, len(data))))[0]


def in_memory(data: Data) -> ImageDataset:
    """``data`` itself, or a sharded split decoded into memory."""
    return data if isinstance(data, ImageDataset) else data.load()


def _one_class(labels: torch.Tensor, what: str) -> dict[str, str]:
    """A ``note`` when ``labels`` hold a single class: every prediction is then right, whatever the model."""
    if len(torch.unique(labels)) > 1:
        return {}
    return {"note": f"the {what} hold one class, so any classifier scores 1.0: the figure says nothing"}


def evaluate_model(model: LatentZoningNetwork, train: Data, test: Data | None, *,
                   extractor: Any = None, num_samples: int = 1000, sampler: str = "euler",
                   sampler_steps: int | None = 20, eval_batch_size: int = 2000,
                   alphas: tuple[float, ...] = (0.0, 0.5, 1.0), batch_sizes: tuple[int, ...] | None = None,
                   recon_images: int = 64, metrics: Any = None, seed: int = 0,
                   retrieval: RetrievalSettings | None = None, progress: bool = True,
                   partitions: int = 0) -> dict[str, Any]:
    """The metrics that apply to ``model`` (all of them, or those named in ``metrics``, see ``METRICS``);
    ``test`` None means figures on held-out data are skipped (training-set figures are named as such).
    ``extractor`` None skips sample-quality metrics. ``batch_sizes``: evaluation batches of the accuracy
    sweep's batch protocol (default: ``eval_batch_size`` alone); ``partitions`` > 0 adds each batch row's accuracy
    over that many random partitions of the images (``lzn.eval.partition_accuracy``). ``retrieval``: how held-out image-text pairs
    are drawn and scored (a text run's settings; default ``RetrievalSettings()``), in chunks of
    ``eval_batch_size`` queries (method.md §12.8)."""
    wanted = set(METRICS if metrics is None else check_metrics(metrics))
    held = test if test is not None else None
    out: dict[str, Any] = {"evaluated_on": "test" if held is not None else "train"}
    data = held if held is not None else train
    bar = tqdm(total=6, desc="evaluate", disable=not progress)

    def done(stage: str) -> None:
        bar.set_postfix_str(stage)
        bar.update(1)

    if model.decoder is not None and extractor is not None and wanted & {"fid", "kid", "pr"}:
        fake = generate_like(model, num_samples, train.labels, sampler=sampler, steps=sampler_steps, seed=seed,
                             progress=progress)
        real = first_images(data, num_samples)
        gen = generation_metrics(real, fake, extractor, kid_subset_size=min(1000, len(real)), seed=seed)
        keys = {"fid": ("fid",), "kid": ("kid_mean", "kid_std"), "pr": ("precision", "recall")}
        unwanted = {k for m, ks in keys.items() if m not in wanted for k in ks}
        gen = {k: v for k, v in gen.items() if k not in unwanted}
        out["generation"] = {**gen, "sampler": sampler, "sampler_steps": sampler_steps, "split": out["evaluated_on"],
                             "seed": seed}
    done("generation")
    if "accuracy" in wanted and model.label_anchors is not None and model.encoder is not None \
            and data.labels is not None:
        contexts: tuple[Context, ...] = ("batch", "reference") if model.reference is not None else ("batch",)
        held_in = in_memory(data)  # the sweep reads the evaluated split many times
        rows = accuracy_sweep(model, held_in.images, data.labels, alphas=alphas,
                              batch_sizes=tuple(batch_sizes or (eval_batch_size,)), contexts=contexts, seed=seed,
                              partitions=partitions)
        out["classification"] = {"split": out["evaluated_on"], "num_images": len(data), "sweep": rows,
                                 **_one_class(data.labels, "evaluated images")}
    done("accuracy")
    if "recon" in wanted and model.decoder is not None:
        n = min(recon_images, len(train))
        images = first_images(train, n)
        err, rec = reconstruction_error(model, images, train.labels[:n] if train.labels is not None else None,
                                        sampler=sampler, steps=sampler_steps, seed=seed)
        out["reconstruction"] = {"l2_per_image": err, "l2_median": median_l2(images, rec), "num_images": n,
                                 "split": "train", "sampler": sampler}
    done("reconstruction")
    if wanted & {"probe", "knn"} and model.encoder is not None and held is not None and held.labels is not None \
            and train.labels is not None:
        rep: dict[str, Any] = {"features": "backbone", "split": out["evaluated_on"]}
        for kind, fn in (("backbone", model.encoder.features), ("anchors", model.encoder)):
            tr = extract_features(fn, train if isinstance(train, ShardedDataset) else train.images, device=model.device)
            te = extract_features(fn, held if isinstance(held, ShardedDataset) else held.images, device=model.device)
            suffix = "" if kind == "backbone" else "_anchors"
            if "knn" in wanted:
                rep[f"knn_accuracy{suffix}"] = knn_accuracy(tr, train.labels, te, held.labels)
            if "probe" in wanted:
                rep[f"probe_accuracy{suffix}"] = linear_probe_accuracy(tr, train.labels, te, held.labels)
        out["representation"] = {**rep, **_one_class(train.labels, "training images")}
    done("representation")
    if "zones" in wanted and model.encoder is not None and len(data) >= 2:  # method.md §1.4
        keep = torch.arange(len(data))
        if isinstance(data, ShardedDataset) and len(data) > ZONE_IMAGES:  # zone_diagnostics' own seeded subset
            keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(int(seed)))[:ZONE_IMAGES].sort().values
        images, labels = data.batch(keep)
        out["zones"] = zone_diagnostics(model, images, labels if model.label_anchors is not None else None,
                                        batch_size=eval_batch_size, seed=seed, max_images=ZONE_IMAGES)
        out["zones"]["split"] = out["evaluated_on"]
    done("zones")
    if "retrieval" in wanted and "text" in model.data_types and model.encoder is not None:
        out["retrieval"] = {**retrieval_section(model, train, data, retrieval or RetrievalSettings(),
                                                batch_size=eval_batch_size), "split": out["evaluated_on"]}
    done("retrieval")
    bar.close()
    return out


GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "generation": {"fid": ("fid",), "kid": ("kid_mean", "kid_std"), "pr": ("precision", "recall")},
    "classification": {"accuracy": ("sweep",)},
    "reconstruction": {"recon": ("l2_per_image", "l2_median")},
    "representation": {"knn": ("knn_accuracy", "knn_accuracy_anchors"),
                       "probe": ("probe_accuracy", "probe_accuracy_anchors")},
    "zones": {"zones": ()},
    "retrieval": {"retrieval": RETRIEVAL_FIGURES},
    "text_to_image": {"consistency": ()},  # a training run's (lzn.eval.t2i_consistency), replaced as a whole
}
"""Each section of ``evaluate_model``'s dict, its metrics and the keys holding their values; every other key
of a section is a setting it was measured with (split, sampler, extractor, ...)."""


def _section(key: str) -> str:
    """``generation`` and ``generation:fid`` (a metric kept with its own settings) -> ``generation``."""
    return key.split(":", 1)[0]


def merge_results(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` (``evaluate_model``'s dict) merged into an earlier one by metric: what ``new`` measured
    replaces the earlier figure, everything else is kept with the settings it was measured with. Within a
    section (e.g. generation: fid, kid, pr) a kept metric measured with other settings moves to its own
    entry ``SECTION:METRIC``; accuracy sweeps keep earlier rows of other (alpha, batch, context)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in old.items()}
    for key, section in out.items():  # older files: the split each section was measured on, made explicit
        if _section(key) in GROUPS and isinstance(section, dict) and "split" not in section:
            section["split"] = old.get("evaluated_on")
    for key, section in new.items():
        if key == "raw_weights":
            out[key] = merge_results(out.get(key) or {}, section)
            continue
        if key not in GROUPS:
            out[key] = section
            continue
        groups = GROUPS[key]
        metric_keys = {k for keys in groups.values() for k in keys}
        now = {m for m, keys in groups.items() if not keys or any(k in section for k in keys)}
        merged = dict(section)
        for earlier in [k for k in out if _section(k) == key]:  # the section and its split-off entries
            before = out.pop(earlier)
            if not isinstance(before, dict):
                continue
            kept = {m: keys for m, keys in groups.items() if m not in now and keys and any(k in before for k in keys)}
            settings = {k: v for k, v in before.items() if k not in metric_keys}
            if key == "classification" and settings == {k: v for k, v in section.items() if k not in metric_keys}:
                fresh = {(r["alpha"], r["batch_size"], r["context"]) for r in section.get("sweep", [])}
                merged["sweep"] = [r for r in before.get("sweep", []) if (r["alpha"], r["batch_size"], r["context"])
                                   not in fresh] + list(section.get("sweep", []))
            for metric, keys in kept.items():
                values = {k: before[k] for k in keys if k in before}
                if settings == {k: v for k, v in section.items() if k not in metric_keys}:
                    merged.update(values)
                else:
                    out[f"{key}:{metric}"] = {**values, **settings}
        out[key] = merged
    if "evaluated_on" in new:
        out["evaluated_on"] = new["evaluated_on"]
    return out


def _generation_rows(g: dict[str, Any], split: str) -> list[tuple[str, str, str]]:
    on = f"{g['extractor']}, {g['num_fake']} samples vs {g['num_real']} {g.get('split', split)} images"
    rows = []
    for key, name, fmt in (("fid", "FID", ".2f"), ("kid_mean", "KID", ".4f"), ("precision", "precision", ".3f"),
                           ("recall", "recall", ".3f")):
        if key in g:
            rows.append((name, f"{g[key]:{fmt}}", on + (f", sd {g['kid_std']:.4f}" if key == "kid_mean" else "")))
    return rows


def metric_rows(results: dict[str, Any], split: str | None = None) -> list[tuple[str, str, str]]:
    """``evaluate_model``'s dict -> (metric, value, what it was measured on) rows of the printed table; a
    ``raw_weights`` section (the live weights beside the EMA ones) gives rows named "raw weights: ..."."""
    split, rows = split or results.get("evaluated_on") or "test", []
    for key in [k for k in results if _section(k) == "generation"]:
        rows += _generation_rows(results[key], split)
    if "classification" in results:
        c = results["classification"]
        for row in c.get("sweep", []):
            if row["alpha"] is None:  # a classifier without latents
                rows.append(("accuracy", f"{row['accuracy']:.4f}",
                             f"{c['num_images']} {c.get('split', split)} images, {row['context']}" + _note(c)))
                continue
            where = "reference bank" if row["context"] == "reference" else f"batches of {row['batch_size']}"
            p = row.get("partitions")
            over = "" if p is None else (f"; {p['mean']:.4f} +- {p['sd']:.4f} over {p['partitions']} random "
                                         "partitions into batches")
            rows.append((f"accuracy (alpha {row['alpha']:g})", f"{row['accuracy']:.4f}",
                         f"{c['num_images']} {c.get('split', split)} images, {where}" + over + _note(c)))
    if "reconstruction" in results:
        r = results["reconstruction"]
        median = f"; median image {r['l2_median']:.4f}" if "l2_median" in r else ""
        rows.append(("reconstruction L2", f"{r['l2_per_image']:.4f}",
                     f"per image, {r['num_images']} training images{median}"))
    for section in [k for k in results if _section(k) == "representation"]:
        rep = results[section]
        for key, name in (("knn_accuracy", "kNN"), ("probe_accuracy", "linear probe"),
                          ("knn_accuracy_anchors", "kNN (anchors)"),
                          ("probe_accuracy_anchors", "linear probe (anchors)")):
            if key in rep:
                rows.append((name, f"{rep[key]:.4f}", f"{rep.get('split', split)} images, "
                             + ("anchor" if "anchors" in key else "backbone") + " features" + _note(rep)))
    if "zones" in results:
        z = results["zones"]
        rows.append(("zones: KS vs N(0, 1)", f"{z['latent_ks_mean']:.3f}",
                     f"|mean| {z['latent_mean_norm']:.3f}, max |Cov - I| {z['latent_cov_max_abs_dev']:.3f}"))
        for key, how in (("round_trip", "reverse Euler"), ("round_trip_logsnr", "log-SNR DPM-Solver")):
            for k, v in z.get(key, {}).items():
                rows.append((f"zones: round trip {k}" + ("" if key == "round_trip" else " (log-SNR back)"), f"{v:.3f}",
                             f"latents flowed back ({how}) to their own anchor"
                             + (f", anchor sets of {z['anchor_set']}" if "anchor_set" in z else "")))
        if z.get("label_zone_fraction") is not None:
            rows.append(("zones: in label zone", f"{z['label_zone_fraction']:.3f}", "image latents in their label's zone"))
    if "retrieval" in results:
        rows += _retrieval_rows(results["retrieval"], split)
    if "text_to_image" in results:
        t = results["text_to_image"]
        rows += [(f"text -> image: {k.removeprefix('t2i_').replace('_', ' ')}", f"{v:.4f}",
                  f"samples of {t.get('split', split)} captions: a pixel classifier and attribute thresholds "
                  "of the training set judge them")
                 for k, v in t.items() if k != "split" and isinstance(v, (int, float))]
    if "raw_weights" in results:
        rows += [(f"raw weights: {name}", value, detail) for name, value, detail in metric_rows(results["raw_weights"], split)]
    return rows


def _retrieval_rows(r: dict[str, Any], split: str) -> list[tuple[str, str, str]]:
    on = (f"{int(r['pairs'])} {r.get('split', split)} pairs, {int(r['distinct_captions'])} distinct "
          f"{'composed ' if r.get('captions') == 'composed' else ''}captions")
    rows = [(f"{name} recall@{k}", f"{r[f'{key}_recall@{k}']:.4f}",  # the note on the figures it names
             on + (_note(r) if f"{name} recall@{k}" in r.get("note", "") else ""))
            for key, name in (("i2t", "image -> text"), ("t2i", "text -> image")) for k in (1, 5)
            if f"{key}_recall@{k}" in r]
    if "prompt_accuracy" in r:
        rows.append(("prompt accuracy", f"{r['prompt_accuracy']:.4f}",
                     f"{r['prompt_images']} {r.get('split', split)} images, prompt {r['prompt']!r}"))
    if rows and str(r.get("settings", "")).startswith("defaults"):  # not a run's protocol: say so once
        name, value, detail = rows[0]
        rows[0] = (name, value, f"{detail}; settings: {r['settings']}")
    return rows


def _note(section: dict[str, Any]) -> str:
    """A section's ``note`` (a figure that says little, e.g. with one class), as a suffix of its detail."""
    return f" (note: {section['note']})" if section.get("note") else ""
