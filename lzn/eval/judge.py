"""A judge for conditional samples: a classifier trained on real data, independent of the model judged
(``class_consistency`` and the caption checks take it as ``images -> class indices``, method.md §8.3).

:func:`pixel_judge`: multinomial logistic regression on standardised pixels, fitted full-batch with L-BFGS:
deterministic, a few seconds on digits (98% test accuracy), enough to tell a generated "three" from a
"seven". :func:`classifier_judge`: a trained network classifier (``head(encoder(x))``, the ``classifier``
baseline's, which a run writes to ``RUN/classifier`` with :func:`save_classifier`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn.atomic import atomic_write_bytes, atomic_write_text
from lzn.models import build
from lzn.models.registry import build_spec

CLASSIFIER_FORMAT = "lzn-classifier/1"


@torch.no_grad()
def _standardise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (x.flatten(1).double() - mean) / std  # (N, D)


def pixel_judge(images: Tensor, labels: Tensor, num_classes: int | None = None, *, weight_decay: float = 1e-3,
                iterations: int = 200) -> Callable[[Tensor], Tensor]:
    """Fit on (N, C, H, W) images in [-1, 1] with labels (N,); returns ``judge(images) -> (B,) int64``."""
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"pixel_judge needs images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    flat = images.detach().cpu().flatten(1).double()  # (N, D)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-3)
    x, y = _standardise(images.cpu(), mean, std), labels.cpu().long()
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)  # (D, K)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        with torch.enable_grad():
            loss = F.cross_entropy(x @ w + b, y) + weight_decay * w.pow(2).sum()
            loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_, b_ = w.detach(), b.detach()

    def judge(batch: Tensor) -> Tensor:
        return (_standardise(batch.detach().cpu(), mean, std) @ w_ + b_).argmax(dim=1)  # (B,)

    return judge


def save_classifier(encoder: nn.Module, head: nn.Linear, directory: str | os.PathLike[str]) -> Path:
    """Write the classifier ``head(encoder(x))`` to ``directory`` as ``save_pretrained`` writes a model:
    ``config.json`` (the encoder's ``lzn.models.build`` name and arguments, the head's shape, the weights'
    SHA-256) and ``model.safetensors``, each atomically; returns the folder."""
    from safetensors.torch import save as serialise

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    net = nn.ModuleDict({"encoder": encoder, "head": head})
    blob = serialise({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    config = {"format": CLASSIFIER_FORMAT, "encoder": build_spec(encoder, "encoder"),
              "head": {"in_features": head.in_features, "out_features": head.out_features},
              "weights_sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write_bytes(out / "model.safetensors", blob)
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    return out


def classifier_judge(directory: str | os.PathLike[str], map_location: str | torch.device = "cpu", *,
                     batch_size: int = 2000) -> Callable[[Tensor], Tensor]:
    """The classifier in ``directory`` (written by :func:`save_classifier`) on ``map_location``, in eval mode,
    as a judge: images (B, C, H, W) in [-1, 1] -> (B,) int64 class indices on the CPU (the argmax of its
    logits, in chunks of ``batch_size`` images)."""
    from safetensors.torch import load

    src = Path(directory)
    cfg_path, w_path = src / "config.json", src / "model.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ValueError(f"{p} is missing: a saved classifier holds config.json and model.safetensors "
                             "(a 'classifier' run writes them to RUN/classifier when training finishes)")
    config = json.loads(cfg_path.read_text())
    if not isinstance(config, dict) or config.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{cfg_path} is not a saved classifier (expected format {CLASSIFIER_FORMAT!r})")
    blob = w_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != config.get("weights_sha256"):
        raise ValueError(f"{w_path} does not match the checksum in config.json: the weights are corrupted or truncated")
    head = config["head"]
    net = nn.ModuleDict({"encoder": build(config["encoder"]["name"], **config["encoder"]["kwargs"]),
                         "head": nn.Linear(head["in_features"], head["out_features"])})
    net.load_state_dict(load(blob), strict=True)
    net = net.to(map_location).eval()
    dev = torch.device(map_location)

    @torch.no_grad()
    def judge(images: Tensor) -> Tensor:
        return torch.cat([net["head"](net["encoder"](c.to(dev))).argmax(1).cpu()  # (b, K) -> (b,)
                          for c in images.split(batch_size)])

    return judge
