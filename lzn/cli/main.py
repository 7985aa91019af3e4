"""``lzn`` command line: thin commands over the library.

    lzn train RECIPE --preset NAME [--config FILE.yaml] [--set key=value ...] --out RUN_DIR
    lzn sample RUN_DIR [--num N | --labels 0,1,2] [--out FILE.png]
    lzn classify RUN_DIR --data NAME [--root PATH] [--split test]
    lzn embed RUN_DIR --data NAME [--root PATH] --out FILE.npy [--head]
    lzn reconstruct RUN_DIR [--out FILE.png]
    lzn demo [--out DIR]          the joint recipe on digits, then samples, reconstructions, accuracy
    lzn zones [--out DIR]         the 2-D picture of anchors, zones and latents
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _zones(args: argparse.Namespace) -> int:
    import torch

    from lzn.viz import compute_zone_map, plot_zone_map

    if args.anchors < 1:
        raise ValueError(f"--anchors must be at least 1, got {args.anchors}")
    gen = torch.Generator().manual_seed(args.seed)
    anchors = torch.randn(args.anchors, 2, generator=gen) * args.spread
    zmap = compute_zone_map(anchors, per_anchor=args.per_anchor, grid=args.grid, steps=args.steps, generator=gen)
    path = plot_zone_map(zmap, f"{args.out}/zones.png")
    lat = zmap.latents
    print(f"anchors: {args.anchors} in 2-D (seed {args.seed}); latents per anchor: {args.per_anchor}")
    print(f"pooled latents: mean ({lat[:, 0].mean():+.3f}, {lat[:, 1].mean():+.3f}), "
          f"var ({lat[:, 0].var():.3f}, {lat[:, 1].var():.3f})  [N(0, I) expected]")
    print(f"latents that flow back to another anchor: {zmap.wrong_zone_rate:.2%}")
    print(f"zone picture: {path.resolve()}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from lzn.recipes.runner import resolve_config, train

    cfg = resolve_config(args.recipe, args.preset, args.config, args.set)
    results = train(args.recipe, cfg, args.out)
    for key, value in results.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"run folder: {Path(args.out).resolve()}")
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lzn.recipes.runner import load_run

    rec, cfg = load_run(args.run_dir, args.device)
    return rec, cfg


def _data(args: argparse.Namespace, cfg):  # type: ignore[no-untyped-def]
    import dataclasses

    from lzn.recipes.common import load_data

    data_cfg = dataclasses.replace(cfg.data, name=args.data or cfg.data.name,
                                   root=args.root if args.root is not None else cfg.data.root)
    return load_data(data_cfg, args.split)


def _sample(args: argparse.Namespace) -> int:
    import torch

    from lzn.viz import save_image_grid

    rec, _ = _load(args)
    model = getattr(rec, "lzn", None)
    if model is None or model.decoder is None:
        raise ValueError(f"{args.run_dir} holds a {rec.name!r} run, which has no image decoder to sample from")
    labels = None
    if args.labels:
        labels = torch.tensor([int(v) for v in args.labels.split(",")], device=rec.device)
    gen = torch.Generator(device=rec.device).manual_seed(args.seed)
    with torch.no_grad():
        out = model.generate(num=None if labels is not None else args.num, labels=labels, sampler=args.sampler,
                             steps=args.steps, generator=gen)
    path = save_image_grid(out.images, args.out or Path(args.run_dir) / "samples" / "lzn-sample.png")
    if out.labels is not None:
        print(f"labels: {','.join(str(int(v)) for v in out.labels)}")
    print(f"samples: {Path(path).resolve()}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    import torch

    rec, cfg = _load(args)
    if not hasattr(rec, "classify"):
        raise ValueError(f"{args.run_dir} holds a {rec.name!r} run, which cannot classify (use joint, nogen or classifier)")
    data = _data(args, cfg)
    kwargs = {} if args.noise_scale is None else {"noise_scale": args.noise_scale}
    if kwargs and not hasattr(cfg, "eval_noise_scale"):
        raise ValueError(f"--noise-scale applies to LZN label decoding (joint, nogen), not to a {rec.name!r} run")
    with torch.no_grad():
        pred = rec.classify(data.images, **kwargs)
    if data.labels is not None:
        print(f"accuracy: {(pred == data.labels).float().mean().item():.4f} on {len(pred)} images")
    if args.out:
        import numpy as np

        np.save(args.out, pred.numpy())
        print(f"predictions: {Path(args.out).resolve()}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from lzn.eval import extract_features

    rec, cfg = _load(args)
    encoder = rec.modules.get("encoder")
    if encoder is None:
        raise ValueError(f"{args.run_dir} holds a {rec.name!r} run, which has no image encoder")
    data = _data(args, cfg)
    fn = encoder if args.head else encoder.features
    with torch.no_grad():
        feats = extract_features(fn, data.images, device=rec.device)
    np.save(args.out, feats.numpy())
    print(f"embeddings {tuple(feats.shape)}: {Path(args.out).resolve()}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    import torch

    rec, cfg = _load(args)
    if not hasattr(rec, "reconstruction"):
        raise ValueError(f"{args.run_dir} holds a {rec.name!r} run, which has no decoder to reconstruct with")
    data = _data(args, cfg)
    out = Path(args.out) if args.out else Path(args.run_dir)
    with torch.no_grad():
        res = rec.reconstruction(data, out)
    print(f"reconstruction L2 per image: {res['recon_l2']:.4f}")
    print(f"reconstructions (original above reconstruction): {(out / 'reconstructions.png').resolve()}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from lzn.recipes.runner import resolve_config, train

    start = time.time()
    print("lzn demo: the joint recipe (generation + classification, spec §4.3) on scikit-learn's digits")
    cfg = resolve_config("joint", "digits", None, args.set)
    results = train("joint", cfg, args.out)
    out = Path(args.out).resolve()
    alpha = cfg.eval_noise_scale  # type: ignore[attr-defined]
    print(f"test accuracy: {results['test_accuracy']:.3f}  (label decoder, paper protocol, test latents at "
          f"alpha = {alpha:g}; at alpha = 1: {results['test_accuracy_alpha_1']:.3f})")
    print(f"reconstruction L2 per image: {results['recon_l2']:.3f}")
    print(f"class-conditional samples (one row per class): {out / 'samples.png'}")
    print(f"reconstructions: {out / 'reconstructions.png'}")
    print(f"model (save_pretrained): {out / 'model'}")
    print(f"metrics: {out / 'metrics.csv'}")
    print(f"done in {time.time() - start:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lzn", description="Latent Zoning Networks")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a recipe (generation, representation, joint, rf, simclr, classifier, nogen)")
    t.add_argument("recipe")
    t.add_argument("--preset", default=None, help="digits | fashion | cifar10 | imagenet")
    t.add_argument("--config", default=None, help="YAML file of config overrides")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key (repeatable)")
    t.add_argument("--out", required=True, help="run folder (resumed if it holds checkpoints)")
    t.set_defaults(func=_train)

    def run_cmd(name: str, help_: str, func) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help_)
        p.add_argument("run_dir")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
        p.set_defaults(func=func)
        return p

    s = run_cmd("sample", "sample a grid of images from a trained run", _sample)
    s.add_argument("--num", type=int, default=64)
    s.add_argument("--labels", default=None, help="comma-separated classes, e.g. 0,1,2 (class-conditional)")
    s.add_argument("--sampler", default="euler", help="euler | heun | dopri5")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="PNG path")
    for name, help_, func in (("classify", "classify a data set with a trained run", _classify),
                              ("embed", "write embeddings of a data set to .npy", _embed),
                              ("reconstruct", "reconstruct training images (latent, invert, regenerate)", _reconstruct)):
        p = run_cmd(name, help_, func)
        p.add_argument("--data", default=None, help="data set name (default: the run's)")
        p.add_argument("--root", default=None, help="data path (default: the run's)")
        p.add_argument("--split", default="test" if name != "reconstruct" else "train")
        p.add_argument("--out", default=None, required=name == "embed",
                       help="output file (.npy) or folder")
        if name == "embed":
            p.add_argument("--head", action="store_true", help="anchors instead of backbone features")
        if name == "classify":
            p.add_argument("--noise-scale", type=float, default=None,
                           help="alpha of the test latents (default: the run's eval_noise_scale)")

    d = sub.add_parser("demo", help="train the joint recipe on digits (CPU, minutes) and report")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d.set_defaults(func=_demo)

    z = sub.add_parser("zones", help="draw random 2-D anchors, their zones and their latents to a PNG")
    z.add_argument("--out", default="runs/zones", help="output folder (default: runs/zones)")
    z.add_argument("--anchors", type=int, default=6, help="number of anchors (default: 6)")
    z.add_argument("--spread", type=float, default=1.0, help="std of the random anchors (default: 1.0)")
    z.add_argument("--per-anchor", type=int, default=200, help="latents drawn per anchor (default: 200)")
    z.add_argument("--grid", type=int, default=240, help="raster size of the zone map (default: 240)")
    z.add_argument("--steps", type=int, default=100, help="Euler steps of each flow (default: 100)")
    z.add_argument("--seed", type=int, default=0)
    z.set_defaults(func=_zones)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError, FileNotFoundError, KeyError) as err:
        if os.environ.get("LZN_DEBUG"):
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"lzn {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
