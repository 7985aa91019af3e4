"""Text as a third data type on digits (issue 10): the LZN ``text`` recipe against its baselines, same data,
loop, batch and step budget, several seeds (CPU, minutes).

* ``text``: image <-> caption zones (frozen all-MiniLM-L6-v2 + head by default) and the latent-conditioned
  decoder: recall@1/5 image -> text and text -> image on held-out pairs, prompt classification (one
  prompt per class as the candidate set, no label anchors), class and attribute consistency of
  text-to-image samples, class consistency of class-prompt samples;
* ``clip``: the same encoders with the symmetric InfoNCE loss: the same retrieval and prompt figures;
* ``joint``: case study 3's label decoder (test accuracy), and class consistency of its label-conditional
  samples;
* ``rf``: class-conditional rectified flow, class consistency of its samples (generation baseline);
* ``text_label`` (not run by default): ``text`` with label anchors aligned too (``label_weight=1``), the
  same figures plus its label decoder's accuracy: does a class-shaped latent space make text-to-image
  samples follow the caption's class (``experiments/text_gap.py`` diagnoses why they do not always)?
  ``text_align``: ``text`` without the image decoder (``rf_weight=0``): what generation costs retrieval;
* with ``--fid N``: FID and KID of N samples of text / joint / rf against the test images (a seeded draw of
  at most ``--fid-reals``, 2000; EfficientNet-Lite0 features, ``lzn[fid]``), text-to-image from held-out captions.

Class consistency is judged by one pixel classifier (``lzn.eval.pixel_judge``) fitted on the training
images. Each finished run is measured through the model it exported (``RUN/model``). Each (recipe, seed) trains into ``--out/RECIPE-sSEED`` (resumed if present). Prints JSON
(every run, then mean and sample sd per metric) and a one-line summary.

    nice python experiments/text_digits.py --seeds 0 1 2 --steps 300
    nice python experiments/text_digits.py --preset fashion --seeds 0 1 2 --steps 600 --fid 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lzn import LatentZoningNetwork
from lzn.data import ImageDataset, caption_thresholds, composed_pairs, load_split
from lzn.eval import class_consistency, fast_extractor, fid, generate_like, kid, pixel_judge, text_to_image
from lzn.recipes.runner import resolve_config, train

from common import run_model, seed_summary  # experiments/common.py, beside this script

SUMMARY = [("text", "test_i2t_recall@1"), ("text", "test_i2t_recall@5"), ("text", "test_t2i_recall@1"),
           ("text", "test_t2i_recall@5"), ("clip", "test_i2t_recall@1"), ("clip", "test_i2t_recall@5"),
           ("clip", "test_t2i_recall@1"), ("clip", "test_t2i_recall@5"), ("text", "test_prompt_accuracy"),
           ("clip", "test_prompt_accuracy"), ("joint", "test_accuracy"), ("text", "test_t2i_class_consistency"),
           ("text", "test_prompt_class_consistency"), ("joint", "class_consistency"), ("rf", "class_consistency"),
           ("text", "test_t2i_attribute_consistency"), ("text", "fid"), ("joint", "fid"), ("rf", "fid")]


# variants: a recipe with settings of its own, trained into NAME-sSEED
VARIANTS = {"text_label": ("text", ["label_weight=1.0"]),  # the text recipe with label anchors aligned too
            "text_align": ("text", ["rf_weight=0"])}  # alignment alone: no decoder sharing the image encoder


def settings(recipe: str, seed: int, steps: int, batch: int, text_encoder: str) -> list[str]:
    recipe, extra = VARIANTS.get(recipe, (recipe, []))
    out = extra + [f"train.seed={seed}", f"train.steps={steps}", "train.progress=false", f"batch_size={batch}",
           f"train.warmup_steps={min(100, steps // 5)}", f"train.checkpoint_every={steps}"]
    if recipe in ("text", "clip"):
        out += [f"text_encoder={text_encoder}", "train.lr=2.0e-3", "eval_pairs=400"]
    if recipe == "text":
        out += ["gen_samples=200"]
    if recipe == "rf":
        out += ["class_conditional=true"]
    return out


def judged(model: LatentZoningNetwork, cfg: Any, judge: Any, num: int) -> dict[str, float]:
    """Class consistency of the label-conditional samples of a finished joint / conditional RF run's model."""
    res = class_consistency(model, judge, num, sampler=cfg.sampler, steps=cfg.sampler_steps)
    return {"class_consistency": res["class_consistency"]}


_REAL: dict[str, Tensor] = {}  # features of the FID reference images, extracted once per process


def real_features(test: ImageDataset, extractor: Any, reals: int) -> Tensor:
    """Features of at most ``reals`` test images (a seeded draw; all of them when there are fewer)."""
    key = f"{test.name}-{len(test)}-{reals}"
    if key not in _REAL:
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:reals]
        _REAL[key] = extractor(test.images[pick])
    return _REAL[key]


