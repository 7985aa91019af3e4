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


def evaluate_model(model: LatentZoningNetwork, train: ImageDataset, test: ImageDataset | None, *,
                   extractor: Any = None, num_samples: int = 1000, sampler: str = "euler",
                   sampler_steps: int | None = 20, eval_batch_size: int = 2000,
                   alphas: tuple[float, ...] = (0.0, 0.5, 1.0), recon_images: int = 64,
                   seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The metrics that apply to ``model``; ``test`` None means figures on held-out data are skipped
    (training-set figures are named as such). ``extractor`` None skips sample-quality metrics."""
    held = test if test is not None else None
    out: dict[str, Any] = {"evaluated_on": "test" if held is not None else "train"}
    data = held if held is not None else train
    if model.decoder is not None and extractor is not None:
        fake = generate_like(model, num_samples, train.labels, sampler=sampler, steps=sampler_steps, seed=seed,
                             progress=progress)
        real = data.images[:num_samples]
        out["generation"] = {**generation_metrics(real, fake, extractor, kid_subset_size=min(1000, len(real)),
                                                  seed=seed), "sampler": sampler, "sampler_steps": sampler_steps}
    if model.label_anchors is not None and model.encoder is not None and data.labels is not None:
        contexts = ("batch", "reference") if model.reference is not None else ("batch",)
        rows = accuracy_sweep(model, data.images, data.labels, alphas=alphas, batch_sizes=(eval_batch_size,),
                              contexts=contexts, seed=seed)
        out["classification"] = {"split": out["evaluated_on"], "num_images": len(data), "sweep": rows}
    if model.decoder is not None:
        n = min(recon_images, len(train))
        err, _ = reconstruction_error(model, train.images[:n], train.labels[:n] if train.labels is not None else None,
                                      sampler=sampler, steps=sampler_steps, seed=seed)
        out["reconstruction"] = {"l2_per_image": err, "num_images": n, "split": "train", "sampler": sampler}
    if model.encoder is not None and held is not None and held.labels is not None and train.labels is not None:
        feats = model.encoder.features
        tr = extract_features(feats, train.images, device=model.device)
        te = extract_features(feats, held.images, device=model.device)
        out["representation"] = {"knn_accuracy": knn_accuracy(tr, train.labels, te, held.labels),
                                 "probe_accuracy": linear_probe_accuracy(tr, train.labels, te, held.labels),
                                 "features": "backbone"}
    if model.encoder is not None and len(data) >= 2:  # do the zones look as the method promises? (method.md §1.4)
        out["zones"] = zone_diagnostics(model, data.images,
                                        data.labels if model.label_anchors is not None else None,
                                        batch_size=eval_batch_size, seed=seed)
    return out
