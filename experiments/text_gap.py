"""Where do text-to-image samples lose their caption's class? A diagnosis of finished ``text`` runs.

``experiments/text_digits.py`` finds that LZN's text-to-image samples follow the caption's class less
often than label-conditional samples follow their label. This script splits that figure into its parts,
on the held-out pairs of each run folder given (``runs/text_digits/text-s0`` ...), with one pixel judge
fitted on the training images:

* ``real``: the judge on the held-out images themselves, the ceiling of every other figure.
* ``image_latent``: the image decoder fed the latents of the held-out *images* (batch context and the
  run's noise scale: the training protocol). The decoder's own ceiling: what it does with latents from
  the zones it was trained on.
* ``caption``: the decoder fed caption latents, each drawn from its zone against the run's reference set
  (``batch_size - 1`` training captions): the figure the text recipe reports.
* ``caption_nn``: no decoding: the class of the nearest held-out image latent to each caption latent
  (``image_nn``: the same for each image latent, itself left out). When ``caption_nn`` is near
  ``caption`` and far below ``image_nn``, the loss happens before the decoder: caption zones sit among
  the image zones of other classes.
* ``caption_alpha=A``: caption latents drawn with noise scale A instead of the run's ``noise_scale`` (0.45;
  0 takes each zone's most typical point, 1 the whole zone, method.md §2.9): what a narrower draw buys.
* ``caption_ref=R``: the reference set of R training captions instead of the run's.

Each run is measured through the model it exported (``RUN/model``, which holds the run's text reference
set) and the settings of its ``run.yaml``.

Prints JSON (per run, then mean and sample sd over runs) and a one-line summary.

    nice python experiments/text_gap.py runs/text_digits/text-s0 runs/text_digits/text-s1 runs/text_digits/text-s2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lzn.data import ImageDataset, caption_dataset, composed_pairs, load_split
from lzn.eval import pixel_judge, text_to_image

from common import diagnose_runs, run_model, run_settings, seed_summary  # experiments/common.py, beside this script

_JUDGES: dict[str, tuple[ImageDataset, ImageDataset, Any]] = {}  # per data config: train, test, pixel judge


def data_and_judge(data_cfg: Any) -> tuple[ImageDataset, ImageDataset, Any]:
    """The train and test splits of a run's data and a pixel judge fitted on the training images, once per
    data config (the runs of one preset share them)."""
    key = repr(data_cfg)
    if key not in _JUDGES:
        train, test = (load_split(data_cfg, s) for s in ("train", "test"))
        assert isinstance(train, ImageDataset) and isinstance(test, ImageDataset) and train.labels is not None
        _JUDGES[key] = train, test, pixel_judge(train.images, train.labels, train.num_classes)
    return _JUDGES[key]


def nearest_class(queries: Tensor, keys: Tensor, key_labels: Tensor, leave_out: bool) -> Tensor:
    """Label of each query's nearest key (Euclidean); ``leave_out``: queries are the keys, skip self."""
    dist = torch.cdist(queries, keys)  # (M, N)
    if leave_out:
        dist.fill_diagonal_(float("inf"))
    return key_labels[dist.argmin(dim=1)]


