"""Every metric that applies to a trained model, in one call (``lzn evaluate``): sample quality
(FID, KID, precision/recall on a named extractor), classification sweeps (alpha x context), the
reconstruction error, representation probes and zone diagnostics. Each family runs only where the model has the parts
it needs. Functions of (model, data) -> a JSON-serialisable dict; no recipe (method.md §8)."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from lzn.data import ImageDataset
from lzn.eval.diagnostics import zone_diagnostics
from lzn.eval.fid import generation_metrics
from lzn.eval.probe import extract_features, knn_accuracy, linear_probe_accuracy
from lzn.eval.tasks import accuracy_sweep, reconstruction_error
from lzn.models import LatentZoningNetwork


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


METRICS = ("fid", "kid", "pr", "recon", "accuracy", "probe", "knn", "zones")
"""Metric names of ``evaluate_model(metrics=...)`` and ``lzn evaluate --metrics`` (pr = precision/recall)."""


def check_metrics(metrics: Any) -> tuple[str, ...]:
    """``metrics`` (a comma-separated string or a sequence of names) -> a tuple of known names."""
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    if not names or any(not isinstance(m, str) or not m for m in names):
        raise ValueError(f"metrics must be a non-empty list of names from {', '.join(METRICS)}, got {metrics!r}")
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; expected names from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def evaluate_model(model: LatentZoningNetwork, train: ImageDataset, test: ImageDataset | None, *,
                   extractor: Any = None, num_samples: int = 1000, sampler: str = "euler",
                   sampler_steps: int | None = 20, eval_batch_size: int = 2000,
                   alphas: tuple[float, ...] = (0.0, 0.5, 1.0), batch_sizes: tuple[int, ...] | None = None,
                   recon_images: int = 64, metrics: Any = None, seed: int = 0,
                   progress: bool = True) -> dict[str, Any]:
    """The metrics that apply to ``model`` (all of them, or those named in ``metrics``, see ``METRICS``);
    ``test`` None means figures on held-out data are skipped (training-set figures are named as such).
    ``extractor`` None skips sample-quality metrics. ``batch_sizes``: evaluation batches of the accuracy
    sweep's batch protocol (default: ``eval_batch_size`` alone)."""
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
        real = data.images[:num_samples]
        gen = generation_metrics(real, fake, extractor, kid_subset_size=min(1000, len(real)), seed=seed)
        keys = {"fid": ("fid",), "kid": ("kid_mean", "kid_std"), "pr": ("precision", "recall")}
        unwanted = {k for m, ks in keys.items() if m not in wanted for k in ks}
        gen = {k: v for k, v in gen.items() if k not in unwanted}
        out["generation"] = {**gen, "sampler": sampler, "sampler_steps": sampler_steps}
    done("generation")
    if "accuracy" in wanted and model.label_anchors is not None and model.encoder is not None \
            and data.labels is not None:
        contexts = ("batch", "reference") if model.reference is not None else ("batch",)
        rows = accuracy_sweep(model, data.images, data.labels, alphas=alphas,
                              batch_sizes=tuple(batch_sizes or (eval_batch_size,)), contexts=contexts, seed=seed)
        out["classification"] = {"split": out["evaluated_on"], "num_images": len(data), "sweep": rows}
    done("accuracy")
    if "recon" in wanted and model.decoder is not None:
        n = min(recon_images, len(train))
        err, _ = reconstruction_error(model, train.images[:n], train.labels[:n] if train.labels is not None else None,
                                      sampler=sampler, steps=sampler_steps, seed=seed)
        out["reconstruction"] = {"l2_per_image": err, "num_images": n, "split": "train", "sampler": sampler}
    done("reconstruction")
    if wanted & {"probe", "knn"} and model.encoder is not None and held is not None and held.labels is not None \
            and train.labels is not None:
        rep: dict[str, Any] = {"features": "backbone"}
        for kind, fn in (("backbone", model.encoder.features), ("anchors", model.encoder)):
            tr = extract_features(fn, train.images, device=model.device)
            te = extract_features(fn, held.images, device=model.device)
            suffix = "" if kind == "backbone" else "_anchors"
            if "knn" in wanted:
                rep[f"knn_accuracy{suffix}"] = knn_accuracy(tr, train.labels, te, held.labels)
            if "probe" in wanted:
                rep[f"probe_accuracy{suffix}"] = linear_probe_accuracy(tr, train.labels, te, held.labels)
        out["representation"] = rep
    done("representation")
    if "zones" in wanted and model.encoder is not None and len(data) >= 2:  # method.md §1.4
        out["zones"] = zone_diagnostics(model, data.images,
                                        data.labels if model.label_anchors is not None else None,
                                        batch_size=eval_batch_size, seed=seed)
    done("zones")
    bar.close()
    return out


def metric_rows(results: dict[str, Any], split: str | None = None) -> list[tuple[str, str, str]]:
    """``evaluate_model``'s dict -> (metric, value, what it was measured on) rows of the printed table; a
    ``raw_weights`` section (the live weights beside the EMA ones) gives rows named "raw weights: ..."."""
    split, rows = split or results["evaluated_on"], []
    if "generation" in results:
        g = results["generation"]
        on = f"{g['extractor']}, {g['num_fake']} samples vs {g['num_real']} {split} images"
        for key, name, fmt in (("fid", "FID", ".2f"), ("kid_mean", "KID", ".4f"), ("precision", "precision", ".3f"),
                               ("recall", "recall", ".3f")):
            if key in g:
                rows.append((name, f"{g[key]:{fmt}}", on + (f", sd {g['kid_std']:.4f}" if key == "kid_mean" else "")))
    for row in results.get("classification", {}).get("sweep", []):
        where = "reference bank" if row["context"] == "reference" else f"batches of {row['batch_size']}"
        rows.append((f"accuracy (alpha {row['alpha']:g})", f"{row['accuracy']:.4f}",
                     f"{results['classification']['num_images']} {split} images, {where}"))
    if "reconstruction" in results:
        r = results["reconstruction"]
        rows.append(("reconstruction L2", f"{r['l2_per_image']:.4f}", f"per image, {r['num_images']} training images"))
    rep = results.get("representation", {})
    for key, name in (("knn_accuracy", "kNN"), ("probe_accuracy", "linear probe"),
                      ("knn_accuracy_anchors", "kNN (anchors)"), ("probe_accuracy_anchors", "linear probe (anchors)")):
        if key in rep:
            rows.append((name, f"{rep[key]:.4f}", f"{split} images, " + ("anchor" if "anchors" in key else "backbone")
                         + " features"))
    if "zones" in results:
        z = results["zones"]
        rows.append(("zones: KS vs N(0, 1)", f"{z['latent_ks_mean']:.3f}",
                     f"|mean| {z['latent_mean_norm']:.3f}, max |Cov - I| {z['latent_cov_max_abs_dev']:.3f}"))
        for k, v in z["round_trip"].items():
            rows.append((f"zones: round trip {k}", f"{v:.3f}", "latents flowed back to their own anchor"))
        if z.get("label_zone_fraction") is not None:
            rows.append(("zones: in label zone", f"{z['label_zone_fraction']:.3f}", "image latents in their label's zone"))
    if "raw_weights" in results:
        rows += [(f"raw weights: {name}", value, detail) for name, value, detail in metric_rows(results["raw_weights"], split)]
    return rows