def fid_of(model: LatentZoningNetwork, cfg: Any, train_set: ImageDataset, test_set: ImageDataset, extractor: Any,
           num: int, reals: int) -> dict[str, float]:
    """FID / KID of ``num`` samples against (at most ``reals``) test images: text-to-image samples of held-out
    captions (the run's held-out pairs, ``lzn.data.composed_pairs``) for a model with a text type,
    label-conditional samples at the training class frequencies for ``joint`` / ``rf``."""
    with torch.no_grad():
        if "text" in model.data_types:
            thresholds = caption_thresholds(train_set)  # the training thresholds
            _, _, pairs = composed_pairs(test_set, thresholds, pairs=cfg.eval_pairs, seed=cfg.train.seed,
                                         caption_seed=cfg.caption_seed)
            fake = text_to_image(model, pairs.captions[:num], sampler=cfg.sampler,
                                 steps=cfg.sampler_steps).clamp(-1, 1).cpu()
        else:
            fake = generate_like(model, num, train_set.labels, sampler=cfg.sampler, steps=cfg.sampler_steps,
                                 progress=False)
    real, fake_f = real_features(test_set, extractor, reals), extractor(fake)  # (N, D), (M, D)
    kid_mean, _ = kid(real, fake_f, subset_size=min(num, real.shape[0]))
    return {"fid": fid(real, fake_f), "kid": kid_mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=["text", "clip", "joint", "rf"],
                        choices=["text", "clip", "joint", "rf", *VARIANTS],
                        help="text_label: the text recipe with label anchors too (label_weight=1); text_align: "
                             "without the image decoder (rf_weight=0)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--text-encoder", choices=["minilm", "small"], default="minilm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on shared cores)")
    parser.add_argument("--preset", choices=["digits", "fashion"], default="digits",
                        help="data and networks: digits (embedded) or fashion (Fashion-MNIST IDX files, `make fashion`)")
    parser.add_argument("--out", default=None, help="run folders (default runs/text_PRESET)")
    parser.add_argument("--fid", type=int, default=0, metavar="N",
                        help="also FID/KID of N samples vs the test images (EfficientNet-Lite0 features; 0: off)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a config setting for every run, after the script's own (repeatable)")
    parser.add_argument("--fid-reals", type=int, default=2000, metavar="N",
                        help="test images of the FID reference (a seeded draw; all when fewer; default 2000)")
    args = parser.parse_args()
    args.out = args.out or f"runs/text_{args.preset}"
    torch.set_num_threads(args.threads)
    judge, extractor = None, None
    runs: dict[str, list[dict[str, Any]]] = {}
    plan = []  # every run's config, resolved before the first one trains: a mistyped --set stops at once
    for name in args.recipes:
        recipe = VARIANTS.get(name, (name, []))[0]
        for seed in args.seeds:
            try:
                plan.append((name, recipe, seed, resolve_config(
                    recipe, args.preset, sets=settings(name, seed, args.steps, args.batch_size, args.text_encoder)
                    + args.sets)))
            except ValueError as err:  # lzn's ConfigError is one
                parser.error(f"{name}: {err}")
    for name, recipe, seed, cfg in plan:
        run_dir = Path(args.out) / f"{name}-s{seed}"
        start = time.perf_counter()
        res = train(recipe, cfg, run_dir)
        if "test_label_accuracy" in res:  # a text run cached before results.json named it test_accuracy
            res["test_accuracy"] = res.pop("test_label_accuracy")
        if recipe in ("joint", "rf"):
            if judge is None:
                train_data = load_split(cfg.data, "train")
                assert isinstance(train_data, ImageDataset) and train_data.labels is not None
                judge = pixel_judge(train_data.images, train_data.labels)
            res.update(judged(run_model(run_dir), cfg, judge, 200))
        res["seconds"] = time.perf_counter() - start
        if args.fid and recipe in ("text", "joint", "rf") and getattr(cfg, "rf_weight", 1.0) > 0:  # a decoder
            train_set, test_set = (load_split(cfg.data, s) for s in ("train", "test"))
            assert isinstance(train_set, ImageDataset) and isinstance(test_set, ImageDataset)
            extractor = extractor or fast_extractor(progress=False)
            res.update(fid_of(run_model(run_dir), cfg, train_set, test_set, extractor, args.fid, args.fid_reals))
        runs.setdefault(name, []).append(res)
    summary = seed_summary(runs)
    print(json.dumps({"preset": args.preset, "seeds": args.seeds, "steps": args.steps, "batch_size": args.batch_size,
                      "text_encoder": args.text_encoder, "runs": runs, "summary": summary}, indent=2))
    shown = (SUMMARY + [(v, m) for v in VARIANTS for r, m in SUMMARY if r == "text"]
             + [("text_label", "test_accuracy")])
    parts = [f"{r} {m.removeprefix('test_')} {summary[r][m]['mean']:.3f}+-{summary[r][m]['sd']:.3f}"
             for r, m in shown if m in summary.get(r, {})]
    print(f"text_{args.preset} ({len(args.seeds)} seeds, {args.steps} steps, batch {args.batch_size}): " + "; ".join(parts))


if __name__ == "__main__":
    main()