def diagnose(run_dir: Path, num: int, alphas: list[float], refs: list[int]) -> dict[str, float]:
    recipe, cfg = run_settings(run_dir)
    if recipe != "text":
        raise SystemExit(f"text_gap.py: {run_dir} is a run of the {recipe!r} recipe; expected a run of 'text'")
    lzn = run_model(run_dir)
    if lzn.decoder is None:
        raise SystemExit(f"text_gap.py: {run_dir} has no image decoder (rf_weight = 0)")
    if cfg.data.name == "captions":
        raise SystemExit(f"text_gap.py: {run_dir} trained on your own captions (data.name=captions): they name no "
                         "class to check; the diagnosis needs digits or fashion")
    train, test, judge = data_and_judge(cfg.data)
    composed = caption_dataset(train, seed=cfg.caption_seed)  # the training captions and thresholds
    images, labels, pairs = composed_pairs(test, composed.thresholds, pairs=cfg.eval_pairs, seed=cfg.train.seed,
                                           caption_seed=cfg.caption_seed)
    n = min(num, len(pairs.captions))
    images, labels, captions = images[:n].to(lzn.device), labels[:n], pairs.captions[:n]
    out = {}
    kw = {"sampler": cfg.sampler, "steps": cfg.sampler_steps}

    def judged(fake: Tensor) -> float:
        return float((judge(fake.clamp(-1, 1).cpu()) == labels).float().mean())

    with torch.no_grad():
        out["real"] = judged(images)  # the judge's own accuracy: the ceiling of every figure below
        gen = torch.Generator(device=lzn.device).manual_seed(0)
        alpha = lzn.flow.noise_scale  # the run's noise_scale: training's and generation's alpha
        z_img = lzn.latents("image", images, context="batch", noise_scale=alpha, generator=gen)  # (n, q)
        out["image_latent"] = judged(lzn.decode("image", z_img, generator=gen, **kw))  # type: ignore[arg-type]
        out["image_nn"] = float((nearest_class(z_img, z_img, labels, True) == labels).float().mean())
        # the recipe's own figure, over the run's text reference set (saved with the model)
        out["caption"] = judged(text_to_image(lzn, captions, generator=torch.Generator(device=lzn.device)
                                              .manual_seed(0), **kw))  # type: ignore[arg-type]
        gen = torch.Generator(device=lzn.device).manual_seed(1)  # not the images' noise, or the two would pair up
        z_cap = lzn.latents("text", captions, noise_scale=alpha, generator=gen)  # over the reference set
        out["caption_nn"] = float((nearest_class(z_cap, z_img, labels, False) == labels).float().mean())
        for a in alphas:
            gen = torch.Generator(device=lzn.device).manual_seed(0)
            fake = lzn.generate(given=("text", captions), noise_scale=a, generator=gen, **kw).images
            out[f"caption_alpha={a:g}"] = judged(fake)
        all_train = composed.captions
        for size in refs:
            pick = torch.randperm(len(all_train), generator=torch.Generator().manual_seed(1))[:size]
            lzn.build_reference_from([all_train[i] for i in pick.tolist()], type="text")  # replaces the run's
            fake = text_to_image(lzn, captions, generator=torch.Generator(device=lzn.device).manual_seed(0),
                                 **kw)  # type: ignore[arg-type]
            out[f"caption_ref={size}"] = judged(fake)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished text run folders")
    parser.add_argument("--num", type=int, default=200, help="held-out pairs per run (default 200)")
    parser.add_argument("--alphas", type=float, nargs="*", default=[0.0, 1.0], help="other noise scales of the draw")
    parser.add_argument("--refs", type=int, nargs="*", default=[15, 1023], help="other reference set sizes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.num < 1 or any(r < 1 for r in args.refs) or args.threads < 1:
        parser.error("--num, --refs and --threads take whole numbers >= 1")
    if any(not 0.0 <= a < float("inf") for a in args.alphas):  # NaN fails this too
        parser.error(f"--alphas: noise scales are finite numbers >= 0, got {args.alphas}")
    torch.set_num_threads(args.threads)
    per_run = diagnose_runs(args.runs, "text_gap.py", "experiments/text_digits.py or `lzn train text --out DIR`",
                            lambda run: diagnose(run, args.num, args.alphas, args.refs))
    keys = list(next(iter(per_run.values())))  # in measuring order
    summary = seed_summary({"gap": list(per_run.values())})["gap"]
    print(json.dumps({"runs": per_run, "summary": summary, "num": args.num}, indent=2))
    print(f"text_gap ({len(per_run)} runs, class consistency): "
          + "; ".join(f"{k} {summary[k]['mean']:.3f}+-{summary[k]['sd']:.3f}" for k in keys))


if __name__ == "__main__":
    main()
